"""`fceval-tui` with no subcommand: open the console. Its options (--readonly, --theme) are the top-level parser's."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_OK
from fceval_tui.errors import UserError

if TYPE_CHECKING:
    from fceval_tui.config import Settings
    from fceval_tui.ledger import Ledger


def run(args: argparse.Namespace) -> int:
    settings, ledger = load_context(args)
    return open_console(args, settings, ledger)


def open_console(args: argparse.Namespace, settings: Settings, ledger: Ledger, demo_specs=None) -> int:
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        raise UserError(
            "the console needs an interactive terminal",
            "run it in a terminal, or use the headless subcommands (`fceval-tui --help`)",
        )
    from fceval_tui.ui.app import make_app

    app = make_app(settings, ledger, readonly=args.readonly, theme=args.theme, demo_specs=demo_specs)
    app.run()
    return app.return_code or EXIT_OK
