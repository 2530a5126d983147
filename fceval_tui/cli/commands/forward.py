"""`fceval-tui forward JOB REMOTE_PORT [--local-port P]`: a local port forwarded to a port on a job's machine
(its EC2 instance or ECS task) through Session Manager, in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_FAILED, EXIT_OK

POLL = 0.2  # seconds between looks at the session while waiting for Ctrl-C


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB")
    parser.add_argument("remote_port", type=int, metavar="REMOTE_PORT", help="the port on the job's machine")
    parser.add_argument("--local-port", type=int, metavar="P", help="on 127.0.0.1 (default: a free one)")
    parser.add_argument("--json", action="store_true", help="print the forward as JSON once it listens")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.services.forwarding import Forwards
    from fceval_tui.services.operator import AWS_BACKENDS, identity_for

    settings, ledger = load_context(args)
    forwards = Forwards(settings, ledger, identity_for(settings, AWS_BACKENDS))
    forward = forwards.open(args.job, args.remote_port, args.local_port)
    # Ctrl-C only sets a flag: a KeyboardInterrupt raised inside Popen.wait can leave its waitpid lock
    # held, and closing the session then waits on that lock forever (seen once in CI).
    stopped = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stopped.set())
    try:
        if args.json:
            from fceval_tui.cli import output

            output.print_json(
                {"job": forward.job_id, "target": forward.target, "url": forward.url, "local_port": forward.local_port}
            )
        else:
            print(f"forwarding {forward.url} -> {forward.target} port {forward.remote_port}", flush=True)
            print("press Ctrl-C to stop", file=sys.stderr, flush=True)
        status = None
        while status is None and not stopped.wait(POLL):
            status = forward.session.wait(timeout=0)
    finally:
        signal.signal(signal.SIGINT, previous)
    if stopped.is_set():
        forwards.close(forward.id, "Ctrl-C")
        return EXIT_OK
    # The session ended by itself (the machine went away, the network dropped, a session timeout).
    print(f"the forwarding session ended (exit {status}): {forward.session.output()[-300:]}", file=sys.stderr)
    forwards.close(forward.id)
    return EXIT_FAILED
