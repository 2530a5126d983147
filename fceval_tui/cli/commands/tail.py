"""`fceval-tui tail`: print a job's (or any tmux pane's) new lines as they appear."""

from __future__ import annotations

import argparse
import sys

from fceval_tui.cli.context import job_target, load_context, reaching_session
from fceval_tui.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", nargs="?", metavar="JOB")
    sock = parser.add_mutually_exclusive_group()
    sock.add_argument("-L", dest="socket_name", metavar="SOCKET_NAME")
    sock.add_argument("-S", dest="socket_path", metavar="SOCKET_PATH")
    parser.add_argument("-t", dest="target", metavar="TARGET")
    parser.add_argument("--from-start", action="store_true", help="print the existing scrollback first")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.services.mirror.tail import tail

    if args.job and (args.socket_name or args.socket_path or args.target):
        raise UserError("give either JOB or -L/-S with -t, not both", "e.g. `fceval-tui tail r1234abcd-001`")
    if args.job:
        settings, ledger = load_context(args)
        job, target = job_target(settings, ledger, args.job)
        with reaching_session(job):
            return tail(target.transport, target.tmux_args, target.session, args.from_start, sys.stdout)
    if not args.target or not (args.socket_name or args.socket_path):
        raise UserError(
            "tail needs JOB, or a socket (-L NAME or -S PATH) and a target (-t TARGET)",
            "e.g. `fceval-tui tail -L default -t mysession`",
        )
    tmux_args = ("-L", args.socket_name) if args.socket_name else ("-S", args.socket_path)
    return tail(None, tmux_args, args.target, args.from_start, sys.stdout)
