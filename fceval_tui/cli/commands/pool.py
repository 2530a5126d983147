"""`fceval-tui pool (up --size N | status | down)`: a warm pool of EC2 instances that `launch --pool NAME`
runs jobs on without booting new ones.

`up` brings the pool to N ready instances and waits for them; `status` checks them with EC2 and SSM;
`down` cancels the pool's jobs, terminates its instances and waits until they are terminated (exit 1
when it could not end them all).
"""

from __future__ import annotations

import argparse
import sys

from fceval_tui.cli import confirm
from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_FAILED, EXIT_OK
from fceval_tui.errors import UserError

DEFAULT_NAME = "default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fceval_tui.config import help_suffix

    parser.add_argument("action", choices=("up", "status", "down"), help="bring up, report, or end the pool")
    parser.add_argument("--name", help=f"the pool (default {DEFAULT_NAME!r}; status: every pool)")
    parser.add_argument("--size", type=int, metavar="N", help="up: instances in the pool")
    parser.add_argument("--instance-type", metavar="T", help=f"up: instance type ({help_suffix('ec2_instance_type')})")
    parser.add_argument(
        "--ttl", metavar="MIN", help=f"up: an unused instance's lifetime at most ({help_suffix('ttl_minutes')})"
    )
    parser.add_argument("--yes", action="store_true", help="down: do not ask for confirmation")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.cli import output
    from fceval_tui.services import pool

    if args.action != "up" and (args.size is not None or args.instance_type or args.ttl):
        raise UserError(f"--size, --instance-type and --ttl are for `pool up`, not `pool {args.action}`", "drop them")
    if args.action == "down" and not args.yes:
        confirm.require_terminal("pool down needs confirmation", "pass --yes in scripts")
    settings, ledger = load_context(args)
    say = None if args.json else (lambda message: print(message, flush=True))
    if args.action == "up":
        if args.size is None:
            raise UserError("`pool up` needs --size", "pass --size N, the number of instances")
        status = pool.pool_up(
            settings, ledger, args.name or DEFAULT_NAME, args.size, args.instance_type, args.ttl, on_progress=say
        )
        if args.json:
            output.print_json(status.to_json())
        else:
            output.print_pools([status])
        return EXIT_OK
    if args.action == "status":
        statuses = pool.pool_status(settings, ledger, args.name)
        if args.json:
            output.print_json([s.to_json() for s in statuses])
        else:
            output.print_pools(statuses)
        return EXIT_OK
    name = args.name or DEFAULT_NAME
    if not args.yes and not confirm.typed(f"end every instance of pool {name}? type 'yes': ", "yes"):
        print("not confirmed: nothing was changed", file=sys.stderr)
        return EXIT_FAILED
    ended = pool.pool_down(settings, ledger, name, on_progress=say)
    left = [r.instance.id for s in pool.pool_status(settings, ledger, name) for r in s.rows]
    if args.json:
        output.print_json({"pool": name, "ended": ended, "left": left})
    else:
        print(f"pool {name}: ended {len(ended)} instance(s)" + (f": {', '.join(ended)}" if ended else ""))
        for instance_id in left:
            output.print_warning(f"still running: {instance_id}")
    return EXIT_FAILED if left else EXIT_OK
