"""What the console knows about its credentials without calling AWS: what renews them, when they end
(and so whether `launch` warns), and how a paused job looks; the gate when the runner stops."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from fceval_tui.backends.base import Backend, Observation, Outcome
from fceval_tui.backends.credentials import credential_expiry, renewal_hint
from fceval_tui.config import load_settings
from fceval_tui.domain.models import JobSpec, utcnow
from fceval_tui.domain.states import JobState
from fceval_tui.errors import CredentialsExpired
from fceval_tui.ledger import Ledger
from fceval_tui.presentation import state_text
from fceval_tui.services.credentials import CredentialGate, PauseEnded, expiry_warning

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def aws_home(tmp_path, monkeypatch):
    """An empty ~/.aws for this test; returns a function writing ~/.aws/config."""
    home = tmp_path / "home"
    (home / ".aws" / "sso" / "cache").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    config = home / ".aws" / "config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))

    def write(text: str):
        config.write_text(text)
        return home

    return write


def settings(tmp_path, **env):
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return load_settings(
        environ={"FCEVAL_BACKEND": "ec2", "FC_EVAL_S3_BUCKET": "fceval-staging", **env}, state_dir=state
    )


def sso_token(home, key: str, expires: datetime, refresh: bool = False) -> None:
    name = hashlib.sha1(key.encode()).hexdigest() + ".json"
    token = {
        "startUrl": "https://x.awsapps.com/start",
        "accessToken": "t",
        "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if refresh:
        token["refreshToken"] = "r"
    (home / ".aws" / "sso" / "cache" / name).write_text(json.dumps(token))


SSO_LEGACY = (
    "[profile eval]\nsso_start_url = https://x.awsapps.com/start\nsso_region = us-east-1\n"
    "sso_account_id = 1\nsso_role_name = R\n"
)
SSO_SESSION = (
    "[profile eval]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = R\n"
    "[sso-session corp]\nsso_start_url = https://x.awsapps.com/start\nsso_region = us-east-1\n"
)


def test_an_sso_profile_is_renewed_with_aws_sso_login(tmp_path, aws_home):
    aws_home(SSO_SESSION)
    assert renewal_hint(settings(tmp_path, AWS_PROFILE="eval"), "r1") == "run `aws sso login --profile eval`"


def test_other_credentials_name_what_renews_them(tmp_path, aws_home, monkeypatch):
    aws_home("[profile plain]\nregion = us-east-1\n")
    assert renewal_hint(settings(tmp_path, AWS_PROFILE="plain"), "r1") == "renew your credentials (profile plain)"
    prefixed = settings(tmp_path, AWS_PROFILE="plain", FCEVAL_AWS_COMMAND_PREFIX="aws-vault exec plain --")
    assert "`aws-vault exec plain --`" in renewal_hint(prefixed, "r1")
    # Keys in this process's environment cannot change from outside: say how to carry on.
    assert "fceval-tui resume r1" in renewal_hint(settings(tmp_path), "r1")


def test_expiry_comes_from_the_environment_the_sso_token_or_an_mfa_role(tmp_path, aws_home, monkeypatch):
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", "2026-03-01T12:40:00Z")
    expiry = credential_expiry(settings(tmp_path), NOW)
    assert expiry.at == NOW + timedelta(minutes=40) and "AWS_CREDENTIAL_EXPIRATION" in expiry.what
    home = aws_home(SSO_LEGACY)
    sso_token(home, "https://x.awsapps.com/start", NOW + timedelta(hours=2))
    expiry = credential_expiry(settings(tmp_path, AWS_PROFILE="eval"), NOW)
    assert expiry.at == NOW + timedelta(hours=2) and expiry.what == "the SSO token of profile eval"
    # An sso-session whose token botocore refreshes by itself: its end is not known here.
    home = aws_home(SSO_SESSION)
    sso_token(home, "corp", NOW + timedelta(hours=1), refresh=True)
    assert credential_expiry(settings(tmp_path, AWS_PROFILE="eval"), NOW) is None
    aws_home(
        "[profile mfa]\nrole_arn = arn:aws:iam::1:role/R\nsource_profile = base\nmfa_serial = arn:aws:iam::1:mfa/me\n"
    )
    assert credential_expiry(settings(tmp_path, AWS_PROFILE="mfa"), NOW).at == NOW + timedelta(hours=1)
    aws_home("[profile plain]\nregion = us-east-1\n")
    assert credential_expiry(settings(tmp_path, AWS_PROFILE="plain"), NOW) is None


def test_launch_warns_when_the_credentials_end_before_the_run_may(tmp_path, aws_home, monkeypatch):
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", "2026-03-01T13:00:00Z")
    # 30 jobs, 10 at a time, 30 minutes each: up to 1 h 30 min, past the credentials' end in 1 h.
    s = settings(tmp_path, FCEVAL_CONCURRENT="10", FCEVAL_JOB_TIMEOUT_MINUTES="30")
    warning = expiry_warning(s, 30, now=NOW)
    assert warning.startswith("the credentials in the environment (AWS_CREDENTIAL_EXPIRATION) ends at 13:00 UTC")
    assert "in 1 h 00 min" in warning and "up to 1 h 30 min" in warning and "pause" in warning
    assert expiry_warning(s, 20, now=NOW) is None  # two waves: one hour, just enough
    assert expiry_warning(s.replace(backend="local"), 30, now=NOW) is None


def test_launch_prints_the_warning_as_one_line(tmp_path, aws_home, monkeypatch, capsys):
    from fceval_tui.backends import aws
    from fceval_tui.cli import main
    from fceval_tui.services import launching

    # Sessions made here read this test's AWS_CREDENTIAL_EXPIRATION: keep them out of the shared cache.
    monkeypatch.setattr(aws, "_sessions", {})
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", (utcnow() + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    monkeypatch.setattr(launching, "check_can_launch", lambda settings, skip_preflight: None)
    monkeypatch.setattr(launching, "spawn_background_runner", lambda settings, run_id, env_file: 4242)
    argv = ["--state-dir", str(tmp_path / "state"), "launch", "--task-id", "t1", "--agent", "a", "--backend", "ec2"]
    env = ["--detach", "--skip-preflight"]
    monkeypatch.setenv("FC_EVAL_S3_BUCKET", "fceval-staging")
    monkeypatch.setenv("FCEVAL_RUN_COMMAND", "run {task_id}")
    monkeypatch.setenv("FCEVAL_GRADE_COMMAND", "")
    assert main(argv + env) == 0
    err = capsys.readouterr().err.strip().splitlines()
    expiring = [line for line in err if "AWS_CREDENTIAL_EXPIRATION" in line]
    assert len(expiring) == 1 and expiring[0].startswith("warning: ") and "pause" in expiring[0]


class FakeBackend:
    """What the gate asks of a backend: how to renew, and whether renewing works yet."""

    def __init__(self) -> None:
        self.works = False

    def renewal_hint(self, run_id: str) -> str:
        return "run `aws sso login --profile eval`"

    def renew_credentials(self) -> str:
        if not self.works:
            raise CredentialsExpired("sts:GetCallerIdentity: ExpiredToken")
        return "arn:aws:sts::1:assumed-role/R/me"


def test_a_paused_job_waits_shows_why_and_is_left_as_it_was_when_the_runner_stops(tmp_path):
    ledger = Ledger.open(tmp_path)
    try:
        s = settings(tmp_path)
        _, (job,) = ledger.create_run("ec2", 1, [JobSpec("a", "t")])
        job = ledger.transition(job.id, JobState.PROVISIONING, attempts=1, started_at=utcnow())
        job = ledger.transition(job.id, JobState.STARTING)
        job = ledger.transition(job.id, JobState.RUNNING, resource_id="i-1")
        stop = threading.Event()
        backend = FakeBackend()
        gate = CredentialGate(ledger, s, lambda: backend, stop.wait, stop.is_set, interval=0.01)

        def observe():
            raise CredentialsExpired("ssm:SendCommand: ExpiredTokenException")

        outcome: list[BaseException] = []
        thread = threading.Thread(target=lambda: outcome.append(pytest.raises(PauseEnded, gate.call, job, observe)))
        thread.start()
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while not ledger.get_job(job.id).paused and datetime.now(UTC) < deadline:
            stop.wait(0.01)
        paused = ledger.get_job(job.id)
        summary = next(iter(ledger.run_summaries()))
        stop.set()
        thread.join(30)
        after = ledger.get_job(job.id)
        events = [e.kind for e in ledger.events(run_id=job.run_id)]
    finally:
        ledger.close()
    assert paused.paused == "AWS credentials expired: run `aws sso login --profile eval`"
    assert summary.paused == paused.paused
    assert str(state_text(paused)) == "⏸ paused (running)" and str(state_text(paused, icon=False)) == "paused (running)"
    assert outcome and after.state == JobState.RUNNING and after.paused is None and after.attempts == 1
    assert events.count("credentials_expired") == 1 and "credentials_renewed" not in events


class PausedThenRuns(Backend):
    """A job whose credentials expire at its first look: each probe finds them still expired while the
    operator's clock moves 10 minutes, the fourth works (a 40-minute pause); afterwards every look moves
    the clock `own_minutes` of the job's own time, and the second one finds the pipeline done."""

    name = "ec2"

    def __init__(self, settings, clock: list[datetime], own_minutes: float) -> None:
        super().__init__(settings)
        self.clock, self.own_minutes, self.looks, self.probes = clock, own_minutes, 0, 0

    def provision(self, ctx):
        return "i-1"

    def start(self, ctx, resource_id):
        pass

    def observe(self, ctx, resource_id):
        self.looks += 1
        if self.looks == 1:
            raise CredentialsExpired("ssm:SendCommand: ExpiredTokenException")
        self.clock[0] += timedelta(minutes=self.own_minutes)
        return Observation(JobState.RUNNING, done=self.looks >= 3, exit_code=0 if self.looks >= 3 else None)

    def collect(self, ctx, resource_id, observation):
        return Outcome(True, 0)

    def renewal_hint(self, run_id: str) -> str:
        return "run `aws sso login --profile eval`"

    def renew_credentials(self) -> str:
        self.probes += 1
        self.clock[0] += timedelta(minutes=10)
        if self.probes < 4:
            raise CredentialsExpired("sts:GetCallerIdentity: ExpiredToken")
        return "arn:aws:sts::1:assumed-role/R/me"

    def cancel(self, ctx, resource_id):
        pass

    def cleanup(self, ctx, resource_id):
        pass

    def artifact_prefix(self) -> str:
        return "s3://fceval-results/evals"


