"""`fceval-tui events [--run RUN] [--job JOB]`: the ledger's event log (state changes and operator actions)."""

from __future__ import annotations

import argparse

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", metavar="RUN", help="only this run's events")
    parser.add_argument("--job", metavar="JOB", help="only this job's events")
    parser.add_argument("--limit", type=int, metavar="N", help="only the newest N events")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.cli import output

    _settings, ledger = load_context(args)
    if args.run:
        ledger.get_run(args.run)
    if args.job:
        ledger.get_job(args.job)
    events = ledger.events(run_id=args.run, job_id=args.job, limit=args.limit, newest_first=args.limit is not None)
    events.sort(key=lambda event: event.id)
    if args.json:
        output.print_json([event.to_json() for event in events])
    else:
        output.print_events(events)
    return EXIT_OK
