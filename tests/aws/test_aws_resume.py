"""The real CLI on the EC2 backend against the moto server: the console is killed with SIGKILL
while a job runs on its instance, `resume` finishes the job, and no tagged resource is left."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from tests.helpers.aws import GRADE, PROFILE, RESULTS, RUN, STAGING, s3_keys
from tests.helpers.cli import run_cli


def _status(state_dir, run_id):
    res = run_cli("status", run_id, "--json", state_dir=state_dir)
    assert res.code == 0, res.err
    return json.loads(res.out)


def _wait_for(predicate, what: str, tries: int = 600):
    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def _live_instances(world, run_id):
    reservations = world.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:ManagedBy", "Values": ["fceval-tui"]},
            {"Name": "tag:fceval:run-id", "Values": [run_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )["Reservations"]
    return [i["InstanceId"] for r in reservations for i in r["Instances"]]


def test_sigkilled_console_resumes_and_leaves_nothing_behind(aws_env, ssm_agent, monkeypatch, tmp_path):
    trace = tmp_path / "trace.jsonl"
    settings_env = {
        "FCEVAL_BACKEND": "ec2",
        "FC_EVAL_S3_BUCKET": STAGING,
        "FCEVAL_ARTIFACTS": f"s3://{RESULTS}/evals",
        "FCEVAL_INSTANCE_PROFILE": PROFILE,
        "FCEVAL_REMOTE_WORK_DIR": str(tmp_path / "remote"),
        "FCEVAL_RUN_COMMAND": RUN,
        "FCEVAL_GRADE_COMMAND": GRADE,
        "FCEVAL_EXAMPLE_SECONDS": "3",
        "FCEVAL_EXAMPLE_TRACE": str(trace),
    }
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)  # the SSM double runs the pipeline with this process's environment
    state_dir = tmp_path / "state"
    argv = [
        sys.executable,
        "-m",
        "fceval_tui",
        "--state-dir",
        str(state_dir),
        "launch",
        "--task-id",
        "hello",
        "--agent",
        "aide",
        "--skip-preflight",
        "--json",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        run_id = json.loads(line)["run_id"]
        _wait_for(lambda: _status(state_dir, run_id)[0]["state"] in ("running", "grading"), "the job to run")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = _status(state_dir, run_id)[0]
    assert before["state"] not in ("succeeded", "failed")
    assert _live_instances(aws_env, run_id) == [before["resource_id"]]  # the instance outlived its console

    res = run_cli("resume", run_id, state_dir=state_dir)
    assert res.code == 0, res.out + res.err
    after = _status(state_dir, run_id)[0]
    assert after["state"] == "succeeded" and after["attempts"] == 1, after
    assert after["artifacts"][0] == f"s3://{RESULTS}/evals/runs/aide/hello/{run_id}.tar.gz"
    assert len(trace.read_text().splitlines()) == 1  # the agent ran exactly once
    assert _live_instances(aws_env, run_id) == []
    assert s3_keys(aws_env, STAGING, f"fceval-tui/staging/{run_id}/") == []
