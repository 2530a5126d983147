"""One module per subcommand (see fceval_tui.cli.parser.COMMANDS), plus `console` for no subcommand.

Each has `add_arguments(parser)` and `run(args) -> int`. Their top-level imports stay light so a
subcommand's `--help` is fast; services are imported inside `run`.
"""
