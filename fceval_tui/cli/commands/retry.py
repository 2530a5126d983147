"""`fceval-tui retry --run RUN [--error CLASS] [--job JOB ...]`: put a run's unsuccessful jobs back to
pending (optionally only one error class), and have a runner drive them."""

from __future__ import annotations

import argparse

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_OK
from fceval_tui.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fceval_tui.domain.triage import ErrorClass

    parser.add_argument("--run", metavar="RUN", required=True, help="the run whose failed jobs go back in the queue")
    parser.add_argument(
        "--error", metavar="CLASS", help="only jobs that failed this way: " + ", ".join(c.value for c in ErrorClass)
    )
    parser.add_argument("--job", action="append", metavar="JOB", help="only this job (repeatable)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.cli import output
    from fceval_tui.domain.triage import parse_error_class, retryable
    from fceval_tui.services import launching
    from fceval_tui.services.job_actions import retry_jobs
    from fceval_tui.services.operator import identity_for
    from fceval_tui.services.runner import run_settings

    settings, ledger = load_context(args)
    run_ = ledger.get_run(args.run)
    wanted = None
    if args.error:
        try:
            wanted = parse_error_class(args.error)
        except ValueError as exc:
            raise UserError(str(exc), "pass one of the listed classes to --error") from None
    jobs = ledger.jobs(run_id=run_.id)
    unknown = sorted(set(args.job or ()) - {job.id for job in jobs})
    if unknown:
        raise UserError(
            f"run {run_.id} has no job {', '.join(map(repr, unknown))}",
            f"list its jobs with `fceval-tui status {run_.id}`",
        )
    candidates = [job for job in retryable(jobs, wanted) if not args.job or job.id in args.job]
    retried = retry_jobs(ledger, [job.id for job in candidates], by=identity_for(settings, [run_.backend]))
    runner_pid = ledger.run_owner(run_.id)
    if retried and runner_pid is None:
        runner_pid = launching.spawn_background_runner(
            run_settings(settings, run_), run_.id, getattr(args, "env_file", None)
        )
    if args.json:
        output.print_json({"run_id": run_.id, "retried": [job.id for job in retried], "runner_pid": runner_pid})
    elif retried:
        print(
            f"run {run_.id}: retrying {len(retried)} job(s) (runner pid {runner_pid}): "
            + ", ".join(j.id for j in retried)
        )
    else:
        what = f" with error class {wanted}" if wanted else ""
        print(f"run {run_.id}: no failed, timed-out or cancelled job{what} to retry")
    return EXIT_OK
