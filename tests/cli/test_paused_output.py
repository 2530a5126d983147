"""What the CLI prints about a paused run: `launch` says once that the credentials expired and what to
run, then that they work again; `status` shows the paused job and the reason."""

from __future__ import annotations

import io

from rich.console import Console

from fceval_tui.cli import output, progress
from fceval_tui.domain.models import JobSpec
from fceval_tui.domain.states import JobState
from fceval_tui.ledger import Ledger

FIX = "run `aws sso login --profile eval`"


def test_launch_progress_says_paused_once_with_the_fix_and_then_resumed(tmp_path):
    ledger = Ledger.open(tmp_path)
    try:
        run, _ = ledger.create_run("ec2", 1, [JobSpec("a", "t")])
        ledger.record(run.id, None, "credentials_expired", error="ssm:SendCommand: ExpiredTokenException", fix=FIX)
        ledger.record(run.id, None, "credentials_renewed", identity="arn:aws:sts::1:assumed-role/R/me")
        out = Console(file=io.StringIO(), width=200, color_system=None)
        progress._report(ledger, run.id, 0, out, None)
    finally:
        ledger.close()
    lines = [line for line in out.file.getvalue().splitlines() if line.strip()]
    assert lines == [f"⏸ paused   AWS credentials expired: {FIX}", "▶ resumed  the AWS credentials work again"]


def test_status_shows_the_paused_job_and_why(tmp_path, monkeypatch, capsys):
    ledger = Ledger.open(tmp_path)
    try:
        run, (job, waiting) = ledger.create_run("ec2", 1, [JobSpec("a", "t"), JobSpec("a", "u")])
        ledger.transition(job.id, JobState.STARTING, attempts=1)
        ledger.transition(job.id, JobState.RUNNING, resource_id="i-1")
        ledger.update(job.id, paused=f"AWS credentials expired: {FIX}")
        monkeypatch.setattr(output, "console", lambda: Console(width=200, color_system=None))
        output.print_jobs(ledger.jobs(run_id=run.id))
        output.print_runs(ledger.run_summaries())
    finally:
        ledger.close()
    printed = capsys.readouterr().out
    assert "paused (running)" in printed and f"paused: AWS credentials expired: {FIX}" in printed
    assert printed.count(FIX) == 2  # once under the jobs, once in the run's row
