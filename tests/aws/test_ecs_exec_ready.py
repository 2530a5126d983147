"""ECS Exec against the ECS double as AWS and session-manager-plugin behave: the exec agent comes up after
the task is RUNNING (or stops with a reason), and the plugin reads its stdin and sets its terminal, so
every exec must bring its own pseudo-terminal and process group."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pty
import termios
import uuid

import pytest

from fceval_tui.backends.ecs import EcsBackend
from fceval_tui.backends.ecs_exec_agent import AGENT, wait_until_exec_ready
from fceval_tui.errors import PermanentError, TransientError
from tests.helpers.aws import make_context, new_run_id
from tests.helpers.ecs_double import pids_with


@pytest.fixture
def live_task(aws_settings, ecs_exec):
    """A running task whose pipeline sleeps: (backend, job with its resource id)."""
    settings = aws_settings(FCEVAL_RUN_COMMAND="echo started; sleep 600")
    backend = EcsBackend(settings)
    backend.poll_interval = 0.05
    ctx = make_context(settings, new_run_id(), backend="ecs")
    task = backend.provision(ctx)
    try:
        yield backend, dataclasses.replace(ctx.job, resource_id=task)
    finally:
        backend.cleanup(ctx, task)


def agent_up(double, world, task: str) -> None:
    """The task's exec agent RUNNING now, as the next DescribeTasks answer shows."""
    double.agents[task].pending_polls = 0
    world.client("ecs").describe_tasks(cluster="fceval-test", tasks=[task])


@contextlib.contextmanager
def stdin_from(fd: int):
    """This process's fd 0 replaced by `fd` (what a child inherits when it is handed our stdin)."""
    saved = os.dup(0)
    os.dup2(fd, 0)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_exec_waits_until_the_agent_reports_running(live_task, ecs_exec):
    backend, job = live_task
    ecs_exec.agents[job.resource_id].pending_polls = 5
    target = backend.tmux_target(job)
    assert target is not None and target.transport.run(["echo", "ready"]).stdout == "ready\n"
    assert ecs_exec.agents[job.resource_id].status == "RUNNING"
    assert ecs_exec.refused_exec() == []  # never tried before AWS said the agent was RUNNING


def test_a_stopped_agent_fails_at_once_with_its_reason_and_the_fix(live_task, ecs_exec):
    backend, job = live_task
    ecs_exec.stop_agent(job.resource_id, "SSM agent could not reach ssmmessages: AccessDenied")
    with pytest.raises(PermanentError, match="AccessDenied") as caught:
        backend.tmux_target(job)
    assert "enableExecuteCommand" in caught.value.fix and "ssmmessages:" in caught.value.fix
    assert ecs_exec.exec_calls() == []


def test_an_agent_still_pending_after_the_bound_says_so(live_task, ecs_exec):
    backend, job = live_task
    ecs_exec.agents[job.resource_id].pending_polls = 10**6
    backend.exec_agent_wait = 0.5
    with pytest.raises(TransientError, match="ExecuteCommandAgent is still PENDING") as caught:
        backend.tmux_target(job)
    assert "ssmmessages" in caught.value.fix
    assert ecs_exec.exec_calls() == []


def test_exec_works_with_stdin_at_end_of_file(live_task, ecs_exec, aws_env):
    # nohup, CI, `</dev/null`: the plugin would read EOF from an inherited stdin and give up.
    backend, job = live_task
    agent_up(ecs_exec, aws_env, job.resource_id)
    with open(os.devnull, "rb") as devnull, stdin_from(devnull.fileno()):
        target = backend.tmux_target(job)
        result = target.transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout) == (3, "out\nerr\n")  # stderr arrives through the pty


def test_a_timed_out_exec_leaves_no_process_and_the_terminal_as_it_was(live_task, ecs_exec, aws_env, monkeypatch):
    backend, job = live_task
    agent_up(ecs_exec, aws_env, job.resource_id)
    marker = uuid.uuid4().hex
    monkeypatch.setenv("FCEVAL_TEST_EXEC", marker)  # the aws CLI and its plugin inherit it
    primary, console = pty.openpty()  # the operator's terminal, echo on and line editing
    try:
        before = termios.tcgetattr(console)
        with stdin_from(console):
            target = backend.tmux_target(job)
            with pytest.raises(TimeoutError):
                target.transport.run(["sleep", "120"], timeout=8)
        assert pids_with("FCEVAL_TEST_EXEC", marker) == []
        assert termios.tcgetattr(console) == before
    finally:
        os.close(primary)
        os.close(console)


def _task(status="RUNNING", agent=None, **fields) -> dict:
    box = {"name": "main", "managedAgents": [agent] if agent else []}
    return {"lastStatus": status, "desiredStatus": "RUNNING", "containers": [box], **fields}


@pytest.mark.parametrize(
    ("task", "words"),
    [
        (None, "no longer exists"),
        (_task("STOPPED", stoppedReason="Essential container in task exited"), "Essential container in task exited"),
        (_task(enableExecuteCommand=False), "without enableExecuteCommand"),
    ],
)
def test_a_task_exec_cannot_reach_fails_at_once(task, words):
    with pytest.raises(PermanentError, match=words):
        wait_until_exec_ready(lambda: task, "arn:task/1", "main", sleep=pytest.fail)


def test_the_wait_follows_describe_tasks_from_pending_to_running():
    answers = iter(
        [
            _task("PENDING"),
            _task(agent={"name": AGENT, "lastStatus": "PENDING"}),
            _task(agent={"name": AGENT, "lastStatus": "RUNNING"}),
        ]
    )
    pauses: list[float] = []
    wait_until_exec_ready(lambda: next(answers), "arn:task/1", "main", interval=3, sleep=pauses.append)
    assert pauses == [3, 3]
