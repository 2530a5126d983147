"""`fceval-tui send JOB (--keys K... | --text T | --file F) [--wait-for REGEX | --wait-exit] [--timeout S]`:
input into a job's live session without the console, optionally waiting for the pane to show a
pattern, or for a typed command to finish (its exit code becomes ours)."""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid

from fceval_tui.cli import output
from fceval_tui.cli.context import job_target, load_context, reaching_session
from fceval_tui.cli.exit_codes import EXIT_FAILED, EXIT_OK
from fceval_tui.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--keys", nargs="+", metavar="K", help="tmux key names, e.g. Enter C-c 'y'")
    what.add_argument("--text", metavar="T", help="text pasted into the pane")
    what.add_argument("--file", metavar="F", help="a file pasted into the pane")
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument("--wait-for", metavar="REGEX", help="then wait until the pane shows this pattern")
    wait.add_argument(
        "--wait-exit", action="store_true", help="--text is a shell command: wait for it, exit with its code"
    )
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S", help="how long to wait (default 60)")
    parser.add_argument("--json", action="store_true", help="machine-readable outcome (the exit code is the same)")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.services.mirror import Mirror
    from fceval_tui.services.operator import identity_for
    from fceval_tui.services.paste import paste_detail, read_paste_file

    pattern = _compile(args.wait_for) if args.wait_for else None
    if args.wait_exit and args.text is None:
        raise UserError("--wait-exit needs the command as --text", "e.g. --text 'make test' --wait-exit")
    text = args.text if args.file is None else read_paste_file(args.file)
    settings, ledger = load_context(args)
    job, target = job_target(settings, ledger, args.job)
    marker = f"__FCEVAL_EXIT_{uuid.uuid4().hex[:12]}"
    mirror = Mirror(target.transport, target.tmux_args, target.session, mode="poll", want_screen=False)
    with reaching_session(job):
        mirror.start()
    with mirror:
        if args.keys:
            mirror.send_keys(*args.keys)
            detail = {"keys": len(args.keys)}
        else:
            if args.wait_exit:
                # The code is printed after the command; the typed line itself shows `=%s`, never digits.
                text = f"{text}; printf '\\n{marker}=%s\\n' $?"
                mirror.send_keys(text, literal=True)
                mirror.send_keys("Enter")
            else:
                mirror.paste(text, progress=_print_progress)
            detail = paste_detail(text)
        # What was sent is logged as its size and hash, never its content.
        ledger.record(job.run_id, job.id, "operator_send", by=identity_for(settings, [job.backend]), **detail)
        found = None
        if pattern is not None or args.wait_exit:
            found = _wait(mirror, pattern or re.compile(re.escape(marker) + r"=(\d+)"), args.timeout)
    waited = pattern is not None or args.wait_exit
    exit_code = int(found.group(1)) if args.wait_exit and found else None
    if args.json:
        output.print_json(
            {
                "job": job.id,
                "sent": detail,
                "waited_for": args.wait_for if pattern else ("exit" if args.wait_exit else None),
                "shown": bool(found) if waited else None,
                "match": found.group(0) if pattern and found else None,
                "exit_code": exit_code,
            }
        )
    elif waited and found is None:
        what = f"the pattern {args.wait_for!r}" if pattern else "the command's end"
        print(f"fceval-tui: {what} did not show within {args.timeout:g}s")
    if waited and found is None:
        return EXIT_FAILED
    return exit_code if exit_code is not None else EXIT_OK


def _print_progress(done: int, total: int) -> None:
    """On stderr, so a script reading stdout sees only what it asked for."""
    print(f"pasted {done:,}/{total:,} bytes", file=sys.stderr, flush=True)


def _wait(mirror, pattern: re.Pattern, timeout: float) -> re.Match | None:
    deadline = time.monotonic() + timeout
    while True:
        found = pattern.search("\n".join(mirror.screen()))
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def _compile(text: str) -> re.Pattern:
    try:
        return re.compile(text)
    except re.error as exc:
        raise UserError(
            f"--wait-for {text!r} is not a regular expression ({exc})", "e.g. --wait-for 'done|failed'"
        ) from None
