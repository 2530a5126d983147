"""`fceval-tui report [RUN...]`: results per agent x model (and dataset); with two runs, what changed per task."""

from __future__ import annotations

import argparse
import functools

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_OK
from fceval_tui.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs to report on (default: the newest); two compare")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable output")
    form.add_argument("--csv", action="store_true", help="one CSV line per agent x model x dataset")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.cli import output
    from fceval_tui.services.report import build_report, read_grading_report

    settings, ledger = load_context(args)
    run_ids = args.runs
    if not run_ids:
        summaries = ledger.run_summaries()
        if not summaries:
            raise UserError("no runs to report on", "launch one with `fceval-tui launch --jobs FILE`")
        run_ids = [max(summaries, key=lambda s: s.run.created_at).run.id]

    @functools.cache
    def s3_client():
        from fceval_tui.backends.aws import AwsClients

        return AwsClients(settings.region, settings.profile, ("s3",)).s3

    report = build_report(ledger, run_ids, lambda location: read_grading_report(location, s3_client))
    if args.json:
        output.print_json(report.to_json())
    elif args.csv:
        output.print_report_csv(report)
    else:
        output.print_report(report)
    return EXIT_OK
