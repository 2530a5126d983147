"""Why a job did not succeed, as one word an operator can filter and retry by (`error:capacity`,
`fceval-tui retry --run RUN --error capacity`)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from fceval_tui.domain.models import Job
from fceval_tui.domain.states import JobState


class ErrorClass(StrEnum):
    CAPACITY = "capacity"  # no capacity or quota for the compute, even after waiting
    THROTTLING = "throttling"  # AWS kept refusing calls for their rate
    LOST_SESSION = "lost_session"  # the compute or its session went away, or could not be reached
    HARNESS_EXIT = "harness_exit"  # the agent step exited non-zero
    GRADING = "grading"  # the agent step succeeded, the grade step did not
    UPLOAD = "upload"  # the pipeline finished but an expected artifact is missing
    TIMEOUT = "timeout"  # the job ran past its time limit
    CANCELLED = "cancelled"  # an operator (or teardown) cancelled it
    SETUP = "setup"  # retrying cannot help: a permission, an image, a missing tool or setting
    INTERNAL = "internal"  # a bug in the console; the log has the traceback


def parse_error_class(text: str) -> ErrorClass:
    """`text` as an ErrorClass; ValueError naming the known ones otherwise."""
    try:
        return ErrorClass(text.strip().lower().replace(" ", "_").replace("-", "_"))
    except ValueError:
        raise ValueError(f"unknown error class {text!r} (known: {', '.join(c.value for c in ErrorClass)})") from None


def retryable(jobs: Iterable[Job], error_class: str | None = None) -> list[Job]:
    """The jobs that ended without success (failed, timed out or cancelled), only of `error_class` when
    given: what `R` in the console and `fceval-tui retry --error` re-queue."""
    return [
        job
        for job in jobs
        if job.state.is_final
        and job.state != JobState.SUCCEEDED
        and (error_class is None or job.error_class == error_class)
    ]
