"""`fceval-tui teardown`: show what a run (or orphans, or everything) left behind, confirm, remove, verify.

Exit 1 when something is left (or could not be checked), 0 when nothing is.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from fceval_tui.cli import confirm
from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from fceval_tui.config import Settings
    from fceval_tui.ledger import Ledger
    from fceval_tui.services.teardown import Plan, Scope


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--run", metavar="RUN")
    scope.add_argument("--orphans", action="store_true")
    scope.add_argument("--all", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    settings, ledger = load_context(args)
    if not args.yes and not args.dry_run:
        confirm.require_terminal("teardown needs confirmation", "pass --yes in scripts, or --dry-run to look")
    return tear_down(args, settings, ledger)


def tear_down(args: argparse.Namespace, settings: Settings, ledger: Ledger) -> int:
    """Plan, then (unless a dry run) confirm, execute and report what is left."""
    from fceval_tui.cli import output
    from fceval_tui.services.teardown import execute, make_plan

    plan = make_plan(settings, ledger, _scope(args))
    if args.dry_run or not plan.actionable:
        if args.json:
            output.print_json({**plan.to_json(), "dry_run": bool(args.dry_run)})
        else:
            dry = "\ndry run: nothing was changed" if args.dry_run and plan.actionable else ""
            print(output.format_teardown_plan(plan) + dry)
        return EXIT_FAILED if plan.listing.unlisted else EXIT_OK
    if not args.json:
        print(output.format_teardown_plan(plan))
    if not args.yes and not _confirmed(plan):
        print("not confirmed: nothing was changed", file=sys.stderr)
        return EXIT_FAILED
    say = None if args.json else (lambda message: print(message, flush=True))
    result = execute(settings, ledger, plan, on_progress=say)
    if args.json:
        output.print_json({**result.to_json(), "dry_run": False})
    else:
        for item, error in result.failed:
            print(f"failed: {item.resource.kind} {item.resource.id}: {error}")
        for resource in result.left:
            print(f"still there: {resource.backend} {resource.kind} {resource.id} ({resource.state})")
        for backend, why in result.unlisted_after.items():
            print(f"could not check {backend} afterwards: {why}")
        if result.still_active:
            print(f"jobs still active in the ledger: {', '.join(result.still_active)}")
        print("nothing is left" if result.clean else "something is left: see above, then run teardown again")
    return EXIT_OK if result.clean else EXIT_FAILED


def _scope(args: argparse.Namespace) -> Scope:
    from fceval_tui.services.teardown import Scope

    if args.run:
        return Scope.run(args.run)
    return Scope.all() if args.all else Scope.orphans()


def _confirmed(plan: Plan) -> bool:
    if plan.scope.kind == "run":
        return confirm.typed(f"type the run id ({plan.scope.run_id}) to confirm: ", plan.scope.run_id)
    return confirm.typed("type 'yes' to confirm: ", "yes")
