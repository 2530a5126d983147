"""The preflight audit on the shared moto server: a complete EC2 setup audits without error, and
each broken setup is flagged by exactly the finding that names it, with severity error and a fix."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from fceval_tui.errors import UserError
from fceval_tui.services import audit, policy
from fceval_tui.services.audit_checks import Severity
from fceval_tui.services.policy_document import sample_resource
from tests.helpers.audit import (
    ACCOUNT,
    AllowAll,
    answer_call,
    denied_simulator,
    errors,
    fail_call,
    only_error,
    run,
    user_with_policy,
)
from tests.helpers.cli import run_cli

CALLER = f"arn:aws:iam::{ACCOUNT}:user/moto"  # who moto says the default test credentials are


def test_complete_setup_audits_without_error_and_reports_progress(audit_world):
    events = []
    settings = audit_world.settings()
    ctx = audit.make_context(settings, "ec2", simulator=AllowAll())
    report = audit.run_audit(settings, "ec2", on_progress=events.append, context=ctx)
    assert errors(report) == {}
    ok = {f.id for f in report.findings if f.severity is Severity.OK}
    assert {
        "identity.caller",
        "s3.staging.exists",
        "s3.staging.roundtrip",
        "iam.instance-profile",
        "iam.role",
        "iam.role.trust",
        "iam.role.ssm",
        "iam.role.s3",
        "iam.caller.actions",
        "iam.caller.passrole",
        "network.route",
        "ec2.ami",
        "ec2.instance-type",
    } <= ok
    # moto has no Service Quotas for EC2: the audit says it could not look, never "ok".
    quota = next(f for f in report.findings if f.id == "quota.vcpu")
    assert quota.severity is Severity.UNKNOWN and "could not be read" in quota.summary
    # Live progress: every check reported as started, then finished with exactly its findings.
    checks = audit.list_checks("ec2")
    started = [e.check.id for e in events if not e.finished]
    finished = {e.check.id: e.findings for e in events if e.finished}
    assert sorted(started) == sorted(c.id for c in checks) == sorted(finished)
    assert tuple(f for c in checks for f in finished[c.id]) == report.findings
    # The round trip left nothing behind.
    listed = audit_world.client("s3").list_objects_v2(Bucket=audit_world.bucket).get("Contents", [])
    assert listed == []


def test_read_only_audit_writes_nothing_and_says_so(audit_world):
    settings = audit_world.settings()
    ctx = audit.make_context(settings, "ec2", simulator=AllowAll(), read_only=True)
    calls = []
    ctx.client("s3").meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    report = audit.run_audit(settings, "ec2", context=ctx)
    assert "GetBucketLocation" in calls  # the read-only checks still ran
    assert not {"PutObject", "GetObject", "DeleteObject"} & set(calls), calls
    finding = next(f for f in report.findings if f.id == "s3.staging.roundtrip")
    assert finding.severity is Severity.UNKNOWN and "write probes skipped" in finding.summary
    assert "read-only" in finding.summary and errors(report) == {}


def test_read_only_flag_reaches_the_context(settings_factory, monkeypatch):
    seen = []
    real = audit.make_context
    monkeypatch.setattr(audit, "make_context", lambda *a, **kw: seen.append(kw.get("read_only")) or real(*a, **kw))
    report = audit.run_audit(settings_factory(), "local", read_only=True)
    assert seen == [True] and report.findings


def test_no_bucket(audit_world):
    audit_world.client("s3").delete_bucket(Bucket=audit_world.bucket)
    finding = only_error(run(audit_world.settings()), "s3.staging.exists")
    assert f"aws s3 mb s3://{audit_world.bucket}" in finding.fix


def test_no_staging_bucket_configured(audit_world):
    report = run(audit_world.settings(FC_EVAL_S3_BUCKET=""))
    assert "s3.staging.exists" in errors(report)
    assert "FC_EVAL_S3_BUCKET" in errors(report)["s3.staging.exists"].fix


def test_bucket_without_write(audit_world):
    # What a bucket policy denying writes looks like to the caller (moto does not enforce policies).
    def deny_writes(ctx):
        fail_call(
            ctx.client("s3"),
            "PutObject",
            "AccessDenied",
            "Access Denied",
            when=lambda params: params["Bucket"] == audit_world.bucket,
        )

    finding = only_error(run(audit_world.settings(), prepare=deny_writes), "s3.staging.roundtrip")
    assert finding.summary.startswith("cannot write") and "AccessDenied" in finding.detail
    assert "s3:PutObject" in finding.fix and f"arn:aws:s3:::{audit_world.bucket}/fceval-tui/*" in finding.fix


def test_no_role(audit_world):
    iam = audit_world.client("iam")
    iam.remove_role_from_instance_profile(InstanceProfileName=audit_world.profile, RoleName=audit_world.role)
    iam.detach_role_policy(RoleName=audit_world.role, PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    iam.delete_role_policy(RoleName=audit_world.role, PolicyName="staging")
    iam.delete_role(RoleName=audit_world.role)
    report = run(audit_world.settings())
    finding = only_error(report, "iam.role")
    assert "holds no role" in finding.summary and "aws iam create-role" in finding.fix
    unknown = {f.id for f in report.findings if f.severity is Severity.UNKNOWN}
    assert {"iam.role.trust", "iam.role.ssm", "iam.role.s3", "iam.caller.passrole"} <= unknown


def test_role_without_the_ssm_policy(audit_world):
    audit_world.client("iam").detach_role_policy(
        RoleName=audit_world.role, PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    )
    finding = only_error(run(audit_world.settings()), "iam.role.ssm")
    assert finding.fix == (
        f"aws iam attach-role-policy --role-name {audit_world.role} "
        "--policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    )


def test_no_instance_profile(audit_world):
    iam = audit_world.client("iam")
    iam.remove_role_from_instance_profile(InstanceProfileName=audit_world.profile, RoleName=audit_world.role)
    iam.delete_instance_profile(InstanceProfileName=audit_world.profile)
    finding = only_error(run(audit_world.settings()), "iam.instance-profile")
    assert "does not exist" in finding.summary
    assert f"aws iam create-instance-profile --instance-profile-name {audit_world.profile}" in finding.fix


def test_role_not_trusting_ec2(audit_world):
    audit_world.client("iam").update_assume_role_policy(
        RoleName=audit_world.role,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    finding = only_error(run(audit_world.settings()), "iam.role.trust")
    assert "update-assume-role-policy" in finding.fix and "ec2.amazonaws.com" in finding.fix


def _stub_simulation(settings, role_arn: str, decide) -> tuple:
    """A real IAM client whose SimulatePrincipalPolicy answers are queued in the order the audit asks,
    with the exact parameters it must send (Stubber fails the call otherwise)."""
    client = boto3.client("iam", region_name="us-east-1")
    stubber = Stubber(client)
    statements = policy.caller_statements("ec2", settings, [role_arn], with_audit=False)
    for statement in statements:
        for resource in statement.resources:
            sample = sample_resource(resource)
            expected = {"PolicySourceArn": CALLER, "ActionNames": list(statement.actions), "ResourceArns": [sample]}
            if "iam:PassRole" in statement.actions:
                expected["ContextEntries"] = [
                    {
                        "ContextKeyName": "iam:PassedToService",
                        "ContextKeyValues": ["ec2.amazonaws.com"],
                        "ContextKeyType": "string",
                    }
                ]
            elif statement.context_entries():
                expected["ContextEntries"] = statement.context_entries()
            results = [
                {"EvalActionName": a, "EvalResourceName": sample, "EvalDecision": decide(a)} for a in statement.actions
            ]
            stubber.add_response(
                "simulate_principal_policy", {"EvaluationResults": results, "IsTruncated": False}, expected
            )
    stubber.activate()
    return client, stubber


def test_caller_denied_pass_role(audit_world):
    settings = audit_world.settings()
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{audit_world.role}"
    client, stubber = _stub_simulation(
        settings, role_arn, lambda action: "implicitDeny" if action == "iam:PassRole" else "allowed"
    )
    report = run(settings, simulator=client)
    stubber.assert_no_pending_responses()
    finding = only_error(report, "iam.caller.passrole")
    assert f"iam:PassRole on {role_arn}: not allowed" in finding.detail
    snippet = json.loads(finding.fix.split("add to your identity's policy: ", 1)[1].split(" (the whole policy", 1)[0])
    assert snippet["Statement"] == [
        {
            "Sid": "FcevalTuiEc2PassRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": role_arn,
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        }
    ]
    assert "--print-policy caller" in finding.fix


def test_printed_caller_policy_is_enough_when_simulation_is_denied(audit_world, monkeypatch):
    settings = audit_world.settings()
    printed, _notes = audit.print_policy(settings, "ec2", "caller")
    user_with_policy(audit_world, monkeypatch, json.loads(printed))
    report = run(settings, simulator=denied_simulator())
    found = {f.id: f for f in report.findings}
    for finding_id in ("iam.caller.actions", "iam.caller.passrole"):
        assert found[finding_id].severity is Severity.OK, found[finding_id]
        assert "iam:SimulatePrincipalPolicy was denied" in found[finding_id].detail
        assert "evaluated your attached and inline policies" in found[finding_id].detail
    assert errors(report) == {}


def test_missing_pass_role_found_from_policies_when_simulation_is_denied(audit_world, monkeypatch):
    settings = audit_world.settings()
    printed = json.loads(audit.print_policy(settings, "ec2", "caller")[0])
    printed["Statement"] = [s for s in printed["Statement"] if s["Sid"] != "FcevalTuiEc2PassRole"]
    user_with_policy(audit_world, monkeypatch, printed)
    finding = only_error(run(settings, simulator=denied_simulator()), "iam.caller.passrole")
    assert "evaluated your attached and inline policies" in finding.detail


def test_private_subnet_needs_endpoints(audit_world):
    network = audit_world.network
    settings = audit_world.settings(FCEVAL_EC2_SUBNET_ID=network.private_subnet)
    finding = only_error(run(settings), "network.route")
    assert "no default route" in finding.detail
    for service in ("ssm", "ssmmessages", "ec2messages"):
        assert f"--service-name com.amazonaws.us-east-1.{service} --subnet-ids {network.private_subnet}" in finding.fix
    assert f"com.amazonaws.us-east-1.s3 --route-table-ids {network.private_route_table}" in finding.fix


def test_private_subnet_with_endpoints_is_fine(audit_world):
    network = audit_world.network
    ec2 = audit_world.client("ec2")
    created = [
        ec2.create_vpc_endpoint(
            VpcId=network.vpc,
            VpcEndpointType="Gateway",
            ServiceName="com.amazonaws.us-east-1.s3",
            RouteTableIds=[network.private_route_table],
        )["VpcEndpoint"]["VpcEndpointId"]
    ]
    for service in ("ssm", "ssmmessages", "ec2messages"):
        created.append(
            ec2.create_vpc_endpoint(
                VpcId=network.vpc,
                VpcEndpointType="Interface",
                ServiceName=f"com.amazonaws.us-east-1.{service}",
                SubnetIds=[network.private_subnet],
                PrivateDnsEnabled=True,
            )["VpcEndpoint"]["VpcEndpointId"]
        )
    try:
        report = run(audit_world.settings(FCEVAL_EC2_SUBNET_ID=network.private_subnet))
    finally:
        ec2.delete_vpc_endpoints(VpcEndpointIds=created)  # the VPC is shared by the session
    route = next(f for f in report.findings if f.id == "network.route")
    assert route.severity is Severity.OK and "VPC endpoints" in route.detail


def test_many_private_subnets_get_one_command_per_route_table_and_service(audit_world):
    """Six subnets in three zones sharing two route tables: the fix is grouped, not repeated per subnet."""
    from tests.helpers.aws import ECS_CLUSTER

    ec2 = audit_world.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.88.0.0/16")["Vpc"]["VpcId"]
    tables = [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(2)]
    subnets, zones = [], {}
    for i in range(6):
        zone = f"us-east-1{'abc'[i % 3]}"
        sid = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.88.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        ec2.associate_route_table(RouteTableId=tables[i // 3], SubnetId=sid)
        subnets.append(sid)
        zones.setdefault(zone, sid)
    settings = audit_world.settings(
        FCEVAL_BACKEND="ecs", FCEVAL_ECS_CLUSTER=ECS_CLUSTER, FCEVAL_ECS_SUBNETS=",".join(subnets)
    )
    finding = next(f for f in run(settings, backend="ecs").findings if f.id == "network.route")
    assert finding.severity is Severity.ERROR and finding.summary.startswith("6 of 6 subnets")
    assert finding.detail.count("no default route") == 1 and all(s in finding.detail for s in subnets)
    fix = finding.fix
    for table in tables:
        assert fix.count(f"create-route --route-table-id {table} ") == 1
    assert fix.count("aws ec2 create-route") == 2
    assert fix.count("aws ec2 create-vpc-endpoint") == 5  # ssmmessages, s3, ecr.api, ecr.dkr, logs
    assert f"--service-name com.amazonaws.us-east-1.s3 --route-table-ids {' '.join(tables)}" in fix
    one_per_zone = " ".join(zones.values())  # an interface endpoint takes one subnet per zone
    for service in ("ssmmessages", "ecr.api", "ecr.dkr", "logs"):
        assert fix.count(f"com.amazonaws.us-east-1.{service} ") == 1
        assert f"--service-name com.amazonaws.us-east-1.{service} --subnet-ids {one_per_zone} " in fix


@pytest.mark.parametrize(
    ("quota", "severity", "words"),
    [
        (100.0, Severity.OK, "covers 8"),
        (4.0, Severity.WARNING, "fits 2 of 4"),
        (1.0, Severity.ERROR, "below one job"),
    ],
)
def test_vcpu_quota_against_concurrency(audit_world, quota, severity, words):
    def quota_reply(ctx):  # Service Quotas for EC2 is not in moto
        answer_call(
            ctx.client("service-quotas"),
            "GetServiceQuota",
            {"Quota": {"QuotaName": "Running On-Demand Standard instances", "Value": quota}},
        )

    report = run(audit_world.settings(FCEVAL_CONCURRENT="4"), prepare=quota_reply)  # c5ad.large: 2 vCPUs
    finding = next(f for f in report.findings if f.id == "quota.vcpu")
    assert finding.severity is severity and words in finding.summary
    if severity is not Severity.OK:
        assert "request-service-quota-increase --service-code ec2 --quota-code L-1216C47A" in finding.fix


def test_missing_ami(audit_world):
    finding = only_error(run(audit_world.settings(EC2_INSTANCE_AMI="ami-0000000000000dead")), "ec2.ami")
    assert "does not exist" in finding.summary


def test_no_credentials_is_an_error_and_blocks_launch(audit_world, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = audit_world.settings()
    report = run(settings)
    assert errors(report)["identity.caller"].summary == "no usable AWS credentials"
    assert not {f.id for f in report.findings if f.severity is Severity.OK} & {"s3.staging.exists", "iam.role"}
    with pytest.raises(UserError) as caught:
        audit.require_no_errors(settings, "ec2")
    assert "identity.caller" in caught.value.problem and "--skip-preflight" in caught.value.fix


def test_launch_refuses_while_an_error_stands(audit_world):
    from fceval_tui.services import launching

    audit_world.client("s3").delete_bucket(Bucket=audit_world.bucket)
    settings = audit_world.settings()
    with pytest.raises(UserError) as caught:
        launching.check_can_launch(settings, skip_preflight=False)
    assert "s3.staging.exists" in caught.value.problem
    assert "fceval-tui audit --backend ec2" in caught.value.fix and "--skip-preflight" in caught.value.fix
    launching.check_can_launch(settings, skip_preflight=True)  # the override goes through


def test_cli_json_and_exit_codes(audit_world):
    env = {
        "FC_EVAL_S3_BUCKET": f"{audit_world.bucket}-missing",
        "FCEVAL_INSTANCE_PROFILE": audit_world.profile,
        "FCEVAL_EC2_SUBNET_ID": audit_world.network.public_subnet,
    }
    state = audit_world.tmp_path / "cli-state"
    res = run_cli("audit", "--backend", "ec2", "--json", state_dir=state, env=env)
    assert res.code == 1, res.err
    findings = json.loads(res.out)
    assert all(list(f) == ["id", "area", "severity", "summary", "detail", "fix"] for f in findings)
    assert {f["id"] for f in findings if f["severity"] == "error"} >= {"s3.staging.exists"}
    human = run_cli("audit", "--backend", "ec2", state_dir=state, env=env)
    assert human.code == 1 and "ERROR" in human.out and "fix: create it: `aws s3 mb" in human.out
    local = run_cli("audit", "--backend", "local", "--json", state_dir=state)
    assert local.code == 0, local.err
    assert [f["id"] for f in json.loads(local.out)] == ["local.tmux", "local.state-dir"]


def _ecs_task_role(audit_world, actions: list[str]) -> str:
    iam = audit_world.client("iam")
    name = f"{audit_world.role}-task"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ecs-tasks.amazonaws.com"}}
        ],
    }
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="exec",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
        ),
    )
    return arn


def _ecs_settings(audit_world, role_arn: str):
    from tests.helpers.aws import ECS_CLUSTER

    return audit_world.settings(
        FCEVAL_BACKEND="ecs",
        FCEVAL_ECS_CLUSTER=ECS_CLUSTER,
        FCEVAL_ECS_SUBNETS=audit_world.network.public_subnet,
        FCEVAL_ECS_ASSIGN_PUBLIC_IP="true",
        FCEVAL_ECS_TASK_ROLE_ARN=role_arn,
        FCEVAL_ECS_IMAGE="busybox",
    )


def test_ecs_setup_and_a_task_role_without_ecs_exec(audit_world):
    # The task role uploads into the inbox (s3:PutObject) and serves ECS Exec (ssmmessages).
    good = _ecs_task_role(audit_world, ["ssmmessages:*", "s3:PutObject"])
    report = run(_ecs_settings(audit_world, good), backend="ecs")
    assert errors(report) == {}
    ok = {f.id for f in report.findings if f.severity is Severity.OK}
    assert {
        "ecs.cluster",
        "ecs.platform",
        "ecs.task-role",
        "ecs.task-role.trust",
        "ecs.task-role.exec",
        "ecs.task-role.s3",
        "network.route",
        "iam.caller.passrole",
    } <= ok
    audit_world.client("iam").put_role_policy(
        RoleName=good.rsplit("/", 1)[1],
        PolicyName="exec",
        PolicyDocument=(
            json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["ssmmessages:CreateControlChannel", "s3:PutObject"],
                            "Resource": "*",
                        }
                    ],
                }
            )
        ),
    )
    finding = only_error(run(_ecs_settings(audit_world, good), backend="ecs"), "ecs.task-role.exec")
    assert "ssmmessages:OpenDataChannel" in finding.detail and "aws iam put-role-policy" in finding.fix


def test_the_ecs_log_group_must_exist_when_set(audit_world):
    """Fargate refuses to start a task whose awslogs group is missing: the audit says so first."""
    role = _ecs_task_role(audit_world, ["ssmmessages:*", "s3:PutObject"])
    group = f"/fceval/{audit_world.bucket}"
    settings = _ecs_settings(audit_world, role).replace(ecs_log_group=group, ecs_execution_role_arn=role)
    finding = only_error(run(settings, backend="ecs"), "ecs.log-group")
    assert group in finding.summary and finding.fix == f"aws logs create-log-group --log-group-name {group}"
    audit_world.client("logs").create_log_group(logGroupName=group + "-other")  # a prefix match is not it
    only_error(run(settings, backend="ecs"), "ecs.log-group")
    audit_world.client("logs").create_log_group(logGroupName=group)
    report = run(settings, backend="ecs")
    assert "ecs.log-group" not in errors(report)
    assert "ecs.log-group" in {f.id for f in report.findings if f.severity is Severity.OK}


def test_batch_queue_must_be_valid_and_enabled(audit_world):
    from tests.helpers.aws import BATCH_DEFINITION

    batch = audit_world.client("batch")
    env = batch.describe_compute_environments()["computeEnvironments"][0]["computeEnvironmentArn"]
    queue = f"{audit_world.bucket}-queue"
    batch.create_job_queue(
        jobQueueName=queue,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
    )
    settings = audit_world.settings(
        FCEVAL_BACKEND="batch", FCEVAL_BATCH_QUEUE=queue, FCEVAL_BATCH_JOB_DEFINITION=BATCH_DEFINITION
    )
    report = run(settings, backend="batch")
    assert errors(report) == {}
    assert {f.id: f.severity for f in report.findings}["batch.queue"] is Severity.OK
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    finding = only_error(run(settings, backend="batch"), "batch.queue")
    assert "DISABLED" in finding.summary
    assert finding.fix == f"aws batch update-job-queue --job-queue {queue} --state ENABLED"
