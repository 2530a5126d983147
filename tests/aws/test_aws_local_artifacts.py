"""Local jobs with an s3:// artifact prefix upload through the shared AWS session (moto server)."""

from __future__ import annotations

import subprocess

from fceval_tui.domain.models import JobSpec
from fceval_tui.ledger import Ledger
from fceval_tui.locations import tmux_socket_name
from fceval_tui.services.runner import Runner
from tests.helpers.aws import RESULTS


def test_local_jobs_store_artifacts_under_an_s3_prefix(aws_env, aws_settings):
    settings = aws_settings(FCEVAL_BACKEND="local", FCEVAL_ARTIFACTS=f"s3://{RESULTS}/local-evals")
    ledger = Ledger.open(settings.state_dir)
    try:
        run, _ = Runner(ledger, settings).create_run([JobSpec("aide", "hub/t1")])
        assert Runner(ledger, settings).run(run.id).counts == {"succeeded": 1}
        listed = aws_env.client("s3").list_objects_v2(Bucket=RESULTS, Prefix="local-evals/")["Contents"]
        keys = sorted(obj["Key"] for obj in listed)
        assert keys[1] == f"local-evals/runs/aide/hub/t1/{run.id}.tar.gz"
        assert keys[0].startswith("local-evals/grades/aide/hub/t1/") and keys[0].endswith("_grading_report.json.gz")
        assert ledger.jobs(run_id=run.id)[0].artifacts == (f"s3://{RESULTS}/{keys[1]}", f"s3://{RESULTS}/{keys[0]}")
    finally:
        ledger.close()
        subprocess.run(["tmux", "-L", tmux_socket_name(settings.state_dir), "kill-server"], capture_output=True)
