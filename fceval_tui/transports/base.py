"""The transport interface: one-shot commands and bidirectional byte streams on some target."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Stream(ABC):
    """A running remote process with stdin/stdout as bytes (e.g. `tmux -C attach` over ECS Exec)."""

    @abstractmethod
    def read(self, size: int = 65536, timeout: float | None = None) -> bytes:
        """Up to `size` bytes; b'' at end of stream; raises TimeoutError when `timeout` passes first."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def closed(self) -> bool: ...


class Transport(ABC):
    """Where commands run. `argv` is a list of words, never a shell string built from user values."""

    @abstractmethod
    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60.0) -> CommandResult:
        """Run once; raises TimeoutError when `timeout` passes, BackendError when the target is unreachable."""

    @abstractmethod
    def open_stream(self, argv: Sequence[str]) -> Stream: ...

    @property
    def is_local(self) -> bool:
        return False

    def describe(self) -> str:
        return type(self).__name__

    @property
    def max_stdin_bytes(self) -> int | None:
        """Largest `stdin` that `run` accepts, None for no limit (remote transports embed it in the command)."""
        return None

    @property
    def max_typed_input_bytes(self) -> int:
        """Largest input `run_typed` takes (0: it has none). For transports without stdin whose
        command line is logged: the input is typed into the session's terminal instead."""
        return 0

    def run_typed(self, argv: Sequence[str], data: bytes, *, timeout: float = 60.0) -> CommandResult:
        """Run `argv` with `data` as its stdin, typed into the session (see `max_typed_input_bytes`)."""
        raise NotImplementedError(f"{self.describe()} cannot type input into a session")

    def can_stream(self) -> bool:
        """Whether `open_stream` can work from here (e.g. session-manager-plugin is installed)."""
        return True

    def interactive_argv(self, argv: Sequence[str]) -> list[str]:
        """The local argv that runs `argv` on the target with this terminal attached (for `attach`)."""
        return list(argv)
