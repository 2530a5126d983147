"""EC2 backend against moto (ThreadedMotoServer), with the SSM agent double running the pipeline
in a local directory and tmux, and the pipeline's `aws s3 cp` uploading to moto."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from fceval_tui.backends.base import ResourceGone
from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.domain.states import JobState
from fceval_tui.errors import CapacityError, PermanentError, TransientError, UserError
from tests.helpers.aws import (
    RESULTS,
    STAGING,
    client_error,
    declared,
    make_context,
    new_run_id,
    record_calls,
    run_with_runner,
    s3_keys,
    spec,
)


def fast(backend: Ec2Backend) -> Ec2Backend:
    backend.poll_interval = 0.05
    return backend


def instances_of_run(world, run_id: str, states=("pending", "running", "stopping", "stopped", "shutting-down")):
    reservations = world.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:fceval:run-id", "Values": [run_id]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def test_runner_drives_jobs_end_to_end_through_ssm(aws_settings, ssm_agent, aws_env, tmp_path):
    from fceval_tui.ledger import Ledger
    from fceval_tui.services.runner import Runner

    settings = aws_settings(FCEVAL_CONCURRENT="2", FCEVAL_BACKEND="ec2")
    backend = fast(Ec2Backend(settings))
    calls = record_calls(backend.aws.all())
    ledger = Ledger.open(settings.state_dir)
    try:
        runner = Runner(ledger, settings, backend, backoff_base=0.01)
        run, jobs = runner.create_run([spec("hello"), spec("always-fail", agent="biomni")])
        totals = runner.run(run.id)
        final = {job.task_id: job for job in ledger.jobs(run.id)}
    finally:
        ledger.close()
    ok, bad = final["hello"], final["always-fail"]
    assert ok.state == JobState.SUCCEEDED, ok.error
    assert ok.exit_code == 0 and ok.resource_id.startswith("i-")
    run_url, report_url = ok.artifacts
    assert run_url == f"s3://{RESULTS}/evals/runs/aide/hello/{run.id}.tar.gz"
    assert report_url.startswith(f"s3://{RESULTS}/evals/grades/aide/hello/") and report_url.endswith(
        "_grading_report.json.gz"
    )
    assert bad.state == JobState.FAILED and bad.exit_code == 3
    assert bad.artifacts == (f"s3://{RESULTS}/evals/failed_runs/biomni/always-fail/{run.id}.tar.gz",)
    assert s3_keys(aws_env, RESULTS, f"evals/runs/aide/hello/{run.id}") == [f"evals/runs/aide/hello/{run.id}.tar.gz"]
    assert totals.counts[JobState.SUCCEEDED] == 1
    # The pipeline really ran in tmux on the "instance", started through SSM.
    assert any("tmux" in cmd and "new-session" in cmd for cmd in ssm_agent.commands)
    # Nothing left: instances terminated, staging emptied.
    assert instances_of_run(aws_env, run.id) == []
    assert s3_keys(aws_env, STAGING, f"fceval-tui/staging/{run.id}/") == []
    # Every AWS operation called is one the backend declares (what audit and the policy printer use).
    called, undeclared = declared(Ec2Backend, calls)
    assert not undeclared, undeclared
    assert {"ec2:RunInstances", "ssm:SendCommand", "ssm:DescribeInstanceInformation"} <= called


def test_launch_request_carries_tags_ttl_shutdown_and_disks(aws_settings, aws_env):
    settings = aws_settings(FCEVAL_TTL_MINUTES="45", EC2_ROOT_VOLUME_SIZE="77", EC2_INSTANCE_TYPE="c5ad.large")
    backend = fast(Ec2Backend(settings))
    ctx = make_context(settings, new_run_id())
    instance_id = backend.provision(ctx)
    try:
        ec2 = aws_env.client("ec2")
        item = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        tags = {t["Key"]: t["Value"] for t in item["Tags"]}
        assert tags["ManagedBy"] == "fceval-tui" and tags["fceval:run-id"] == ctx.job.run_id
        assert tags["fceval:job-id"] == ctx.job.id and tags["fceval:expires-at"] == ctx.tags["fceval:expires-at"]
        assert item["InstanceType"] == "c5ad.large" and "InstanceLifecycle" not in item
        behaviour = ec2.describe_instance_attribute(
            InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
        )
        assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
        raw = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
        script = base64.b64decode(raw).decode()
        lines = script.splitlines()
        # The dead-man's switch comes before anything that could fail.
        assert lines[2] in ("shutdown -h +45 'fceval-tui TTL reached'", "shutdown -h +44 'fceval-tui TTL reached'")
        assert "install -y tmux" in script and "mkfs.xfs" in script
        assert "nvme-Amazon_EC2_NVMe_Instance_Storage" in script
        volume_id = item["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        assert (volume["Size"], volume["VolumeType"]) == (77, "gp3")
        assert {t["Key"]: t["Value"] for t in volume["Tags"]}["fceval:job-id"] == ctx.job.id
        group = ec2.describe_security_groups(GroupIds=[item["SecurityGroups"][0]["GroupId"]])["SecurityGroups"][0]
        assert group["IpPermissions"] == []  # no inbound access at all
        assert {t["Key"]: t["Value"] for t in group["Tags"]}["ManagedBy"] == "fceval-tui"
        ami = aws_env.client("ssm").get_parameter(
            Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
        )["Parameter"]["Value"]
        assert item["ImageId"] == ami
    finally:
        backend.cleanup(ctx, instance_id)
    assert instances_of_run(aws_env, ctx.job.run_id) == []


def test_without_nvme_the_user_data_does_not_format_disks(aws_settings, aws_env):
    settings = aws_settings(EC2_USE_NVME_STORAGE="false")
    from fceval_tui.backends.ec2 import user_data

    script = user_data(make_context(settings, new_run_id()), settings.remote_work_dir, settings.ec2_use_nvme)
    assert "mkfs" not in script and "shutdown -h +" in script


def test_spot_launch_falls_through_zones_on_capacity_errors(aws_settings, aws_env):
    settings = aws_settings(SPOT_PRICE="0.05", EC2_AVAILABILITY_ZONES="us-east-1a,us-east-1b")
    backend = fast(Ec2Backend(settings))
    calls = record_calls([backend.aws.ec2])

    def no_capacity_in_a(params, **_):
        if params.get("Placement", {}).get("AvailabilityZone") == "us-east-1a":
            raise client_error("InsufficientInstanceCapacity", "no c5ad.large capacity in us-east-1a", "RunInstances")

    backend.aws.ec2.meta.events.register("before-parameter-build.ec2.RunInstances", no_capacity_in_a)
    ctx = make_context(settings, new_run_id())
    instance_id = backend.provision(ctx)
    try:
        launched = instances_of_run(aws_env, ctx.job.run_id)
        assert [i["InstanceId"] for i in launched] == [instance_id]
        assert launched[0]["Placement"]["AvailabilityZone"] == "us-east-1b"
        assert launched[0]["InstanceLifecycle"] == "spot"
        requests = calls.named("RunInstances")
        assert [r["Placement"]["AvailabilityZone"] for r in requests] == ["us-east-1a", "us-east-1b"]
        assert requests[1]["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.05"
        assert requests[0]["ClientToken"] != requests[1]["ClientToken"]
    finally:
        backend.cleanup(ctx, instance_id)


def test_capacity_in_every_zone_is_a_capacity_error(aws_settings, aws_env):
    settings = aws_settings(EC2_AVAILABILITY_ZONES="us-east-1a,us-east-1b")
    backend = fast(Ec2Backend(settings))

    def no_capacity(**_):
        raise client_error("InsufficientInstanceCapacity", "We do not have sufficient capacity", "RunInstances")

    backend.aws.ec2.meta.events.register("before-call.ec2.RunInstances", no_capacity)
    ctx = make_context(settings, new_run_id())
    with pytest.raises(CapacityError, match="InsufficientInstanceCapacity"):
        backend.provision(ctx)
    assert instances_of_run(aws_env, ctx.job.run_id) == []


@pytest.mark.parametrize("where", ["before", "after"])
def test_retried_launch_creates_exactly_one_instance(aws_settings, aws_env, where):
    """before: throttled before AWS acted. after: AWS launched but the reply was lost."""
    settings = aws_settings()
    backend = fast(Ec2Backend(settings))
    failures = []

    def throttle_once(**_):
        if not failures:
            failures.append(1)
            raise client_error("RequestLimitExceeded", "Request limit exceeded.", "RunInstances")

    backend.aws.ec2.meta.events.register(f"{where}-call.ec2.RunInstances", throttle_once)
    ctx = make_context(settings, new_run_id())
    with pytest.raises(TransientError) as info:
        backend.provision(ctx)
    assert not isinstance(info.value, CapacityError)
    instance_id = backend.provision(ctx)  # what the runner does after its backoff
    assert instance_id == backend.provision(ctx)  # and again: still the same instance
    assert [i["InstanceId"] for i in instances_of_run(aws_env, ctx.job.run_id)] == [instance_id]
    backend.cleanup(ctx, instance_id)
    assert instances_of_run(aws_env, ctx.job.run_id) == []


def test_next_attempt_gets_a_new_instance(aws_settings, aws_env):
    settings = aws_settings()
    backend = fast(Ec2Backend(settings))
    run_id = new_run_id()
    first = backend.provision(make_context(settings, run_id, attempt=1))
    second = backend.provision(make_context(settings, run_id, attempt=2))
    assert first != second
    backend.cleanup(make_context(settings, run_id, attempt=1), first)
    backend.cleanup(make_context(settings, run_id, attempt=2), second)
    assert instances_of_run(aws_env, run_id) == []


def test_permanent_errors_name_the_aws_error_and_a_fix(aws_settings, aws_env):
    ctx_settings = aws_settings(EC2_INSTANCE_AMI="ami-00000000deadbeef0")
    with pytest.raises(PermanentError) as info:
        fast(Ec2Backend(ctx_settings)).provision(make_context(ctx_settings, new_run_id()))
    assert "InvalidAMIID" in str(info.value) and "EC2_INSTANCE_AMI" in info.value.fix

    settings = aws_settings(FCEVAL_INSTANCE_PROFILE="no-such-profile")
    with pytest.raises(PermanentError) as info:
        fast(Ec2Backend(settings)).provision(make_context(settings, new_run_id()))
    assert "no-such-profile" in str(info.value) and "FCEVAL_INSTANCE_PROFILE" in info.value.fix

    settings = aws_settings()
    backend = fast(Ec2Backend(settings))

    def unauthorized(**_):
        raise client_error("UnauthorizedOperation", "You are not authorized to perform this operation.", "RunInstances")

    backend.aws.ec2.meta.events.register("before-call.ec2.RunInstances", unauthorized)
    with pytest.raises(PermanentError) as info:
        backend.provision(make_context(settings, new_run_id()))
    assert "UnauthorizedOperation" in str(info.value) and "--print-policy caller" in info.value.fix


def test_missing_expected_upload_fails_the_job(aws_settings, ssm_agent, aws_env):
    # The grade step "succeeds" without writing a report: exit code 0, but an expected upload is missing.
    settings = aws_settings(FCEVAL_GRADE_COMMAND="true")
    backend = fast(Ec2Backend(settings))
    ctx = make_context(settings, new_run_id())
    instance_id = backend.provision(ctx)
    try:
        backend.start(ctx, instance_id)
        observation = _wait_done(backend, ctx, instance_id)
        assert observation.exit_code == 0
        outcome = backend.collect(ctx, instance_id, observation)
    finally:
        backend.cleanup(ctx, instance_id)
    assert not outcome.succeeded
    assert outcome.error.startswith("expected upload s3://fceval-results/evals/grades/aide/hello/")
    assert outcome.error.endswith("_grading_report.json.gz is missing")
    assert outcome.artifacts == (f"s3://{RESULTS}/evals/runs/aide/hello/{ctx.job.run_id}.tar.gz",)


def test_cancel_terminates_and_the_job_is_then_gone(aws_settings, ssm_agent, aws_env):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = fast(Ec2Backend(settings))
    ctx = make_context(settings, new_run_id())
    instance_id = backend.provision(ctx)
    backend.start(ctx, instance_id)
    observation = backend.observe(ctx, instance_id)
    assert observation.phase == JobState.RUNNING and not observation.done
    socket = f"{settings.remote_work_dir}/{ctx.job.id}/tmux.sock"  # the job's own tmux server
    assert ssm_agent.tmux("-S", socket, "has-session", "-t", f"={ctx.job.id}").returncode == 0
    # The mirror reaches the job's tmux session through SSM.
    target = backend.tmux_target(dataclasses.replace(ctx.job, resource_id=instance_id))
    assert target.session == ctx.job.id
    assert target.tmux_args == ("-S", socket)
    assert target.transport.run(["tmux", *target.tmux_args, "has-session", "-t", f"={ctx.job.id}"]).ok
    backend.cancel(ctx, instance_id)
    backend.cancel(ctx, instance_id)  # idempotent
    with pytest.raises(ResourceGone):
        backend.observe(ctx, instance_id)
    backend.cleanup(ctx, instance_id)
    assert instances_of_run(aws_env, ctx.job.run_id) == []
    assert s3_keys(aws_env, STAGING, f"fceval-tui/staging/{ctx.job.run_id}/") == []


def test_list_resources_is_one_describe_per_refresh(aws_settings, aws_env):
    settings = aws_settings()
    backend = fast(Ec2Backend(settings))
    run_id = new_run_id()
    contexts = [make_context(settings, run_id, seq=n) for n in (1, 2, 3)]
    ids = [backend.provision(ctx) for ctx in contexts]
    calls = record_calls([backend.aws.ec2])
    listed = [r for r in backend.list_resources() if r.run_id == run_id]
    assert [op for _, op, _ in calls.calls] == ["DescribeInstances", "DescribeSecurityGroups"]
    assert sorted(r.id for r in listed if r.kind == "instance") == sorted(ids)
    one = next(r for r in listed if r.id == ids[0])
    assert one.job_id == contexts[0].job.id and one.expires_at is not None and one.started_at is not None
    assert one.cost_usd >= 0 and one.detail["type"] == settings.ec2_instance_type
    for resource in listed:
        backend.destroy_resource(resource)
    assert instances_of_run(aws_env, run_id) == []


def test_teardown_removes_the_security_group_too(aws_settings, aws_env):
    settings = aws_settings()
    backend = fast(Ec2Backend(settings))
    ctx = make_context(settings, new_run_id())
    backend.cleanup(ctx, backend.provision(ctx))
    for resource in backend.list_resources():
        backend.destroy_resource(resource)
    assert [r for r in backend.list_resources() if r.run_id == ctx.job.run_id] == []
    group = aws_env.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["fceval-tui-egress-only"]}]
    )["SecurityGroups"]
    assert group == []


def test_missing_credentials_are_a_user_error(aws_settings, monkeypatch, tmp_path):
    settings = aws_settings(AWS_REGION="eu-west-3")  # a region no other test built a Session for
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(UserError) as info:
        Ec2Backend(settings).check_ready()
    assert "no AWS credentials" in str(info.value) and "aws sso login" in info.value.fix


def _wait_done(backend, ctx, instance_id, limit: int = 400):
    import time

    for _ in range(limit):
        observation = backend.observe(ctx, instance_id)
        if observation.done:
            return observation
        time.sleep(0.05)
    raise AssertionError("the pipeline did not finish")


def _reject_new_profile(backend: Ec2Backend, times: int) -> list[int]:
    """RunInstances refuses a just-created instance profile for its first calls, as EC2 does while IAM
    propagates it; returns the list of refusals made."""
    refused: list[int] = []

    def refuse(**_):
        if len(refused) < times:
            refused.append(1)
            raise client_error(
                "InvalidParameterValue",
                "Value (fceval-test-profile) for parameter iamInstanceProfile.name is invalid. "
                "Invalid IAM Instance Profile name",
                "RunInstances",
            )

    backend.aws.ec2.meta.events.register("before-call.ec2.RunInstances", refuse)
    return refused


def test_a_just_created_instance_profile_is_waited_for(aws_settings, aws_env):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = fast(Ec2Backend(settings))
    refused = _reject_new_profile(backend, times=2)
    ctx = make_context(settings, new_run_id())
    instance = backend.provision(ctx)
    assert len(refused) == 2 and instance.startswith("i-")
    backend.cleanup(ctx, instance)


def test_an_instance_profile_that_never_appears_is_a_permanent_error_with_its_fix(aws_settings, aws_env):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = fast(Ec2Backend(settings))
    backend.profile_wait = 1.0
    _reject_new_profile(backend, times=100)
    with pytest.raises(PermanentError) as caught:
        backend.provision(make_context(settings, new_run_id()))
    assert "iamInstanceProfile" in str(caught.value) and caught.value.fix


def test_a_status_read_that_cannot_reach_aws_never_ends_the_job(aws_settings, ssm_agent, aws_env):
    """One observe meets an unreachable endpoint (the SSM call and the EC2 describe behind it): the
    job goes on and succeeds; only the consecutive-failure limit decides the compute is lost."""
    from botocore.exceptions import EndpointConnectionError

    settings = aws_settings(FCEVAL_BACKEND="ec2")
    backend = fast(Ec2Backend(settings))
    started = []
    failed = []

    def unreachable(model, **_):
        if started and not failed:  # the first status read after the start
            failed.append(model.name)
            raise EndpointConnectionError(endpoint_url="https://ssm.us-east-1.amazonaws.com")

    original_start = backend.start

    def start(ctx, resource_id):
        original_start(ctx, resource_id)
        started.append(resource_id)

    backend.start = start
    backend.aws.ssm.meta.events.register("before-call.ssm.SendCommand", unreachable)
    backend.aws.ec2.meta.events.register("before-call.ec2.DescribeInstances", unreachable)
    _, final = run_with_runner(settings, backend, [spec("hello")])
    assert failed and final["hello"].state == JobState.SUCCEEDED, final["hello"].error
    assert final["hello"].attempts == 1


def test_a_token_reused_with_other_parameters_after_a_resume_launches_with_a_fresh_token(aws_settings, aws_env):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = fast(Ec2Backend(settings))
    calls = record_calls([backend.aws.ec2])
    mismatched = []

    def mismatch(**_):
        if not mismatched:  # what EC2 answers when a resume recomputed the expiry tag
            mismatched.append(1)
            raise client_error(
                "IdempotentParameterMismatch",
                "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
                "RunInstances",
            )

    backend.aws.ec2.meta.events.register("before-call.ec2.RunInstances", mismatch)
    ctx = make_context(settings, new_run_id())
    instance = backend.provision(ctx)
    tokens = [params["ClientToken"] for params in calls.named("RunInstances")]
    assert instance.startswith("i-") and len(tokens) == 2 and tokens[0] != tokens[1]
    assert calls.named("DescribeInstances")[-1]["Filters"][0] == {"Name": "tag:fceval:job-id", "Values": [ctx.job.id]}
    backend.cleanup(ctx, instance)
