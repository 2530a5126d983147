"""`fceval-tui exec (--run RUN | --pool NAME | JOB...) [--json] [--timeout S] -- COMMAND`: one shell command
on every machine behind the selection, then the answers grouped by identical result.

One word after `--` is a shell command line, run as given (`-- 'df -h / | tail -1'`); several words are one
command and its arguments, each quoted (`-- df -h /`). Exit status 1 when any machine failed."""

from __future__ import annotations

import argparse
import shlex
import sys

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_FAILED, EXIT_OK
from fceval_tui.errors import UserError

MAX_TIMEOUT = 172_800  # AWS-RunShellScript's executionTimeout allows at most 48 hours
_USAGE_FIX = "e.g. fceval-tui exec --run RUN -- 'uptime'  (options go before the job ids)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", metavar="RUN", help="every machine of this run's live jobs")
    parser.add_argument("--pool", metavar="NAME", help="every running instance of this warm pool")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S", help="per machine (default 120)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "words",
        nargs=argparse.REMAINDER,
        metavar="JOB... -- COMMAND",
        help="job ids (or --run/--pool before them), then `--` and the command: one word is a shell command line",
    )


def split_words(words: list[str]) -> tuple[list[str], str]:
    """(job ids, shell command line) from `JOB... -- COMMAND...`."""
    if "--" not in words:
        raise UserError("no command given: put it after `--`", _USAGE_FIX)
    cut = words.index("--")
    jobs, command = words[:cut], words[cut + 1 :]
    if not command or not "".join(command).strip():
        raise UserError("the command after `--` is empty", _USAGE_FIX)
    stray = [w for w in jobs if w.startswith("-")]
    if stray:
        raise UserError(f"{stray[0]!r} is not a job id", _USAGE_FIX)
    return jobs, command[0] if len(command) == 1 else shlex.join(command)


def run(args: argparse.Namespace) -> int:
    from fceval_tui.cli import output
    from fceval_tui.presentation import render_exec
    from fceval_tui.services import fleet_exec, fleet_targets
    from fceval_tui.services.operator import AWS_BACKENDS, STS_WAIT, identity, record_exec, start_lookup

    jobs, command = split_words(args.words)
    chosen = [bool(args.run), bool(args.pool), bool(jobs)]
    if sum(chosen) != 1:
        raise UserError("name the machines once: --run RUN, --pool NAME, or job ids", _USAGE_FIX)
    if not 0 < args.timeout <= MAX_TIMEOUT:
        raise UserError(f"--timeout {args.timeout:g} is out of range", f"give 1 to {MAX_TIMEOUT} seconds")
    settings, ledger = load_context(args)
    start_lookup(settings, AWS_BACKENDS)  # the operator's ARN for the log, while the command runs
    clients = None
    if args.pool:
        from fceval_tui.backends.aws import AwsClients

        fleet_targets.check_id(args.pool, "pool name")
        clients = AwsClients(settings.region, settings.profile, ("ec2", "ssm"))
        selection = fleet_targets.select_pool(ledger, args.pool, fleet_exec.pool_instance_ids(clients.ec2, args.pool))
    else:
        selection = fleet_targets.select_jobs(ledger, run_id=args.run, job_ids=jobs)
    seen: list = []
    show = _Progress(len(selection.machines), quiet=args.json)

    def progress(result) -> None:
        seen.append(result)
        show.update(result)

    try:
        report = fleet_exec.run_on_fleet(
            settings, selection, command, timeout=args.timeout, progress=progress, clients=clients
        )
    except KeyboardInterrupt:
        show.stop()
        record_exec(ledger, selection, command, seen, by=identity(STS_WAIT), interrupted=True)
        raise
    finally:
        show.stop()
    record_exec(ledger, selection, command, report.results, report.command_ids, by=identity(STS_WAIT))
    if args.json:
        output.print_json(report.to_json())
    else:
        output.console().print(render_exec(report))
    return EXIT_FAILED if report.failed else EXIT_OK


class _Progress:
    """A line per machine as it answers, and a bar on a terminal (stderr, so stdout stays the result)."""

    def __init__(self, total: int, quiet: bool) -> None:
        from rich.console import Console

        self.quiet = quiet
        self.out = Console(stderr=True, highlight=False)
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("exec"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.out
            )
            self.task = self.bar.add_task("exec", total=total)
            self.bar.start()

    def update(self, result) -> None:
        if self.quiet:
            return
        from rich.text import Text

        line = Text("✓ " if result.ok else "✗ ", style="green" if result.ok else "red")
        jobs = f" ({', '.join(result.machine.jobs)})" if result.machine.jobs else ""
        line.append(f"{result.machine.short}{jobs}  {result.label}")
        self.out.print(line)
        if self.bar is not None:
            self.bar.advance(self.task)

    def stop(self) -> None:
        if self.bar is not None and self.bar.live.is_started:
            self.bar.stop()
