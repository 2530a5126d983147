"""`fceval-tui resume RUN`: continue every non-final job of a run, here or in the background."""

from __future__ import annotations

import argparse

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run whose runner stopped (see `fceval-tui status`)")
    parser.add_argument("--detach", action="store_true", help="continue in the background")
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="machine-readable output (the jobs once all are final)")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.services.runner import run_settings

    settings, ledger = load_context(args)
    resumed = ledger.get_run(args.run)
    settings = run_settings(settings, resumed)
    if args.detach:
        from fceval_tui.services import launching

        pid = launching.spawn_background_runner(settings, resumed.id, getattr(args, "env_file", None))
        if args.json:
            from fceval_tui.cli import output

            output.print_json({"run_id": resumed.id, "runner_pid": pid})
        else:
            print(f"run {resumed.id}: continuing in the background (pid {pid})")
        return EXIT_OK
    from fceval_tui.cli.progress import drive

    code = drive(settings, ledger, resumed.id, quiet=args.quiet or args.json)
    if args.json:
        from fceval_tui.cli import output

        output.print_json([job.to_json() for job in ledger.jobs(run_id=resumed.id)])
    return code
