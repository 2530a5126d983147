"""A local port forwarded to a port on an EC2 instance or an ECS task, through Session Manager.

`aws ssm start-session --document-name AWS-StartPortForwardingSession --parameters portNumber=...,
localPortNumber=...` (session-manager-plugin needed locally): the plugin listens on the local port and
relays each connection to the port on the target (AWS: Session Manager, "Start a session", port
forwarding). The target is an instance id, or `ecs:CLUSTER_TASKID_RUNTIMEID` for a task's container.
Once listening the plugin prints "Waiting for connections...": `open` waits for that line rather than
probing the port, since a probe would open a connection to the remote service. The CLI and its plugin
run in a process group of their own, so `close` ends both and frees the port; a guard leads that group
(`lifeline`) and ends it when this process dies without closing it, even by SIGKILL.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Sequence

from fceval_tui.errors import PermanentError, TransientError, UserError
from fceval_tui.transports import lifeline
from fceval_tui.transports.aws_cli import aws_cli_argv
from fceval_tui.transports.retry import transient_hint

PORT_FORWARD_DOCUMENT = "AWS-StartPortForwardingSession"
READY = "Waiting for connections"
LOCAL_HOST = "127.0.0.1"


def free_local_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCAL_HOST, 0))
        return probe.getsockname()[1]


def require_free(port: int) -> None:
    """A UserError when something already listens on 127.0.0.1:port (the plugin would fail later, less clearly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOCAL_HOST, port))
        except OSError as exc:
            raise UserError(
                f"local port {port} is not free ({exc.strerror})",
                "choose another --local-port, or leave it out to get a free one",
            ) from None


def forward_argv(
    target: str,
    remote_port: int,
    local_port: int,
    *,
    region: str | None = None,
    profile: str | None = None,
    command_prefix: Sequence[str] = (),
) -> list[str]:
    parameters = {"portNumber": [str(remote_port)], "localPortNumber": [str(local_port)]}
    words = ["ssm", "start-session", "--target", target, "--document-name", PORT_FORWARD_DOCUMENT]
    return aws_cli_argv(command_prefix, region, profile, *words, "--parameters", json.dumps(parameters))


class PortForward:
    """One forwarding session: `open` starts it and returns once it listens; `close` ends it."""

    def __init__(self, argv: Sequence[str], local_port: int) -> None:
        self.argv = list(argv)
        self.local_port = local_port
        self._proc: subprocess.Popen | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=40)
        self._ready = threading.Event()  # listening, or ended without
        self._listening = False
        self._reader: threading.Thread | None = None
        self._lifeline: int | None = None  # while open, the session lives (see `lifeline`)

    @property
    def url(self) -> str:
        return f"http://{LOCAL_HOST}:{self.local_port}"

    @property
    def pid(self) -> int | None:
        """The session's process group id (its guard's pid), once opened."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output(self) -> str:
        """The session's last lines (the plugin prints one per accepted connection)."""
        return "\n".join(self._lines)

    def open(self, timeout: float = 60.0) -> None:
        if shutil.which(self.argv[0]) is None:
            raise PermanentError(
                f"{self.argv[0]!r} is not installed or not on PATH", "install the AWS CLI and session-manager-plugin"
            )
        self._proc, self._lifeline = lifeline.start(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._reader = threading.Thread(target=self._read, name=f"forward-{self.local_port}", daemon=True)
        self._reader.start()
        self._ready.wait(timeout)
        if self._listening and self.alive:
            return
        self.close()
        text = self.output()
        if not text.strip():
            raise TransientError(
                f"the port-forwarding session did not start within {timeout:g}s", "check the network path to SSM"
            )
        hint = transient_hint(text)
        if hint is not None:
            raise TransientError(f"port forwarding failed: {hint.cause}: {text[-300:]}", hint.fix)
        raise PermanentError(
            f"port forwarding failed: {text[-500:]}",
            "check session-manager-plugin is installed and your identity may ssm:StartSession with "
            f"{PORT_FORWARD_DOCUMENT} (`fceval-tui audit`)",
        )

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._lines.append(line)
            if READY in line:
                self._listening = True
                self._ready.set()
        self._ready.set()  # ended: `open` stops waiting and reports what it said

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the session ends by itself (or `timeout` passes); its exit status, None if still open."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self, grace: float = 5.0) -> None:
        """End the session (the CLI and its plugin) and wait for it, so the local port is free on return."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        proc.wait()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if self._reader is not None:
            self._reader.join(grace)
