"""The headless CLI. Every console action has a subcommand here with the same code path.

`main` parses the command line (parser.py) and runs one module of `commands/`. Imports are
deferred to the command that needs them: `fceval-tui --help` loads neither boto3 nor textual.
"""

from __future__ import annotations

import os
import sys

from fceval_tui.cli.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from fceval_tui.cli.parser import CONSOLE, build_parser, command_module
from fceval_tui.errors import BackendError, UserError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return command_module(args.command or CONSOLE).run(args)
    except (UserError, BackendError) as exc:
        # A backend error reaching the top (no tmux, AWS unreachable, a target gone) is the user's
        # to fix too: one line with its fix, never a traceback.
        from fceval_tui.cli import output  # here, not at the top: `--help` stays free of rich

        output.print_error(exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
