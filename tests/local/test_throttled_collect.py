"""Throttling never fails a job: a collect AWS keeps throttling is retried past the collect's try limit,
and only the job's own timeout ends it (botocore's retry quota is used up in a long storm, so the
runner's retries are what is left)."""

from __future__ import annotations

from datetime import timedelta

from fceval_tui.backends.base import Backend, Observation, Outcome
from fceval_tui.domain.models import JobSpec, utcnow
from fceval_tui.domain.states import JobState
from fceval_tui.errors import ThrottlingError, TransientError
from fceval_tui.services.contact import COLLECT_TRIES, Contact
from fceval_tui.services.runner import Runner


class _ThrottledCollect(Backend):
    """Finishes at once; its collect is throttled `throttled` times (None: always) before it succeeds."""

    name = "local"

    def __init__(self, settings, ledger, throttled: int | None) -> None:
        super().__init__(settings)
        self.ledger, self.throttled, self.collects = ledger, throttled, 0

    def provision(self, ctx):
        return "res-1"

    def start(self, ctx, resource_id):
        pass

    def observe(self, ctx, resource_id):
        return Observation(JobState.UPLOADING, done=True, exit_code=0)

    def collect(self, ctx, resource_id, observation):
        self.collects += 1
        if self.throttled is None:
            # The storm outlasts the job's timeout: its attempt started long ago.
            self.ledger.update(ctx.job.id, started_at=utcnow() - timedelta(hours=3))
        elif self.collects > self.throttled:
            return Outcome(True, 0, ("s3://bucket/run.tar.gz",))
        raise ThrottlingError("Rate exceeded (HeadObject)")

    def cancel(self, ctx, resource_id):
        pass

    def cleanup(self, ctx, resource_id):
        pass


def _run(ledger, settings, backend):
    waits: list[float] = []  # the backoff is capped at a minute: recorded, not slept
    runner = Runner(ledger, settings, backend, sleep=waits.append)
    run, (job,) = runner.create_run([JobSpec("a", "t")])
    runner.run(run.id)
    return ledger.get_job(job.id), waits


def test_a_collect_throttled_past_its_try_limit_still_succeeds(ledger, settings_factory):
    settings = settings_factory()
    backend = _ThrottledCollect(settings, ledger, throttled=COLLECT_TRIES + 5)
    final, waits = _run(ledger, settings, backend)
    assert (final.state, final.attempts) == (JobState.SUCCEEDED, 1)
    assert backend.collects == COLLECT_TRIES + 6
    # Each wait is said in the events, and capped near the poll interval as a status read's is.
    said = [e for e in ledger.events(job_id=final.id) if e.kind == "collect_wait"]
    assert len(said) == COLLECT_TRIES + 5 and "Rate exceeded" in said[0].detail["error"]
    assert max(waits) <= 2 * backend.poll_interval


def test_a_collect_throttled_beyond_the_job_timeout_ends_timed_out_as_throttling(ledger, settings_factory):
    settings = settings_factory(FCEVAL_JOB_TIMEOUT_MINUTES="60")
    final, _ = _run(ledger, settings, _ThrottledCollect(settings, ledger, throttled=None))
    assert (final.state, final.error_class) == (JobState.TIMED_OUT, "throttling")
    assert "Rate exceeded" in final.error and "timeout" in final.error


def test_other_failed_collects_still_end_at_the_try_limit():
    contact = Contact(max_tries=3)
    assert not any(contact.failed(ThrottlingError("slow down")) for _ in range(50))
    assert [contact.failed(TransientError("read timeout")) for _ in range(3)] == [False, False, True]
