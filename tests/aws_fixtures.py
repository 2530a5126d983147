"""moto fixtures shared by the AWS backend tests, and the test doubles for what moto does not run.

- `moto_server`: one ThreadedMotoServer on 127.0.0.1 for the whole session (the first EC2 call
  costs ~1.8 s, so state is shared; every test uses its own run id and filters by it). Child
  processes (the `aws` CLI inside the pipeline) reach it through AWS_ENDPOINT_URL.
- `ssm_agent`: moto records SendCommand but runs nothing. This double wraps moto's SSM backend:
  each command sent to a running instance is executed by `sh` in a directory standing in for the
  instance (with a private tmux socket dir), and its exit code, output and S3 output copy are
  written back, so GetCommandInvocation answers like the real agent. DescribeInstanceInformation
  (not in moto) is added to moto's SSM responses: running instances have an online agent.
- `local_container`: ECS Exec is not in moto; a Transport that runs the argv in a local
  directory stands in for the container.
- `batch_compute`: moto's Batch (without Docker) runs nothing; this double runs the submitted
  command locally, like a container would, and writes its output to CloudWatch Logs.
- `record_calls`: records every AWS operation a set of clients calls (a botocore event hook).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from conftest import HARNESS

from fceval_tui.backends.base import JobContext
from fceval_tui.config import load_settings
from fceval_tui.domain.models import Job, JobSpec, utcnow
from fceval_tui.domain.states import JobState
from fceval_tui.transports.base import CommandResult, Stream, Transport

REGION = "us-east-1"
ACCOUNT = "123456789012"
STAGING = "fceval-staging"
RESULTS = "fceval-results"
PROFILE = "fceval-test-profile"
ECS_CLUSTER = "fceval-test"
BATCH_QUEUE = "fceval-queue"
BATCH_DEFINITION = "fceval-job"
QUICK = "0.2"  # seconds the example harness "works"

RUN = (f"{sys.executable} {HARNESS} agent --agent {{agent}} --task-id {{task_id}} --model {{model}}"
       " --out {artifacts_dir}")
GRADE = f"{sys.executable} {HARNESS} grade --task-id {{task_id}} --out {{artifacts_dir}}"


@dataclass
class MotoWorld:
    endpoint: str
    subnet: str = ""
    security_group: str = ""
    batch_role: str = ""
    extra: dict = field(default_factory=dict)

    def client(self, service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoWorld]:
    from moto.moto_api._internal.models import moto_api_backend
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    # Batch jobs then "run" without Docker (moto marks them succeeded at once).
    moto_api_backend.set_config({"batch": {"use_docker": False}})
    world = MotoWorld(endpoint=f"http://{host}:{port}")
    with pytest.MonkeyPatch.context() as mp:
        # For setup only; each test's environment is set again by `aws_env` (conftest clears AWS_*).
        for key, value in _env(world).items():
            mp.setenv(key, value)
        _create_world(world)
        yield world
    server.stop()


def _env(world: MotoWorld) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": world.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


def _create_world(world: MotoWorld) -> None:
    s3 = world.client("s3")
    for bucket in (STAGING, RESULTS):
        s3.create_bucket(Bucket=bucket)
    iam = world.client("iam")
    iam.create_instance_profile(InstanceProfileName=PROFILE)
    role = iam.create_role(RoleName="fceval-batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    world.batch_role = role
    ec2 = world.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    world.subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    world.security_group = ec2.create_security_group(
        GroupName="fceval-test-tasks", Description="tasks", VpcId=vpc)["GroupId"]
    world.client("ecs").create_cluster(clusterName=ECS_CLUSTER)
    batch = world.client("batch")
    env = batch.create_compute_environment(
        computeEnvironmentName="fceval-ce", type="UNMANAGED", state="ENABLED", serviceRole=role)
    batch.create_job_queue(jobQueueName=BATCH_QUEUE, state="ENABLED", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}])
    batch.register_job_definition(jobDefinitionName=BATCH_DEFINITION, type="container",
                                  containerProperties={"image": "busybox", "vcpus": 1, "memory": 512,
                                                       "command": ["true"]})


@pytest.fixture
def aws_env(moto_server, monkeypatch, isolated_env) -> MotoWorld:
    """After conftest's isolation: point every boto3 client (and child process) at the moto server."""
    for key, value in _env(moto_server).items():
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
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        return load_settings(environ=environ, state_dir=state)

    return make


def make_context(settings, run_id: str, seq: int = 1, task_id: str = "hello", agent: str = "aide",
                 model: str = "", attempt: int = 1, backend: str = "ec2") -> JobContext:
    """What the runner would hand a backend for one attempt."""
    from fceval_tui.services.runner import template_values, work_dir

    job = Job(id=f"{run_id}-{seq:03d}", run_id=run_id, seq=seq, agent=agent, task_id=task_id, model=model,
              dataset="", backend=backend, state=JobState.PROVISIONING, attempts=attempt)
    work = work_dir(settings, job)
    work.mkdir(parents=True, exist_ok=True)
    values = template_values(job, work)
    grade = settings.grade_command
    return JobContext(job=job, attempt=attempt, run_command=settings.run_command.render(values),
                      grade_command=grade.render(values) if grade else None,
                      artifact_prefix=settings.artifact_prefix, work_dir=work,
                      expires_at=utcnow() + timedelta(minutes=settings.ttl_minutes))


