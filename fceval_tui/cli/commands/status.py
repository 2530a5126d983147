"""`fceval-tui status [RUN]`: every run, or one run's jobs, with state, attempts and cost."""

from __future__ import annotations

import argparse

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", metavar="RUN")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.cli import output

    _settings, ledger = load_context(args)
    if args.run:
        ledger.get_run(args.run)
    jobs = ledger.jobs(run_id=args.run)
    if args.json:
        output.print_json([job.to_json() for job in jobs])
    elif args.run:
        output.print_jobs(jobs)
    else:
        output.print_runs(ledger.run_summaries())
    return EXIT_OK
