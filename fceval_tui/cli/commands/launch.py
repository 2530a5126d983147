"""`fceval-tui launch`: create a run from a job file or task ids and drive it (or plan it with --dry-run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fceval_tui.cli.context import load_context, load_settings_from
from fceval_tui.cli.exit_codes import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--jobs", type=Path, metavar="FILE", help="job file: CSV lines agent,task_id[,model]")
    src.add_argument("--task-id", action="append", metavar="ID", help="a task id (repeatable); needs --agent")
    from fceval_tui.config import help_suffix
    from fceval_tui.domain.models import BACKENDS

    def described(text: str, attr: str) -> str:
        return f"{text} ({help_suffix(attr)})"

    parser.add_argument("--agent", help=described("agent for --task-id", "agent"))
    parser.add_argument("--model", help=described("model when a job line has none", "model"))
    parser.add_argument("--dataset", help=described("dataset passed to the harness", "dataset"))
    # Validated with the settings (one message for flag, environment and .env alike).
    parser.add_argument("--backend", help=described(", ".join(BACKENDS), "backend"))
    parser.add_argument("--pool", metavar="NAME", help=described("run on this warm pool's instances (EC2)", "pool"))
    parser.add_argument("--concurrent", metavar="N", help=described("jobs at once", "concurrent"))
    parser.add_argument("--ttl", metavar="MINUTES", help=described("hard lifetime of cloud resources", "ttl_minutes"))
    parser.add_argument("--timeout", metavar="MINUTES", help=described("per-job time limit", "job_timeout_minutes"))
    parser.add_argument("--artifacts", metavar="PREFIX", help=described("local dir or s3://bucket/prefix", "artifacts"))
    parser.add_argument("--keep-sessions", action="store_true", default=None, help="keep tmux sessions after jobs end")
    parser.add_argument("--skip-preflight", action="store_true", help="launch cloud jobs despite audit errors")
    parser.add_argument("--dry-run", action="store_true", help="print exactly what would run; change nothing")
    parser.add_argument(
        "--detach", action="store_true", help="return once jobs are submitted; a background runner drives them"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from fceval_tui.cli import output
    from fceval_tui.services import launching
    from fceval_tui.services.pool import settings_for_run

    overrides = {
        "backend": args.backend,
        "concurrent": args.concurrent,
        "ttl_minutes": args.ttl,
        "job_timeout_minutes": args.timeout,
        "agent": args.agent,
        "model": args.model,
        "dataset": args.dataset,
        "artifacts": args.artifacts,
        "keep_sessions": args.keep_sessions,
        "pool": args.pool,
    }
    if args.dry_run:  # writes nothing: no state dir, no ledger, no log
        settings = settings_for_run(load_settings_from(args, overrides), None)
        parsed = launching.parse_jobs(settings, jobs_file=args.jobs, task_ids=args.task_id)
        for warning in parsed.warnings:
            output.print_warning(warning)
        plan = launching.plan(settings, parsed.specs)
        if args.json:
            output.print_json(plan)
        else:
            output.print_plan(plan)
        return EXIT_OK
    settings, ledger = load_context(args, overrides)
    settings = settings_for_run(settings, ledger)
    parsed = launching.parse_jobs(settings, jobs_file=args.jobs, task_ids=args.task_id)
    for warning in parsed.warnings:
        output.print_warning(warning)
    launching.check_can_launch(settings, skip_preflight=args.skip_preflight)
    from fceval_tui.services.credentials import expiry_warning

    expiring = expiry_warning(settings, len(parsed.specs))
    if expiring:
        output.print_warning(expiring)
    new_run, jobs = launching.create_run(ledger, settings, parsed.specs, skip_preflight=args.skip_preflight)
    if args.json:
        output.print_json({"run_id": new_run.id}, indent=None)
    else:
        print(f"run {new_run.id}: {len(jobs)} jobs on {new_run.backend}, {new_run.concurrency} at a time", flush=True)
    if args.detach:
        pid = launching.spawn_background_runner(settings, new_run.id, getattr(args, "env_file", None))
        if not args.json:
            print(f"driving in the background (pid {pid}); watch with `fceval-tui status {new_run.id}`")
        return EXIT_OK
    from fceval_tui.cli.progress import drive

    return drive(settings, ledger, new_run.id, quiet=args.json)
