"""Harness command templates. Values never enter the script text: each placeholder becomes a quoted
reference to an environment variable (`{task_id}` -> `"$FCEVAL_JOB_TASK_ID"`) and the pipeline
receives the values as its environment. So a value such as `$(reboot)` or a backtick stays data
even inside an unquoted heredoc, where a shell-quoted value would still be expanded. Templates that
hand a placeholder to a re-parsing command (eval, source, sh -c) are refused."""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass

from fceval_tui.errors import ConfigError

PLACEHOLDERS = ("agent", "task_id", "model", "dataset", "run_id", "job_id", "artifacts_dir")
ENV_PREFIX = "FCEVAL_JOB_"
ENV_NAMES = {
    "agent": "FCEVAL_JOB_AGENT",
    "task_id": "FCEVAL_JOB_TASK_ID",
    "model": "FCEVAL_JOB_MODEL",
    "dataset": "FCEVAL_JOB_DATASET",
    "run_id": "FCEVAL_JOB_RUN_ID",
    "job_id": "FCEVAL_JOB_ID",
    "artifacts_dir": "FCEVAL_JOB_ARTIFACTS_DIR",
}
# A simple command whose arguments are parsed as code again (eval, source, sh -c), whatever their quoting.
_REPARSING = re.compile(r"^\s*(?:eval|source|\.)\s|\b(?:sh|bash|dash|zsh|ksh)\s+(?:-\w+\s+)*-\w*c\s*$")
_COMMAND_SEPARATORS = re.compile(r"[;&|()`\n]")


def job_environment(values: Mapping[str, str]) -> dict[str, str]:
    """The pipeline's environment for one job: one variable per placeholder, one line each."""
    env = {ENV_NAMES[key]: str(values.get(key, "")) for key in PLACEHOLDERS}
    for name, value in env.items():
        if "\n" in value or "\r" in value or "\x00" in value:
            raise ConfigError(
                f"{name} holds a line break or NUL byte ({value[:40]!r})",
                "agent, task id, model and dataset must be single-line text",
            )
    return env


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
        before = ""
        for literal, name, spec, conversion in fields:
            quote = _quote_state(literal, quote)
            before += literal
            if name is None:
                continue
            if _REPARSING.search(_COMMAND_SEPARATORS.split(before)[-1]):
                raise ConfigError(
                    f"{self.variable}={self.text!r}: placeholder {{{name}}} is handed to eval, source or a -c "
                    "option, which would run the value as code",
                    f"pass {{{name}}} as a plain argument of the command that needs it",
                )
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

    def render(self) -> str:
        """The command as the pipeline runs it: placeholders read the job's environment."""
        return self.text.format(**{key: f'"${ENV_NAMES[key]}"' for key in PLACEHOLDERS})

    def preview(self, values: Mapping[str, str]) -> str:
        """The command with the job's values shell-quoted, for people to read (dry runs); never run."""
        return self.text.format(**{key: shlex.quote(str(values.get(key, ""))) for key in PLACEHOLDERS})
