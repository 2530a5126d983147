"""`fceval-tui cancel (JOB | --run RUN)`: cancel a job, or every non-final job of a run."""

from __future__ import annotations

import argparse

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("job", nargs="?", metavar="JOB")
    what.add_argument("--run", metavar="RUN")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.services.runner import cancel_jobs

    settings, ledger = load_context(args)
    if args.run:
        ledger.get_run(args.run)
        ids = [j.id for j in ledger.jobs(run_id=args.run) if not j.state.is_final]
    else:
        job = ledger.get_job(args.job)
        if job.state.is_final:
            print(f"job {job.id} is already {job.state}; nothing to cancel")
            return EXIT_OK
        ids = [job.id]
    cancelled = cancel_jobs(ledger, settings, ids)
    print(f"cancelled {len(cancelled)} job(s)" + (f": {', '.join(j.id for j in cancelled)}" if cancelled else ""))
    return EXIT_OK
