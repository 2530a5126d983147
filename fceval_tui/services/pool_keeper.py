"""The pool keeper: a background thread that looks after warm pools while someone uses them.

It runs while the console runs (every pool that is up) and while `launch --pool` or the background runner
drives a run on a pool (that pool). Each pass (`tick`), per pool:

1. health (pool_fleet.upkeep): gone instances marked, an instance whose SSM agent is offline drained (a
   failed cleanup drains one too, in ec2_pool), drained ones terminated once their jobs are over, and
   replacements launched, without waiting for a job to claim a slot;
2. the idle timeout: an instance with no job for the pool's idle minutes (FCEVAL_POOL_IDLE_MINUTES) is
   terminated, not stopped, and the pool keeps one fewer (idle once none is left: `pool up` starts it
   again). Terminated because a pool instance keeps nothing between jobs (cleanup removes every job's
   user and files), a stopped one still bills its EBS volumes and needs as long to start and register
   with SSM again as a new one takes to boot, spot instances cannot be stopped, and the pool's switch
   already ends an instance by powering it off with shutdown behaviour `terminate`;
3. the dead-man's switch pushed forward: every ready instance with a job whose expiry is nearer than
   the pool's TTL less `push_every` gets now + TTL, in one batch (pool_expiry: a Run Command per 50
   instances, a CreateTags per 1,000). Idle instances are not pushed: they keep the idle expiry that
   cleanup set. When the keeper stops (console closed, run over, process killed) nothing moves the
   expiry again, and the instances end themselves at most one TTL later.

The clock is injectable (tests); AWS errors in a pass are reported through `on_problem` (once per
distinct message) and the next pass tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fceval_tui.config import Settings
from fceval_tui.domain.models import utcnow
from fceval_tui.errors import BackendError, UserError
from fceval_tui.ledger import Ledger
from fceval_tui.ledger_pools import READY, Pool, PoolBook

log = logging.getLogger(__name__)

TICK_SECONDS = 30.0  # health and idle checks
PUSH_EVERY = 300.0  # the expiry of a busy instance is moved forward once it is this much older than now + TTL


@dataclass
class TickReport:
    """What one pass did, per pool."""

    drained: dict[str, list[str]] = field(default_factory=dict)
    launched: dict[str, list[str]] = field(default_factory=dict)
    idle_ended: dict[str, list[str]] = field(default_factory=dict)
    pushed: dict[str, list[str]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


class PoolKeeper:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        names: Iterable[str] | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        interval: float = TICK_SECONDS,
        push_every: float = PUSH_EVERY,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        """`names`: the pools to keep; None keeps every pool of the ledger that is up."""
        self.settings = settings
        self.ledger = ledger
        self.book = PoolBook(ledger)
        self.names = None if names is None else tuple(names)
        self.clock = clock
        self.interval = interval
        self.push_every = push_every
        self.on_problem = on_problem
        self._backends: dict[str, object] = {}
        self._reported: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread ---------------------------------------------------------------------------------

    def start(self) -> PoolKeeper:
        self._thread = threading.Thread(target=self._loop, name="pool-keeper", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> PoolKeeper:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    # -- one pass -----------------------------------------------------------------------------------

    def pools(self) -> list[Pool]:
        pools = [p for p in self.book.pools() if p.up]
        return pools if self.names is None else [p for p in pools if p.name in self.names]

    def tick(self) -> TickReport:
        report = TickReport()
        for pool in self.pools():
            try:
                self._keep(pool, report)
            except (BackendError, UserError) as exc:
                report.problems[pool.name] = f"pool {pool.name}: {exc}"
        for problem in report.problems.values():
            self._report(problem)
        return report

    def _keep(self, pool: Pool, report: TickReport) -> None:
        fleet = self.backend(pool).fleet
        before = {i.id: i.state for i in self.book.instances(pool.name)}
        after = fleet.upkeep(pool)
        report.drained[pool.name] = [i.id for i in after if i.state != before.get(i.id) and i.state == "draining"]
        report.launched[pool.name] = [i.id for i in after if i.id not in before]
        now = self.clock()
        pool = self.book.pool(pool.name)
        report.idle_ended[pool.name] = fleet.retire_idle(pool, now) if pool.up else []
        report.pushed[pool.name] = self._push(pool, now)

    def _push(self, pool: Pool, now: datetime) -> list[str]:
        from fceval_tui.backends import pool_expiry

        until = now + timedelta(minutes=pool.ttl_minutes)
        due_before = until - timedelta(seconds=self.push_every)
        due = [
            i.id
            for i in self.book.instances(pool.name)
            if i.state == READY and i.jobs and (i.expires_at is None or i.expires_at < due_before)
        ]
        if not due:
            return []
        result = pool_expiry.push(self.backend(pool), self.book, due, until)
        if result.failed:
            self._report(
                f"pool {pool.name}: the expiry of {len(result.failed)} instance(s) was not moved "
                f"({next(iter(result.failed.values()))}); trying again at the next pass"
            )
        self.book.record("pool_expiry_pushed", pool.name, instances=len(result.pushed), until=until.isoformat())
        return result.pushed

    def backend(self, pool: Pool):
        if pool.name not in self._backends:
            from fceval_tui.services.pool import pool_backend  # boto3: only once a pool is kept

            self._backends[pool.name] = pool_backend(self.settings, self.ledger, pool)
        return self._backends[pool.name]

    def _report(self, problem: str) -> None:
        log.warning("%s", problem)
        if self.on_problem is not None and problem not in self._reported:
            self._reported.add(problem)
            self.on_problem(problem)


def keeping(settings: Settings, ledger: Ledger, on_problem: Callable[[str], None] | None = None):
    """A started keeper for the run's pool (`settings.pool`), or None for a run on new instances."""
    if not settings.pool:
        return None
    return PoolKeeper(settings, ledger, [settings.pool], on_problem=on_problem).start()
