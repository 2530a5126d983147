"""What every command starts from: settings from the global options, the ledger, a log file."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fceval_tui.errors import UserError

if TYPE_CHECKING:
    from fceval_tui.backends.base import TmuxTarget
    from fceval_tui.config import Settings
    from fceval_tui.domain.models import Job
    from fceval_tui.ledger import Ledger


def load_settings_from(args: argparse.Namespace, overrides: dict | None = None) -> Settings:
    """The settings the command line, environment and .env give; touches nothing on disk."""
    from fceval_tui.config import load_settings

    cli = dict(overrides or {})
    if getattr(args, "region", None):
        cli["region"] = args.region
    if getattr(args, "profile", None):
        cli["profile"] = args.profile
    explicit = hasattr(args, "env_file")
    env_file = args.env_file if explicit else Path(".env")
    return load_settings(
        cli=cli, env_file=env_file, state_dir=getattr(args, "state_dir", None), explicit_env_file=explicit
    )


def load_context(args: argparse.Namespace, overrides: dict | None = None) -> tuple[Settings, Ledger]:
    """The settings, with the state dir created (private), logging to it, and the ledger open."""
    from fceval_tui.ledger import Ledger
    from fceval_tui.locations import ensure_state_dir

    settings = load_settings_from(args, overrides)
    ensure_state_dir(settings.state_dir)
    _setup_logging(settings.state_dir)
    return settings, Ledger.open(settings.state_dir)


def _setup_logging(state_dir: Path) -> None:
    import logging

    from fceval_tui.locations import logs_dir, private_dir, private_file

    logs = private_dir(logs_dir(state_dir))
    handler = logging.FileHandler(private_file(logs / "fceval-tui.log"), encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("fceval_tui")
    root.setLevel(logging.INFO)
    root.addHandler(handler)


def job_target(settings: Settings, ledger: Ledger, job_id: str) -> tuple[Job, TmuxTarget]:
    """A job and its tmux session (for tail and attach); UserError when its backend has none."""
    from fceval_tui.backends import make_backend

    job = ledger.get_job(job_id)
    target = make_backend(job.backend, settings).tmux_target(job)
    if target is None:
        raise UserError(
            f"job {job.id} runs on {job.backend}, which has no tmux session",
            f"see its logs with `fceval-tui status {job.run_id}` or in the console",
        )
    return job, target


@contextmanager
def reaching_session(job: Job) -> Iterator[None]:
    """Finding a job's session: when it is missing because the job has not started or has ended, say
    that (with where its output is) instead of tmux's "no server running"."""
    try:
        yield
    except UserError as exc:
        from fceval_tui.domain.states import JobState

        if job.state in (JobState.PENDING, JobState.PROVISIONING, JobState.WAITING_CAPACITY):
            raise UserError(
                f"job {job.id} has not started yet ({job.state.value})",
                f"wait until `fceval-tui status {job.run_id}` shows it running",
            ) from exc
        if not job.state.is_final:
            raise
        ended = f" (exit {job.exit_code})" if job.exit_code is not None else ""
        output = f"its run archive is {job.artifacts[0]}" if job.artifacts else f"`fceval-tui status {job.run_id}`"
        # Only local sessions can outlive their job: cloud compute ends with it.
        keep = "; launch with --keep-sessions to keep the sessions of ended jobs" if job.backend == "local" else ""
        problem = f"job {job.id} has ended, {job.state.value}{ended}, and its tmux session with it"
        raise UserError(problem, output + keep) from exc
