"""Teardown works from what exists, not from today's settings (issue 10, item 9), on the shared moto
server: a run is torn down in the region and bucket it was launched with; `--orphans` after a lost
ledger looks at every cloud backend; `--run` takes a run id the ledger never saw; staged and inbox
objects of another console's live attempt are left alone until their expiry; ECS task definitions
are found by tag and deleted, not only deregistered."""

from __future__ import annotations

import dataclasses
import json
import secrets
from datetime import timedelta

import boto3
import pytest

from fceval_tui.backends.aws_constants import INBOX_PREFIX, MANAGED_BY, MANAGED_BY_TAG, RUN_ID_TAG
from fceval_tui.backends.batch import BatchBackend
from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.domain.models import utcnow
from fceval_tui.domain.states import JobState
from fceval_tui.ledger import Ledger
from fceval_tui.services import teardown
from tests.helpers.aws import ECS_CLUSTER, PROFILE, RESULTS, STAGING, make_context, new_run_id, spec
from tests.helpers.cli import run_cli
from tests.teardown.test_teardown_aws import instance_states, staging_keys

ELSEWHERE = "eu-west-1"


def client(world, service: str, region: str):
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=world.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def expired(ctx):
    """The same attempt, launched long enough ago that its TTL has passed."""
    return dataclasses.replace(ctx, expires_at=utcnow() - timedelta(hours=1))


def test_a_run_is_torn_down_in_the_region_and_bucket_it_was_launched_with(aws_env, aws_settings):
    launched = aws_settings(FCEVAL_BACKEND="ec2", AWS_REGION=ELSEWHERE, EC2_INSTANCE_TYPE="t3.medium")
    today = aws_settings(FCEVAL_BACKEND="ec2", FC_EVAL_S3_BUCKET=RESULTS)  # us-east-1, another bucket
    ledger = Ledger.open(today.state_dir)
    run, (job,) = ledger.create_run("ec2", 1, [spec("far")], settings=launched.to_json())
    instance = Ec2Backend(launched).provision(make_context(launched, run.id, task_id="far"))
    ledger.transition(job.id, JobState.PROVISIONING, resource_id=instance, attempts=1)
    aws_env.client("s3").put_object(Bucket=STAGING, Key=f"fceval-tui/staging/{run.id}/{job.id}/a1/x", Body=b"1")

    plan = teardown.make_plan(today, ledger, teardown.Scope.run(run.id))
    ids = {item.resource.id for item in plan.items}
    assert instance in ids, f"the run's instance in {ELSEWHERE} is not in the plan: {sorted(ids)}"
    assert f"s3://{STAGING}/fceval-tui/staging/{run.id}/" in ids
    assert f"ec2 ({ELSEWHERE})" in plan.listing.listed
    result = teardown.execute(today, ledger, plan, settle_seconds=0)
    assert result.clean, result.to_json()
    assert instance_states(_Region(aws_env, ELSEWHERE), [instance])[instance] in ("shutting-down", "terminated")
    assert staging_keys(aws_env, run.id) == []
    assert ledger.get_job(job.id).state is JobState.CANCELLED
    ledger.close()


@dataclasses.dataclass
class _Region:
    """A MotoWorld whose clients talk to another region."""

    world: object
    region: str

    def client(self, service: str):
        return client(self.world, service, self.region)


def _ecs_task(world, run_id: str, expires_at: str, family: str | None = None) -> tuple[str, str]:
    """A task and its definition as the ECS backend makes them (tagged, started by the console)."""
    ecs = world.client("ecs")
    tags = [
        {"key": MANAGED_BY_TAG, "value": MANAGED_BY},
        {"key": RUN_ID_TAG, "value": run_id},
        {"key": "fceval:job-id", "value": f"{run_id}-001"},
        {"key": "fceval:expires-at", "value": expires_at},
    ]
    definition = ecs.register_task_definition(
        family=family or f"fceval-tui-{run_id}-001-a1",
        containerDefinitions=[{"name": "main", "image": "busybox", "memory": 512, "command": ["sleep", "60"]}],
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        tags=tags,
    )["taskDefinition"]["taskDefinitionArn"]
    task = ecs.run_task(
        cluster=ECS_CLUSTER,
        taskDefinition=definition,
        launchType="FARGATE",
        startedBy="fceval-tui",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [world.subnet], "securityGroups": [world.security_group]}
        },
        tags=tags,
    )["tasks"][0]["taskArn"]
    return task, definition


