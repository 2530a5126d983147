"""Credential health of a run: expired credentials pause it, renewed ones resume it.

When AWS refuses the console's credentials as expired (or botocore cannot refresh them), no call can
work, so nothing is decided: the job that met it is marked paused in the ledger (its state and its
compute stay as they are, no attempt is spent, no failure is counted) and waits at the gate. The
operator is told once per outage, as a `credentials_expired` event carrying what to run. One waiting
thread at a time probes with sts:GetCallerIdentity through a fresh Session; when it answers, the
backend's clients are rebuilt from that Session, a `credentials_renewed` event is written, and every
paused job repeats the call it was making: watching the same compute, nothing relaunched.

The compute's TTL is never extended: if nobody returns before it, the compute has ended by itself,
and a job still paused then ends (CredentialsNotRenewed) without another call. The job timeout, on the
other hand, measures the job's own time: how long each attempt was paused is recorded (a `pause_ended`
event, so a resumed runner knows it too) and `paused_time` is left out of the timeout.

`expiry_warning` is what `launch` prints when the credentials end before the run may.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from fceval_tui.backends.base import Backend
from fceval_tui.config import Settings
from fceval_tui.domain.models import Job, utcnow
from fceval_tui.errors import BackendError, CredentialsExpired, CredentialsNotRenewed
from fceval_tui.ledger import Ledger

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBE_SECONDS = 30.0  # between probes while paused: cheap, and a login takes longer than that
PAUSE_ENDED = "pause_ended"  # a job's event: how long one pause of one attempt lasted


class PauseEnded(Exception):
    """The runner is stopping while a job is paused: leave the job as it is (a resume continues it)."""


class CredentialGate:
    """One per runner. `call` runs a backend call, waiting out expired credentials and repeating it."""

    def __init__(
        self,
        ledger: Ledger,
        settings: Settings,
        backend: Callable[[], Backend],
        sleep: Callable[[float], object],
        stopping: Callable[[], bool],
        interval: float = PROBE_SECONDS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.ledger = ledger
        self.settings = settings
        self._backend = backend
        self._sleep = sleep
        self._stopping = stopping
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._probing = threading.Lock()
        self._generation = 0  # how many times credentials were renewed
        self._outage: tuple[str, float] | None = None  # (what the jobs show, when it began) while expired
        self._paused: dict[tuple[str, int], float] = {}  # (job, attempt) -> seconds paused, read from the ledger

    def call(self, job: Job, action: Callable[[], T]) -> T:
        while True:
            generation = self._generation
            try:
                return action()
            except CredentialsExpired as exc:
                self._wait(job, exc, generation)

    def paused_time(self, job: Job) -> timedelta:
        """How long the current attempt of `job` was paused for expired credentials (by any runner)."""
        key = (job.id, job.attempts)
        with self._lock:
            seconds = self._paused.get(key)
        if seconds is None:
            events = self.ledger.events(job_id=job.id)
            found = (e.detail for e in events if e.kind == PAUSE_ENDED and e.detail.get("attempt") == job.attempts)
            seconds = sum(float(detail.get("paused_seconds", 0)) for detail in found)
            with self._lock:
                self._paused[key] = seconds
        return timedelta(seconds=seconds)

    def clear_stale(self, run_id: str) -> None:
        """Forget pauses a killed runner left in the ledger: this runner decides afresh."""
        for job in self.ledger.jobs(run_id=run_id):
            if job.paused:
                self.ledger.update(job.id, paused=None)

    def _wait(self, job: Job, exc: CredentialsExpired, generation: int) -> None:
        if self._generation != generation:
            return  # renewed while this call was in flight: repeat it with the new clients
        deadline = self._deadline(job)
        if deadline is not None and self.clock() >= deadline:
            raise CredentialsNotRenewed(
                f"the AWS credentials expired and were not renewed before the compute's TTL ({deadline:%H:%M} UTC): "
                f"it has ended by itself ({exc})",
                "renew the credentials, then `fceval-tui retry` the job",
            ) from exc
        reason = self._announce(job.run_id, exc)
        self.ledger.update(job.id, paused=reason)
        began = self.clock()
        try:
            while self._generation == generation:
                if self._stopping():
                    if self.ledger.get_job(job.id).state.is_final:
                        raise exc  # its verdict stands: the caller records the cleanup that could not run
                    raise PauseEnded() from exc
                if deadline is not None and self.clock() >= deadline:
                    return  # one more try of the call decides (above) whether the job ends
                if self._probing.acquire(blocking=False):
                    try:
                        self._probe(job.run_id, generation)
                    finally:
                        self._probing.release()
                if self._generation == generation:
                    self._sleep(self.interval)
        finally:
            self.ledger.update(job.id, paused=None)
            self._pause_ended(job, self.clock() - began)

    def _pause_ended(self, job: Job, paused: timedelta) -> None:
        seconds = round(max(0.0, paused.total_seconds()), 3)
        self.ledger.record(job.run_id, job.id, PAUSE_ENDED, paused_seconds=seconds, attempt=job.attempts)
        with self._lock:
            self._paused.pop((job.id, job.attempts), None)  # read again, with this pause, from the ledger

    def _deadline(self, job: Job) -> datetime | None:
        """The end of the attempt's compute (its TTL from its start), when it has compute."""
        if not job.started_at or self.settings.backend == "local":
            return None
        return job.started_at + timedelta(minutes=self.settings.ttl_minutes)

    def _announce(self, run_id: str, exc: CredentialsExpired) -> str:
        with self._lock:
            if self._outage is None:
                fix = self._backend().renewal_hint(run_id)
                reason = f"AWS credentials expired: {fix}"
                self._outage = (reason, time.monotonic())
                self.ledger.record(run_id, None, "credentials_expired", error=str(exc), fix=fix)
                log.warning("run %s paused: %s (%s)", run_id, reason, exc)
            return self._outage[0]

    def _probe(self, run_id: str, generation: int) -> None:
        if self._generation != generation:
            return
        try:
            identity = self._backend().renew_credentials()
        except BackendError as exc:
            log.info("run %s: credentials still do not work: %s", run_id, exc)
            return
        with self._lock:
            began = self._outage[1] if self._outage else time.monotonic()
            self._outage = None
            self._generation += 1
        paused = round(time.monotonic() - began, 1)
        self.ledger.record(run_id, None, "credentials_renewed", identity=identity, paused_seconds=paused)
        log.warning("run %s resumed: credentials work again (%s)", run_id, identity)


def expiry_warning(settings: Settings, jobs: int, now: datetime | None = None) -> str | None:
    """One line when the credentials end before the run may (every wave of jobs to its time limit)."""
    if settings.backend == "local" or not jobs:
        return None
    from fceval_tui.backends.credentials import credential_expiry, renewal_hint

    now = now or utcnow()
    expiry = credential_expiry(settings, now)
    if expiry is None:
        return None
    waves = math.ceil(jobs / max(1, settings.concurrent))
    length = timedelta(minutes=waves * min(settings.job_timeout_minutes, settings.ttl_minutes))
    if expiry.at >= now + length:
        return None
    left = "already" if expiry.at <= now else f"in {_hours(expiry.at - now)}"
    return (
        f"{expiry.what} ends at {expiry.at:%H:%M} UTC ({left}), before this run may end (up to "
        f"{_hours(length)}); its jobs then pause until you {renewal_hint(settings, 'RUN')}"
    )


def _hours(span: timedelta) -> str:
    minutes = max(0, round(span.total_seconds() / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
