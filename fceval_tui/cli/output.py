"""How the CLI prints: tables, JSON, summaries, one-line errors, and the audit and teardown reports.

Service types are imported inside the functions that use them: `status` loads neither the
audit's AWS checks nor teardown.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fceval_tui.domain.models import Event, Job
from fceval_tui.domain.states import FINAL_STATES, JobState
from fceval_tui.errors import UserError
from fceval_tui.presentation import (
    PAUSED_STYLE,
    describe_event,
    elapsed,
    is_paused,
    money,
    pool_note,
    render_plan,
    state_text,
)

if TYPE_CHECKING:
    from fceval_tui.config import Settings
    from fceval_tui.ledger import Ledger, RunSummary
    from fceval_tui.services.audit import AuditReport, CheckEvent
    from fceval_tui.services.pool_view import PoolStatus
    from fceval_tui.services.report import Report
    from fceval_tui.services.resources import ResourceListing
    from fceval_tui.services.runner import RunTotals
    from fceval_tui.services.teardown import Plan


def console() -> Console:
    # Piped output is for scripts and logs: never truncate columns to a guessed 80-column width.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 250)


def print_error(error: Exception) -> None:
    """The one line a usage or configuration error gets (the exit status is 2)."""
    fix = getattr(error, "fix", "")
    text = str(error) if isinstance(error, UserError) or not fix else f"{error} (fix: {fix})"
    print(f"fceval-tui: error: {text}", file=sys.stderr)


def print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def print_json(data, indent: int | None = 2) -> None:
    print(json.dumps(data, indent=indent), flush=True)


def print_plan(plan: dict) -> None:
    console().print(render_plan(plan))


def print_jobs(jobs: list[Job]) -> None:
    table = Table(box=None, pad_edge=False)
    for col in ("job", "agent", "task", "model", "backend", "state", "att", "exit", "elapsed", "cost"):
        table.add_column(col, no_wrap=col in ("job", "state"))
    for job in jobs:
        # Agents and task ids are user data: Text, never markup ("[/x]" is a valid task id).
        table.add_row(
            job.id,
            Text(job.agent),
            Text(job.task_id),
            Text(job.model),
            job.backend,
            state_text(job, icon=False),
            str(job.attempts),
            "" if job.exit_code is None else str(job.exit_code),
            elapsed(job),
            money(job.cost_usd),
        )
    console().print(table)
    errors = [j for j in jobs if j.error and j.state in FINAL_STATES and j.state != JobState.SUCCEEDED]
    for job in errors:
        console().print(f"{job.id}: {job.error}", markup=False, style="red")
    for reason in sorted({job.paused for job in jobs if is_paused(job)}):
        console().print(f"paused: {reason}", markup=False, style=PAUSED_STYLE)


def print_events(events: list[Event]) -> None:
    if not events:
        console().print("no events")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("#", "time", "run", "job", "what"):
        table.add_column(col, no_wrap=col != "what")
    for event in events:
        table.add_row(
            str(event.id), event.ts.strftime("%H:%M:%S"), event.run_id, event.job_id or "", describe_event(event)
        )
    console().print(table)


def print_resources(listing: ResourceListing) -> None:
    if not listing.resources:
        console().print("nothing running or left behind")
    else:
        table = Table(box=None, pad_edge=False)
        for col in ("backend", "kind", "id", "state", "run", "job", "cost", "orphan"):
            table.add_column(col, no_wrap=col in ("id", "kind"))
        for r in listing.resources:
            why = listing.orphans.get(r.id)
            table.add_row(
                r.backend,
                r.kind,
                r.id,
                r.state,
                r.run_id or "",
                pool_note(listing.pools.get(r.id)) or r.job_id or "",
                money(r.cost_usd),
                Text(why or "", style="yellow"),
            )
        console().print(table)
    for error in listing.errors:
        print_warning(f"not listed: {error}")


def print_pools(statuses: list[PoolStatus]) -> None:
    """Each pool on a line, then one row per live instance: its jobs, idle time, expiry and cost so far."""
    from fceval_tui.presentation import duration

    if not statuses:
        console().print("no pools: start one with `fceval-tui pool up --size N`")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("pool", "instance", "state", "slots", "jobs", "idle", "expires", "cost", "note"):
        table.add_column(col, no_wrap=col in ("instance", "expires"))
    for status in statuses:
        p = status.pool
        console().print(
            f"pool {p.name}: {p.state}, {status.ready}/{p.size} ready, {status.busy}/{status.slots} slots busy, "
            f"{p.settings.get('ec2_instance_type')} in {p.settings.get('region')}, idle timeout {p.idle_minutes:g} min"
            + (f"; {status.note}" if status.note else "")
        )
        for row in status.rows:
            i = row.instance
            table.add_row(
                p.name,
                i.id,
                i.state,
                str(i.slots),
                ", ".join(i.jobs),
                "" if row.idle_seconds is None else duration(row.idle_seconds),
                i.expires_at.strftime("%H:%M:%S UTC") if i.expires_at else "",
                money(row.cost_usd),
                i.note or "",
            )
    if table.row_count:
        console().print(table)


_REPORT_COLUMNS = (
    "agent",
    "model",
    "dataset",
    "jobs",
    "succeeded",
    "failed",
    "score_mean",
    "score_median",
    "scored",
    "duration_median_s",
    "duration_p90_s",
    "cost_usd",
)


def _report_cell(row: dict, key: str) -> str:
    value = row[key]
    if key == "failed":
        return " ".join(f"{name}:{n}" for name, n in value.items())
    return "" if value is None else str(value)


def print_report(report: Report) -> None:
    console().print(f"runs: {', '.join(report.run_ids)}", markup=False)
    table = Table(box=None, pad_edge=False)
    for col in _REPORT_COLUMNS:
        table.add_column(
            col.replace("_", " "), justify="left" if col in ("agent", "model", "dataset", "failed") else "right"
        )
    for group in report.groups:
        row = group.to_json()
        table.add_row(*(Text(_report_cell(row, col)) for col in _REPORT_COLUMNS))
    console().print(table)
    if report.by_run:
        _print_side_by_side(report)
    if len(report.run_ids) == 2 and not report.diffs:
        console().print("no per-task differences between the two runs")
    if report.diffs:
        diff = Table(title="per-task differences", box=None, pad_edge=False)
        for col in ("agent", "model", "task", "before", "after", "score before", "score after"):
            diff.add_column(col)
        for d in report.diffs:
            diff.add_row(
                *(Text(v) for v in (d.agent, d.model, d.task_id, d.before, d.after)),
                "" if d.score_before is None else str(d.score_before),
                "" if d.score_after is None else str(d.score_after),
            )
        console().print(diff)
    for note in report.notes:
        print_warning(note)


def _print_side_by_side(report: Report) -> None:
    """Each compared run's succeeded/jobs, mean score and cost, one column per run."""
    table = Table(title="side by side", box=None, pad_edge=False, title_justify="left")
    for col in ("agent", "model", "dataset"):
        table.add_column(col)
    for what in ("ok", "score", "cost"):
        for run_id in report.by_run:
            table.add_column(f"{what} {run_id}", justify="right")
    for key, runs in report.side_by_side():
        rows = [g.to_json() if g else None for g in runs.values()]
        ok = ["—" if r is None else f"{r['succeeded']}/{r['jobs']}" for r in rows]
        score = ["—" if r is None or r["score_mean"] is None else str(r["score_mean"]) for r in rows]
        cost = ["—" if r is None else money(r["cost_usd"]) for r in rows]
        table.add_row(*(Text(v) for v in key), *ok, *score, *cost)
    console().print(table)


