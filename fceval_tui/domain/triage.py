"""Why a job did not succeed, as one word an operator can filter and retry by (`error:capacity`,
`fceval-tui retry --run RUN --error capacity`)."""

from __future__ import annotations

from enum import StrEnum


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
