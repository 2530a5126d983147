"""The ledger's per-attempt costs: what each attempt of a job cost, when it ran, and the hourly price
it was billed at (with where that price came from). Kept per attempt, so a retry never overwrites
what an earlier attempt cost; a job's `cost_usd` is their sum."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fceval_tui.domain.models import Job, iso, parse_iso
from fceval_tui.domain.prices import HourlyPrice


@dataclass(frozen=True)
class AttemptCost:
    job_id: str
    attempt: int
    cost_usd: float
    started_at: datetime | None  # the attempt's start (its resource's launch); None in older ledgers
    billed_until: datetime | None  # when its cost was last computed: its end once it has ended
    hourly_usd: float | None  # the price recorded for it (None: the backend's table price)
    price_source: str | None  # a domain.prices.PriceSource value, or None


class AttemptCosts:
    """Mixed into `Ledger`, whose `_tx`, `_lock`, `_db`, `_clock`, `_event` and `update` these use."""

    def set_attempt_cost(self, job_id: str, attempt: int, cost_usd: float, until: datetime | None = None) -> Job:
        """This attempt's cost so far (computed at `until`, default now); the job's cost becomes the
        sum over its attempts. The attempt's start is the job's start while it is the current attempt."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO attempt_costs(job_id, attempt, cost_usd, started_at, billed_until) VALUES "
                "(?, ?, ?, (SELECT started_at FROM jobs WHERE id=? AND MAX(attempts, 1)=?), ?) "
                "ON CONFLICT(job_id, attempt) DO UPDATE SET cost_usd=excluded.cost_usd, "
                "started_at=COALESCE(attempt_costs.started_at, excluded.started_at), "
                "billed_until=excluded.billed_until",
                (job_id, attempt, cost_usd, job_id, attempt, iso(until or self._clock())),
            )
            total = db.execute("SELECT SUM(cost_usd) FROM attempt_costs WHERE job_id=?", (job_id,)).fetchone()[0]
        return self.update(job_id, cost_usd=round(total, 6))

    def set_attempt_price(self, job_id: str, attempt: int, price: HourlyPrice | None) -> None:
        """The hourly price this attempt is billed at and where it came from (an event says which);
        nothing for None or an unknown price (the attempt is billed at the backend's rate)."""
        if price is None or price.usd is None:
            return
        with self._tx() as db:
            db.execute(
                "INSERT INTO attempt_costs(job_id, attempt, cost_usd, started_at, hourly_usd, price_source) VALUES "
                "(?, ?, 0, (SELECT started_at FROM jobs WHERE id=? AND MAX(attempts, 1)=?), ?, ?) "
                "ON CONFLICT(job_id, attempt) DO UPDATE SET hourly_usd=excluded.hourly_usd, "
                "price_source=excluded.price_source",
                (job_id, attempt, job_id, attempt, price.usd, str(price.source)),
            )
            run_id = db.execute("SELECT run_id FROM jobs WHERE id=?", (job_id,)).fetchone()["run_id"]
            detail = {"attempt": attempt, "hourly_usd": price.usd, "source": str(price.source)}
            if price.note:
                detail["note"] = price.note
            self._event(db, run_id, job_id, "attempt_price", detail=detail)

    def attempt_costs(self, job_id: str) -> dict[int, float]:
        with self._lock:
            rows = self._db.execute(
                "SELECT attempt, cost_usd FROM attempt_costs WHERE job_id=? ORDER BY attempt", (job_id,)
            ).fetchall()
        return {row["attempt"]: row["cost_usd"] for row in rows}

    def attempt_hourly(self, job_id: str, attempt: int) -> float | None:
        """The price recorded for this attempt, or None (bill it at the backend's table price)."""
        with self._lock:
            row = self._db.execute(
                "SELECT hourly_usd FROM attempt_costs WHERE job_id=? AND attempt=?", (job_id, attempt)
            ).fetchone()
        return row["hourly_usd"] if row else None

    def run_attempt_costs(self, run_id: str) -> list[AttemptCost]:
        """Every attempt of every job of the run that has a cost row, in job then attempt order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.* FROM attempt_costs a JOIN jobs j ON j.id = a.job_id WHERE j.run_id=? "
                "ORDER BY j.seq, a.attempt",
                (run_id,),
            ).fetchall()
        return [
            AttemptCost(
                row["job_id"],
                row["attempt"],
                row["cost_usd"],
                parse_iso(row["started_at"]),
                parse_iso(row["billed_until"]),
                row["hourly_usd"],
                row["price_source"],
            )
            for row in rows
        ]
