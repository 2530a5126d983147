"""This machine: commands via subprocess, streams via a child process on pipes or a pseudo-terminal.

`ProcessStream` is also what the remote transports use for `aws ssm start-session` and
`aws ecs execute-command --interactive`: session-manager-plugin wants a terminal, so those run on
a pty put into raw mode (no local echo, no newline translation).
"""

from __future__ import annotations

import errno
import logging
import os
import pty
import select
import signal
import subprocess
import threading
import tty
from collections.abc import Mapping, Sequence

from fceval_tui.errors import PermanentError
from fceval_tui.transports.base import CommandResult, Stream, Transport

log = logging.getLogger(__name__)


def _missing(argv: Sequence[str]) -> PermanentError:
    return PermanentError(f"{argv[0]!r} is not installed or not on PATH", fix=f"install {argv[0]} and retry")


class ProcessStream(Stream):
    """A child process whose stdin and stdout (stderr merged) are the stream."""

    def __init__(self, argv: Sequence[str], *, use_pty: bool = False, env: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._eof = False
        try:
            if use_pty:
                master, slave = pty.openpty()
                tty.setraw(slave)
                try:
                    self._proc = subprocess.Popen(
                        list(argv), stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
                    )
                finally:
                    os.close(slave)
                self._rfd = self._wfd = master
            else:
                self._proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    bufsize=0,
                )
                assert self._proc.stdin is not None and self._proc.stdout is not None
                self._rfd = self._proc.stdout.fileno()
                self._wfd = self._proc.stdin.fileno()
        except FileNotFoundError as exc:
            raise _missing(argv) from exc
        self._use_pty = use_pty

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def read(self, size: int = 65536, timeout: float | None = None) -> bytes:
        if self._closed:
            return b""
        try:
            ready, _, _ = select.select([self._rfd], [], [], timeout)
        except (OSError, ValueError):  # closed concurrently by close() from another thread
            return b""
        if not ready:
            raise TimeoutError(f"no output within {timeout}s")
        try:
            data = os.read(self._rfd, size)
        except OSError as exc:
            # A pty master reports EIO once the child side is gone: that is the end of the stream.
            if exc.errno not in (errno.EIO, errno.EBADF):
                raise
            data = b""
        self._eof = not data
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._wfd, view)
            except OSError as exc:
                raise BrokenPipeError(f"stream closed: {exc}") from exc
            view = view[written:]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._proc.poll() is None:
            # The whole group: `aws` leaves session-manager-plugin behind when only it is signalled.
            _signal_group(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                log.warning("stream child %d ignored SIGTERM; killing it", self._proc.pid)
                _signal_group(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=3)
        if self._use_pty:
            os.close(self._rfd)
        else:
            # The Popen pipe objects own the descriptors.
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()

    @property
    def closed(self) -> bool:
        """Closed by us, or the end of the stream has been read."""
        return self._closed or self._eof


def _signal_group(pgid: int, sig: int) -> None:
    """Signal a child started with start_new_session (its pid is its group's id) and what it started."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class LocalTransport(Transport):
    """Runs argv on this machine. `env` replaces the environment when given (tests pass one without TMUX)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(env) if env is not None else None

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60.0) -> CommandResult:
        try:
            proc = subprocess.run(
                list(argv), input=stdin, capture_output=True, timeout=timeout, env=self._env, check=False
            )
        except FileNotFoundError as exc:
            raise _missing(argv) from exc
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"{argv[0]} did not finish within {timeout}s") from exc
        return CommandResult(
            proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        )

    def open_stream(self, argv: Sequence[str]) -> Stream:
        return ProcessStream(argv, env=self._env)

    @property
    def is_local(self) -> bool:
        return True

    def describe(self) -> str:
        return "this machine"
