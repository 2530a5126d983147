"""`fceval-tui resources`: live cloud resources and local sessions behind the runs, orphans marked with why."""

from __future__ import annotations

import argparse

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.cli import output
    from fceval_tui.services.resources import list_resources

    settings, ledger = load_context(args)
    listing = list_resources(settings, ledger)
    if args.json:
        output.print_json(listing.to_json())
    else:
        output.print_resources(listing)
    return EXIT_OK
