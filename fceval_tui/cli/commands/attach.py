"""`fceval-tui attach JOB`: replace this process with an interactive terminal on the job's tmux session.

First one session asks for the pane the way the attach will reach it: a session that cannot attach
says why here (the remote's words and the fix, exit 2) instead of flashing past on the terminal."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from fceval_tui.cli.context import job_target, load_context, reaching_session
from fceval_tui.cli.exit_codes import EXIT_OK
from fceval_tui.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.services.mirror.tail import attach_argv, attach_env, check_attachable
    from fceval_tui.services.operator import identity_for

    settings, ledger = load_context(args)
    job, target = job_target(settings, ledger, args.job)
    argv = attach_argv(target.tmux_args, target.session, target.transport)
    env = attach_env()
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        raise UserError(
            f"{argv[0]!r} is not installed or not on PATH; attach runs it",
            "install tmux (local jobs) or the AWS CLI and session-manager-plugin (cloud jobs)",
        )
    with reaching_session(job):
        check_attachable(
            target.transport,
            target.tmux_args,
            target.session,
            on_failure=lambda text: print(f"fceval-tui attach: {text}", file=sys.stderr, flush=True),
        )
    # tmux takes the terminal with full control and this process with it: log now, as a control session.
    by = identity_for(settings, [job.backend])
    ledger.record(job.run_id, job.id, "operator_attach", by=by, via="cli", control=True)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)
    return EXIT_OK  # not reached: exec replaces this process
