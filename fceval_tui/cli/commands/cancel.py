"""`fceval-tui cancel (JOB | --run RUN)`: cancel a job, or every non-final job of a run."""

from __future__ import annotations

import argparse

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("job", nargs="?", metavar="JOB", help="one job (its compute is stopped)")
    what.add_argument("--run", metavar="RUN", help="every unfinished job of the run")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.services.job_actions import cancel_jobs
    from fceval_tui.services.operator import identity_for

    settings, ledger = load_context(args)
    if args.run:
        ledger.get_run(args.run)
        jobs = [j for j in ledger.jobs(run_id=args.run) if not j.state.is_final]
    else:
        job = ledger.get_job(args.job)
        jobs = [] if job.state.is_final else [job]
    ids = [j.id for j in jobs]
    cancelled = cancel_jobs(ledger, settings, ids, by=identity_for(settings, {j.backend for j in jobs}))
    if args.json:
        from fceval_tui.cli import output

        output.print_json({"cancelled": [j.id for j in cancelled]})
    elif not ids and args.job:
        print(f"job {args.job} is already {ledger.get_job(args.job).state}; nothing to cancel")
    else:
        print(f"cancelled {len(cancelled)} job(s)" + (f": {', '.join(j.id for j in cancelled)}" if cancelled else ""))
    return EXIT_OK
