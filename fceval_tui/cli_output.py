"""Human output of the headless CLI: tables, live progress read from the ledger, summaries."""

from __future__ import annotations

import sys
import threading
from collections import Counter

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from fceval_tui.config import Settings
from fceval_tui.domain.models import Job
from fceval_tui.domain.states import FINAL_STATES, JobState
from fceval_tui.presentation import STATE_ICON, STATE_STYLE, elapsed, money
from fceval_tui.services.runner import Runner, RunTotals
from fceval_tui.store import RunSummary, Store

FINAL_MARK = {s: STATE_ICON[s] for s in ("succeeded", "failed", "cancelled", "timed_out")}
REFRESH = 0.5


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Piped output is for scripts and logs: never truncate columns to a guessed 80-column width.
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 250)


def render_plan(plan: dict) -> Group:
    """The dry-run plan as one renderable (the CLI prints it; the console's launch form shows it)."""
    parts: list = [
        Text.from_markup(
            f"[bold]dry run[/] (nothing is created): run {plan['run_id']} (provisional id) on "
            f"[bold]{plan['backend']}[/], {plan['concurrency']} at a time, timeout {plan['job_timeout_minutes']} min, "
            f"up to {plan['max_attempts']} attempts, {len(plan['jobs'])} job(s)"
        )
    ]
    cost = plan.get("estimated_cost_usd")
    if cost and plan["backend"] != "local":
        parts.append(Text(f"estimated cost at most ${cost:.2f} (every job running to its timeout)"))
    for job in plan["jobs"]:
        model = f" / {job['model']}" if job["model"] else ""
        parts.append(
            Text.from_markup(f"\n[bold]{job['job_id']}[/]  ") + Text(f"{job['agent']} / {job['task_id']}{model}")
        )
        if job["tmux"]:
            parts.append(Text("  session: " + " ".join(job["tmux"])))
        parts.append(Text("  run:     " + job["run_command"]))
        if job["grade_command"]:
            parts.append(Text("  grade:   " + job["grade_command"]))
        parts.append(Text("  stores:  " + ", ".join(job["artifacts"])))
    return Group(*parts)


def print_plan(plan: dict) -> None:
    _console().print(render_plan(plan))


def print_jobs(jobs: list[Job]) -> None:
    table = Table(box=None, pad_edge=False)
    for col in ("job", "agent", "task", "model", "backend", "state", "att", "exit", "elapsed", "cost"):
        table.add_column(col, no_wrap=col in ("job", "state"))
    for job in jobs:
        style = STATE_STYLE.get(job.state.value, "")
        # Agents and task ids are user data: Text, never markup ("[/x]" is a valid task id).
        table.add_row(
            job.id,
            Text(job.agent),
            Text(job.task_id),
            Text(job.model),
            job.backend,
            Text(job.state.value, style=style),
            str(job.attempts),
            "" if job.exit_code is None else str(job.exit_code),
            elapsed(job),
            money(job.cost_usd),
        )
    _console().print(table)
    errors = [j for j in jobs if j.error and j.state in FINAL_STATES and j.state != JobState.SUCCEEDED]
    for job in errors:
        _console().print(f"{job.id}: {job.error}", markup=False, style="red")


def print_runs(summaries: list[RunSummary]) -> None:
    if not summaries:
        _console().print("no runs yet: start one with `fceval-tui launch --jobs FILE` or `fceval-tui demo`")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("run", "created", "backend", "jobs", "done", "succeeded", "failed", "active"):
        table.add_column(col)
    for s in summaries:
        active = sum(n for st, n in s.counts.items() if not JobState(st).is_final)
        failed = s.counts.get("failed", 0) + s.counts.get("timed_out", 0)
        table.add_row(
            s.run.id,
            s.run.created_at.strftime("%Y-%m-%d %H:%M"),
            s.run.backend,
            str(s.total),
            str(s.done),
            str(s.counts.get("succeeded", 0)),
            str(failed),
            str(active),
        )
    _console().print(table)


def run_with_progress(runner: Runner, store: Store, run_id: str, quiet: bool = False) -> RunTotals | None:
    """Drive the run in a thread; show per-job results and a progress bar from the ledger."""
    result: dict = {}

    def drive() -> None:
        try:
            result["totals"] = runner.run(run_id)
        except BaseException as exc:  # re-raised in the main thread
            result["error"] = exc

    # The cursor is taken before the runner starts, so a job that ends at once is still reported.
    cursor = max((e.id for e in store.events(run_id=run_id, newest_first=True, limit=1)), default=0)
    thread = threading.Thread(target=drive, name=f"runner-{run_id}", daemon=True)
    thread.start()
    out = _console()
    live = None
    if not quiet and sys.stdout.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        live = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"),
            console=out,
            transient=True,
        )
        live.add_task(run_id, total=len(store.jobs(run_id=run_id)), counts="")
        live.start()
    try:
        while thread.is_alive():
            thread.join(REFRESH)
            cursor = _report(store, run_id, cursor, out if not quiet else None, live)
    except KeyboardInterrupt:
        runner.stop()
        if live:
            live.stop()
        thread.join(30)
        active = [j for j in store.jobs(run_id=run_id) if not j.state.is_final]
        print(
            f"\nstopped watching run {run_id}: {len(active)} job(s) not final; running tmux sessions go on.\n"
            f"  continue: fceval-tui resume {run_id}\n  stop:     fceval-tui cancel --run {run_id}",
            file=sys.stderr,
        )
        return None
    finally:
        if live and live.live.is_started:
            live.stop()
    _report(store, run_id, cursor, out if not quiet else None, None)
    if "error" in result:
        raise result["error"]
    return result["totals"]


def _report(store: Store, run_id: str, cursor: int, out: Console | None, live) -> int:
    for event in store.events(run_id=run_id, after=cursor):
        cursor = event.id
        if out is None or event.kind != "state":
            continue
        if event.to_state in FINAL_MARK:
            job = store.get_job(event.job_id)
            style = STATE_STYLE[event.to_state]
            detail = f" ({job.error})" if job.error and event.to_state != "succeeded" else ""
            line = Text(f"{FINAL_MARK[event.to_state]} {event.to_state:<9}", style=style)
            line.append(f" {job.id}  {job.agent}/{job.task_id}  {elapsed(job)}{detail}")
            out.print(line, highlight=False)
        elif event.to_state == "pending" and event.from_state not in (None, "pending"):
            line = Text("↻ retry", style="yellow")
            line.append(f"     {event.job_id}  {event.detail.get('reason', '')}")
            out.print(line)
    if live is not None:
        jobs = store.jobs(run_id=run_id)
        counts = Counter(j.state.value for j in jobs)
        done = sum(counts[s.value] for s in FINAL_STATES)
        text = "  ".join(f"{state} {n}" for state, n in sorted(counts.items()))
        live.update(live.task_ids[0], completed=done, counts=text)
    return cursor


def print_summary(store: Store, run_id: str, totals: RunTotals, settings: Settings) -> None:
    counts = totals.counts
    out = _console()
    parts = [f"{counts.get(s, 0)} {s}" for s in ("succeeded", "failed", "timed_out", "cancelled") if counts.get(s)]
    out.print(f"\n[bold]run {run_id}[/]: " + (", ".join(parts) or "no jobs") + f" in {totals.wall_seconds:.1f}s")
    prefix = store.get_run(run_id).settings.get("artifacts") or settings.artifact_prefix
    out.print(f"artifacts: {prefix}", markup=False)
    if not totals.all_succeeded:
        out.print(f"details:   fceval-tui status {run_id}", markup=False)
