"""How jobs look to people, shared by the CLI output and the console: icons, colours, durations, plans."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group
from rich.text import Text

from fceval_tui.domain.models import Event, Job, utcnow
from fceval_tui.services.pool_view import InstanceRow

STATE_STYLE = {
    "pending": "dim",
    "provisioning": "cyan",
    "waiting_capacity": "yellow",
    "starting": "cyan",
    "running": "bold blue",
    "grading": "magenta",
    "uploading": "cyan",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "dim",
    "timed_out": "red",
}
STATE_ICON = {
    "pending": "·",
    "provisioning": "◌",
    "waiting_capacity": "⧗",
    "starting": "◔",
    "running": "▶",
    "grading": "◑",
    "uploading": "⇡",
    "succeeded": "✓",
    "failed": "✗",
    "cancelled": "∅",
    "timed_out": "⌛",
}


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def elapsed(job: Job, now: datetime | None = None) -> str:
    if not job.started_at:
        return ""
    end = job.ended_at or now or utcnow()
    return duration((end - job.started_at).total_seconds())


def pool_note(row: InstanceRow | None) -> str:
    """What a warm pool's instance is doing ("pool p: 2 job(s)", "pool p: idle 4:10"); empty for others."""
    if row is None:
        return ""
    if row.instance.jobs:
        return f"pool {row.pool}: {len(row.instance.jobs)} job(s)"
    idle = f"idle {duration(row.idle_seconds)}" if row.idle_seconds is not None else row.instance.state
    return f"pool {row.pool}: {idle}"


def money(usd: float) -> str:
    return f"${usd:,.2f}" if usd >= 0.01 or usd == 0 else "<$0.01"


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
        hourly = plan.get("hourly_cost_usd_per_job") or 0
        parts.append(
            Text(f"estimated cost ${hourly:.4f}/h per job, at most ${cost:.2f} for the run (every job to its timeout)")
        )
    for key, value in (plan.get("would_create") or {}).items():
        parts.append(Text(f"  {key.replace('_', ' ')}: {value}"))
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


def describe_event(event: Event) -> Text:
    """One line saying what an event was: a state change and its reason, or an action and its details."""
    detail = event.detail
    if event.kind == "state":
        text = Text(f"{event.from_state} → ", style="dim")
        text.append(event.to_state or "", style=STATE_STYLE.get(event.to_state or "", ""))
        why = detail.get("reason") or detail.get("error")
        if why:
            text.append(f"  {why}")
        return text
    parts = " ".join(f"{k}={v}" for k, v in detail.items())
    style = "red" if "fail" in event.kind or "error" in detail else "yellow" if "retry" in event.kind else ""
    return Text(f"{event.kind}  {parts}".strip(), style=style)


EXEC_OUTPUT_LINES = 20  # lines of each group's output shown; --json has them all


def machines_noun(backends: set[str], count: int) -> str:
    noun = {frozenset({"ec2"}): "instance", frozenset({"ecs"}): "task"}.get(frozenset(backends), "machine")
    return noun if count == 1 else noun + "s"


def render_exec(report) -> Group:
    """An exec's answers grouped by identical result: `12 instances: ok`, `3 instances: exit 1  i-a, i-b, i-c`
    and each group's output below it (`report` is a services.fleet_exec.ExecReport)."""
    backends = {m.backend for m in report.selection.machines}
    parts: list = []
    for group in report.groups():
        count = len(group.results)
        head = Text(f"{count} {machines_noun(backends, count)}: {group.label}", style="green" if group.ok else "red")
        if not group.ok or count <= 3:
            names = [r.machine.short for r in group.results]
            head.append("  " + ", ".join(names[:10]) + (f" … (+{len(names) - 10})" if len(names) > 10 else ""), "dim")
        parts.append(head)
        lines = group.output.rstrip("\n").splitlines()
        parts.extend(Text("    " + line) for line in lines[:EXEC_OUTPUT_LINES])
        if len(lines) > EXEC_OUTPUT_LINES:
            parts.append(Text(f"    … {len(lines) - EXEC_OUTPUT_LINES} more lines (--json has them all)", "dim"))
    for job_id, why in report.selection.skipped:
        parts.append(Text(f"skipped {job_id}: {why}", style="yellow"))
    if report.interrupted:
        parts.append(Text("interrupted: what was still running was cancelled", style="yellow"))
    return Group(*parts)
