"""A large paste into an ECS job's pane over the ECS double (tests/helpers/ecs_double.py): what the attach
view's paste and `send --file` do through ECS Exec, which has no stdin channel and whose command line is
logged (CloudTrail's ExecuteCommand event carries it). The text is typed into the session's terminal
instead, base64-encoded, a bounded amount per session, and is never part of any command line."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from fceval_tui.backends.ecs import EcsBackend
from fceval_tui.domain.models import JobSpec
from fceval_tui.ledger import Ledger
from fceval_tui.services.mirror import Mirror
from tests.helpers.aws import ECS_CLUSTER, REGION, RESULTS, STAGING, make_context, new_run_id
from tests.helpers.cli import run_cli
from tests.helpers.ecs_double import wait_for

DEADLINE = 30.0  # a bound on waiting for the doubles, not a speed assertion
TASK_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tasks:{task_id}"


def _env(aws_env, tmp_path: Path) -> dict[str, str]:
    return {
        "AWS_REGION": REGION,
        "FC_EVAL_S3_BUCKET": STAGING,
        "FCEVAL_ARTIFACTS": f"s3://{RESULTS}/evals",
        "FCEVAL_REMOTE_WORK_DIR": str(tmp_path / "remote"),
        "FCEVAL_RUN_COMMAND": "sleep 120",
        "FCEVAL_GRADE_COMMAND": "",
        "FCEVAL_ECS_CLUSTER": ECS_CLUSTER,
        "FCEVAL_ECS_IMAGE": TASK_IMAGE,
        "FCEVAL_ECS_SUBNETS": aws_env.subnet,
        "FCEVAL_ECS_SECURITY_GROUPS": aws_env.security_group,
    }


@pytest.fixture
def started_task(aws_settings, ecs_exec, aws_env, tmp_path):
    """An ECS job whose task runs, and its tmux target through ECS Exec."""
    settings = aws_settings(**_env(aws_env, tmp_path))
    backend = EcsBackend(settings)
    backend.poll_interval = 0.05
    ctx = make_context(settings, new_run_id(), backend="ecs")
    task = backend.provision(ctx)
    try:
        backend.start(ctx, task)
        job = dataclasses.replace(ctx.job, resource_id=task)
        target = wait_for(lambda: backend.tmux_target(job), DEADLINE, "the task's tmux server")
        yield settings, job, target
    finally:
        backend.cleanup(ctx, task)


def _receiver(target, out: Path, session: str, window: bool = False) -> None:
    """A pane whose program writes what is pasted into it to `out` (no echo, so the screen stays small): a
    new session, or with `window` a new (so active) window of an existing one."""
    where = ["new-window", "-t", session] if window else ["new-session", "-d", "-s", session]
    made = target.transport.run(["tmux", *target.tmux_args, *where, "sh", "-c", f"stty -echo; cat > {out}"])
    assert made.ok, made


def _text() -> str:
    # ~200 KB with shell-hostile characters and non-ASCII text (no control characters: the pane's terminal
    # would act on them, as it would on a paste from the operator's own terminal).
    return "".join(f"pasted line {i} with 'quotes', $dollars, `ticks`, \\ and é\n" for i in range(3800))


def _commands(ecs_double) -> list[str]:
    return [argv[argv.index("--command") + 1] for argv in ecs_double.exec_calls()]


def test_a_200_kb_paste_over_ecs_exec_arrives_byte_for_byte_with_progress(started_task, ecs_exec, tmp_path):
    _settings, _job, target = started_task
    out = tmp_path / "pasted"
    _receiver(target, out, "paste")
    text = _text()
    total = len(text.encode())
    assert total > 200_000
    before = len(ecs_exec.exec_calls())
    progress: list[tuple[int, int]] = []
    with Mirror(target.transport, target.tmux_args, "paste", mode="poll", want_screen=False) as mirror:
        mirror.paste(text, progress=lambda done, all_: progress.append((done, all_)))
    wait_for(lambda: out.exists() and out.stat().st_size >= total, DEADLINE, "the paste to reach the pane")
    assert out.read_bytes() == text.encode()
    limit = target.transport.max_typed_input_bytes
    assert 0 < limit < total
    assert progress == [(n, total) for n in range(limit, total, limit)] + [(total, total)]
    commands = _commands(ecs_exec)[before:]
    assert not any("pasted line" in command or "cGFzdGVk" in command for command in commands)  # nor its base64
    typed = [c for c in commands if "base64 -d" in c]
    assert len(typed) == -(-total // limit)  # one session per chunk


def test_a_small_paste_over_ecs_exec_is_one_session(started_task, ecs_exec, tmp_path):
    _settings, _job, target = started_task
    out = tmp_path / "small"
    _receiver(target, out, "small")
    before = len(ecs_exec.exec_calls())
    with Mirror(target.transport, target.tmux_args, "small", mode="poll", want_screen=False) as mirror:
        calls_after_start = len(ecs_exec.exec_calls())
        mirror.paste("yes, and $(touch /tmp/pwned) too\n")
    wait_for(lambda: out.exists() and out.stat().st_size > 0, DEADLINE, "the paste")
    assert out.read_text() == "yes, and $(touch /tmp/pwned) too\n"
    assert not Path("/tmp/pwned").exists()
    assert calls_after_start > before
    assert len(ecs_exec.exec_calls()) - calls_after_start == 2  # load-buffer typed in, then paste-buffer


def test_send_file_pastes_200_kb_into_an_ecs_job_with_progress(started_task, ecs_exec, aws_env, tmp_path):
    settings, job, target = started_task
    out = tmp_path / "sent"
    _receiver(target, out, job.id, window=True)  # `send` pastes into the job's own session
    state = tmp_path / "cli-state"
    state.mkdir()
    ledger = Ledger.open(state)
    try:
        ledger.create_run("ecs", 1, [JobSpec(job.agent, job.task_id, job.model, "")], run_id=job.run_id)
        ledger.update(job.id, resource_id=job.resource_id)
    finally:
        ledger.close()
    text = _text()
    source = tmp_path / "paste.txt"
    source.write_text(text)
    env = {**os.environ, **aws_env.env(), **_env(aws_env, tmp_path)}
    res = run_cli("send", job.id, "--file", str(source), state_dir=state, env=env, timeout=300)
    assert res.code == 0, res
    wait_for(lambda: out.exists() and out.stat().st_size >= len(text.encode()), DEADLINE, "the paste")
    assert out.read_bytes() == text.encode()
    total = len(text.encode())
    assert f"{total:,}/{total:,} bytes" in res.err  # progress on stderr, the last line once it is all there
    assert res.err.count("bytes") > 2
    (sent,) = [e for e in json.loads(run_cli("events", "--json", state_dir=state).out) if e["kind"] == "operator_send"]
    assert sent["detail"]["bytes"] == total
