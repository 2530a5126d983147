"""The command line: global options, and the table of subcommands whose arguments are added lazily.

A subcommand's module (fceval_tui.cli.commands.NAME) is imported only when that subcommand is
parsed, so `fceval-tui --help` loads none of them. Each module has `add_arguments(parser)` and
`run(args) -> int`; `console` (no subcommand) uses the top-level options.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType

from fceval_tui import __version__
from fceval_tui.cli.exit_codes import EXIT_USAGE

# name -> one-line help, in the order `--help` lists them.
COMMANDS = {
    "demo": "open the console with the example jobs launched locally",
    "launch": "launch jobs (agent x task [x model])",
    "status": "runs and jobs with state, attempts, cost",
    "resume": "continue every non-final job of a run",
    "cancel": "cancel a job or a whole run",
    "tail": "print a job's (or any tmux pane's) new lines as they appear",
    "attach": "interactive terminal on a job's tmux session",
    "send": "send keys, text or a file to a job's session; optionally wait for a pattern or exit code",
    "audit": "preflight audit: IAM, S3, network, quotas",
    "teardown": "remove everything a run (or orphan) left behind",
    "retry": "retry a run's failed jobs, optionally one error class",
    "report": "results per agent x model: successes, failures by class, scores, time, cost",
    "events": "the ledger's event log: state changes and operator actions",
    "resources": "live resources behind the runs, orphans marked",
    "pool": "a warm pool of EC2 instances: up --size N, status, down",
    "exec": "run one shell command on every machine of a run, a pool or some jobs; answers grouped",
    "forward": "forward a local port to a port on a job's machine (SSM), until Ctrl-C",
}
CONSOLE = "console"


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"fceval_tui.cli.commands.{name}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other usage error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (fix: see `{self.prog} --help`)\n")


class _CommandParser(_Parser):
    """A subcommand's parser; its module adds the arguments the first time it parses."""

    def __init__(self, *args, command: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._command: str | None = command

    def parse_known_args(self, args=None, namespace=None):
        if self._command is not None:
            command_module(self._command).add_arguments(self)
            self._command = None
        return super().parse_known_args(args, namespace)


def _globals() -> argparse.ArgumentParser:
    # SUPPRESS lets the global options appear before or after the subcommand.
    g = argparse.ArgumentParser(add_help=False)
    g.add_argument(
        "--state-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="ledger, logs and work files (env FCEVAL_STATE_DIR; default: the user state dir)",
    )
    g.add_argument("--env-file", type=Path, default=argparse.SUPPRESS, help="settings file (default ./.env)")
    g.add_argument("--region", default=argparse.SUPPRESS, help="AWS region (env AWS_REGION)")
    g.add_argument("--profile", default=argparse.SUPPRESS, help="AWS profile (env AWS_PROFILE)")
    return g


def build_parser() -> argparse.ArgumentParser:
    common = _globals()
    parser = _Parser(
        prog="fceval-tui",
        description="Operator console for AI-agent evaluation runs: local tmux by default, or AWS "
        "(EC2 + SSM, ECS Fargate, Batch). Without a subcommand, opens the console.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"fceval-tui {__version__}")
    parser.add_argument("--readonly", action="store_true", help="console: disable every action that changes anything")
    parser.add_argument("--theme", help="console theme (see themes/ and the user themes folder)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for name, summary in COMMANDS.items():
        sub.add_parser(name, parents=[common], help=summary, command=name)
    return parser
