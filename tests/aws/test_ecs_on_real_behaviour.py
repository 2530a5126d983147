"""The ECS backend against the ECS double (tests/helpers/ecs_double.py): images with an ENTRYPOINT
and a non-root USER, containers as real processes, ECS Exec as root in a pty, no session-manager-plugin
unless a test installs it."""

from __future__ import annotations

import dataclasses

import pytest

from fceval_tui.backends.ecs import EcsBackend
from fceval_tui.domain.states import JobState
from fceval_tui.errors import PermanentError
from tests.helpers.aws import (
    STAGING,
    check_hello_and_failure,
    make_context,
    new_run_id,
    record_calls,
    run_with_runner,
    s3_keys,
    spec,
)
from tests.helpers.cli import HARNESS
from tests.helpers.ecs_double import shell_image, wait_for

IMAGE = "fceval-test/tasks"
# The container user cannot run this machine's Python under /root: the system one runs the harness.
RUN = (
    f"/usr/bin/python3 {HARNESS} agent --agent {{agent}} --task-id {{task_id}} --model {{model}}"
    " --out {artifacts_dir} --seconds 0.5"
)
GRADE = f"/usr/bin/python3 {HARNESS} grade --task-id {{task_id}} --out {{artifacts_dir}}"
# An ENTRYPOINT that ignores its arguments: `command` alone cannot make it end.
IGNORES_ARGS = ("/bin/sh", "-c", "exec tail -f /dev/null", "--")


def settings_for(aws_settings, **env):
    return aws_settings(
        **{"FCEVAL_ECS_IMAGE": IMAGE + ":{task_id}", "FCEVAL_RUN_COMMAND": RUN, "FCEVAL_GRADE_COMMAND": GRADE, **env}
    )


def backend_for(settings) -> EcsBackend:
    backend = EcsBackend(settings)
    backend.poll_interval = 0.2
    return backend


def task_status(world, task_arn: str) -> dict:
    return world.client("ecs").describe_tasks(cluster="fceval-test", tasks=[task_arn])["tasks"][0]


def test_an_entrypoint_that_ignores_its_arguments_still_ends_at_the_ttl(aws_settings, ecs_double, image_tools, aws_env):
    ecs_double.images[IMAGE] = shell_image(*IGNORES_ARGS, tools=image_tools)
    settings = settings_for(aws_settings, FCEVAL_TTL_MINUTES="0.05", FCEVAL_RUN_COMMAND="sleep 600")
    backend = backend_for(settings)
    ctx = make_context(settings, new_run_id(), backend="ecs")
    task = backend.provision(ctx)
    try:
        stopped = wait_for(
            lambda: (t := task_status(aws_env, task))["lastStatus"] == "STOPPED" and t, 30, "the TTL to stop the task"
        )
        assert stopped["stopCode"] == "EssentialContainerExited"
        with pytest.raises(PermanentError, match="time-to-live"):
            backend.observe(ctx, task)
    finally:
        backend.cleanup(ctx, task)


