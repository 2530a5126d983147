"""How jobs look to people, shared by the CLI output and the console: icons, colours, durations."""

from __future__ import annotations

from datetime import datetime

from fceval_tui.domain.models import Job, utcnow

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


def money(usd: float) -> str:
    return f"${usd:,.2f}" if usd >= 0.01 or usd == 0 else "<$0.01"
