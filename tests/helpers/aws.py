"""Plain helpers for the AWS backend tests (the fixtures live in aws_fixtures.py)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import boto3

from fceval_tui.backends.base import JobContext
from fceval_tui.domain.models import Job, JobSpec, utcnow
from fceval_tui.domain.states import JobState
from tests.helpers.cli import HARNESS
from tests.helpers.expiring_credentials import ExpiringKeys
from tests.helpers.kms_double import KmsGate

REGION = "us-east-1"
STAGING = "fceval-staging"
RESULTS = "fceval-results"
PROFILE = "fceval-test-profile"
ECS_CLUSTER = "fceval-test"
BATCH_QUEUE = "fceval-queue"
BATCH_DEFINITION = "fceval-job"
QUICK = "0.2"  # seconds the example harness "works"

RUN = (
    f"{sys.executable} {HARNESS} agent --agent {{agent}} --task-id {{task_id}} --model {{model}}"
    " --out {artifacts_dir}"
)
GRADE = f"{sys.executable} {HARNESS} grade --task-id {{task_id}} --out {{artifacts_dir}}"


@dataclass
class MotoWorld:
    endpoint: str
    subnet: str = ""
    security_group: str = ""
    keys: ExpiringKeys = field(default_factory=ExpiringKeys)
    kms: KmsGate = field(default_factory=KmsGate)

    def client(self, service: str):
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }


def new_run_id() -> str:
    return "r" + secrets.token_hex(4)


def make_context(
    settings,
    run_id: str,
    seq: int = 1,
    task_id: str = "hello",
    agent: str = "aide",
    model: str = "",
    attempt: int = 1,
    backend: str = "ec2",
) -> JobContext:
    """What the runner would hand a backend for one attempt."""
    from fceval_tui.backends.base import work_dir
    from fceval_tui.backends.cloud import remote_work_dir
    from fceval_tui.domain.template import job_environment
    from fceval_tui.services.runner import job_values, render_commands

    job = Job(
        id=f"{run_id}-{seq:03d}",
        run_id=run_id,
        seq=seq,
        agent=agent,
        task_id=task_id,
        model=model,
        dataset="",
        backend=backend,
        state=JobState.PROVISIONING,
        attempts=attempt,
    )
    work = work_dir(settings, job)
    work.mkdir(parents=True, exist_ok=True)
    run_command, grade_command = render_commands(settings)
    env = job_environment(job_values(job, remote_work_dir(settings, job.id) + "/artifacts"))
    return JobContext(
        job=job,
        attempt=attempt,
        run_command=run_command,
        grade_command=grade_command,
        artifact_prefix=settings.artifact_prefix,
        work_dir=work,
        expires_at=utcnow() + timedelta(minutes=settings.ttl_minutes),
        env=env,
    )


def spec(task_id: str, agent: str = "aide") -> JobSpec:
    return JobSpec(agent, task_id)


def s3_keys(world: MotoWorld, bucket: str, prefix: str) -> list[str]:
    reply = world.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in reply.get("Contents", [])]


def run_with_runner(settings, backend, specs):
    """Drive jobs with the real runner and ledger; return (run, {task_id: final job})."""
    from fceval_tui.ledger import Ledger
    from fceval_tui.services.runner import Runner

    ledger = Ledger.open(settings.state_dir)
    try:
        runner = Runner(ledger, settings, backend, backoff_base=0.01)
        run, _ = runner.create_run(list(specs))
        runner.run(run.id)
        return run, {job.task_id: job for job in ledger.jobs(run.id)}
    finally:
        ledger.close()


def check_hello_and_failure(world, run, final) -> tuple[Job, Job]:
    """The pair most end-to-end runs launch: `hello` succeeds with its archive and grading report delivered,
    `always-fail` (agent biomni) fails with the harness's exit code 3 and its archive kept under failed_runs."""
    ok, bad = final["hello"], final["always-fail"]
    assert ok.state == JobState.SUCCEEDED, ok.error
    assert ok.artifacts[0] == f"s3://{RESULTS}/evals/runs/aide/hello/{run.id}.tar.gz"
    assert "/evals/grades/aide/hello/" in ok.artifacts[1]
    assert bad.state == JobState.FAILED and bad.exit_code == 3
    assert s3_keys(world, RESULTS, f"evals/failed_runs/biomni/always-fail/{run.id}") != []
    return ok, bad


# -- recording and failing API calls ------------------------------------------------------------


@dataclass
class CallLog:
    calls: list[tuple[str, str, dict]] = field(default_factory=list)

    def __call__(self, model, params, **_: object) -> None:
        self.calls.append((model.service_model.signing_name, model.name, params))

    def named(self, operation: str) -> list[dict]:
        return [params for _, name, params in self.calls if name == operation]

    def operations(self) -> set[tuple[str, str]]:
        return {(service, name) for service, name, _ in self.calls}


def record_calls(clients: Sequence) -> CallLog:
    log = CallLog()
    for client in clients:
        # Emitted once per API call (not per HTTP retry), with the caller's own parameters.
        client.meta.events.register("before-parameter-build.*.*", log)
    return log


def client_error(code: str, message: str, operation: str):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation
    )


def declared(backend_class, calls: CallLog) -> tuple[set[str], set[str]]:
    """(IAM actions called, those of them the backend does not declare)."""
    from fceval_tui.backends.aws import iam_actions

    called = {action for service, op in calls.operations() for action in iam_actions(service, op)}
    return called, called - set(backend_class.caller_actions)


# -- stand-ins for compute ------------------------------------------------------------------------


@dataclass
class LocalMachine:
    """A directory and a private tmux socket dir standing in for an instance or a container."""

    root: Path
    tmux_tmpdir: Path
    commands: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "TMUX_TMPDIR": str(self.tmux_tmpdir)}

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", *args], capture_output=True, text=True, env=self.env, timeout=30)

    def sessions(self) -> list[str]:
        proc = self.tmux("list-sessions", "-F", "#{session_name}")
        return proc.stdout.split() if proc.returncode == 0 else []
