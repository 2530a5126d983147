"""A one-minute network outage in the middle of an EC2 run (issue 14): the console's link to AWS
goes down (connection refused, as an unreachable endpoint) while its jobs run on their instances,
and comes back a minute later. With the default settings every job ends succeeded, on its first
attempt: nothing was declared lost, terminated or launched again.

This test takes real time (the outage is a real minute, and botocore's own retries sleep in it)."""

from __future__ import annotations

import threading
import time

from fceval_tui.backends.aws import AwsClients
from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.domain.states import JobState
from tests.helpers.aws import REGION, spec
from tests.helpers.relay import Relay

OUTAGE = 60.0
DEADLINE = 600.0  # a bound on waiting for the run, not a speed assertion


def test_a_one_minute_outage_mid_run_ends_with_every_job_succeeded(aws_settings, ssm_agent, aws_env, monkeypatch):
    from fceval_tui.ledger import Ledger
    from fceval_tui.services.runner import Runner

    # The harness works for 20 s on the instance: it finishes, and reports, during the outage.
    monkeypatch.setenv("FCEVAL_EXAMPLE_SECONDS", "20")
    settings = aws_settings(FCEVAL_BACKEND="ec2", FCEVAL_CONCURRENT="3")
    relay = Relay(aws_env.endpoint)
    with monkeypatch.context() as link:  # only the console's clients go through the relay
        link.setenv("AWS_ENDPOINT_URL", relay.url)
        clients = AwsClients(REGION, "", ("ec2", "ssm", "s3"))
    backend = Ec2Backend(settings, clients)  # default poll interval, default runner backoff
    ledger = Ledger.open(settings.state_dir)
    outage: list[float] = []

    def cut_when_running(run_id: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            jobs = ledger.jobs(run_id)
            if jobs and all(job.state == JobState.RUNNING for job in jobs):
                relay.down()
                outage.append(time.monotonic())
                time.sleep(OUTAGE)
                relay.up()
                outage.append(time.monotonic())
                return
            time.sleep(0.2)

    try:
        runner = Runner(ledger, settings, backend)
        run, _ = runner.create_run([spec("hello"), spec("world"), spec("again")])
        cutter = threading.Thread(target=cut_when_running, args=(run.id,), daemon=True)
        cutter.start()
        runner.run(run.id)
        cutter.join(timeout=OUTAGE + 10)
        final = ledger.jobs(run.id)
        events = [e.kind for e in ledger.events(run_id=run.id)]
    finally:
        ledger.close()
        relay.close()
    assert len(outage) == 2 and outage[1] - outage[0] >= OUTAGE, "the outage did not happen mid-run"
    for job in final:
        assert job.state == JobState.SUCCEEDED, (job.id, job.state, job.error)
        assert job.attempts == 1, (job.id, job.attempts, job.error)  # nothing lost, nothing launched again
    assert "retry_scheduled" not in events
