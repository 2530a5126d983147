"""moto fixtures shared by the AWS backend tests, and test doubles for what moto does not run.
Loaded with `pytest_plugins = ("aws_fixtures",)`; plain helpers are in aws_helpers.py.

- `moto_server`: one ThreadedMotoServer on 127.0.0.1 for the whole session (the first EC2 call
  costs ~1.8 s, so state is shared; every test uses its own run id and filters by it). Child
  processes (the `aws` CLI inside the pipeline) reach it through AWS_ENDPOINT_URL. Its front door
  (`world.keys`, expiring_credentials.py) expires the keys a test asks it to, and counts calls;
  behind it, `world.kms` (kms_double.py) refuses S3 reads and writes of SSE-KMS objects to principals
  whose policies do not allow the key's KMS actions, as S3 does.
- `ssm_agent`: SSM Run Command (ssm_double.install_run_command) running each command as root with
  `sh` on a LocalMachine. The fuller EC2 doubles (an instance's file system, sessions as ssm-user
  through a fake `aws` CLI) are `ec2_machine` and `ssm_sessions` in ssm_double.py, loaded from here.
- ECS tasks and ECS Exec: see ecs_double.py.
- `batch_compute`: moto's Batch without Docker runs nothing; this double fails a job whose
  container overrides reach 8,192 bytes when it starts (SubmitJob accepts them, as AWS does), and runs the submitted
  command on a LocalMachine in a thread (the job is RUNNING meanwhile), writes its output to
  CloudWatch Logs and finishes the job with the command's exit code. TerminateJob kills it. A job
  definition's `jobRoleArn` that moto IAM knows gives the command that role's credentials (task_roles.py).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fceval_tui.config import load_settings
from tests.helpers.aws import (
    BATCH_DEFINITION,
    BATCH_QUEUE,
    ECS_CLUSTER,
    GRADE,
    PROFILE,
    QUICK,
    REGION,
    RESULTS,
    RUN,
    STAGING,
    LocalMachine,
    MotoWorld,
)
from tests.helpers.task_roles import role_environment
from tests.helpers.tmux_cleanup import kill_servers_under

pytest_plugins = ("tests.helpers.ssm_double",)  # its fixtures come with this plugin


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoWorld]:
    from moto.moto_api._internal.models import moto_api_backend
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_api_backend.set_config({"batch": {"use_docker": False}})
    world = MotoWorld(endpoint=f"http://{host}:{port}")
    # Expiring credentials (expiring_credentials.py) first, then SSE-KMS permissions (kms_double.py).
    server._server.app = world.keys.wrap(world.kms.wrap(server._server.app))
    _create_world(world)
    yield world
    server.stop()


def _create_world(world: MotoWorld) -> None:
    s3 = world.client("s3")
    for bucket in (STAGING, RESULTS):
        s3.create_bucket(Bucket=bucket)
    iam = world.client("iam")
    iam.create_instance_profile(InstanceProfileName=PROFILE)
    role = iam.create_role(RoleName="fceval-batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ec2 = world.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    world.subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    world.security_group = ec2.create_security_group(GroupName="fceval-test-tasks", Description="tasks", VpcId=vpc)[
        "GroupId"
    ]
    world.client("ecs").create_cluster(clusterName=ECS_CLUSTER)
    batch = world.client("batch")
    env = batch.create_compute_environment(
        computeEnvironmentName="fceval-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
    )
    batch.create_job_queue(
        jobQueueName=BATCH_QUEUE,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
    )
    batch.register_job_definition(
        jobDefinitionName=BATCH_DEFINITION,
        type="container",
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 512, "command": ["true"]},
    )


@pytest.fixture
def aws_env(moto_server, monkeypatch, isolated_env) -> MotoWorld:
    """After conftest's isolation: point every boto3 client (and child process) at the moto server."""
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FCEVAL_EXAMPLE_SECONDS", QUICK)
    return moto_server


