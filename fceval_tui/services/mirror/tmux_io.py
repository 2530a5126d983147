"""Talking tmux: one-shot command lists through a transport (`TmuxCli`), or a control-mode client
over a stream (`ControlLink`), whose replies come back in order with the pane's output.
"""

from __future__ import annotations

import re
import uuid
from collections import deque
from collections.abc import Callable, Sequence

from fceval_tui.errors import TransientError
from fceval_tui.services.mirror.control_mode import Block, ControlParser, Notice, Output
from fceval_tui.services.mirror.snapshot import PANE_FORMAT, PaneGone, PaneInfo
from fceval_tui.transports.base import Stream, Transport

_GONE = re.compile(
    r"can't find|no server running|session not found|error connecting|no such (pane|session)|server exited", re.I
)


def tmux_quote(word: str) -> str:
    """Quote a word for tmux's command parser (control mode reads command lines, not argv)."""
    if word and re.fullmatch(r"[A-Za-z0-9_%@$:.,/+=-]+", word) and not word.startswith("$"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


class TmuxCli:
    """Runs tmux command lists through a transport; the outputs of the commands are kept apart."""

    def __init__(self, transport: Transport, tmux_args: Sequence[str], timeout: float = 30.0) -> None:
        self.transport = transport
        self.tmux_args = tuple(tmux_args)
        self.timeout = timeout
        self._mark = f"fceval-mark-{uuid.uuid4().hex}"
        self.bytes_read = 0

    def argv(self, *words: str) -> list[str]:
        return ["tmux", *self.tmux_args, *words]

    def pane_info(self, target: str) -> PaneInfo:
        return PaneInfo.parse(self.run("display-message", "-p", "-t", target, PANE_FORMAT))

    def run(self, *words: str, stdin: bytes | None = None, timeout: float | None = None) -> str:
        return self.batch([list(words)], stdin=stdin, timeout=timeout)[0]

    def batch(
        self, commands: Sequence[Sequence[str]], stdin: bytes | None = None, timeout: float | None = None
    ) -> list[str]:
        argv = self.argv()
        for i, command in enumerate(commands):
            if i:
                argv += [";", "display-message", "-p", self._mark, ";"]
            argv += list(command)
        result = self.transport.run(argv, stdin=stdin, timeout=timeout or self.timeout)
        self.bytes_read += len(result.stdout) + len(result.stderr)
        if not result.ok:
            message = result.stderr.strip() or f"tmux exited {result.exit_code}"
            if _GONE.search(message):
                raise PaneGone(message)
            raise TransientError(f"tmux on {self.transport.describe()} failed: {message}")
        outputs = result.stdout.split(self._mark + "\n")
        if len(outputs) != len(commands):
            raise TransientError(f"tmux returned {len(outputs)} outputs for {len(commands)} commands")
        return outputs


class ControlLink:
    """A `tmux -C` client: sends command lists, routes replies (in order) to callbacks."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.parser = ControlParser()
        self._pending: deque[tuple[int, list[Block], Callable[[list[Block]], None]]] = deque()
        self.bytes_read = 0

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def send(self, commands: Sequence[Sequence[str]], callback: Callable[[list[Block]], None]) -> None:
        line = " ; ".join(" ".join(tmux_quote(w) for w in c) for c in commands) + "\n"
        self._pending.append((len(commands), [], callback))
        self.stream.write(line.encode())

    def read(self, timeout: float) -> list[Output | Notice | Block] | None:
        """The next events in stream order; None at end of stream. Pass replies to `route`, in order
        with the other events: a reply describes the pane as of its place in the stream."""
        try:
            data = self.stream.read(65536, timeout=timeout)
        except TimeoutError:
            return []
        if not data:
            return None
        self.bytes_read += len(data)
        return self.parser.feed(data)

    def route(self, block: Block) -> None:
        if not block.from_client or not self._pending:
            return  # the reply to attach-session itself
        count, blocks, callback = self._pending[0]
        blocks.append(block)
        if len(blocks) == count or not block.ok:  # tmux stops a command list at the first error
            self._pending.popleft()
            callback(blocks)
