"""A staging bucket encrypted with a customer managed KMS key, at run time: the EC2 pipeline uploads as the
instance profile's role (ssm_double.InstanceRoleCredentials), and S3 refuses the write unless that role
may use the key (kms_double.KmsGate, as S3 does). Without the printed policy's KMS statement the job
fails as an upload failure whose message names the missing action and the fix; with the printed policy
as it is, the same run succeeds."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from botocore.awsrequest import AWSResponse

from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.domain.states import JobState
from fceval_tui.domain.triage import ErrorClass
from fceval_tui.services import audit
from tests.helpers.audit import EC2_TRUST
from tests.helpers.aws import RESULTS, run_with_runner, s3_keys, spec


def _kms_staging(world) -> tuple[str, str]:
    """A new staging bucket whose default encryption is SSE-KMS with a new customer key: (bucket, key ARN)."""
    bucket = f"fceval-kms-{secrets.token_hex(4)}"
    world.client("s3").create_bucket(Bucket=bucket)
    key = world.client("kms").create_key(Description="fceval staging")["KeyMetadata"]["Arn"]
    rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    world.client("s3").put_bucket_encryption(
        Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]}
    )
    return bucket, key


def _instance_role(world) -> str:
    """A role for EC2 and its instance profile, named alike; the role has no policy yet."""
    name = f"fceval-kms-role-{secrets.token_hex(4)}"
    iam = world.client("iam")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    iam.create_instance_profile(InstanceProfileName=name)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return name


def _is_kms(statement: dict) -> bool:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    return any(action.startswith("kms:") for action in actions)


def test_a_role_without_the_kms_statement_fails_its_upload_and_the_printed_policy_fixes_it(
    aws_settings, ssm_agent, aws_env
):
    bucket, key = _kms_staging(aws_env)
    role = _instance_role(aws_env)
    settings = aws_settings(FC_EVAL_S3_BUCKET=bucket, FCEVAL_INSTANCE_PROFILE=role, FCEVAL_BACKEND="ec2")
    keys, _ = audit.read_bucket_keys(settings, "ec2")
    printed = json.loads(audit.print_policy(settings, "ec2", "instance", keys)[0])
    assert any(_is_kms(s) for s in printed["Statement"]), printed
    without_kms = dict(printed, Statement=[s for s in printed["Statement"] if not _is_kms(s)])
    iam = aws_env.client("iam")
    iam.put_role_policy(RoleName=role, PolicyName="fceval", PolicyDocument=json.dumps(without_kms))

    def backend() -> Ec2Backend:
        made = Ec2Backend(settings)
        made.poll_interval = 0.05
        return made

    _, jobs = run_with_runner(settings, backend(), [spec("hello")])
    job = jobs["hello"]
    assert job.state == JobState.FAILED, job.error
    assert job.error_class == ErrorClass.UPLOAD
    assert "kms:GenerateDataKey" in job.error and key in job.error, job.error
    assert f"assumed-role/{role}/i-" in job.error  # the instance's role asked, as on AWS
    assert "fceval-tui audit --print-policy instance" in job.error
    assert secrets_free(job.error)
    assert any(action == "kms:GenerateDataKey" for _, action in aws_env.kms.refused)

    iam.put_role_policy(RoleName=role, PolicyName="fceval", PolicyDocument=json.dumps(printed))
    run, jobs = run_with_runner(settings, backend(), [spec("hello")])
    job = jobs["hello"]
    assert job.state == JobState.SUCCEEDED, job.error
    assert s3_keys(aws_env, RESULTS, f"evals/runs/aide/hello/{run.id}") == [f"evals/runs/aide/hello/{run.id}.tar.gz"]


def secrets_free(error: str) -> bool:
    """The inbox's URL (its token keeps other jobs out) is not in the verdict."""
    return "fceval-tui/inbox/" not in error and "/inbox/" not in error


def test_the_gate_asks_generate_data_key_to_write_and_decrypt_to_read(aws_env):
    """The double itself: a role allowed only kms:GenerateDataKey writes, and cannot read back."""
    import boto3
    from botocore.exceptions import ClientError

    bucket, key = _kms_staging(aws_env)
    role = _instance_role(aws_env)
    only_generate = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "kms:GenerateDataKey",
                "Resource": key,
                "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
            },
        ],
    }
    aws_env.client("iam").put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(only_generate))
    arn = aws_env.client("iam").get_role(RoleName=role)["Role"]["Arn"]
    found = aws_env.client("sts").assume_role(RoleArn=arn, RoleSessionName="probe")["Credentials"]
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=aws_env.endpoint,
        aws_access_key_id=found["AccessKeyId"],
        aws_secret_access_key=found["SecretAccessKey"],
        aws_session_token=found["SessionToken"],
    )
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    s3.head_object(Bucket=bucket, Key="a")  # metadata only: no KMS call
    try:
        s3.get_object(Bucket=bucket, Key="a")
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied"
        assert f"not authorized to perform: kms:Decrypt on resource: {key}" in exc.response["Error"]["Message"]
    else:
        raise AssertionError("GetObject of an SSE-KMS object was allowed without kms:Decrypt")
    # A key IAM does not know (the tests' own, standing for the account's root) passes.
    assert aws_env.client("s3").get_object(Bucket=bucket, Key="a")["Body"].read() == b"x"


