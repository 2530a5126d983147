"""A Batch run end to end through the CLI, on the moto server and the Batch double: launch, the job's
log lines in place of a tmux session (Batch has none), delivery from the inbox to the results
bucket, and a teardown that leaves nothing."""

from __future__ import annotations

import json

from tests.helpers.aws import BATCH_DEFINITION, BATCH_QUEUE, GRADE, REGION, RESULTS, RUN, STAGING, s3_keys
from tests.helpers.cli import run_cli


def test_batch_run_through_the_cli(aws_env, batch_compute, tmp_path):
    state_dir = tmp_path / "state"
    env = {
        "AWS_REGION": REGION,
        "FC_EVAL_S3_BUCKET": STAGING,
        "FCEVAL_ARTIFACTS": f"s3://{RESULTS}/evals",
        "FCEVAL_REMOTE_WORK_DIR": str(tmp_path / "remote"),
        "FCEVAL_RUN_COMMAND": RUN,
        "FCEVAL_GRADE_COMMAND": GRADE,
        "FCEVAL_BATCH_QUEUE": BATCH_QUEUE,
        "FCEVAL_BATCH_JOB_DEFINITION": BATCH_DEFINITION,
    }
    args = ("launch", "--backend", "batch", "--task-id", "hello", "--agent", "aide", "--skip-preflight", "--json")
    res = run_cli(*args, state_dir=state_dir, env=env)
    assert res.code == 0, res.err
    run_id = json.loads(res.out.splitlines()[0])["run_id"]
    (job,) = json.loads(run_cli("status", run_id, "--json", state_dir=state_dir, env=env).out)
    assert job["state"] == "succeeded", job["error"]
    assert job["artifacts"][0] == f"s3://{RESULTS}/evals/runs/aide/hello/{run_id}.tar.gz"
    assert s3_keys(aws_env, RESULTS, f"evals/runs/aide/hello/{run_id}") != []
    # Batch has no tmux: tail says so in one line and points at the logs.
    tail = run_cli("tail", job["id"], state_dir=state_dir, env=env)
    assert tail.code == 2 and "no tmux session" in tail.err
    assert s3_keys(aws_env, STAGING, f"fceval-tui/inbox/{run_id}") == []  # delivered, then removed
    down = run_cli("teardown", "--run", run_id, "--yes", "--json", state_dir=state_dir, env=env)
    assert down.code == 0, down.err + down.out
    plan = json.loads(down.out)
    assert "batch" in plan["listed"] and plan["plan"] == [] and plan["unlisted"] == {}  # the runner left nothing
    assert s3_keys(aws_env, STAGING, f"fceval-tui/staging/{run_id}") == []
