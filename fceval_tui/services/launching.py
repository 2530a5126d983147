"""Launching: from job specs to a run in the ledger, a dry-run plan, a background runner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fceval_tui import locations
from fceval_tui.backends import make_backend
from fceval_tui.backends.base import work_dir
from fceval_tui.config import Settings, setting
from fceval_tui.domain import jobfile
from fceval_tui.domain.artifacts import join_prefix, keys_for
from fceval_tui.domain.models import Job, JobSpec, job_id_for, new_run_id, utcnow
from fceval_tui.domain.states import JobState
from fceval_tui.domain.template import job_environment
from fceval_tui.errors import UserError
from fceval_tui.ledger import Ledger
from fceval_tui.services.runner import Runner, job_values

BACKGROUND_START_TIMEOUT = 20.0


def parse_jobs(settings: Settings, jobs_file: Path | None, task_ids: list[str] | None) -> jobfile.ParsedJobs:
    if jobs_file is not None:
        return jobfile.parse_file(jobs_file, dataset=settings.dataset, default_model=settings.model)
    if not settings.agent:
        raise UserError("--task-id needs an agent", "pass --agent NAME or set FCEVAL_AGENT")
    return jobfile.from_task_ids(task_ids or [], settings.agent, settings.model, settings.dataset)


def demo_settings(settings: Settings) -> Settings:
    """The demo always runs the bundled example harness on this machine."""
    return settings.replace(
        backend="local",
        run_command=setting("run_command").default_value(),
        grade_command=setting("grade_command").default_value(),
    )


def check_can_launch(settings: Settings, skip_preflight: bool) -> None:
    """Refuse early, before anything is written: a missing tool or (for cloud) a failed preflight."""
    backend = make_backend(settings.backend, settings)
    backend.check_ready()
    if settings.backend != "local" and not skip_preflight:
        from fceval_tui.services import audit

        audit.require_no_errors(settings, settings.backend)


def create_run(ledger: Ledger, settings: Settings, specs, skip_preflight: bool = False):
    return Runner(ledger, settings).create_run(list(specs), skip_preflight=skip_preflight)


def plan(settings: Settings, specs: tuple[JobSpec, ...]) -> dict:
    """Exactly what `launch` would create and run, with a provisional run id; writes nothing."""
    run_id = new_run_id()
    backend = make_backend(settings.backend, settings)
    prefix = backend.artifact_prefix()
    jobs = []
    for seq, spec in enumerate(specs, start=1):
        job = Job(
            job_id_for(run_id, seq),
            run_id,
            seq,
            spec.agent,
            spec.task_id,
            spec.model,
            spec.dataset,
            settings.backend,
            JobState.PENDING,
        )
        work = work_dir(settings, job)
        values = job_values(job, backend.artifacts_dir(job, work))
        job_environment(values)  # a value the pipeline could not receive fails the dry run too
        keys = keys_for(job, True, utcnow())
        target = backend.tmux_target(job)
        jobs.append(
            {
                "job_id": job.id,
                "agent": spec.agent,
                "task_id": spec.task_id,
                "model": spec.model,
                "run_command": settings.run_command.preview(values),
                "grade_command": settings.grade_command.preview(values) if settings.grade_command else None,
                "work_dir": str(work),
                "tmux": (["tmux", *target.tmux_args, "new-session", "-s", target.session] if target else None),
                "artifacts": [join_prefix(prefix, keys.run_archive), join_prefix(prefix, keys.grading_report)],
            }
        )
    return {
        "run_id": run_id,
        "provisional": True,
        "backend": settings.backend,
        "concurrency": settings.concurrent,
        "job_timeout_minutes": settings.job_timeout_minutes,
        "ttl_minutes": settings.ttl_minutes,
        "max_attempts": settings.max_attempts,
        "artifact_prefix": prefix,
        "would_create": backend.would_create(),
        "hourly_cost_usd_per_job": round(backend.hourly_cost(), 4),
        "estimated_cost_usd": round(estimate_cost(settings, backend.hourly_cost(), len(specs)), 2),
        "jobs": jobs,
    }


def estimate_cost(settings: Settings, hourly: float, jobs: int) -> float:
    """Upper bound: every job's compute lives until its timeout (or the TTL, if shorter)."""
    hours = min(settings.job_timeout_minutes, settings.ttl_minutes) / 60
    return hourly * hours * jobs


def spawn_background_runner(settings: Settings, run_id: str, env_file: Path | None) -> int:
    """Start `fceval-tui resume RUN` detached from this terminal; return once it owns the run."""
    log_path = locations.runner_log(settings.state_dir, run_id)
    locations.private_dir(log_path.parent)
    locations.private_file(log_path)
    argv = [sys.executable, "-m", "fceval_tui", "resume", run_id, "--quiet", "--state-dir", str(settings.state_dir)]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=os.environ.copy(),
        )
    ledger = Ledger.open(settings.state_dir)
    deadline = time.monotonic() + BACKGROUND_START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if ledger.run_owner(run_id) == proc.pid:
                return proc.pid
            if proc.poll() is not None:
                if not [j for j in ledger.jobs(run_id=run_id) if not j.state.is_final]:
                    return proc.pid  # it already finished every job
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise UserError(f"the background runner exited at once: {tail[0]}", f"see {log_path}")
            time.sleep(0.05)
    finally:
        ledger.close()
    raise UserError(
        f"the background runner did not start within {BACKGROUND_START_TIMEOUT:.0f}s",
        f"see {log_path}; continue with `fceval-tui resume {run_id}`",
    )