ECS_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def _task_role_without_kms(world, settings, backend: str) -> str:
    """A role for ECS tasks (and Batch jobs) with the printed instance policy minus its KMS statement: its ARN."""
    name = f"fceval-kms-task-{secrets.token_hex(4)}"
    iam = world.client("iam")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(ECS_TRUST))["Role"]["Arn"]
    keys, _ = audit.read_bucket_keys(settings, backend)
    printed = json.loads(audit.print_policy(settings, backend, "instance", keys)[0])
    assert any(_is_kms(s) for s in printed["Statement"]), printed
    without_kms = dict(printed, Statement=[s for s in printed["Statement"] if not _is_kms(s)])
    iam.put_role_policy(RoleName=name, PolicyName="fceval", PolicyDocument=json.dumps(without_kms))
    return role


def _assert_refused_upload(job, key: str, role_arn: str) -> None:
    assert job.state == JobState.FAILED, job.error
    assert job.error_class == ErrorClass.UPLOAD
    assert job.error.startswith("expected upload s3://"), job.error
    assert "kms:GenerateDataKey" in job.error and key in job.error, job.error
    assert f"assumed-role/{role_arn.rsplit('/', 1)[-1]}/" in job.error  # the task's role asked, as on AWS
    assert "give the compute role kms:GenerateDataKey and kms:Decrypt" in job.error
    assert "fceval-tui audit --print-policy instance" in job.error
    assert secrets_free(job.error)


def test_an_ecs_task_whose_upload_is_refused_names_the_refusal_and_the_fix_from_its_log(
    aws_settings, ecs_exec, aws_env
):
    import os
    import shutil

    from fceval_tui.backends.ecs import EcsBackend
    from tests.helpers.aws import QUICK, RUN
    from tests.helpers.ecs_double import TASK_IMAGE, shell_image

    # The task image with the real aws CLI (signing as the task role, so S3 asks KMS for that role).
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != str(ecs_exec.bin_dir))
    ecs_exec.images[TASK_IMAGE] = shell_image(user="", tools=Path(shutil.which("aws", path=path)).parent)
    bucket, key = _kms_staging(aws_env)
    group = f"/ecs/fceval-kms-{secrets.token_hex(4)}"
    aws_env.client("logs").create_log_group(logGroupName=group)
    base = aws_settings(FC_EVAL_S3_BUCKET=bucket, FCEVAL_BACKEND="ecs")
    role = _task_role_without_kms(aws_env, base, "ecs")
    settings = aws_settings(
        FC_EVAL_S3_BUCKET=bucket,
        FCEVAL_BACKEND="ecs",
        FCEVAL_RUN_COMMAND=f"{RUN} --seconds {QUICK}",  # the container has only the definition's environment
        FCEVAL_ECS_TASK_ROLE_ARN=role,
        FCEVAL_ECS_EXECUTION_ROLE_ARN=role.replace(role.rsplit("/", 1)[-1], "ecsTaskExecutionRole"),
        FCEVAL_ECS_LOG_GROUP=group,
    )
    backend = EcsBackend(settings)
    backend.poll_interval = 0.05
    _, jobs = run_with_runner(settings, backend, [spec("hello")])
    _assert_refused_upload(jobs["hello"], key, role)
    assert any(action == "kms:GenerateDataKey" for _, action in aws_env.kms.refused)
    # The caller's printed policy lets it read that group's streams, and only with a group set.
    caller = json.loads(audit.print_policy(settings, "ecs", "caller")[0])["Statement"]
    reads = [s["Resource"] for s in caller if "logs:GetLogEvents" in s["Action"]]
    assert reads == [f"arn:aws:logs:us-east-1:*:log-group:{group}:log-stream:*"], reads
    assert "logs:GetLogEvents" not in audit.print_policy(base, "ecs", "caller")[0]


def _batch_definition_with_role(world, role: str) -> str:
    name = f"fceval-kms-{secrets.token_hex(4)}"
    world.client("batch").register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 512, "command": ["true"], "jobRoleArn": role},
    )
    return name


def _refused_batch_run(aws_settings, aws_env):
    """A Batch job whose job role may not use the bucket's key: (settings, backend, key, role)."""
    from fceval_tui.backends.batch import BatchBackend

    bucket, key = _kms_staging(aws_env)
    base = aws_settings(FC_EVAL_S3_BUCKET=bucket, FCEVAL_BACKEND="batch")
    role = _task_role_without_kms(aws_env, base, "batch")
    settings = aws_settings(
        FC_EVAL_S3_BUCKET=bucket,
        FCEVAL_BACKEND="batch",
        FCEVAL_BATCH_JOB_DEFINITION=_batch_definition_with_role(aws_env, role),
    )
    backend = BatchBackend(settings)
    backend.poll_interval = 0.05
    backend._board.max_age = 0.0
    return settings, backend, key, role


def test_a_batch_job_whose_upload_is_refused_names_the_refusal_and_the_fix_from_its_log(
    aws_settings, batch_compute, aws_env
):
    settings, backend, key, role = _refused_batch_run(aws_settings, aws_env)
    _, jobs = run_with_runner(settings, backend, [spec("hello")])
    _assert_refused_upload(jobs["hello"], key, role)


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDeniedException", "ResourceNotFoundException"])
def test_a_log_read_that_fails_leaves_the_plain_missing_upload_verdict(aws_settings, batch_compute, aws_env, code):
    settings, backend, _, _ = _refused_batch_run(aws_settings, aws_env)
    refused = []

    def refuse(**_: object):
        refused.append(code)
        return AWSResponse("https://logs", 400, {}, None), {"Error": {"Code": code, "Message": "refused"}}

    backend.aws.logs.meta.events.register("before-call.logs.GetLogEvents", refuse)
    _, jobs = run_with_runner(settings, backend, [spec("hello")])
    job = jobs["hello"]
    assert job.state == JobState.FAILED and job.error_class == ErrorClass.UPLOAD, job.error
    assert refused == [code]  # read once, not retried into a loop
    assert job.error.startswith("expected upload s3://") and job.error.endswith(" is missing"), job.error