def test_jobs_run_as_the_image_user_without_session_manager_plugin(aws_settings, ecs_double, image_tools, aws_env):
    ecs_double.images[IMAGE] = shell_image(*IGNORES_ARGS, tools=image_tools)
    ecs_double.install_plugin(False)
    settings = settings_for(aws_settings, FCEVAL_BACKEND="ecs")
    backend = backend_for(settings)
    calls = record_calls(backend.aws.all())
    run, final = run_with_runner(settings, backend, [spec("hello"), spec("always-fail", agent="biomni")])
    ok, bad = check_hello_and_failure(aws_env, run, final)
    # No ECS Exec while a job runs: provision, start, observe and collect need no plugin.
    assert ecs_double.exec_calls() == []
    container = next(iter(ecs_double.containers.values()))
    assert container.user == "fceval-ctr" and container.argv[:2] == ["/bin/sh", "-c"]
    register = calls.named("RegisterTaskDefinition")[0]["containerDefinitions"][0]
    # Job values reach the container as its environment, never as text of its command.
    assert {"name": "FCEVAL_JOB_TASK_ID", "value": "hello"} in register["environment"] or {
        "name": "FCEVAL_JOB_TASK_ID",
        "value": "always-fail",
    } in register["environment"]
    assert "always-fail" not in register["command"][0] and "hello" not in register["command"][0]
    assert not any(name == "DescribeTasks" and len(p["tasks"]) > 100 for _, name, p in calls.calls)
    assert s3_keys(aws_env, STAGING, f"fceval-tui/staging/{run.id}/") == []
    assert s3_keys(aws_env, STAGING, f"fceval-tui/inbox/{run.id}/") == []
    definitions = aws_env.client("ecs").list_task_definitions(familyPrefix=f"fceval-tui-{run.id}")
    assert definitions["taskDefinitionArns"] == []
    inactive = aws_env.client("ecs").list_task_definitions(familyPrefix=f"fceval-tui-{run.id}", status="INACTIVE")
    assert inactive["taskDefinitionArns"] == []  # deleted, not only deregistered


def test_exec_carries_no_secret_and_reaches_the_tmux_of_the_image_user(aws_settings, ecs_double, image_tools, aws_env):
    ecs_double.images[IMAGE] = shell_image(*IGNORES_ARGS, tools=image_tools)
    settings = settings_for(aws_settings, FCEVAL_RUN_COMMAND="echo started; sleep 600")
    backend = backend_for(settings)
    ctx = make_context(settings, new_run_id(), backend="ecs")
    task = backend.provision(ctx)
    try:
        backend.start(ctx, task)
        assert backend.observe(ctx, task).phase == JobState.RUNNING
        target = wait_for(
            lambda: backend.tmux_target(dataclasses.replace(ctx.job, resource_id=task)), 10, "the tmux target"
        )
        assert target.tmux_args[0] == "-S" and target.tmux_args[1].endswith(f"/{ctx.job.id}/tmux.sock")

        def pane_text():
            result = target.transport.run(["tmux", *target.tmux_args, "capture-pane", "-p", "-t", f"={ctx.job.id}:"])
            return result.ok and "started" in result.stdout

        wait_for(pane_text, 20, "the pipeline's first line through ECS Exec")
        whoami = target.transport.run(["id", "-un"])
        assert whoami.stdout.strip() == "root"  # ECS Exec runs as root, the pipeline as the image's user
        with pytest.raises(PermanentError, match="stdin"):
            target.transport.run(["cat"], stdin=b"secret")
        for call in ecs_double.exec_calls():
            command = call[call.index("--command") + 1]
            assert "base64" not in command and "Signature" not in command and "X-Amz" not in command
        backend.cancel(ctx, task)
        wait_for(lambda: task_status(aws_env, task)["lastStatus"] == "STOPPED", 10, "StopTask")
    finally:
        backend.cleanup(ctx, task)


def test_describe_tasks_answers_with_one_state_of_a_task(aws_settings, ecs_double, image_tools, aws_env):
    """The double's answer is the task as it was when asked: moto serializes the task objects after the call,
    and a container ending meanwhile could make it STOPPED and EssentialContainerExited with the exit code
    of a running container (a wrong verdict, or a finished job taken for lost and retried)."""
    from moto.ecs.models import ecs_backends

    ecs_double.images[IMAGE] = shell_image(*IGNORES_ARGS, tools=image_tools)
    settings = settings_for(aws_settings)
    backend = backend_for(settings)
    ctx = make_context(settings, new_run_id(), backend="ecs")
    task = backend.provision(ctx)
    try:
        [answer] = ecs_backends["123456789012"]["us-east-1"].describe_tasks("fceval-test", [task])
        ecs_double.containers[task].proc.kill()  # the container ends after the call, before its reply is written
        wait_for(lambda: task_status(aws_env, task)["lastStatus"] == "STOPPED", 30, "the container to stop")
        assert answer.last_status == "RUNNING" and answer.containers[0].exitCode is None
    finally:
        backend.cleanup(ctx, task)
