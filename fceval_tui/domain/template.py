"""Harness command templates. Every substituted value is shell-quoted: values are data, never code."""

from __future__ import annotations

import shlex
import string
from dataclasses import dataclass

from fceval_tui.errors import ConfigError

PLACEHOLDERS = ("agent", "task_id", "model", "dataset", "run_id", "job_id", "artifacts_dir")


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
        for _, name, spec, conversion in fields:
            if name is None:
                continue
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
