"""A large paste into an EC2 job's pane over the SSM doubles (tests/helpers/ssm_double.py): what the attach
view's paste and `send --file` do through Run Command, whose SendCommand carries at most 32 KB of input."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.services.mirror import Mirror
from tests.helpers.aws import make_context, new_run_id, record_calls

DEADLINE = 20.0  # a bound on waiting for the doubles, not a speed assertion


@pytest.fixture
def started_job(aws_settings, ec2_machine):
    """An EC2 job whose pipeline was started through Run Command on the instance double."""
    settings = aws_settings(
        FCEVAL_REMOTE_WORK_DIR=ec2_machine.work_root, FCEVAL_RUN_COMMAND="sleep 60", FCEVAL_GRADE_COMMAND=""
    )
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    ctx = make_context(settings, new_run_id())
    instance_id = backend.provision(ctx)
    calls = record_calls([backend.aws.ssm])
    try:
        backend.start(ctx, instance_id)
        yield backend, ctx, dataclasses.replace(ctx.job, resource_id=instance_id), calls
    finally:
        backend.cleanup(ctx, instance_id)


def _work(backend, job) -> Path:
    return Path(backend.settings.remote_work_dir) / job.id


def _wait_for(predicate, what: str):
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {DEADLINE}s")
        time.sleep(0.05)


def test_a_200_kb_paste_over_ssm_arrives_byte_for_byte_in_chunks_with_progress(started_job):
    """What the attach view's paste does: SendCommand carries at most 32 KB of stdin, so the text is
    staged on the instance chunk by chunk, each reported, then pasted once into the pane."""
    backend, _ctx, job, calls = started_job
    target = backend.tmux_target(job)
    out = _work(backend, job) / "pasted"
    target.transport.run(
        ["tmux", *target.tmux_args, "new-session", "-d", "-s", "paste", "sh", "-c", f"stty -echo; cat > {out}"]
    )
    text = "".join(f"pasted line {i} with 'quotes' and $dollars\n" for i in range(5000))
    total = len(text.encode())
    progress: list[tuple[int, int]] = []
    with Mirror(target.transport, target.tmux_args, "paste", mode="poll", want_screen=False) as mirror:
        mirror.paste(text, progress=lambda done, all_: progress.append((done, all_)))
    _wait_for(lambda: out.exists() and out.stat().st_size >= total, "the paste")
    assert out.read_text() == text
    limit = target.transport.max_stdin_bytes
    assert progress == [(n, total) for n in range(limit, total, limit)] + [(total, total)]
    appends = [p for p in calls.named("SendCommand") if "| sh -c 'cat >> \"$1\"' sh " in p["Parameters"]["commands"][0]]
    assert len(appends) == -(-total // limit)  # one SendCommand per chunk


def test_send_returns_the_commands_exit_code_and_waits_for_a_pattern_over_ssm(
    aws_settings, ec2_machine, aws_env, monkeypatch, capsys
):
    """`send --wait-exit` / `--wait-for` on an EC2 job: typed and read back through Run Command."""
    from fceval_tui.cli import main
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.ledger import Ledger
    from tests.helpers.aws import ECS_CLUSTER, REGION, RESULTS, STAGING

    env = {
        **aws_env.env(),
        "AWS_REGION": REGION,
        "FC_EVAL_S3_BUCKET": STAGING,
        "FCEVAL_ARTIFACTS": f"s3://{RESULTS}/evals",
        "FCEVAL_REMOTE_WORK_DIR": ec2_machine.work_root,
        "FCEVAL_RUN_COMMAND": "sh -i",
        "FCEVAL_GRADE_COMMAND": "",
        "FCEVAL_ECS_CLUSTER": ECS_CLUSTER,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = aws_settings(FCEVAL_REMOTE_WORK_DIR=ec2_machine.work_root, FCEVAL_RUN_COMMAND="sh -i")
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    ctx = make_context(settings, new_run_id())
    instance_id = backend.provision(ctx)
    try:
        backend.start(ctx, instance_id)
        ledger = Ledger.open(settings.state_dir)
        try:
            ledger.create_run("ec2", 1, [JobSpec("aide", "hello", "", "")], run_id=ctx.job.run_id)
            ledger.update(ctx.job.id, resource_id=instance_id, attempts=1)
        finally:
            ledger.close()
        state = ["--state-dir", str(settings.state_dir)]
        assert main([*state, "send", ctx.job.id, "--text", "(exit 7)", "--wait-exit", "--timeout", "60"]) == 7
        assert main([*state, "send", ctx.job.id, "--text", "true", "--wait-exit", "--timeout", "60"]) == 0
        typed = ["send", ctx.job.id, "--text", "echo ssm-$((40+2))\n", "--wait-for", "ssm-42", "--timeout", "60"]
        assert main([*state, *typed]) == 0
        never = ["send", ctx.job.id, "--keys", "Enter", "--wait-for", "never-shown", "--timeout", "1"]
        assert main([*state, *never]) == 1
        assert "did not show within 1s" in capsys.readouterr().out
    finally:
        backend.cleanup(ctx, instance_id)
