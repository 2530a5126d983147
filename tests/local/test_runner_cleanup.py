"""Whatever ends an attempt, its compute is cleaned up and billed, also when the job is already final."""

from __future__ import annotations

from fceval_tui.backends.base import Backend
from fceval_tui.domain.models import JobSpec
from fceval_tui.domain.states import JobState
from fceval_tui.services.runner import Runner


class _BrokenStart(Backend):
    """A backend whose start hits a bug (not a BackendError): the runner must still stop its compute."""

    name = "local"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.cleaned: list[str] = []

    def provision(self, ctx):
        return "res-1"

    def start(self, ctx, resource_id):
        raise RuntimeError("a bug in start")

    def observe(self, ctx, resource_id):
        raise AssertionError("never observed")

    def collect(self, ctx, resource_id, observation):
        raise AssertionError("never collected")

    def cancel(self, ctx, resource_id):
        pass

    def cleanup(self, ctx, resource_id):
        self.cleaned.append(resource_id)

    def hourly_cost(self) -> float:
        return 3600.0  # one dollar a second: any attempt costs something


def test_an_internal_error_still_cleans_up_and_bills_the_attempt(ledger, settings_factory):
    settings = settings_factory()
    backend = _BrokenStart(settings)
    runner = Runner(ledger, settings, backend, backoff_base=0.01)
    run, (job,) = runner.create_run([JobSpec("a", "t")])
    runner.run(run.id)
    final = ledger.get_job(job.id)
    assert (final.state, final.error_class) == (JobState.FAILED, "internal")
    assert backend.cleaned == ["res-1"]
    assert ledger.attempt_costs(job.id)[1] > 0 and final.cost_usd > 0


class _ThrottledCleanup(_BrokenStart):
    """Runs and finishes at once; AWS throttles its cleanup `throttled` times before it goes through."""

    def __init__(self, settings, throttled: int) -> None:
        super().__init__(settings)
        self.throttled, self.tries = throttled, 0

    def start(self, ctx, resource_id):
        pass

    def observe(self, ctx, resource_id):
        from fceval_tui.backends.base import Observation

        return Observation(JobState.UPLOADING, done=True, exit_code=0)

    def collect(self, ctx, resource_id, observation):
        from fceval_tui.backends.base import Outcome

        return Outcome(True, 0, ())

    def cleanup(self, ctx, resource_id):
        from fceval_tui.errors import ThrottlingError

        self.tries += 1
        if self.tries <= self.throttled:
            raise ThrottlingError("Rate exceeded (TerminateInstances)")
        super().cleanup(ctx, resource_id)


def test_a_throttled_cleanup_is_retried_so_nothing_is_left_billing(ledger, settings_factory):
    from fceval_tui.services.contact import CLEANUP_TRIES

    settings = settings_factory()
    for throttled, cleaned in ((3, ["res-1"]), (CLEANUP_TRIES + 5, [])):
        backend = _ThrottledCleanup(settings, throttled)
        runner = Runner(ledger, settings, backend, sleep=lambda seconds: None)
        run, (job,) = runner.create_run([JobSpec("a", "t")])
        runner.run(run.id)
        assert ledger.get_job(job.id).state == JobState.SUCCEEDED
        assert backend.cleaned == cleaned and backend.tries == min(throttled + 1, CLEANUP_TRIES)
        failed = [e for e in ledger.events(job_id=job.id) if e.kind == "cleanup_failed"]
        assert len(failed) == (0 if cleaned else 1)  # recorded for teardown to find
