"""The job state machine: the one table every layer consults."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    WAITING_CAPACITY = "waiting_capacity"
    STARTING = "starting"
    RUNNING = "running"
    GRADING = "grading"
    UPLOADING = "uploading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    def can_go(self, target: JobState) -> bool:
        return target in TRANSITIONS[self]


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT})

# Anything not listed here cannot happen: the ledger refuses it.
# Every active state may fail, be cancelled or time out; it may fall back to `pending` when the
# runner retries a transient error. Final states only leave through an explicit user retry
# (back to `pending`), never a runner decision; `succeeded` is never re-opened.
_ENDINGS = {JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}
_S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.PENDING: frozenset({_S.PROVISIONING, _S.STARTING, _S.WAITING_CAPACITY, _S.FAILED, _S.CANCELLED}),
    _S.PROVISIONING: frozenset({_S.WAITING_CAPACITY, _S.STARTING, _S.PENDING, *_ENDINGS}),
    _S.WAITING_CAPACITY: frozenset({_S.PROVISIONING, _S.STARTING, _S.PENDING, *_ENDINGS}),
    _S.STARTING: frozenset({_S.RUNNING, _S.PENDING, *_ENDINGS}),
    _S.RUNNING: frozenset({_S.GRADING, _S.UPLOADING, _S.PENDING, *_ENDINGS}),
    _S.GRADING: frozenset({_S.UPLOADING, _S.PENDING, *_ENDINGS}),
    _S.UPLOADING: frozenset({_S.SUCCEEDED, _S.PENDING, *_ENDINGS}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset({_S.PENDING}),
    _S.CANCELLED: frozenset({_S.PENDING}),
    _S.TIMED_OUT: frozenset({_S.PENDING}),
}

# Order of the forward path, used to replay a job's phase after a resume.
PIPELINE_ORDER = (
    _S.PENDING,
    _S.PROVISIONING,
    _S.WAITING_CAPACITY,
    _S.STARTING,
    _S.RUNNING,
    _S.GRADING,
    _S.UPLOADING,
    _S.SUCCEEDED,
)


class IllegalTransition(Exception):
    def __init__(self, job_id: str, current: JobState, target: JobState) -> None:
        super().__init__(f"job {job_id}: {current} -> {target} is not a legal transition")
        self.job_id = job_id
        self.current = current
        self.target = target
