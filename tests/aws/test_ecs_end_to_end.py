"""An ECS run end to end through the CLI on moto and the ECS double: launch (no session-manager-plugin
needed), live tail and attach through ECS Exec (as root, on the job's explicit socket), artifacts
delivered from the inbox, teardown leaves nothing."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

from tests.helpers.aws import RESULTS, STAGING, s3_keys
from tests.helpers.cli import HARNESS, run_cli
from tests.helpers.ecs_double import shell_image, wait_for

IMAGE = "fceval-test/agents"
IGNORES_ARGS = ("/bin/sh", "-c", "exec tail -f /dev/null", "--")
SECONDS = 24  # the agent asks its question after a quarter of this, and waits as long for an answer


def cli_env(world, state) -> dict[str, str]:
    return {
        **world.env(),
        "FCEVAL_STATE_DIR": str(state),
        "FC_EVAL_S3_BUCKET": STAGING,
        "FCEVAL_ARTIFACTS": f"s3://{RESULTS}/e2e",
        "FCEVAL_ECS_CLUSTER": "fceval-test",
        "FCEVAL_ECS_IMAGE": IMAGE + ":{task_id}",
        "FCEVAL_ECS_SUBNETS": world.subnet,
        "FCEVAL_ECS_SECURITY_GROUPS": world.security_group,
        "FCEVAL_RUN_COMMAND": (
            f"/usr/bin/python3 {HARNESS} agent --agent {{agent}} --task-id {{task_id}} --model {{model}}"
            f" --out {{artifacts_dir}} --seconds {SECONDS}"
        ),
        "FCEVAL_GRADE_COMMAND": f"/usr/bin/python3 {HARNESS} grade --task-id {{task_id}} --out {{artifacts_dir}}",
    }


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "fceval_tui", *args]


def jobs(env) -> list[dict]:
    result = run_cli("status", "--json", env=env)
    return json.loads(result.out) if result.code == 0 and result.out.strip() else []


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not seen within {timeout}s; got {seen[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def test_ecs_run_through_the_cli(aws_env, ecs_double, image_tools, tmp_path):
    ecs_double.images[IMAGE] = shell_image(*IGNORES_ARGS, tools=image_tools)
    ecs_double.install_plugin(False)  # jobs run without it
    env = {**os.environ, **cli_env(aws_env, tmp_path / "state")}
    launch = subprocess.Popen(
        cli_argv("launch", "--backend", "ecs", "--task-id", "ask-colour", "--agent", "aide", "--skip-preflight"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job = wait_for(
            lambda: next((j for j in jobs(env) if j["state"] == "running" and j["resource_id"]), None),
            60,
            "the job to run",
        )
        assert ecs_double.exec_calls() == []
        ecs_double.install_plugin(True)  # tail and attach need it
        tail = subprocess.Popen(cli_argv("tail", job["id"]), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            read_until(tail.stdout.fileno(), b"which metric", 30)
        finally:
            tail.kill()
            tail.wait()
        primary, child = pty.openpty()
        attach = subprocess.Popen(
            cli_argv("attach", job["id"]), env=env, stdin=child, stdout=child, stderr=child, close_fds=True
        )
        os.close(child)
        try:
            read_until(primary, b"which metric", 30)
            os.write(primary, b"auc\r")
            read_until(primary, b"optimising auc", 30)
            os.write(primary, b"\x02d")  # detach: the session goes on
            assert attach.wait(timeout=30) == 0
        finally:
            if attach.poll() is None:
                attach.kill()
                attach.wait()
            os.close(primary)
        out, err = launch.communicate(timeout=120)
        assert launch.returncode == 0, out + err
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait()
    commands = [call[call.index("--command") + 1] for call in ecs_double.exec_calls()]
    socket = f"/tmp/fceval-tui/{job['id']}/tmux.sock"  # the image's user cannot write /fceval: fallback
    attach_commands = [c for c in commands if "attach-session" in c]
    assert attach_commands and all(f"tmux -S {socket} " in c for c in attach_commands)
    (final,) = jobs(env)
    assert final["state"] == "succeeded", final
    run_id = final["run_id"]
    assert f"s3://{RESULTS}/e2e/runs/aide/ask-colour/{run_id}.tar.gz" in final["artifacts"]
    assert s3_keys(aws_env, STAGING, f"fceval-tui/inbox/{run_id}/") == []
    teardown = run_cli("teardown", "--run", run_id, "--yes", env=env)
    assert teardown.code == 0, teardown.out + teardown.err
    ecs = aws_env.client("ecs")
    for status in ("ACTIVE", "INACTIVE"):
        assert ecs.list_task_definitions(familyPrefix=f"fceval-tui-{run_id}", status=status)["taskDefinitionArns"] == []
    running = ecs.list_tasks(cluster="fceval-test", desiredStatus="RUNNING")["taskArns"]
    assert not [t for t in running if t in final["resource_id"]]
    assert s3_keys(aws_env, STAGING, f"fceval-tui/staging/{run_id}/") == []
