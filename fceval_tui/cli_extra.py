"""Subcommands served by the mirror, audit and teardown services (loaded only when used)."""

from __future__ import annotations

import argparse
import os
import sys

from fceval_tui.cli import EXIT_OK, EXIT_USAGE, load_context
from fceval_tui.errors import UserError


def _job_target(settings, store, job_id: str):
    from fceval_tui.backends import make_backend

    job = store.get_job(job_id)
    target = make_backend(job.backend, settings).tmux_target(job)
    if target is None:
        raise UserError(
            f"job {job.id} runs on {job.backend}, which has no tmux session",
            f"see its logs with `fceval-tui status {job.run_id}` or in the console",
        )
    return job, target


def cmd_tail(args: argparse.Namespace) -> int:
    from fceval_tui.services.tail import tail

    if args.job and (args.socket_name or args.socket_path or args.target):
        raise UserError("give either JOB or -L/-S with -t, not both", "e.g. `fceval-tui tail r1234abcd-001`")
    if args.job:
        settings, store = load_context(args)
        _job, target = _job_target(settings, store, args.job)
        return tail(target.transport, target.tmux_args, target.session, args.from_start, sys.stdout)
    if not args.target or not (args.socket_name or args.socket_path):
        raise UserError(
            "tail needs JOB, or a socket (-L NAME or -S PATH) and a target (-t TARGET)",
            "e.g. `fceval-tui tail -L default -t mysession`",
        )
    tmux_args = ("-L", args.socket_name) if args.socket_name else ("-S", args.socket_path)
    return tail(None, tmux_args, args.target, args.from_start, sys.stdout)


def cmd_attach(args: argparse.Namespace) -> int:
    from fceval_tui.services.tail import attach_argv, attach_env

    settings, store = load_context(args)
    _job, target = _job_target(settings, store, args.job)
    argv = attach_argv(target.tmux_args, target.session, target.transport)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, attach_env())
    return EXIT_OK  # not reached: exec replaces this process


def cmd_audit(args: argparse.Namespace) -> int:
    from fceval_tui.services import audit

    settings, store = load_context(args)
    return audit.cli_main(args, settings, store)


def cmd_teardown(args: argparse.Namespace) -> int:
    from fceval_tui.services import teardown

    settings, store = load_context(args)
    if not args.yes and not args.dry_run and not sys.stdin.isatty():
        print(
            "fceval-tui: error: teardown needs confirmation (fix: pass --yes in scripts, or --dry-run to look)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return teardown.cli_main(args, settings, store)