def test_orphans_after_a_lost_ledger_look_at_every_cloud_backend(aws_env, aws_settings, ecs_exec, batch_compute):
    # This console is set up for the local backend; its ledger never saw the run (it was lost).
    settings = aws_settings(FCEVAL_BACKEND=None, FCEVAL_RUN_COMMAND="sleep 30", FCEVAL_GRADE_COMMAND="")
    assert settings.backend == "local"
    ledger = Ledger.open(settings.state_dir)
    lost = new_run_id()
    instance = Ec2Backend(settings).provision(expired(make_context(settings, lost, seq=1)))
    task, definition = _ecs_task(aws_env, lost, "2020-01-01T00:00:00.000Z")
    batch_job = BatchBackend(settings).provision(expired(make_context(settings, lost, seq=3, backend="batch")))

    plan = teardown.make_plan(settings, ledger, teardown.Scope.orphans())
    ours = {item.resource.id: item for item in plan.items if item.resource.run_id == lost}
    assert {instance, task, definition, batch_job} <= set(ours), f"found only {sorted(ours)}"
    assert {"ec2", "ecs", "batch", "s3"} <= set(plan.listing.listed)
    assert all("not in this ledger" in ours[i].reason for i in (instance, task, definition, batch_job))
    result = teardown.execute(settings, ledger, plan, settle_seconds=0)
    assert result.clean, result.to_json()
    assert instance_states(aws_env, [instance])[instance] in ("shutting-down", "terminated")
    again = teardown.make_plan(settings, ledger, teardown.Scope.orphans())
    assert [i.resource.id for i in again.items if i.resource.run_id == lost] == []

    # A backend whose settings are incomplete is skipped with a note, not an error.
    partial = aws_settings(FCEVAL_BACKEND=None, FCEVAL_BATCH_QUEUE="", FCEVAL_ECS_CLUSTER="")
    plan = teardown.make_plan(partial, ledger, teardown.Scope.orphans())
    assert plan.listing.unlisted == {}
    assert any("FCEVAL_BATCH_QUEUE is empty" in note for note in plan.listing.notes)
    assert any("FCEVAL_ECS_CLUSTER is empty" in note for note in plan.listing.notes)
    assert "ec2" in plan.listing.listed and "batch" not in plan.listing.listed
    ledger.close()


def test_teardown_of_a_run_the_ledger_never_saw(aws_env, aws_settings):
    settings = aws_settings(FCEVAL_BACKEND="ec2")
    stranger = new_run_id()
    instance = Ec2Backend(settings).provision(make_context(settings, stranger, task_id="stranger"))
    aws_env.client("s3").put_object(Bucket=STAGING, Key=f"fceval-tui/staging/{stranger}/x/a1/y", Body=b"1")
    env = {"FCEVAL_BACKEND": "ec2", "FC_EVAL_S3_BUCKET": STAGING, "FCEVAL_INSTANCE_PROFILE": PROFILE}

    res = run_cli("teardown", "--run", stranger, "--yes", "--json", state_dir=settings.state_dir, env=env)
    assert res.code == 0, res.err + res.out
    result = json.loads(res.out)
    assert instance in result["destroyed"] and result["clean"]
    assert instance_states(aws_env, [instance])[instance] in ("shutting-down", "terminated")
    assert staging_keys(aws_env, stranger) == []

    res = run_cli("teardown", "--run", "r1;rm", "--dry-run", state_dir=settings.state_dir, env=env)
    assert res.code != 0 and "is not a run id" in res.err


def _inbox(world, ctx) -> str:
    """What the compute uploads: PutObject into its attempt's inbox, with no metadata or tags."""
    key = f"{INBOX_PREFIX}{ctx.job.run_id}/{ctx.job.id}-a{ctx.attempt}-{secrets.token_hex(16)}/run.tar.gz"
    world.client("s3").put_object(Bucket=STAGING, Key=key, Body=b"archive")
    return key


def _keys(world, prefix: str) -> list[str]:
    reply = world.client("s3").list_objects_v2(Bucket=STAGING, Prefix=prefix)
    return [item["Key"] for item in reply.get("Contents", [])]


