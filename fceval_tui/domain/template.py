"""Harness command templates. Every substituted value is shell-quoted: values are data, never code."""

from __future__ import annotations

import shlex
import string
from dataclasses import dataclass

from fceval_tui.errors import ConfigError

PLACEHOLDERS = ("agent", "task_id", "model", "dataset", "run_id", "job_id", "artifacts_dir")


def _quote_state(text: str, quote: str) -> str:
    """Follow POSIX sh quoting through `text`, starting inside `quote`; return the quote still open."""
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
    return quote


@dataclass(frozen=True)
class CommandTemplate:
    variable: str
    text: str

    def __post_init__(self) -> None:
        expected = "a shell command using only " + " ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        try:
            fields = list(string.Formatter().parse(self.text))
        except ValueError as exc:
            raise ConfigError(
                f"{self.variable}={self.text!r}: {exc}", f"expected {expected}; write a literal brace as {{{{ or }}}}"
            ) from None
        quote = ""  # the shell quote open at this point of the template: '', "'" or '"'
        for literal, name, spec, conversion in fields:
            quote = _quote_state(literal, quote)
            if name is None:
                continue
            if quote:
                raise ConfigError(
                    f"{self.variable}={self.text!r}: placeholder {{{name}}} is inside {quote}quotes{quote}, where a "
                    "value such as $(cmd) would still run",
                    f"write {{{name}}} bare: every value is shell-quoted for you",
                )
            if name not in PLACEHOLDERS:
                raise ConfigError(
                    f"{self.variable}={self.text!r}: unknown placeholder {{{name}}}", f"expected {expected}"
                )
            if spec or conversion:
                raise ConfigError(
                    f"{self.variable}={self.text!r}: placeholder {{{name}}} takes no format or conversion",
                    f"write plain {{{name}}}",
                )

    def render(self, values: dict[str, str]) -> str:
        return self.text.format(**{key: shlex.quote(str(values.get(key, ""))) for key in PLACEHOLDERS})
