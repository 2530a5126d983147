"""The runner: drives every non-final job of a run to a final state.

At most `concurrency` jobs are active at once (one thread each). Per attempt the backend provisions,
starts, is observed until done, collects, and always cleans up. Transient errors retry with
exponential backoff and jitter (a new attempt, recorded); capacity errors wait in
`waiting_capacity` without spending an attempt; permanent errors fail the job at once. The ledger
is the only shared state: a `cancel` from another process is seen on the next observation, and a
runner killed at any point is continued by `resume`, which re-attaches to compute that is still
running instead of starting it twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta

from fceval_tui.backends import make_backend
from fceval_tui.backends.base import Backend, JobContext, Observation, ResourceGone, work_dir
from fceval_tui.config import Settings
from fceval_tui.domain.models import Job, JobSpec, Run, utcnow
from fceval_tui.domain.states import PIPELINE_ORDER, IllegalTransition, JobState
from fceval_tui.domain.template import job_environment
from fceval_tui.domain.triage import ErrorClass
from fceval_tui.errors import BackendError, CapacityError, PermanentError, ThrottlingError
from fceval_tui.ledger import Ledger
from fceval_tui.services.contact import CLEANUP_TRIES, COLLECT_TRIES, Contact, backoff
from fceval_tui.services.credentials import CredentialGate, PauseEnded

log = logging.getLogger(__name__)

ACTIVE = (JobState.STARTING, JobState.RUNNING, JobState.GRADING, JobState.UPLOADING)
# How often a runner looks for jobs put back to pending (retries) while it drives a run.
RESCAN_SECONDS = 1.0


@dataclass(frozen=True)
class RunTotals:
    counts: dict[str, int]
    wall_seconds: float

    @property
    def all_succeeded(self) -> bool:
        return all(state == JobState.SUCCEEDED for state, n in self.counts.items() if n)


def run_settings(settings: Settings, run: Run) -> Settings:
    """The settings a run was launched with: a resume, retry or cancel acts in the same region, with the
    same commands and limits, whatever the current shell or console says."""
    return settings.with_json(run.settings).replace(backend=run.backend, concurrent=run.concurrency)


def job_values(job: Job, artifacts_dir: str) -> dict[str, str]:
    """The placeholder values of one job, by placeholder name."""
    return {
        "agent": job.agent,
        "task_id": job.task_id,
        "model": job.model,
        "dataset": job.dataset,
        "run_id": job.run_id,
        "job_id": job.id,
        "artifacts_dir": artifacts_dir,
    }


def render_commands(settings: Settings) -> tuple[str, str | None]:
    """The run and grade commands as the pipeline runs them (values come from its environment)."""
    grade = settings.grade_command
    return settings.run_command.render(), grade.render() if grade else None


def stop_context(settings: Settings, job: Job) -> JobContext:
    """Enough context to cancel and clean up a job's compute (nothing is rendered or started)."""
    return JobContext(job, job.attempts, "", None, "", work_dir(settings, job), utcnow())


class _Cancelled(Exception):
    """The ledger says the job is final (cancelled elsewhere); stop driving it."""