def test_another_consoles_live_staging_and_inbox_are_left_alone(aws_env, aws_settings):
    settings = aws_settings(FCEVAL_BACKEND="batch")
    ledger = Ledger.open(settings.state_dir)  # the other console's runs are not in it
    backend = BatchBackend(settings)
    live = make_context(settings, new_run_id(), backend="batch")
    dead = expired(make_context(settings, new_run_id(), backend="batch"))
    for ctx in (live, dead):
        backend.provision(ctx)  # stages the manifest, as every cloud backend does before the pipeline starts
        _inbox(aws_env, ctx)
    staged = {ctx.job.run_id: f"s3://{STAGING}/fceval-tui/staging/{ctx.job.run_id}/" for ctx in (live, dead)}
    inbox = {ctx.job.run_id: f"s3://{STAGING}/{INBOX_PREFIX}{ctx.job.run_id}/" for ctx in (live, dead)}
    live, dead = live.job.run_id, dead.job.run_id

    plan = teardown.make_plan(settings, ledger, teardown.Scope.orphans())
    going = {i.resource.id: i for i in plan.items}
    kept = {i.resource.id: i for i in plan.kept}
    assert staged[live] in kept, f"another console's live staging would be deleted: {going.get(staged[live])}"
    assert inbox[live] in kept, f"another console's live inbox: {going.get(inbox[live])}"
    assert "lives until" in kept[staged[live]].reason and "lives until" in kept[inbox[live]].reason
    assert staged[dead] in going and inbox[dead] in going
    assert going[inbox[dead]].resource.kind == "inbox-objects"
    teardown.execute(settings, ledger, plan, settle_seconds=0)
    assert _keys(aws_env, f"fceval-tui/staging/{live}/") != [] and _keys(aws_env, f"{INBOX_PREFIX}{live}/") != []
    assert _keys(aws_env, f"fceval-tui/staging/{dead}/") == [] and _keys(aws_env, f"{INBOX_PREFIX}{dead}/") == []

    result = teardown.execute(settings, ledger, teardown.make_plan(settings, ledger, teardown.Scope.all()))
    assert result.clean, result.to_json()
    assert _keys(aws_env, f"fceval-tui/staging/{live}/") == [] and _keys(aws_env, f"{INBOX_PREFIX}{live}/") == []
    ledger.close()


@pytest.mark.usefixtures("ecs_exec")
def test_ecs_task_definitions_are_found_by_tag_and_deleted(aws_env, aws_settings):
    settings = aws_settings(FCEVAL_BACKEND="ecs")
    ledger = Ledger.open(settings.state_dir)
    ecs = aws_env.client("ecs")
    run_id = new_run_id()
    # Ours, whatever its family is called; and a deregistered one of ours, still there until deleted.
    task, renamed = _ecs_task(aws_env, run_id, "2020-01-01T00:00:00.000Z", family=f"eval-{run_id}")
    _, deregistered = _ecs_task(aws_env, run_id, "2020-01-01T00:00:00.000Z")
    ecs.stop_task(cluster=ECS_CLUSTER, task=task)
    ecs.deregister_task_definition(taskDefinition=deregistered)
    # Someone else's, named like ours but without the console's tag: never touched.
    theirs = ecs.register_task_definition(
        family=f"fceval-tui-{run_id}-theirs",
        containerDefinitions=[{"name": "main", "image": "busybox", "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]

    plan = teardown.make_plan(settings, ledger, teardown.Scope.orphans())
    definitions = {i.resource.id: i.resource for i in plan.items if i.resource.kind == "task-definition"}
    assert renamed in definitions and deregistered in definitions and theirs not in definitions
    assert definitions[deregistered].state == "INACTIVE" and definitions[renamed].run_id == run_id
    result = teardown.execute(settings, ledger, plan, settle_seconds=0)
    assert result.clean, result.to_json()
    for arn in (renamed, deregistered):
        with pytest.raises(ecs.exceptions.ClientException):
            ecs.describe_task_definition(taskDefinition=arn)  # deleted, not only INACTIVE
    assert ecs.describe_task_definition(taskDefinition=theirs)["taskDefinition"]["status"] == "ACTIVE"
    ledger.close()
