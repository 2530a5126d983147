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