def _drive_paused(tmp_path, monkeypatch, own_minutes: float):
    from fceval_tui.services import runner as runner_module

    clock = [NOW]
    monkeypatch.setattr(runner_module, "utcnow", lambda: clock[0])  # the runner's timeout reads this clock
    s = settings(tmp_path, FCEVAL_JOB_TIMEOUT_MINUTES="30", FCEVAL_TTL_MINUTES="180")
    backend = PausedThenRuns(s, clock, own_minutes)
    ledger = Ledger.open(tmp_path)
    try:
        runner = runner_module.Runner(ledger, s, backend, backoff_base=0.01, sleep=lambda _: None)
        runner.credentials.clock = lambda: clock[0]
        run, (job,) = runner.create_run([JobSpec("a", "t")])
        runner.run(run.id)
        final = ledger.get_job(job.id)
        later = runner_module.Runner(ledger, s, backend).credentials.paused_time(final)  # a resumed runner
        events = ledger.events(job_id=job.id)
    finally:
        ledger.close()
    return final, later, events, backend


def test_time_paused_for_expired_credentials_does_not_count_toward_the_job_timeout(tmp_path, monkeypatch):
    # 40 minutes paused, 10 of its own: under the 30-minute timeout.
    final, later, events, backend = _drive_paused(tmp_path, monkeypatch, own_minutes=5)
    assert backend.probes == 4
    assert final.state == JobState.SUCCEEDED, final.error
    assert later == timedelta(minutes=40)  # recorded in the ledger: a resumed runner leaves it out too
    assert [e.detail for e in events if e.kind == "pause_ended"] == [{"paused_seconds": 2400.0, "attempt": 1}]


def test_a_job_past_its_own_timeout_after_a_pause_still_times_out(tmp_path, monkeypatch):
    final, _, _, _ = _drive_paused(tmp_path, monkeypatch, own_minutes=31)
    assert final.state == JobState.TIMED_OUT and final.error.startswith("exceeded 30")
