"""Which machines `exec` reaches: the live compute behind a run's jobs, behind named jobs, or a pool's instances.

A machine is an EC2 instance (Run Command) or an ECS task (ECS Exec). Jobs without one (not started yet,
finished and torn down, local or Batch jobs) are listed as skipped with the reason, never silently dropped.
Every id typed by the user is checked against the console's own id alphabet before it is used anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fceval_tui.domain.models import Job
from fceval_tui.domain.states import FINAL_STATES
from fceval_tui.errors import NotFoundError, UserError
from fceval_tui.ledger import Ledger

# Run, job and pool ids as the console makes them (`r1a2b3c4d`, `r1a2b3c4d-007`, a pool name).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
EXEC_BACKENDS = ("ec2", "ecs")


def check_id(value: str, what: str) -> str:
    """`value` when it is a plain id; a UserError naming it otherwise (ids never reach a shell, but a
    `x; reboot` is a typo or an attack, and either way not something to look up)."""
    if not _ID.fullmatch(value):
        raise UserError(
            f"{what} {value!r} is not a valid {what} (letters, digits, '.', '_' and '-' only)",
            f"list them with `fceval-tui status`{' or `fceval-tui pool status`' if what == 'pool name' else ''}",
        )
    return value


@dataclass(frozen=True)
class Machine:
    """One machine to run the command on, and the jobs it carries (a pool instance may carry several)."""

    id: str  # an EC2 instance id, or an ECS task ARN
    backend: str
    jobs: tuple[str, ...] = ()
    run_ids: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return self.id.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Selection:
    machines: tuple[Machine, ...]
    scope: str  # what the user asked for, for messages and the ledger: "run R", "pool P", "jobs A, B"
    skipped: tuple[tuple[str, str], ...] = field(default=())  # (job id, why)
    pool: str | None = None


def _why_not(job: Job) -> str | None:
    if job.backend not in EXEC_BACKENDS:
        where = "this machine" if job.backend == "local" else f"{job.backend}, which has no shell access"
        return f"runs on {where} (exec reaches EC2 instances and ECS tasks)"
    if job.state in FINAL_STATES:
        return f"is {job.state.value}: its {'instance' if job.backend == 'ec2' else 'task'} is gone"
    if not job.resource_id:
        return f"has no {'instance' if job.backend == 'ec2' else 'task'} yet ({job.state.value})"
    return None


def _group(jobs: Iterable[Job]) -> tuple[list[Machine], list[tuple[str, str]]]:
    by_machine: dict[str, list[Job]] = {}
    skipped: list[tuple[str, str]] = []
    for job in jobs:
        why = _why_not(job)
        if why:
            skipped.append((job.id, why))
        else:
            by_machine.setdefault(job.resource_id, []).append(job)
    machines = [
        Machine(rid, js[0].backend, tuple(j.id for j in js), tuple(dict.fromkeys(j.run_id for j in js)))
        for rid, js in by_machine.items()
    ]
    return machines, skipped


def select_jobs(
    ledger: Ledger, run_id: str | None = None, job_ids: Sequence[str] = (), scope: str | None = None
) -> Selection:
    """The machines behind a run's jobs, or behind the named jobs (NotFoundError for an unknown id);
    `scope` names the selection in messages and the ledger (default: the run, or the job ids)."""
    if run_id is not None:
        ledger.get_run(check_id(run_id, "run id"))
        jobs = ledger.jobs(run_id=run_id)
        default = f"run {run_id}"
    else:
        jobs = [ledger.get_job(check_id(job_id, "job id")) for job_id in dict.fromkeys(job_ids)]
        default = "jobs " + ", ".join(j.id for j in jobs)
    machines, skipped = _group(jobs)
    return _require(Selection(tuple(machines), scope if scope is not None else default, tuple(skipped)))


def select_pool(ledger: Ledger, pool: str, instance_ids: Sequence[str]) -> Selection:
    """A pool's running instances (found by its tag), with the jobs the ledger has on each."""
    check_id(pool, "pool name")
    on: dict[str, list[Job]] = {}
    for job in ledger.jobs():
        if job.resource_id and job.state not in FINAL_STATES:
            on.setdefault(job.resource_id, []).append(job)
    machines = [
        Machine(i, "ec2", tuple(j.id for j in on.get(i, ())), tuple(dict.fromkeys(j.run_id for j in on.get(i, ()))))
        for i in instance_ids
    ]
    if not machines:
        raise NotFoundError(f"pool {pool!r} has no running instances", "start one with `fceval-tui pool up --size N`")
    return Selection(tuple(machines), f"pool {pool}", pool=pool)


def _require(selection: Selection) -> Selection:
    if selection.machines:
        return selection
    by_reason: dict[str, list[str]] = {}
    for job, why in selection.skipped:
        by_reason.setdefault(why, []).append(job)
    reasons = "; ".join(
        f"{jobs[0]}{f' and {len(jobs) - 1} more' if len(jobs) > 1 else ''} {why}" for why, jobs in by_reason.items()
    )
    raise UserError(
        f"no machine to run on in {selection.scope}: {reasons or 'no jobs'}",
        "exec reaches the EC2 instances and ECS tasks of jobs that are running; see `fceval-tui status`",
    )
