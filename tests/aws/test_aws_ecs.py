"""ECS Fargate backend against moto and the ECS double (tests/helpers/ecs_double.py): tasks run as
real processes, the pipeline really runs in tmux and uploads into its inbox."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from fceval_tui.backends.base import ResourceGone
from fceval_tui.backends.ecs import EcsBackend, image_for
from fceval_tui.domain.states import JobState
from fceval_tui.errors import CapacityError, PermanentError
from tests.helpers.aws import (
    QUICK,
    RUN,
    STAGING,
    check_hello_and_failure,
    declared,
    make_context,
    new_run_id,
    record_calls,
    run_with_runner,
    s3_keys,
    spec,
)
from tests.helpers.ecs_double import wait_for


def backend_for(settings, ecs_exec) -> EcsBackend:
    backend = EcsBackend(settings)
    backend.poll_interval = 0.05
    return backend


def live_tasks(world, run_id: str) -> list[dict]:
    ecs = world.client("ecs")
    arns = ecs.list_tasks(cluster="fceval-test", desiredStatus="RUNNING")["taskArns"]
    if not arns:
        return []
    tasks = ecs.describe_tasks(cluster="fceval-test", tasks=arns, include=["TAGS"])["tasks"]
    return [
        t
        for t in tasks
        if {"key": "fceval:run-id", "value": run_id} in t.get("tags", []) and t["lastStatus"] != "STOPPED"
    ]


def active_definitions(world, run_id: str) -> list[str]:
    arns = world.client("ecs").list_task_definitions(status="ACTIVE")["taskDefinitionArns"]
    return [arn for arn in arns if f"/fceval-tui-{run_id}-" in arn]


def test_runner_drives_fargate_jobs_end_to_end(aws_settings, ecs_exec, aws_env):
    # The container has only the task definition's environment: no FCEVAL_EXAMPLE_SECONDS there.
    settings = aws_settings(FCEVAL_BACKEND="ecs", FCEVAL_RUN_COMMAND=f"{RUN} --seconds {QUICK}")
    backend = backend_for(settings, ecs_exec)
    calls = record_calls(backend.aws.all())
    run, final = run_with_runner(settings, backend, [spec("hello"), spec("always-fail", agent="biomni")])
    ok, bad = check_hello_and_failure(aws_env, run, final)
    # The task definition: image from the template, our entry point running the bootstrap, whose
    # time-to-live is the hard limit, tags.
    register = calls.named("RegisterTaskDefinition")[0]
    container = register["containerDefinitions"][0]
    assert container["image"].endswith("/tasks:hello") or container["image"].endswith("/tasks:always-fail")
    assert container["entryPoint"] == ["/bin/sh", "-c"] and len(container["command"]) == 1
    ttl = int(container["command"][0].split("$(date +%s) + ")[1].split(" ")[0])
    assert ttl > 60 * 170
    assert {"key": "ManagedBy", "value": "fceval-tui"} in register["tags"]
    run_task = calls.named("RunTask")[0]
    assert run_task["enableExecuteCommand"] is True and run_task["launchType"] == "FARGATE"
    assert {t["key"] for t in run_task["tags"]} >= {"fceval:run-id", "fceval:job-id", "fceval:expires-at"}
    # No ECS Exec while jobs run, so no command line that could carry a URL or a key.
    assert ecs_exec.exec_calls() == []
    # Nothing left: tasks stopped, definitions deregistered, staging emptied.
    assert live_tasks(aws_env, run.id) == [] and active_definitions(aws_env, run.id) == []
    assert s3_keys(aws_env, STAGING, f"fceval-tui/staging/{run.id}/") == []
    called, undeclared = declared(EcsBackend, calls)
    assert not undeclared, undeclared
    assert {
        "ecs:RunTask",
        "ecs:RegisterTaskDefinition",
        "ecs:StopTask",
        "ecs:DeregisterTaskDefinition",
        "ecs:DeleteTaskDefinitions",
    } <= called


def test_capacity_unavailable_is_a_capacity_error_and_the_retry_runs_one_task(aws_settings, ecs_exec, aws_env):
    settings = aws_settings()
    backend = backend_for(settings, ecs_exec)
    ctx = make_context(settings, new_run_id(), backend="ecs")
    failures = []

    def no_capacity(http_response, parsed, **_):
        if not failures:
            failures.append(1)
            parsed["failures"] = [{"arn": "x", "reason": "Capacity is unavailable at this time. Please try again."}]
            parsed["tasks"] = []

    backend.aws.ecs.meta.events.register("after-call.ecs.RunTask", no_capacity)
    with pytest.raises(CapacityError, match="Capacity is unavailable"):
        backend.provision(ctx)
    # moto did start a task on that call: the retry must find it instead of starting a second one.
    first = backend.provision(ctx)
    assert backend.provision(ctx) == first
    assert len(active_definitions(aws_env, ctx.job.run_id)) == 1  # one definition for the attempt
    assert [t["taskArn"] for t in live_tasks(aws_env, ctx.job.run_id)] == [first]
    backend.cleanup(ctx, first)
    assert live_tasks(aws_env, ctx.job.run_id) == [] and active_definitions(aws_env, ctx.job.run_id) == []


def test_other_run_task_failures_are_permanent(aws_settings, ecs_exec, aws_env):
    settings = aws_settings()
    backend = backend_for(settings, ecs_exec)
    ctx = make_context(settings, new_run_id(), backend="ecs")

    def bad_subnet(http_response, parsed, **_):
        parsed["failures"] = [{"arn": "x", "reason": "MISSING", "detail": "subnet not found"}]
        parsed["tasks"] = []

    backend.aws.ecs.meta.events.register("after-call.ecs.RunTask", bad_subnet)
    with pytest.raises(PermanentError, match="subnet not found"):
        backend.provision(ctx)
    backend.cleanup(ctx, "")  # also after errors: whatever this attempt started is stopped
    family = f"fceval-tui-{ctx.job.id}-a{ctx.attempt}"
    assert backend.aws.ecs.list_tasks(cluster="fceval-test", family=family, desiredStatus="RUNNING")["taskArns"] == []
    assert active_definitions(aws_env, ctx.job.run_id) == []


def test_cancel_stops_the_task_and_observe_reports_it_gone(aws_settings, ecs_exec, aws_env):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = backend_for(settings, ecs_exec)
    ctx = make_context(settings, new_run_id(), backend="ecs")
    task = backend.provision(ctx)
    backend.start(ctx, task)
    assert backend.observe(ctx, task).phase == JobState.RUNNING
    target = wait_for(lambda: backend.tmux_target(dataclasses.replace(ctx.job, resource_id=task)), 10, "tmux")
    assert target.session == ctx.job.id and target.transport.task == task
    sessions = target.transport.run(["tmux", *target.tmux_args, "list-sessions", "-F", "#{session_name}"])
    assert sessions.stdout.split() == [ctx.job.id]
    backend.cancel(ctx, task)
    wait_for(lambda: ecs_exec.containers[task].proc.poll() is not None, 10, "StopTask to end the container")
    with pytest.raises(ResourceGone):
        backend.observe(ctx, task)
    backend.cleanup(ctx, task)
    backend.cleanup(ctx, task)  # idempotent
    assert live_tasks(aws_env, ctx.job.run_id) == [] and active_definitions(aws_env, ctx.job.run_id) == []


def test_list_resources_batches_describe_calls(aws_settings, ecs_exec, aws_env):
    settings = aws_settings()
    backend = backend_for(settings, ecs_exec)
    run_id = new_run_id()
    contexts = [make_context(settings, run_id, seq=n, backend="ecs") for n in (1, 2)]
    tasks = [backend.provision(ctx) for ctx in contexts]
    calls = record_calls([backend.aws.ecs])
    mine = [r for r in backend.list_resources() if r.run_id == run_id]
    assert [op for _, op, _ in calls.calls] == [
        "ListTasks",
        "DescribeTasks",
        "ListTaskDefinitions",
        "ListTaskDefinitions",
    ]
    assert sorted(r.id for r in mine if r.kind == "task") == sorted(tasks)
    assert sorted(r.job_id for r in mine if r.kind == "task-definition") == sorted(c.job.id for c in contexts)
    task = next(r for r in mine if r.kind == "task")
    assert task.expires_at is not None and task.cost_usd >= 0
    for resource in mine:
        backend.destroy_resource(resource)
    assert [r for r in backend.list_resources() if r.run_id == run_id] == []


def test_image_template_takes_the_task_id_as_a_valid_tag():
    assert image_for("repo/tasks:{task_id}", "hub/caco2 wang") == "repo/tasks:hub-caco2-wang"


def _resumed(ctx, minutes: int):
    """The same attempt after a resume: its expiry (and so the fceval:expires-at tag) recomputed."""
    return dataclasses.replace(ctx, expires_at=ctx.expires_at + timedelta(minutes=minutes))


def test_a_token_reused_with_other_parameters_after_its_task_stopped_runs_a_fresh_task(aws_settings, ecs_exec, aws_env):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = backend_for(settings, ecs_exec)
    calls = record_calls([backend.aws.ecs])
    ctx = make_context(settings, new_run_id(), backend="ecs")
    first = backend.provision(ctx)
    backend.cancel(ctx, first)
    wait_for(lambda: ecs_exec.containers[first].proc.poll() is not None, 10, "StopTask to end the container")
    again = backend.provision(_resumed(ctx, 5))  # AWS: ConflictException, resourceIds [first]
    tokens = [params["clientToken"] for params in calls.named("RunTask")]
    assert again != first and tokens[0] == tokens[1] != tokens[2] and len(tokens) == 3 and len(tokens[2]) <= 64
    assert [t["taskArn"] for t in live_tasks(aws_env, ctx.job.run_id)] == [again]
    backend.cleanup(ctx, again)
    assert live_tasks(aws_env, ctx.job.run_id) == []


def test_a_token_reused_with_other_parameters_uses_its_task_while_that_runs(aws_settings, ecs_exec, aws_env):
    from fceval_tui.backends import ecs_launch

    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = backend_for(settings, ecs_exec)
    ctx = make_context(settings, new_run_id(), backend="ecs")
    first = backend.provision(ctx)
    calls = record_calls([backend.aws.ecs])
    # What provision sends after a resume, had ListTasks not shown the task yet.
    params = ecs_launch.run_task_params(settings, _resumed(ctx, 5), calls_definition(aws_env, ctx))
    assert ecs_launch.launch(backend.aws.ecs, params)["tasks"][0]["taskArn"] == first
    assert [p["clientToken"] for p in calls.named("RunTask")] == [params["clientToken"]]
    assert [t["taskArn"] for t in live_tasks(aws_env, ctx.job.run_id)] == [first]
    backend.cleanup(ctx, first)


def calls_definition(world, ctx) -> str:
    family = f"fceval-tui-{ctx.job.id}-a{ctx.attempt}"
    return world.client("ecs").list_task_definitions(familyPrefix=family)["taskDefinitionArns"][-1]


def test_a_log_group_needs_an_execution_role_and_an_existing_group(aws_settings, ecs_exec, aws_env):
    """Fargate's awslogs driver writes as the execution role, to a group that must exist ("Send Amazon ECS
    logs to CloudWatch"): without the role, one message before anything starts; without the group, the
    task fails to start and the job fails with AWS's reason."""
    from fceval_tui.errors import ConfigError

    with pytest.raises(ConfigError, match="FCEVAL_ECS_EXECUTION_ROLE_ARN"):
        backend_for(aws_settings(FCEVAL_ECS_LOG_GROUP="/ecs/fceval"), ecs_exec).check_ready()
    settings = aws_settings(
        FCEVAL_ECS_LOG_GROUP=f"/ecs/missing-{new_run_id()}",
        FCEVAL_ECS_EXECUTION_ROLE_ARN="arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
    )
    backend = backend_for(settings, ecs_exec)
    backend.check_ready()
    ctx = make_context(settings, new_run_id())
    task = backend.provision(ctx)
    described = aws_env.client("ecs").describe_tasks(cluster="fceval-test", tasks=[task])["tasks"][0]
    assert described["lastStatus"] == "STOPPED"
    with pytest.raises(PermanentError, match="The specified log group does not exist"):
        backend.observe(ctx, task)
    backend.cleanup(ctx, task)
