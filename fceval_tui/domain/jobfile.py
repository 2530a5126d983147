"""Job files: CSV lines `agent,task_id[,model]`, `#` comments, blank lines, optional header.

Duplicate lines (same agent, task id and model) are dropped with a warning that names both lines:
running the same evaluation twice in one run is never what the file's author meant, and refusing
the whole file over it would be heavy-handed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from fceval_tui.domain.models import JobSpec
from fceval_tui.errors import JobFileError

HEADER = ("agent", "task_id", "model")
MAX_FIELD = 256  # characters in an agent, task id or model name
# A job line holds three values (quoting may double one): anything longer is refused before the csv
# module sees it, whose own field limit (128 KiB) would otherwise raise a bare _csv.Error.
MAX_LINE = 8 * MAX_FIELD


@dataclass(frozen=True)
class ParsedJobs:
    specs: tuple[JobSpec, ...]
    warnings: tuple[str, ...]


def validate_field(name: str, value: str, where: str) -> str:
    """Values are data, never code; they still must be printable single-line text."""
    if not value:
        raise JobFileError(f"{where}: {name} is empty", f"give a non-empty {name}")
    if len(value) > MAX_FIELD:
        raise JobFileError(
            f"{where}: {name} is {len(value)} characters long (at most {MAX_FIELD})", f"shorten the {name}"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise JobFileError(
            f"{where}: {name} {_excerpt(value)} contains a control character (newline, tab, ...)",
            f"remove control characters from the {name}",
        )
    return value


def parse_text(text: str, source: str, dataset: str = "", default_model: str = "") -> ParsedJobs:
    specs: list[JobSpec] = []
    warnings: list[str] = []
    seen: dict[tuple[str, str, str], int] = {}
    if default_model:
        validate_field("model", default_model, "--model")
    lines = text.splitlines()
    for lineno, raw in enumerate(lines, start=1):
        where = f"{source}:{lineno}"
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(raw) > MAX_LINE:
            raise JobFileError(
                f"{where}: line is {len(raw)} characters long (at most {MAX_LINE};"
                f" agent, task_id and model are at most {MAX_FIELD} characters each)",
                "shorten the line's values",
            )
        try:
            fields = [f.strip() for f in next(csv.reader([raw], skipinitialspace=True))]
        except csv.Error as exc:
            raise JobFileError(f"{where}: not a valid CSV line ({exc})", "check the line's quoting") from None
        if tuple(f.lower() for f in fields) in (HEADER, HEADER[:2]) and not specs and not seen:
            continue
        if len(fields) < 2:
            raise JobFileError(
                f"{where}: expected 'agent,task_id[,model]', found {len(fields)} column: {_excerpt(stripped)}",
                "add the missing column",
            )
        if len(fields) > 3:
            raise JobFileError(
                f"{where}: expected at most 3 columns (agent,task_id,model), found {len(fields)}",
                "remove the extra columns or quote a value that contains a comma",
            )
        agent = validate_field("agent", fields[0], where)
        task_id = validate_field("task_id", fields[1], where)
        model = validate_field("model", fields[2], where) if len(fields) == 3 and fields[2] else default_model
        spec = JobSpec(agent=agent, task_id=task_id, model=model, dataset=dataset)
        if spec.key in seen:
            warnings.append(f"{where}: duplicate of line {seen[spec.key]} ({agent},{task_id}); skipped")
            continue
        seen[spec.key] = lineno
        specs.append(spec)
    if not specs:
        raise JobFileError(f"{source}: no jobs found (empty file or only comments)", "add lines 'agent,task_id'")
    return ParsedJobs(tuple(specs), tuple(warnings))


def parse_file(path: Path, dataset: str = "", default_model: str = "") -> ParsedJobs:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JobFileError(f"{path}: job file not found", "check the path given to --jobs") from None
    except IsADirectoryError:
        raise JobFileError(f"{path}: is a directory, not a job file", "give the path of a CSV file") from None
    except OSError as exc:
        raise JobFileError(f"{path}: cannot read job file ({exc.strerror})", "check permissions") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise JobFileError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})",
            "save the job file as UTF-8",
        ) from None
    return parse_text(text, str(path), dataset=dataset, default_model=default_model)


def from_task_ids(task_ids: list[str], agent: str, model: str = "", dataset: str = "") -> ParsedJobs:
    specs: list[JobSpec] = []
    warnings: list[str] = []
    if model:
        validate_field("model", model, "--model")
    for i, task_id in enumerate(task_ids, start=1):
        where = f"--task-id #{i}"
        spec = JobSpec(
            agent=validate_field("agent", agent, "--agent"),
            task_id=validate_field("task_id", task_id, where),
            model=model,
            dataset=dataset,
        )
        if spec in specs:
            warnings.append(f"{where}: duplicate task id {task_id!r}; skipped")
            continue
        specs.append(spec)
    return ParsedJobs(tuple(specs), tuple(warnings))


def _excerpt(value: str, limit: int = 60) -> str:
    """A value as quoted in an error message, cut so a huge value cannot flood the screen."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"