class Runner:
    def __init__(
        self,
        ledger: Ledger,
        settings: Settings,
        backend: Backend | None = None,
        backoff_base: float = 1.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.settings = settings
        self.backend = backend
        self.backoff_base = backoff_base
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        # Expired AWS credentials pause the jobs that meet them until calls work again (services.credentials).
        self.credentials = CredentialGate(ledger, settings, lambda: self.backend, self._sleep, self._stop.is_set)
        # Last attempt number each job may use in this drive: a user retry or a resume grants a
        # fresh budget, while `attempts` in the ledger keeps counting every attempt ever made.
        self._limits: dict[str, int] = {}

    # -- creating and driving runs ------------------------------------------------------------

    def create_run(self, specs: list[JobSpec], skip_preflight: bool = False) -> tuple[Run, list[Job]]:
        backend = self.backend or make_backend(self.settings.backend, self.settings)
        snapshot = self.settings.to_json()
        snapshot["artifacts"] = backend.artifact_prefix()
        return self.ledger.create_run(
            self.settings.backend, self.settings.concurrent, specs, settings=snapshot, skip_preflight=skip_preflight
        )

    def stop(self) -> None:
        """Stop scheduling new work and return from `run` soon; active compute keeps running."""
        self._stop.set()

    def run(self, run_id: str) -> RunTotals:
        """Drive the run until every job is final (or `stop`). Safe to call again to resume."""
        started = time.monotonic()
        run = self.ledger.get_run(run_id)
        backend = self.backend or make_backend(run.backend, self.settings)
        self.backend = backend
        backend.check_ready()
        self.ledger.claim_run(run_id)
        try:
            self.credentials.clear_stale(run_id)
            pending = [j.id for j in self.ledger.jobs(run_id=run_id) if not j.state.is_final]
            if pending:
                self.ledger.record(run_id, None, "runner_started", jobs=len(pending), resumed=self._resumed(run_id))
            with ThreadPoolExecutor(max_workers=run.concurrency, thread_name_prefix=f"job-{run_id}") as pool:
                in_flight = {job_id: pool.submit(self._drive_safely, run, job_id) for job_id in pending}
                while in_flight:
                    done, _ = wait(in_flight.values(), timeout=RESCAN_SECONDS, return_when=FIRST_COMPLETED)
                    for job_id, future in list(in_flight.items()):
                        if future in done:
                            del in_flight[job_id]
                            future.result()
                    if not self._stop.is_set():
                        # A job put back to pending (a retry from the console or the CLI) joins this run.
                        for job in self.ledger.jobs(run_id=run_id, states=[JobState.PENDING]):
                            if job.id not in in_flight:
                                in_flight[job.id] = pool.submit(self._drive_safely, run, job.id)
        finally:
            self.ledger.release_run(run_id)
        counts: dict[str, int] = {}
        for job in self.ledger.jobs(run_id=run_id):
            counts[job.state.value] = counts.get(job.state.value, 0) + 1
        return RunTotals(counts, time.monotonic() - started)

    def _resumed(self, run_id: str) -> bool:
        return any(e.kind == "runner_started" for e in self.ledger.events(run_id=run_id))

    def _drive_safely(self, run: Run, job_id: str) -> None:
        if self._stop.is_set():
            return
        try:
            self._drive(run, job_id)
        except (_Cancelled, PauseEnded):
            return
        except Exception as exc:  # a bug must fail the job visibly, not kill the run silently
            log.exception("job %s: unexpected error", job_id)
            job = self._finish(
                job_id, JobState.FAILED, error=f"internal error: {exc!r}", error_class=ErrorClass.INTERNAL
            )
            if job.resource_id:  # and must not leave its compute running
                self._stop_compute(stop_context(self.settings, job), job.resource_id)

    # -- one job ------------------------------------------------------------------------------

    def _context(self, run: Run, job: Job, attempt: int) -> JobContext:
        work = work_dir(self.settings, job)
        work.mkdir(parents=True, exist_ok=True)
        run_command, grade_command = render_commands(self.settings)
        return JobContext(
            job=job,
            attempt=attempt,
            run_command=run_command,
            grade_command=grade_command,
            artifact_prefix=run.settings.get("artifacts") or self.settings.artifact_prefix,
            work_dir=work,
            expires_at=utcnow() + timedelta(minutes=self.settings.ttl_minutes),
            env=job_environment(job_values(job, self.backend.artifacts_dir(job, work))),
        )

    def _drive(self, run: Run, job_id: str) -> None:
        job = self.ledger.get_job(job_id)
        used = job.attempts if job.state == JobState.PENDING else max(0, job.attempts - 1)
        self._limits[job.id] = used + self.settings.max_attempts
        while not job.state.is_final and not self._stop.is_set():
            if job.state in ACTIVE and job.resource_id:
                # Resume: the compute may still be running; watch it instead of starting again.
                ctx = self._context(run, job, job.attempts)
                job = self._watch(ctx, job.resource_id)
            else:
                # Pending: a new attempt. Provisioning, waiting or starting without compute: a runner
                # was killed mid-attempt; finish that attempt (provision finds what it launched).
                job = self._attempt(run, job, resume=job.state != JobState.PENDING)

    def _attempt(self, run: Run, job: Job, resume: bool = False) -> Job:
        backend = self.backend
        if resume:
            attempt = job.attempts
            if job.state == JobState.WAITING_CAPACITY:
                job = self._move(job, backend.first_state, reason="resumed")
        else:
            attempt = job.attempts + 1
            if attempt > self._limits[job.id]:
                error = f"gave up after {job.attempts} attempts: {job.error}"
                return self._finish(job.id, JobState.FAILED, error=error, error_class=job.error_class)
            job = self._move(
                job,
                backend.first_state,
                attempts=attempt,
                started_at=utcnow(),
                ended_at=None,
                resource_id=None,
                exit_code=None,
                error=None,
                error_class=None,
            )
        ctx = self._context(run, job, attempt)
        resource_id: str | None = None
        waits = 0
        try:
            while True:
                try:
                    resource_id = self.credentials.call(job, lambda: backend.provision(ctx))
                    break
                except ThrottlingError:
                    # botocore's retries were used up: wait without spending an attempt (never a verdict).
                    waits += 1
                    self._check_timeout(job)
                    self._sleep(backoff(waits, self.backoff_base))
                    job = self._reload(job)
                except CapacityError as exc:
                    waits += 1
                    if job.state != JobState.WAITING_CAPACITY:
                        job = self._move(job, JobState.WAITING_CAPACITY, reason=str(exc))
                    self._check_timeout(job)
                    delay = min(backoff(waits, self.backoff_base), backend.capacity_wait_cap or float("inf"))
                    self.ledger.record(job.run_id, job.id, "capacity_wait", error=str(exc), retry_in=round(delay, 2))
                    self._sleep(delay)
                    job = self._reload(job)
                    job = self._move(job, backend.first_state, reason="retrying after capacity wait")
            job = self.ledger.update(job.id, resource_id=resource_id)
            if job.state != JobState.STARTING:
                job = self._move(job, JobState.STARTING)
            self.credentials.call(job, lambda: backend.start(ctx, resource_id))
            self.ledger.set_attempt_price(ctx.job.id, attempt, backend.attempt_price(ctx, resource_id))
            job = self._move(job, JobState.RUNNING, resource_id=resource_id)
        except _Cancelled:
            # Cancelled while starting: the canceller may not have seen the resource id yet.
            self._stop_compute(ctx, resource_id)
            raise
        except _TimedOut:
            self._cleanup(ctx, resource_id)
            error = "timed out waiting for capacity"
            return self._finish(job.id, JobState.TIMED_OUT, error=error, error_class=ErrorClass.CAPACITY)
        except BackendError as exc:
            self._cleanup(ctx, resource_id)
            return self._after_error(job, exc)
        return self._watch(ctx, resource_id)

    def _watch(self, ctx: JobContext, resource_id: str) -> Job:
        backend = self.backend
        job = self._reload(ctx.job)
        contact = Contact()  # failed reads decide loss only when many and lasting (services/contact.py)
        interval = backend.poll_interval
        while True:
            if self._stop.is_set():
                return job
            try:
                self._check_timeout(job)
            except _TimedOut:
                self._stop_compute(ctx, resource_id)
                return self._finish(
                    job.id,
                    JobState.TIMED_OUT,
                    error=f"exceeded {self.settings.job_timeout_minutes} min",
                    error_class=ErrorClass.TIMEOUT,
                )
            try:
                observation = self.credentials.call(job, lambda: backend.observe(ctx, resource_id))
                contact.ok()
            except ResourceGone as exc:
                self._cleanup(ctx, resource_id)
                return self._after_error(job, _Lost(str(exc)))
            except BackendError as exc:
                if not exc.transient:
                    self._cleanup(ctx, resource_id)
                    return self._after_error(job, exc)
                if contact.failed(exc):
                    self._cleanup(ctx, resource_id)
                    return self._after_error(job, _Lost(f"lost contact: {exc}"))
                self._sleep(self._retry_delay(contact))
                job = self._reload(job)
                continue
            job = self._advance(job, observation)
            if observation.done:
                return self._complete(ctx, job, resource_id, observation)
            self._sleep(interval)
            job = self._reload(job)

    def _advance(self, job: Job, observation: Observation) -> Job:
        """Walk forward along the pipeline up to the observed phase (never backwards)."""
        if observation.cost_usd is not None:
            job = self.ledger.set_attempt_cost(job.id, job.attempts, observation.cost_usd)
        else:
            job = self._bill_attempt(job)
        order = PIPELINE_ORDER
        if job.state == JobState.STARTING:
            job = self._move(job, JobState.RUNNING)
        while job.state in order and order.index(job.state) < order.index(observation.phase):
            nxt = next(s for s in order[order.index(job.state) + 1 :] if job.state.can_go(s))
            job = self._move(job, nxt)
        return job

    def _complete(self, ctx: JobContext, job: Job, resource_id: str, observation: Observation) -> Job:
        if job.state != JobState.UPLOADING:
            job = self._move(job, JobState.UPLOADING)
        contact = Contact(max_tries=COLLECT_TRIES)  # the pipeline is done: a failed collect is retried, not rerun
        while True:
            try:
                outcome = self.credentials.call(job, lambda: self.backend.collect(ctx, resource_id, observation))
                break
            except BackendError as exc:
                if not exc.transient or contact.failed(exc):
                    self._cleanup(ctx, resource_id)
                    return self._after_error(job, exc)
                try:
                    self._check_timeout(job)
                except _TimedOut:
                    self._cleanup(ctx, resource_id)
                    error = f"collecting the uploads failed until the job's timeout: {exc}"
                    return self._finish(job.id, JobState.TIMED_OUT, error=error, error_class=exc.error_class)
                delay = self._retry_delay(contact)
                self.ledger.record(job.run_id, job.id, "collect_wait", error=str(exc), retry_in=round(delay, 2))
                self._sleep(delay)
                job = self._reload(job)
        self._cleanup(ctx, resource_id)
        if outcome.succeeded:
            return self._finish(job.id, JobState.SUCCEEDED, exit_code=outcome.exit_code, artifacts=outcome.artifacts)
        return self._finish(
            job.id,
            JobState.FAILED,
            exit_code=outcome.exit_code,
            artifacts=outcome.artifacts,
            error=outcome.error,
            error_class=outcome.error_class or self._failed_step(job),
        )

    def _failed_step(self, job: Job) -> ErrorClass:
        """Which step failed when the backend cannot tell: grading if this attempt was seen grading."""
        for event in reversed(self.ledger.events(job_id=job.id)):
            if event.to_state == JobState.GRADING:
                return ErrorClass.GRADING
            if event.to_state in (JobState.PROVISIONING, JobState.STARTING):
                break
        return ErrorClass.HARNESS_EXIT

    def _after_error(self, job: Job, exc: BackendError) -> Job:
        job = self._reload(job)
        fix = f" (fix: {exc.fix})" if getattr(exc, "fix", "") else ""
        if not exc.transient or isinstance(exc, PermanentError):
            return self._finish(job.id, JobState.FAILED, error=f"{exc}{fix}", error_class=exc.error_class)
        if job.attempts >= self._limits[job.id]:
            error = f"gave up after {job.attempts} attempts: {exc}"
            return self._finish(job.id, JobState.FAILED, error=error, error_class=exc.error_class)
        delay = backoff(job.attempts, self.backoff_base)
        job = self._move(job, JobState.PENDING, reason=f"retrying: {exc}", error=str(exc), error_class=exc.error_class)
        self.ledger.record(
            job.run_id,
            job.id,
            "retry_scheduled",
            error=str(exc),
            retry_in=round(delay, 2),
            next_attempt=job.attempts + 1,
        )
        self._sleep(delay)
        return self._reload(job)

    # -- helpers --------------------------------------------------------------------------------

    def _retry_delay(self, contact: Contact) -> float:
        """The wait before reading or acting on a job's compute again, capped near the poll interval:
        backends with a status board back off their calls themselves, and a minute's wait per try made
        a collect under a throttling storm take ten."""
        return min(contact.delay(self.backoff_base), 2 * self.backend.poll_interval)

    def _check_timeout(self, job: Job) -> None:
        # Time paused for expired credentials is not the job's own (the compute's TTL still counts it).
        limit = timedelta(minutes=self.settings.job_timeout_minutes)
        if job.started_at and utcnow() - job.started_at - self.credentials.paused_time(job) > limit:
            raise _TimedOut()

    def _reload(self, job: Job) -> Job:
        job = self.ledger.get_job(job.id)
        if job.state.is_final:
            raise _Cancelled()
        return job

    def _move(self, job: Job, target: JobState, reason: str = "", **fields) -> Job:
        try:
            return self.ledger.transition(job.id, target, expect=job.state, reason=reason, **fields)
        except IllegalTransition:
            current = self.ledger.get_job(job.id)
            if current.state.is_final:
                raise _Cancelled() from None
            raise

    def _finish(self, job_id: str, state: JobState, **fields) -> Job:
        try:
            return self.ledger.transition(job_id, state, ended_at=utcnow(), **fields)
        except IllegalTransition:
            return self.ledger.get_job(job_id)  # already final (cancelled elsewhere): keep that verdict

    def _stop_compute(self, ctx: JobContext, resource_id: str | None) -> None:
        """Cancel then clean up, recording (not raising) a failure: the job's verdict is already decided."""
        if resource_id is None:
            return
        try:
            self.credentials.call(ctx.job, lambda: self.backend.cancel(ctx, resource_id))
        except BackendError as exc:
            self.ledger.record(ctx.job.run_id, ctx.job.id, "cancel_failed", resource_id=resource_id, error=str(exc))
        self._cleanup(ctx, resource_id)

    def _bill_attempt(self, job: Job) -> Job:
        """This attempt's cost from its start (the resource's launch) to now, at the price recorded for
        it (the spot price it launched at) or the backend's rate."""
        recorded = self.ledger.attempt_hourly(job.id, job.attempts)
        rate = self.backend.hourly_cost() if recorded is None else recorded
        if not (rate and job.started_at and job.attempts):
            return job
        hours = (utcnow() - job.started_at).total_seconds() / 3600
        return self.ledger.set_attempt_cost(job.id, job.attempts, round(rate * hours, 6))

    def _cleanup(self, ctx: JobContext, resource_id: str | None) -> None:
        # Every attempt ends here: bill it, also one that died before its first status read. Read
        # without _reload: a cancelled (final) job's compute must still be cleaned up.
        self._bill_attempt(self.ledger.get_job(ctx.job.id))
        if resource_id is None:
            return
        contact = Contact()
        while True:
            try:
                self.credentials.call(ctx.job, lambda: self.backend.cleanup(ctx, resource_id))
                return
            except BackendError as exc:
                contact.failed(exc)  # counts the try, for the backoff
                if exc.transient and contact.tries < CLEANUP_TRIES and not self._stop.is_set():
                    self._sleep(self._retry_delay(contact))
                    continue
                # Recorded so teardown can find it; the job's verdict stands.
                job = ctx.job
                self.ledger.record(job.run_id, job.id, "cleanup_failed", resource_id=resource_id, error=str(exc))
                return


class _TimedOut(Exception):
    pass


class _Lost(BackendError):
    transient = True
    error_class = ErrorClass.LOST_SESSION