@pytest.fixture
def aws_settings(aws_env, tmp_path):
    """Settings for the AWS backends, with the remote work directory inside this test's tmp dir."""

    def make(**env: str):
        environ = {
            "AWS_REGION": REGION,
            "FC_EVAL_S3_BUCKET": STAGING,
            "FCEVAL_ARTIFACTS": f"s3://{RESULTS}/evals",
            "FCEVAL_INSTANCE_PROFILE": PROFILE,
            "FCEVAL_REMOTE_WORK_DIR": str(tmp_path / "remote"),
            "FCEVAL_RUN_COMMAND": RUN,
            "FCEVAL_GRADE_COMMAND": GRADE,
            "EC2_USE_NVME_STORAGE": "true",
            "FCEVAL_ECS_CLUSTER": ECS_CLUSTER,
            "FCEVAL_ECS_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/tasks:{task_id}",
            "FCEVAL_ECS_SUBNETS": aws_env.subnet,
            "FCEVAL_ECS_SECURITY_GROUPS": aws_env.security_group,
            "FCEVAL_BATCH_QUEUE": BATCH_QUEUE,
            "FCEVAL_BATCH_JOB_DEFINITION": BATCH_DEFINITION,
        }
        environ.update(env)
        environ = {k: v for k, v in environ.items() if v is not None}  # None: leave the variable unset
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        return load_settings(environ=environ, state_dir=state)

    return make


@pytest.fixture
def local_machine(tmp_path_factory) -> Iterator[LocalMachine]:
    root = tmp_path_factory.mktemp("machine")
    # tmux socket paths must stay short (sun_path is ~100 bytes).
    machine = LocalMachine(root, Path(os.path.realpath(tmp_path_factory.mktemp("tx"))))
    yield machine
    for root in (machine.root, machine.tmux_tmpdir):
        kill_servers_under(root, machine.env)


@pytest.fixture
def ssm_agent(aws_env, monkeypatch, local_machine, tmux_group) -> LocalMachine:
    from tests.helpers.ssm_double import install_run_command

    install_run_command(monkeypatch, local_machine)
    return local_machine


OVERRIDES_LIMIT = 8_192  # AWS Batch SubmitJob ContainerOverrides: accepted above it, the job then fails


@pytest.fixture
def batch_compute(aws_env, monkeypatch, local_machine) -> LocalMachine:
    from moto.batch.models import JobStatus
    from moto.batch_simple.models import BatchSimpleBackend
    from moto.core.utils import unix_time_millis

    threads: list[threading.Thread] = []

    def run_container(job) -> None:
        overrides = job.container_overrides or {}
        command = overrides.get("command") or ["true"]
        _, _, _, region, account, _ = job.job_definition.arn.split(":", 5)
        role_arn = (job.job_definition.container_properties or {}).get("jobRoleArn")
        env = {
            **local_machine.env,
            **role_environment(account, region, role_arn, job.job_id),
            **{item["name"]: item["value"] for item in overrides.get("environment", [])},
        }
        # Its own process group, so TerminateJob kills the whole pipeline like a container stop would.
        proc = subprocess.Popen(
            command,
            cwd=local_machine.root,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        while proc.poll() is None:
            if job.stop:  # TerminateJob
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
        output = proc.stdout.read() if proc.stdout else ""
        now = int(unix_time_millis())
        job._log_backend.ensure_log_group(job._log_group)
        job._log_backend.ensure_log_stream(job._log_group, job.log_stream_name)
        events = [{"timestamp": now, "message": line} for line in output.splitlines() if line]
        if events:
            job._log_backend.put_log_events(job._log_group, job.log_stream_name, events)
        job.exit_code = proc.returncode
        job.latest_attempt["container"]["exitCode"] = proc.returncode  # where DescribeJobs shows it
        job._mark_stopped(success=proc.returncode == 0 and not job.stop)

    def start_job(self, include_start_attempt: bool, job) -> None:
        self.backend._jobs[job.job_id] = job
        job.job_started_at = datetime.datetime.now()
        job.log_stream_name = job._stream_name
        job._start_attempt()
        if len(json.dumps(job.container_overrides or {}).encode()) >= OVERRIDES_LIMIT:
            # SubmitJob accepted it; the job fails when Batch starts it.
            job.job_stopped_reason = "Container Overrides length must be at most 8192"
            job._mark_stopped(success=False)
            return
        job.status = JobStatus.RUNNING
        thread = threading.Thread(target=run_container, args=(job,), daemon=True)
        threads.append(thread)
        thread.start()

    monkeypatch.setattr(BatchSimpleBackend, "_mark_job_as_finished", start_job)
    yield local_machine
    for thread in threads:
        thread.join(timeout=30)