def print_report_csv(report: Report) -> None:
    import csv

    writer = csv.writer(sys.stdout)
    writer.writerow(_REPORT_COLUMNS)
    for group in report.groups:
        row = group.to_json()
        writer.writerow([_report_cell(row, col) for col in _REPORT_COLUMNS])


def print_runs(summaries: list[RunSummary]) -> None:
    if not summaries:
        console().print("no runs yet: start one with `fceval-tui launch --jobs FILE` or `fceval-tui demo`")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("run", "created", "backend", "jobs", "done", "succeeded", "failed", "active", "paused"):
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
            Text(s.paused or "", style=PAUSED_STYLE) if active else "",
        )
    console().print(table)


def print_summary(ledger: Ledger, run_id: str, totals: RunTotals, settings: Settings) -> None:
    counts = totals.counts
    out = console()
    parts = [f"{counts.get(s, 0)} {s}" for s in ("succeeded", "failed", "timed_out", "cancelled") if counts.get(s)]
    out.print(f"\n[bold]run {run_id}[/]: " + (", ".join(parts) or "no jobs") + f" in {totals.wall_seconds:.1f}s")
    prefix = ledger.get_run(run_id).settings.get("artifacts") or settings.artifact_prefix
    out.print(f"artifacts: {prefix}", markup=False)
    if not totals.all_succeeded:
        out.print(f"details:   fceval-tui status {run_id}", markup=False)


