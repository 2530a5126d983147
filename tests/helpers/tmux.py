"""A real tmux server on a private socket, and panes whose output the test writes byte for byte.

A `DrivenPane` runs a tiny shell loop that reads file names from a FIFO and copies each file to
the pane, so the test decides every byte the pane prints. `pipe-pane` records the true transcript;
`emit` returns only once tmux has read (and parsed) everything, by waiting for the transcript to
reach the expected size (the tty turns each LF into CRLF).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fceval_tui.services.mirror.control_mode import LineAssembler
from fceval_tui.transports.local import LocalTransport

HISTORY_LIMIT = 200
WIDTH, HEIGHT = 80, 24
SYNC_TIMEOUT = 10.0  # a bound on waiting for tmux, not a speed assertion

# A signal (SIGWINCH on a resize) can interrupt the blocking FIFO open: ignore it, and just retry a
# failed read, so only the EXIT line ends the pane.
_DRIVER = 'trap \'\' WINCH; while :; do IFS= read -r f < "$1" || continue; [ "$f" = EXIT ] && exit 0; cat "$f"; done'


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TMUX", None)
    return env


@dataclass
class TmuxServer:
    socket: str
    tmpdir: Path

    @property
    def args(self) -> tuple[str, ...]:
        return ("-L", self.socket)

    def tmux(self, *words: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", *self.args, *words], capture_output=True, text=True, env=clean_env(), check=check, timeout=30
        )

    def transport(self) -> LocalTransport:
        return LocalTransport(env=clean_env())

    def new_driven_pane(self) -> DrivenPane:
        name = "p" + uuid.uuid4().hex[:8]
        work = self.tmpdir / name
        work.mkdir()
        fifo = work / "fifo"
        os.mkfifo(fifo)
        self.tmux(
            "new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(HEIGHT), "sh", "-c", _DRIVER, "sh", str(fifo)
        )
        transcript = work / "transcript"
        transcript.touch()
        self.tmux("pipe-pane", "-t", name, "-o", f"cat >> {transcript}")
        return DrivenPane(self, name, work, fifo, transcript)


@dataclass
class DrivenPane:
    server: TmuxServer
    session: str
    work: Path
    fifo: Path
    transcript_path: Path
    written: int = 0
    chunks: list[bytes] = field(default_factory=list)

    def emit(self, data: bytes) -> None:
        if not data:
            return
        chunk = self.work / f"chunk{len(self.chunks)}"
        chunk.write_bytes(data)
        self.chunks.append(data)
        self._send(f"{chunk}\n")
        self.written += len(data) + data.count(b"\n")  # onlcr: LF -> CRLF
        self.wait_transcript(self.written)

    def wait_transcript(self, size: int) -> None:
        deadline = time.monotonic() + SYNC_TIMEOUT
        while self.transcript_path.stat().st_size < size:
            if time.monotonic() > deadline:
                raise AssertionError(f"tmux did not pass {size} bytes to pipe-pane within {SYNC_TIMEOUT}s")
            time.sleep(0.002)

    def finish(self) -> None:
        """Make the pane's process exit (the session then ends)."""
        self._send("EXIT\n")

    def _send(self, line: str) -> None:
        # Non-blocking open: a driver that died must fail the test, not hang it.
        deadline = time.monotonic() + SYNC_TIMEOUT
        while True:
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:  # ENXIO: no reader yet
                if time.monotonic() > deadline:
                    alive = self.server.tmux("list-panes", "-t", self.session, check=False)
                    raise AssertionError(
                        f"pane driver not reading its FIFO: {exc}; {alive.stdout}{alive.stderr}"
                    ) from exc
                time.sleep(0.002)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def transcript(self) -> bytes:
        return self.transcript_path.read_bytes()

    def kill(self) -> None:
        self.server.tmux("kill-session", "-t", self.session, check=False)


def true_lines(data: bytes, width: int = WIDTH) -> list[str]:
    """The completed lines of a transcript, by the definition in services.mirror."""
    return LineAssembler(width).feed(data)


@pytest.fixture(scope="module")
def tmux_server(tmp_path_factory):
    tmpdir = tmp_path_factory.mktemp("tmux")
    conf = tmpdir / "tmux.conf"
    conf.write_text(f"set -g history-limit {HISTORY_LIMIT}\nset -g remain-on-exit off\n")
    server = TmuxServer(f"fceval-test-{uuid.uuid4().hex[:10]}", tmpdir)
    # A placeholder session keeps the server alive while test sessions come and go.
    subprocess.run(
        ["tmux", "-L", server.socket, "-f", str(conf), "new-session", "-d", "-s", "keepalive", "sleep", "86400"],
        env=clean_env(),
        check=True,
        timeout=30,
    )
    yield server
    server.tmux("kill-server", check=False)


@pytest.fixture
def driven_pane(tmux_server):
    pane = tmux_server.new_driven_pane()
    yield pane
    pane.kill()


_FAKE_AWS = '''#!{python}
"""A stand-in for `aws ssm start-session` / `aws ecs execute-command`: runs the command here."""
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_AWS_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
fail = os.environ.get("FAKE_AWS_FAIL")  # "N|message": the first N calls fail with message
if fail:
    n, message = fail.split("|", 1)
    counter = os.environ["FAKE_AWS_LOG"] + ".count"
    done = int(open(counter).read()) if os.path.exists(counter) else 0
    if done < int(n):
        open(counter, "w").write(str(done + 1))
        sys.stderr.write(message + "\\n")
        sys.exit(255)
if "start-session" in args:
    command = json.loads(args[args.index("--parameters") + 1])["command"][0]
else:
    command = args[args.index("--command") + 1]
sys.stdout.write("\\r\\nStarting session with SessionId: fake-0123\\r\\n")
sys.stdout.flush()
subprocess.call(["sh", "-c", command])
sys.stdout.write("\\r\\n\\r\\nExiting session with sessionId: fake-0123.\\r\\n\\r\\n")
sys.stdout.flush()
sys.exit(0)  # like the real CLI: the remote exit code is lost
'''

_FAKE_VAULT = """#!/bin/sh
# A stand-in for `aws-vault exec PROFILE -- cmd...`: records that it ran, then runs the command.
echo "$*" >> "$FAKE_AWS_LOG.prefix"
while [ "$1" != "--" ]; do shift; done
shift
exec "$@"
"""


@dataclass
class FakeAws:
    bin_dir: Path
    log: Path

    @property
    def vault(self) -> str:
        return str(self.bin_dir / "fake-vault")

    def calls(self) -> list[list[str]]:
        import json

        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def prefix_calls(self) -> list[str]:
        path = Path(str(self.log) + ".prefix")
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def fake_aws(tmp_path, monkeypatch):
    """A fake `aws` executable first on PATH (session-manager-plugin is not installed here)."""
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(_FAKE_AWS.replace("{python}", sys.executable))
    vault = bin_dir / "fake-vault"
    vault.write_text(_FAKE_VAULT)
    for script in (aws, vault):
        script.chmod(0o755)
    log = tmp_path / "aws-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_AWS_LOG", str(log))
    monkeypatch.delenv("TMUX", raising=False)
    return FakeAws(bin_dir, log)
