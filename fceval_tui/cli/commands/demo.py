"""`fceval-tui demo`: the example jobs on this machine, in the console (or headless)."""

from __future__ import annotations

import argparse

from fceval_tui.cli.commands.console import open_console
from fceval_tui.cli.context import load_context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--headless", action="store_true", help="run the example jobs without the console")
    parser.add_argument("--readonly", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--theme", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from fceval_tui.package_data import example_jobs
    from fceval_tui.services import launching

    settings, ledger = load_context(args, {"backend": "local"})
    settings = launching.demo_settings(settings)
    parsed = launching.parse_jobs(settings, jobs_file=example_jobs(), task_ids=None)
    launching.check_can_launch(settings, skip_preflight=False)
    if args.headless:
        demo_run, jobs = launching.create_run(ledger, settings, parsed.specs)
        print(
            f"demo run {demo_run.id}: {len(jobs)} example jobs on this machine (tmux), {demo_run.concurrency} at a time"
        )
        from fceval_tui.cli.progress import drive

        return drive(settings, ledger, demo_run.id)
    return open_console(args, settings, ledger, demo_specs=parsed.specs)
