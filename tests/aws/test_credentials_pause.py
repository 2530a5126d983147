"""Credentials that expire in the middle of a run pause it; fresh ones resume it (issue 14, item 3).

The console's credentials are a profile in a shared credentials file whose key the moto server's
front door (tests/helpers/expiring_credentials.py) expires after a number of calls, the way AWS
refuses an expired session token; the operator renews them by writing a new key into the file, as
`aws sso login` or a credential helper does. The compute's own credentials are untouched.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from fceval_tui.backends.batch import BatchBackend
from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.backends.ecs import EcsBackend
from fceval_tui.domain.models import utcnow
from fceval_tui.domain.states import JobState
from fceval_tui.errors import CredentialsExpired
from fceval_tui.ledger import Ledger
from fceval_tui.services.runner import Runner
from fceval_tui.transports.ecs_exec import EcsExecTransport
from tests.helpers.aws import ECS_CLUSTER, REGION, RUN, spec
from tests.helpers.cli import run_cli
from tests.helpers.ecs_double import wait_for


@dataclass
class ExpiringProfile:
    """A profile whose key the moto server expires on request; `renew` writes a fresh key."""

    name: str
    key: str
    file: Path

    def write(self, key: str) -> None:
        self.file.write_text(f"[{self.name}]\naws_access_key_id = {key}\naws_secret_access_key = secret\n")

    def renew(self) -> str:
        fresh = "AKIAFRESH" + secrets.token_hex(4).upper()
        self.write(fresh)
        return fresh


@pytest.fixture
def expiring(aws_env, monkeypatch, tmp_path) -> ExpiringProfile:
    # A profile name of its own: the runner's Sessions are shared per (profile, region) in the process.
    profile = ExpiringProfile(
        f"fceval-expiring-{secrets.token_hex(3)}", "AKIAEXPIRING" + secrets.token_hex(4).upper(), tmp_path / "creds"
    )
    profile.write(profile.key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(profile.file))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    return profile


def expire_after_start(backend, world, profile: ExpiringProfile, calls: int = 1) -> list[str]:
    """Once the pipeline runs, the console's key works for `calls` more requests, then expires."""
    started: list[str] = []
    original = backend.start

    def start(ctx, resource_id):
        original(ctx, resource_id)
        started.append(resource_id)
        world.keys.expire_after(profile.key, calls)

    backend.start = start
    return started


class Operator(threading.Thread):
    """Comes back when the run says it is paused: looks at it as a user would, then renews."""

    def __init__(self, ledger: Ledger, run_id: str, state_dir: Path, profile: ExpiringProfile) -> None:
        super().__init__(daemon=True)
        self.ledger, self.run_id, self.state_dir, self.profile = ledger, run_id, state_dir, profile
        self.status: list[dict] = []
        self.status_text = ""
        self.paused_summary: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_for(
                lambda: any(j.paused for j in self.ledger.jobs(run_id=self.run_id)), 120, "a job to show it is paused"
            )
            self.paused_summary = next(s.paused for s in self.ledger.run_summaries() if s.run.id == self.run_id)
            shown = run_cli("status", self.run_id, "--json", state_dir=self.state_dir)
            self.status = json.loads(shown.out)
            self.status_text = run_cli("status", self.run_id, state_dir=self.state_dir).out
        except BaseException as exc:  # reported by the test, after the run
            self.error = exc
        finally:
            self.profile.renew()


def drive(settings, backend, specs, profile: ExpiringProfile):
    ledger = Ledger.open(settings.state_dir)
    try:
        runner = Runner(ledger, settings, backend, backoff_base=0.01)
        runner.credentials.interval = 0.05
        run, _ = runner.create_run(list(specs))
        operator = Operator(ledger, run.id, settings.state_dir, profile)
        operator.start()
        runner.run(run.id)
        operator.join(60)
        return run, {job.task_id: job for job in ledger.jobs(run.id)}, ledger.events(run_id=run.id), operator
    finally:
        ledger.close()


def assert_paused_then_resumed(final, events, operator, profile, launches: int):
    assert operator.error is None, operator.error
    job = final["hello"]
    # Resumed with no job failed, no attempt spent, nothing relaunched.
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.attempts == 1 and job.paused is None and launches == 1
    kinds = [e.kind for e in events]
    assert kinds.count("credentials_expired") == 1 and kinds.count("credentials_renewed") == 1
    assert "retry_scheduled" not in kinds and "cleanup_failed" not in kinds
    expired = next(e for e in events if e.kind == "credentials_expired")
    assert expired.detail["fix"] == f"renew your credentials (profile {profile.name})"
    # What the operator saw meanwhile: the job paused with the reason, in its ledger row, in
    # `status --json`, in `status`, and in the run's summary (the console's header).
    (shown,) = operator.status
    assert shown["state"] in ("running", "grading", "uploading") and "AWS credentials expired" in shown["paused"]
    assert "paused (" in operator.status_text and f"profile {profile.name}" in operator.status_text
    assert operator.paused_summary and "AWS credentials expired" in operator.paused_summary