# -- audit --------------------------------------------------------------------------------------


def format_audit_report(report: AuditReport) -> str:
    from fceval_tui.services.audit_checks import Severity

    label = {
        Severity.OK: "ok",
        Severity.INFO: "info",
        Severity.WARNING: "WARNING",
        Severity.ERROR: "ERROR",
        Severity.UNKNOWN: "unknown",
    }
    lines = [
        f"preflight audit: {report.backend} backend"
        + (f", region {report.region}" if report.backend != "local" else "")
    ]
    area = None
    for finding in report.findings:
        if finding.area != area:
            area = finding.area
            lines.append(f"\n{area}")
        lines.append(f"  {label[finding.severity]:<8} {finding.id:<30} {finding.summary}")
        if finding.detail and finding.severity is not Severity.OK:
            lines.append(f"  {'':<8} {'':<30} {finding.detail}")
        if finding.fix and finding.severity in (Severity.ERROR, Severity.WARNING, Severity.UNKNOWN):
            lines.append(f"  {'':<8} {'':<30} fix: {finding.fix}")
    counts = report.counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines.append(f"\n{summary or 'no findings'}")
    return "\n".join(lines)


class AuditProgress:
    """`[done/total] title` on stderr while checks run, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.enabled = sys.stderr.isatty()
        self._lock = threading.Lock()

    def __call__(self, event: CheckEvent) -> None:
        if not self.enabled or not event.finished:
            return
        with self._lock:  # called from the pool's threads
            self.done += 1
            end = "\n" if self.done == self.total else ""
            sys.stderr.write(f"\r\033[K[{self.done}/{self.total}] {event.check.title}{end}")
            sys.stderr.flush()


# -- teardown -----------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def format_teardown_plan(plan: Plan) -> str:
    from fceval_tui.services.teardown import DESTROY

    now = plan.created_at
    lines = [f"teardown ({plan.scope}): looked at {', '.join(plan.listing.listed) or 'nothing'}"]
    for backend, why in plan.listing.unlisted.items():
        lines.append(f"  could not list {backend}: {why}")
    lines.extend(f"  note: {note}" for note in plan.listing.notes)
    if plan.items:
        lines.append(f"{'ACTION':<15} {'BACKEND':<7} {'KIND':<16} {'ID':<40} {'AGE':>6} {'COST':>8}  REASON")
        for item in plan.items:
            r = item.resource
            lines.append(
                f"{item.action:<15} {r.backend:<7} {r.kind:<16} {r.id:<40} "
                f"{_age(item.age_seconds(now)):>6} {r.cost_usd:>8.2f}  {item.reason}"
            )
    cancel_only = [j for j in plan.cancel_job_ids if j not in {i.resource.job_id for i in plan.items}]
    if cancel_only:
        lines.append(f"jobs cancelled in the ledger (no compute yet): {', '.join(cancel_only)}")
    for item in plan.kept:
        lines.append(f"kept: {item.resource.kind} {item.resource.id} ({item.reason})")
    if not plan.actionable:
        lines.append("nothing to tear down")
    else:
        lines.append(
            f"{len([i for i in plan.items if i.action == DESTROY])} resource(s) to remove, "
            f"{len(plan.cancel_job_ids)} job(s) to cancel; cost so far ${plan.cost_usd:.2f}"
        )
    return "\n".join(lines)
