"""A run's cumulative cost against time, from its attempts: each attempt's cost (as the ledger keeps it,
per attempt) accrues evenly from its start to when it was last billed, at the hourly price it was
billed at. The series ends at the run's total; it also says which prices were used."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from fceval_tui.domain.models import Job, iso
from fceval_tui.domain.stats import Span, cumulative
from fceval_tui.ledger import Ledger

TABLE_PRICE = "backend price table"  # attempts billed at the backend's own rate (no recorded price)


@dataclass(frozen=True)
class CostSeries:
    run_id: str
    points: tuple[tuple[datetime, float], ...]  # (instant, USD spent by then), in time order
    prices: dict[str, int]  # price source -> attempts billed at a price from it
    untimed_usd: float = 0.0  # cost of attempts whose times an older ledger did not keep (not in points)

    @property
    def total_usd(self) -> float:
        return (self.points[-1][1] if self.points else 0.0) + self.untimed_usd

    def to_json(self) -> dict:
        return {
            "run": self.run_id,
            "points": [{"at": iso(at), "cost_usd": round(usd, 6)} for at, usd in self.points],
            "price_sources": dict(sorted(self.prices.items())),
            "untimed_cost_usd": round(self.untimed_usd, 6),
        }


def cost_over_time(ledger: Ledger, run_id: str, jobs: list[Job]) -> CostSeries:
    attempts = defaultdict(list)
    for row in ledger.run_attempt_costs(run_id):
        attempts[row.job_id].append(row)
    spans: list[Span] = []
    prices: Counter[str] = Counter()
    untimed = 0.0
    for job in jobs:
        recorded = 0.0
        for row in attempts.get(job.id, ()):
            recorded += row.cost_usd
            if row.cost_usd > 0 or row.price_source:
                prices[row.price_source or TABLE_PRICE] += 1
            start, end = row.started_at, row.billed_until
            if start is None and row.attempt == max(job.attempts, 1):  # an older ledger: the job's own times
                start, end = job.started_at, end or job.ended_at
            if start is not None and end is not None:
                spans.append(Span(start, max(start, end), row.cost_usd))
            else:
                untimed += row.cost_usd
        # Cost written onto the job without attempt rows (older tools): the job's own span carries it.
        rest = round(job.cost_usd - recorded, 6)
        if rest > 0:
            end = job.ended_at or job.updated_at
            if job.started_at and end:
                spans.append(Span(job.started_at, max(job.started_at, end), rest))
            else:
                untimed += rest
    return CostSeries(run_id, tuple(cumulative(spans)), dict(prices), round(untimed, 6))