def test_expired_credentials_pause_an_ec2_run_and_fresh_ones_resume_it(aws_settings, ssm_agent, aws_env, expiring):
    settings = aws_settings(FCEVAL_BACKEND="ec2", AWS_PROFILE=expiring.name)
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    # No call left: the status board's first refresh (its DescribeInstances) meets the expiry.
    started = expire_after_start(backend, aws_env, expiring, calls=0)
    launched = aws_env.keys.calls("RunInstances")
    refused = aws_env.keys.refused["ssm"] + aws_env.keys.refused["ec2"]
    run, final, events, operator = drive(settings, backend, [spec("hello")], expiring)
    assert started and aws_env.keys.refused["ssm"] + aws_env.keys.refused["ec2"] > refused
    assert_paused_then_resumed(final, events, operator, expiring, aws_env.keys.calls("RunInstances") - launched)
    assert final["hello"].resource_id == started[0]  # the same instance, watched again


def test_expired_credentials_pause_an_ecs_run_and_fresh_ones_resume_it(aws_settings, ecs_exec, aws_env, expiring):
    # A container does not inherit this process's FCEVAL_EXAMPLE_SECONDS: the harness is told directly.
    settings = aws_settings(FCEVAL_BACKEND="ecs", AWS_PROFILE=expiring.name, FCEVAL_RUN_COMMAND=RUN + " --seconds 0.3")
    backend = EcsBackend(settings)
    backend.poll_interval = 0.2
    started = expire_after_start(backend, aws_env, expiring)
    launched = aws_env.keys.calls("RunTask")
    run, final, events, operator = drive(settings, backend, [spec("hello")], expiring)
    assert started and aws_env.keys.refused["ecs"] > 0
    assert_paused_then_resumed(final, events, operator, expiring, aws_env.keys.calls("RunTask") - launched)
    assert final["hello"].resource_id == started[0]


def test_expired_credentials_pause_a_batch_run_and_fresh_ones_resume_it(aws_settings, batch_compute, aws_env, expiring):
    settings = aws_settings(FCEVAL_BACKEND="batch", AWS_PROFILE=expiring.name)
    backend = BatchBackend(settings)
    backend.poll_interval = 0.05
    backend._board.max_age = 0.0
    started = expire_after_start(backend, aws_env, expiring)
    submit = "POST /v1/submitjob"  # Batch is REST-JSON: the action is the request's path
    launched = aws_env.keys.calls(submit)
    run, final, events, operator = drive(settings, backend, [spec("hello")], expiring)
    assert started and aws_env.keys.refused["batch"] + aws_env.keys.refused["s3"] > 0
    assert_paused_then_resumed(final, events, operator, expiring, aws_env.keys.calls(submit) - launched)
    assert final["hello"].resource_id == started[0]


def test_ecs_exec_reads_expired_credentials_in_what_the_aws_cli_prints(aws_settings, ecs_exec, aws_env, expiring):
    """The `aws` child process meets the expired key: its stderr is recognised, not taken for a broken setup."""
    aws_env.keys.expire_after(expiring.key, 0)
    transport = EcsExecTransport(
        ECS_CLUSTER, "arn:aws:ecs:us-east-1:123456789012:task/x/0", "job", region=REGION, profile=expiring.name
    )
    with pytest.raises(CredentialsExpired, match="ExpiredTokenException"):
        transport.run(["true"])
    assert ecs_exec.exec_calls()  # it went through the fake `aws`


def test_a_run_nobody_renews_ends_at_the_ttl_without_touching_the_compute_again(
    aws_settings, ssm_agent, aws_env, expiring
):
    settings = aws_settings(FCEVAL_BACKEND="ec2", AWS_PROFILE=expiring.name)
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    expire_after_start(backend, aws_env, expiring)
    ledger = Ledger.open(settings.state_dir)
    try:
        runner = Runner(ledger, settings, backend, backoff_base=0.01)
        gate = runner.credentials
        gate.interval = 0.05
        probes = []
        renew = backend.renew_credentials
        backend.renew_credentials = lambda: probes.append(1) or renew()

        def later():
            # After a few probes, the clock reaches the compute's TTL.
            return utcnow() + (timedelta(minutes=settings.ttl_minutes + 1) if len(probes) >= 3 else timedelta())

        gate.clock = later
        run, _ = runner.create_run([spec("hello")])
        runner.run(run.id)
        job = ledger.jobs(run.id)[0]
        events = ledger.events(run_id=run.id)
    finally:
        ledger.close()
    assert job.state == JobState.FAILED and job.error_class == "timeout" and job.attempts == 1
    assert "not renewed before the compute's TTL" in job.error and job.paused is None
    kinds = [e.kind for e in events]
    assert "retry_scheduled" not in kinds and "credentials_renewed" not in kinds
    # Its compute's TTL ended it: the cleanup that could not run is recorded for teardown.
    assert "cleanup_failed" in kinds
