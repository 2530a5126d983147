"""The artifact layout under a prefix (a local directory or s3://bucket/prefix). One source of truth.

    runs/{agent}/{task_id}/{run_id}.tar.gz            packed artifacts of a successful job
    grades/{agent}/{task_id}/{timestamp}_grading_report.json.gz
    failed_runs/... and failed_grades/...             the same for a failed job

Agents and task ids may contain '/', which becomes a directory level (as in `hub/task`). Anything
that could escape the prefix ('..', absolute paths, odd characters) is neutralised.
When a run holds several models for the same agent and task, the model is appended to the
file name so that they do not overwrite each other: `{run_id}_{model}.tar.gz`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from fceval_tui.domain.models import Job

_UNSAFE = re.compile(r"[^A-Za-z0-9._+@=-]")
RESULT_FILE = "result.json"
GRADING_REPORT = "grading_report.json"


def safe_segment(value: str) -> str:
    cleaned = _UNSAFE.sub("_", value).strip(".") or "_"
    return cleaned


def safe_path(value: str) -> str:
    return "/".join(safe_segment(part) for part in value.split("/") if part not in ("", ".", ".."))


@dataclass(frozen=True)
class ArtifactKeys:
    run_archive: str
    grading_report: str


def keys_for(job: Job, succeeded: bool, when: datetime) -> ArtifactKeys:
    base = f"{safe_path(job.agent)}/{safe_path(job.task_id)}"
    name = job.run_id + (f"_{safe_segment(job.model)}" if job.model else "")
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    runs, grades = ("runs", "grades") if succeeded else ("failed_runs", "failed_grades")
    return ArtifactKeys(
        run_archive=f"{runs}/{base}/{name}.tar.gz",
        grading_report=f"{grades}/{base}/{stamp}_{GRADING_REPORT}.gz",
    )


def split_s3(url: str) -> tuple[str, str]:
    """`s3://bucket/key/...` -> (bucket, key)."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def join_prefix(prefix: str, key: str) -> str:
    return prefix.rstrip("/") + "/" + key
