"""What an operator does to a run's jobs outside its runner: cancel them (the ledger first, then the
compute, whether or not a runner is alive) and put unsuccessful ones back to pending for a runner to drive."""

from __future__ import annotations

from fceval_tui.backends import make_backend
from fceval_tui.backends.base import Backend
from fceval_tui.config import Settings
from fceval_tui.domain.models import Job, utcnow
from fceval_tui.domain.states import IllegalTransition, JobState
from fceval_tui.domain.triage import ErrorClass
from fceval_tui.errors import BackendError
from fceval_tui.ledger import Ledger
from fceval_tui.services.runner import run_settings, stop_context


def cancel_jobs(
    ledger: Ledger, settings: Settings, job_ids: list[str], reason: str = "cancelled by user", by: str | None = None
) -> list[Job]:
    """Cancel jobs now, whether or not a runner is alive: the ledger first, then the compute. `by` (an
    operator's identity) puts the action in the ledger's log of what operators did."""
    cancelled = []
    backends: dict[str, Backend] = {}
    for job_id in job_ids:
        job = ledger.get_job(job_id)
        if job.state.is_final:
            continue
        try:
            # No `expect`: every non-final state may be cancelled, whatever a runner just moved it to.
            job = ledger.transition(
                job.id, JobState.CANCELLED, reason=reason, ended_at=utcnow(), error_class=ErrorClass.CANCELLED
            )
            if by:
                ledger.record(job.run_id, job.id, "operator_cancel", by=by, reason=reason)
        except IllegalTransition:
            continue  # it became final meanwhile
        cancelled.append(job)
        if job.resource_id:
            if job.run_id not in backends:
                backends[job.run_id] = make_backend(job.backend, run_settings(settings, ledger.get_run(job.run_id)))
            backend = backends[job.run_id]
            ctx = stop_context(settings, job)
            try:
                backend.cancel(ctx, job.resource_id)
                backend.cleanup(ctx, job.resource_id)
            except BackendError as exc:
                ledger.record(job.run_id, job.id, "cleanup_failed", resource_id=job.resource_id, error=str(exc))
    return cancelled


def retry_jobs(ledger: Ledger, job_ids: list[str], by: str | None = None) -> list[Job]:
    """Put final, unsuccessful jobs back to pending (a user decision); a runner then drives them."""
    retried = []
    for job_id in job_ids:
        job = ledger.get_job(job_id)
        if job.state in (JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT):
            retried.append(
                ledger.transition(
                    job.id,
                    JobState.PENDING,
                    expect=job.state,
                    reason="retry requested",
                    error=None,
                    error_class=None,
                    exit_code=None,
                    ended_at=None,
                )
            )
            if by:
                ledger.record(job.run_id, job.id, "operator_retry", by=by, error_class=job.error_class)
    return retried
