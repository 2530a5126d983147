"""`fceval-tui audit`: the preflight audit's findings (exit 1 on an ERROR), or the IAM policy to grant."""

from __future__ import annotations

import argparse
import sys

from fceval_tui.cli.context import load_context
from fceval_tui.cli.exit_codes import EXIT_FAILED, EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fceval_tui.domain.models import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--print-policy", choices=("caller", "instance"))


def run(args: argparse.Namespace) -> int:
    from fceval_tui.cli import output
    from fceval_tui.services import audit

    settings, _store = load_context(args)
    backend = args.backend or settings.backend
    if args.print_policy:
        keys, read_notes = audit.read_bucket_keys(settings, backend)
        text, notes = audit.print_policy(settings, backend, args.print_policy, keys)
        for note in read_notes + notes:
            print(f"note: {note}", file=sys.stderr)
        print(text)
        return EXIT_OK
    progress = None if args.json else output.AuditProgress(len(audit.list_checks(backend)))
    report = audit.run_audit(settings, backend, on_progress=progress)
    if args.json:
        output.print_json(report.to_json())
    else:
        print(output.format_audit_report(report))
    return EXIT_FAILED if report.has_errors else EXIT_OK