def spec(task_id: str, agent: str = "aide") -> JobSpec:
    return JobSpec(agent, task_id)


# -- recording API calls -----------------------------------------------------------------------


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


def fake_response(client, operation: str, reply: dict | Exception):
    """Answer `operation` on `client` without sending it (an error reply when `reply` is an exception)."""

    def handler(**_: object):
        if isinstance(reply, Exception):
            raise reply
        return AWSResponse("https://fake", 200, {}, None), reply

    client.meta.events.register(f"before-call.*.{operation}", handler)
    return handler


def client_error(code: str, message: str, operation: str):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


# -- the SSM agent double ----------------------------------------------------------------------


@dataclass
class FakeInstances:
    root: Path
    tmux_tmpdir: Path
    commands: list[str] = field(default_factory=list)

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "TMUX_TMPDIR": str(self.tmux_tmpdir)}
        return subprocess.run(["tmux", *args], capture_output=True, text=True, env=env, timeout=30)

    def sessions(self) -> list[str]:
        proc = self.tmux("list-sessions", "-F", "#{session_name}")
        return proc.stdout.split() if proc.returncode == 0 else []


@pytest.fixture
def ssm_agent(aws_env, monkeypatch, tmp_path_factory) -> Iterator[FakeInstances]:
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult
    from moto.ec2.models import ec2_backends
    from moto.s3.models import s3_backends
    from moto.ssm.models import SimpleSystemManagerBackend
    from moto.ssm.responses import SimpleSystemManagerResponse

    root = tmp_path_factory.mktemp("instances")
    # tmux socket paths must stay short (sun_path is ~100 bytes).
    tmux_dir = Path(os.path.realpath(tmp_path_factory.mktemp("tx")))
    fake = FakeInstances(root, tmux_dir)
    original = SimpleSystemManagerBackend.send_command
    env = {**os.environ, "TMUX_TMPDIR": str(tmux_dir)}

    def instance_state(account_id: str, region: str, instance_id: str) -> str:
        try:
            return ec2_backends[account_id][region].get_instance(instance_id).state
        except Exception:  # moto raises its own InvalidInstanceID error class; any miss means "not there"
            return "missing"

    def send_command(self, **kwargs):
        for instance_id in kwargs["instance_ids"]:
            if instance_state(self.account_id, self.region_name, instance_id) != "running":
                raise JsonRESTError("InvalidInstanceId", f"Instances [{instance_id}] not in a valid state")
        command = original(self, **kwargs)
        script = "\n".join(command.parameters.get("commands", []))
        fake.commands.append(script)
        for invocation in command.invocations:
            cwd = root / invocation["InstanceId"]
            cwd.mkdir(exist_ok=True)
            proc = subprocess.run(["sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=120)
            invocation.update(
                ResponseCode=proc.returncode,
                Status="Success" if proc.returncode == 0 else "Failed",
                StatusDetails="Success" if proc.returncode == 0 else "Failed",
                StandardOutputContent=proc.stdout[:24000],
                StandardErrorContent=proc.stderr[:8000],
            )
            if command.output_s3_bucket_name:
                prefix = f"{command.output_s3_key_prefix}/{command.command_id}/{invocation['InstanceId']}"
                s3 = s3_backends[self.account_id]["aws"]
                for stream, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                    s3.put_object(command.output_s3_bucket_name,
                                  f"{prefix}/awsrunShellScript/0.awsrunShellScript/{stream}", text.encode())
        return command

    def describe_instance_information(self):
        # Not in moto: every instance moto has running has an online agent.
        wanted = [v for f in self._get_param("Filters", []) if f["Key"] == "InstanceIds" for v in f["Values"]]
        info = [{"InstanceId": i, "PingStatus": "Online", "PlatformType": "Linux"}
                for i in wanted if instance_state(self.current_account, self.region, i) == "running"]
        return ActionResult({"InstanceInformationList": info})

    monkeypatch.setattr(SimpleSystemManagerBackend, "send_command", send_command)
    monkeypatch.setattr(SimpleSystemManagerResponse, "describe_instance_information", describe_instance_information,
                        raising=False)
    yield fake
    fake.tmux("kill-server")


# -- ECS Exec double ---------------------------------------------------------------------------


class LocalContainer(Transport):
    """Runs commands in a local directory standing in for the container (ECS Exec is not in moto)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.commands: list[list[str]] = []

    def run(self, argv, *, stdin=None, timeout=60.0) -> CommandResult:
        self.commands.append(list(argv))
        self.root.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(list(argv), cwd=self.root, env=self.env, input=stdin, capture_output=True,
                              timeout=timeout)
        return CommandResult(proc.returncode, proc.stdout.decode(errors="replace"),
                             proc.stderr.decode(errors="replace"))

    def open_stream(self, argv) -> Stream:
        raise NotImplementedError("the ECS tests drive one-shot commands only")


@pytest.fixture
def local_containers(aws_env, tmp_path_factory) -> Iterator[dict[str, LocalContainer]]:
    """task ARN -> its stand-in container; the backend's transport factory creates them on demand."""
    tmux_dir = Path(os.path.realpath(tmp_path_factory.mktemp("tc")))
    containers: dict[str, LocalContainer] = {}
    yield containers
    subprocess.run(["tmux", "kill-server"], capture_output=True, env={**os.environ, "TMUX_TMPDIR": str(tmux_dir)})
    containers["__tmux_dir__"] = tmux_dir  # type: ignore[assignment]
