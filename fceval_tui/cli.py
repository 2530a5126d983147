"""The headless CLI. Every console action has a subcommand here with the same code path.

Imports are deferred to the command that needs them: `fceval-tui --help` loads neither boto3
nor textual.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fceval_tui import __version__
from fceval_tui.errors import UserError

if TYPE_CHECKING:
    from fceval_tui.config import Settings
    from fceval_tui.store import Store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
BACKEND_CHOICES = ("local", "ec2", "ecs", "batch")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other usage error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (fix: see `{self.prog} --help`)\n")


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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = sub.add_parser("demo", parents=[common], help="open the console with the example jobs launched locally")
    demo.add_argument("--headless", action="store_true", help="run the example jobs without the console")
    demo.add_argument("--readonly", action="store_true", help=argparse.SUPPRESS)
    demo.add_argument("--theme", help=argparse.SUPPRESS)

    launch = sub.add_parser("launch", parents=[common], help="launch jobs (agent x task [x model])")
    src = launch.add_mutually_exclusive_group(required=True)
    src.add_argument("--jobs", type=Path, metavar="FILE", help="job file: CSV lines agent,task_id[,model]")
    src.add_argument("--task-id", action="append", metavar="ID", help="a task id (repeatable); needs --agent")
    launch.add_argument("--agent", help="agent for --task-id (env FCEVAL_AGENT)")
    launch.add_argument("--model", help="model when a job line has none (env FCEVAL_MODEL)")
    launch.add_argument("--dataset", help="dataset passed to the harness (env FCEVAL_DATASET)")
    launch.add_argument("--backend", help="local, ec2, ecs or batch (env FCEVAL_BACKEND; default local)")
    launch.add_argument("--concurrent", metavar="N", help="jobs at once (env FCEVAL_CONCURRENT; default 4)")
    launch.add_argument("--ttl", metavar="MINUTES", help="hard lifetime of cloud resources (env FCEVAL_TTL_MINUTES)")
    launch.add_argument("--timeout", metavar="MINUTES", help="per-job time limit (env FCEVAL_JOB_TIMEOUT_MINUTES)")
    launch.add_argument("--artifacts", metavar="PREFIX", help="local dir or s3://bucket/prefix (env FCEVAL_ARTIFACTS)")
    launch.add_argument("--keep-sessions", action="store_true", default=None, help="keep tmux sessions after jobs end")
    launch.add_argument("--skip-preflight", action="store_true", help="launch cloud jobs despite audit errors")
    launch.add_argument("--dry-run", action="store_true", help="print exactly what would run; change nothing")
    launch.add_argument(
        "--detach", action="store_true", help="return once jobs are submitted; a background runner drives them"
    )
    launch.add_argument("--json", action="store_true", help="machine-readable output")

    status = sub.add_parser("status", parents=[common], help="runs and jobs with state, attempts, cost")
    status.add_argument("run", nargs="?", metavar="RUN")
    status.add_argument("--json", action="store_true")

    resume = sub.add_parser("resume", parents=[common], help="continue every non-final job of a run")
    resume.add_argument("run", metavar="RUN")
    resume.add_argument("--detach", action="store_true", help="continue in the background")
    resume.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)

    cancel = sub.add_parser("cancel", parents=[common], help="cancel a job or a whole run")
    what = cancel.add_mutually_exclusive_group(required=True)
    what.add_argument("job", nargs="?", metavar="JOB")
    what.add_argument("--run", metavar="RUN")

    tail = sub.add_parser("tail", parents=[common], help="print a job's (or any tmux pane's) new lines as they appear")
    tail.add_argument("job", nargs="?", metavar="JOB")
    sock = tail.add_mutually_exclusive_group()
    sock.add_argument("-L", dest="socket_name", metavar="SOCKET_NAME")
    sock.add_argument("-S", dest="socket_path", metavar="SOCKET_PATH")
    tail.add_argument("-t", dest="target", metavar="TARGET")
    tail.add_argument("--from-start", action="store_true", help="print the existing scrollback first")

    attach = sub.add_parser("attach", parents=[common], help="interactive terminal on a job's tmux session")
    attach.add_argument("job", metavar="JOB")

    audit = sub.add_parser("audit", parents=[common], help="preflight audit: IAM, S3, network, quotas")
    audit.add_argument("--backend", choices=BACKEND_CHOICES)
    audit.add_argument("--json", action="store_true")
    audit.add_argument("--print-policy", choices=("caller", "instance"))

    teardown = sub.add_parser("teardown", parents=[common], help="remove everything a run (or orphan) left behind")
    scope = teardown.add_mutually_exclusive_group(required=True)
    scope.add_argument("--run", metavar="RUN")
    scope.add_argument("--orphans", action="store_true")
    scope.add_argument("--all", action="store_true")
    teardown.add_argument("--dry-run", action="store_true")
    teardown.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    teardown.add_argument("--json", action="store_true")
    return parser


# -- context ------------------------------------------------------------------------------------


def load_context(args: argparse.Namespace, overrides: dict | None = None) -> tuple[Settings, Store]:
    from fceval_tui.config import ensure_state_dir, load_settings
    from fceval_tui.store import Store

    cli = dict(overrides or {})
    if getattr(args, "region", None):
        cli["region"] = args.region
    if getattr(args, "profile", None):
        cli["profile"] = args.profile
    explicit = hasattr(args, "env_file")
    env_file = args.env_file if explicit else Path(".env")
    settings = load_settings(
        cli=cli, env_file=env_file, state_dir=getattr(args, "state_dir", None), explicit_env_file=explicit
    )
    ensure_state_dir(settings.state_dir)
    _setup_logging(settings.state_dir)
    return settings, Store.open(settings.state_dir)


def _setup_logging(state_dir: Path) -> None:
    import logging

    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    handler = logging.FileHandler(logs / "fceval-tui.log", encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("fceval_tui")
    root.setLevel(logging.INFO)
    root.addHandler(handler)


# -- commands -----------------------------------------------------------------------------------


def cmd_launch(args: argparse.Namespace) -> int:
    from fceval_tui.services import launching

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
    }
    settings, store = load_context(args, overrides)
    parsed = launching.parse_jobs(settings, jobs_file=args.jobs, task_ids=args.task_id)
    for warning in parsed.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.dry_run:
        plan = launching.plan(settings, parsed.specs)
        if args.json:
            print(json.dumps(plan, indent=2))
        else:
            from fceval_tui import cli_output

            cli_output.print_plan(plan)
        return EXIT_OK
    launching.check_can_launch(settings, skip_preflight=args.skip_preflight)
    run, jobs = launching.create_run(store, settings, parsed.specs, skip_preflight=args.skip_preflight)
    if args.json:
        print(json.dumps({"run_id": run.id}), flush=True)
    else:
        print(f"run {run.id}: {len(jobs)} jobs on {run.backend}, {run.concurrency} at a time", flush=True)
    if args.detach:
        pid = launching.spawn_background_runner(settings, run.id, getattr(args, "env_file", None))
        if not args.json:
            print(f"driving in the background (pid {pid}); watch with `fceval-tui status {run.id}`")
        return EXIT_OK
    return _drive(settings, store, run.id, quiet=args.json)


def _drive(settings: Settings, store: Store, run_id: str, quiet: bool = False) -> int:
    from fceval_tui import cli_output
    from fceval_tui.services.runner import Runner

    runner = Runner(store, settings)
    totals = cli_output.run_with_progress(runner, store, run_id, quiet=quiet)
    if totals is None:
        return 130
    if not quiet:
        cli_output.print_summary(store, run_id, totals, settings)
    return EXIT_OK if totals.all_succeeded else EXIT_FAILED


def cmd_resume(args: argparse.Namespace) -> int:
    from fceval_tui.services.runner import run_settings

    settings, store = load_context(args)
    run = store.get_run(args.run)
    settings = run_settings(settings, run)
    if args.detach:
        from fceval_tui.services import launching

        pid = launching.spawn_background_runner(settings, run.id, getattr(args, "env_file", None))
        print(f"run {run.id}: continuing in the background (pid {pid})")
        return EXIT_OK
    return _drive(settings, store, run.id, quiet=args.quiet)


def cmd_status(args: argparse.Namespace) -> int:
    from fceval_tui import cli_output

    _settings, store = load_context(args)
    if args.run:
        store.get_run(args.run)
    jobs = store.jobs(run_id=args.run)
    if args.json:
        print(json.dumps([job.to_json() for job in jobs], indent=2))
    elif args.run:
        cli_output.print_jobs(jobs)
    else:
        cli_output.print_runs(store.run_summaries())
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from fceval_tui.services.runner import cancel_jobs

    settings, store = load_context(args)
    if args.run:
        store.get_run(args.run)
        ids = [j.id for j in store.jobs(run_id=args.run) if not j.state.is_final]
    else:
        job = store.get_job(args.job)
        if job.state.is_final:
            print(f"job {job.id} is already {job.state}; nothing to cancel")
            return EXIT_OK
        ids = [job.id]
    cancelled = cancel_jobs(store, settings, ids)
    print(f"cancelled {len(cancelled)} job(s)" + (f": {', '.join(j.id for j in cancelled)}" if cancelled else ""))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from fceval_tui.resources import example_jobs
    from fceval_tui.services import launching

    settings, store = load_context(args, {"backend": "local"})
    settings = launching.demo_settings(settings)
    parsed = launching.parse_jobs(settings, jobs_file=example_jobs(), task_ids=None)
    launching.check_can_launch(settings, skip_preflight=False)
    if args.headless:
        run, jobs = launching.create_run(store, settings, parsed.specs)
        print(f"demo run {run.id}: {len(jobs)} example jobs on this machine (tmux), {run.concurrency} at a time")
        return _drive(settings, store, run.id)
    return _console(args, settings, store, demo_specs=parsed.specs)


def _console(args: argparse.Namespace, settings: Settings, store: Store, demo_specs=None) -> int:
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        raise UserError(
            "the console needs an interactive terminal",
            "run it in a terminal, or use the headless subcommands (`fceval-tui --help`)",
        )
    from fceval_tui.ui.app import make_app

    app = make_app(settings, store, readonly=args.readonly, theme=args.theme, demo_specs=demo_specs)
    app.run()
    return app.return_code or EXIT_OK


def cmd_console(args: argparse.Namespace) -> int:
    settings, store = load_context(args)
    return _console(args, settings, store)


COMMANDS = {
    "launch": cmd_launch,
    "status": cmd_status,
    "resume": cmd_resume,
    "cancel": cmd_cancel,
    "demo": cmd_demo,
}


def _extra_command(name: str):
    """Subcommands served by later layers (mirror, audit, teardown), looked up on demand."""
    import importlib

    module = importlib.import_module("fceval_tui.cli_extra")
    return getattr(module, f"cmd_{name}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            return cmd_console(args)
        handler = COMMANDS.get(args.command) or _extra_command(args.command)
        return handler(args)
    except UserError as exc:
        print(f"fceval-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
