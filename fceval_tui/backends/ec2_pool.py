"""EC2 jobs on a warm pool (FCEVAL_POOL, `launch --pool NAME`): a slot on a ready instance of the pool
instead of an instance of their own.

provision  claim a slot in the ledger (ledger_pools) on the least busy ready instance; every slot
           busy: a capacity wait (`waiting_capacity`), no new instance. Also one upkeep pass of the
           pool now and then (pool_fleet: unhealthy instances drained and replaced)
start      one Run Command: the instance's expiry pushed to the job's TTL, the job's Unix user and
           work directory (pool_scripts), then the pipeline in its own tmux server as on an instance
           of its own, its harness steps as the job's user
observe, collect   as for any EC2 job (backends/ec2)
cancel     kill the job's session and its user's processes; the instance stays
cleanup    remove the job's session, processes, files, directories and user, verify it, then free the slot (and
           set the idle expiry when it was the instance's last job); a cleanup that fails or cannot
           reach the instance drains it
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fceval_tui import locations
from fceval_tui.backends import ec2_board, pool_scripts, remote_tmux
from fceval_tui.backends.base import JobContext
from fceval_tui.backends.cloud import remote_work_dir
from fceval_tui.backends.ec2 import SESSION_USER, Ec2Backend
from fceval_tui.backends.manifest import MANIFEST
from fceval_tui.backends.pool_fleet import PoolFleet
from fceval_tui.config import Settings
from fceval_tui.domain import pipeline
from fceval_tui.domain.models import Job, utcnow
from fceval_tui.domain.prices import ec2_hourly
from fceval_tui.errors import BackendError, CapacityError, NotFoundError, PermanentError, TransientError
from fceval_tui.ledger import Ledger
from fceval_tui.ledger_pools import BOOTING, DRAINING, GONE, READY, Pool, PoolBook, PoolInstance


class Ec2PoolBackend(Ec2Backend):
    """Needs no AWS action beyond EC2's own (tags for the expiry, vCPUs read on the instance)."""

    upkeep_interval = 30.0  # seconds between the upkeep passes that claims also do
    capacity_wait_cap = 5.0  # a claim is a ledger transaction

    def __init__(self, settings: Settings, clients=None, ledger: Ledger | None = None) -> None:
        super().__init__(settings, clients)
        if not settings.pool:
            raise ValueError("Ec2PoolBackend needs settings.pool")
        self.pool_name = settings.pool
        self._ledger = ledger
        self._book: PoolBook | None = None
        self._fleet: PoolFleet | None = None
        self._last_upkeep = 0.0

    @property
    def book(self) -> PoolBook:
        if self._book is None:
            # The backend's own connection to the ledger when the runner did not hand one over.
            self._book = PoolBook(self._ledger or Ledger.open(self.settings.state_dir))
        return self._book

    @property
    def fleet(self) -> PoolFleet:
        if self._fleet is None:
            self._fleet = PoolFleet(self, self.book)
        return self._fleet

    def pool(self) -> Pool:
        try:
            pool = self.book.pool(self.pool_name)
        except NotFoundError as exc:
            raise PermanentError(str(exc.problem), exc.fix) from exc
        if not pool.up:
            raise PermanentError(
                pool.why_not_up(), f"start it with `fceval-tui pool up --name {self.pool_name} --size N`"
            )
        return pool

    # -- the Backend contract -----------------------------------------------------------------

    def artifacts_dir(self, job: Job, local_work: Path) -> str:
        """In the job user's own directory: the work directory is root's (see pool_scripts)."""
        return pool_scripts.user_dir(remote_work_dir(self.settings, job.id)) + "/artifacts"

    def provision(self, ctx: JobContext) -> str:
        pool = self.pool()
        self._maybe_upkeep(pool)
        instance = self.book.claim(pool.name, ctx.job.id, ctx.attempt)
        if instance is not None:
            return instance.id
        instances = self.book.instances(pool.name)
        if not any(i.state in (BOOTING, READY) for i in instances):
            raise PermanentError(
                f"pool {pool.name} has no running instance (ended by its idle timeout or TTL, or drained)",
                f"start it again with `fceval-tui pool up --name {pool.name} --size N`",
            )
        slots = sum(i.slots for i in instances if i.state == READY)
        raise CapacityError(f"pool {pool.name}: all {slots} slots are busy")

    def start(self, ctx: JobContext, resource_id: str) -> None:
        user = pool_scripts.job_user(ctx.job.id)
        work = remote_work_dir(self.settings, ctx.job.id)
        manifest = self.new_manifest(ctx)
        self.staging(ctx.job, ctx.attempt, ctx.expires_at).put(self.aws.s3, MANIFEST, manifest.to_json())
        script = self.pipeline_script(
            ctx, manifest.upload_shell(), f" on {resource_id}", run_as=user, report=ec2_board.report_shell()
        )
        files = remote_tmux.bundle(
            {
                pipeline.SCRIPT_NAME: script,
                pipeline.ENV_FILE: pipeline.env_file_text({**ctx.env, **manifest.environment()}),
            }
        )
        socket = remote_tmux.socket_path(work)
        shell = "\n".join(
            [
                pool_scripts.job_started(
                    self.settings.remote_work_dir, resource_id, ctx.job.id, int(ctx.expires_at.timestamp())
                ),
                pool_scripts.job_setup(work, user),
                remote_tmux.launch_script(work, ctx.job.id, socket=socket, grant_user=SESSION_USER),
            ]
        )
        try:
            transport = self._transport(ctx.job, ctx.attempt, resource_id)
            result = transport.run(["sh", "-c", shell], stdin=files, timeout=600)
        except TimeoutError as exc:
            raise TransientError(f"starting the pipeline on {resource_id} timed out: {exc}") from exc
        if not result.ok:
            detail = result.stderr.strip()[-300:]
            raise TransientError(f"starting the pipeline on {resource_id} failed (exit {result.exit_code}): {detail}")
        self.fleet.set_expiry_tag(self.book.instance(resource_id), result.stdout)

    def cancel(self, ctx: JobContext, resource_id: str) -> None:
        work = remote_work_dir(self.settings, ctx.job.id)
        stop = pool_scripts.stop_job(work, pool_scripts.job_user(ctx.job.id))
        try:
            self._transport(ctx.job, ctx.attempt, resource_id).run(["sh", "-c", stop], timeout=120)
        except TimeoutError as exc:
            raise TransientError(f"stopping {ctx.job.id} on {resource_id} timed out: {exc}") from exc

    def cleanup(self, ctx: JobContext, resource_id: str) -> None:
        try:
            self._clean_slot(ctx, resource_id)
        finally:
            self.delete_staged(ctx)
            if self.settings.staging_bucket:
                self._ssm_output(ctx.job, ctx.attempt).delete_all(self.aws.s3)

    def _clean_slot(self, ctx: JobContext, resource_id: str) -> None:
        try:
            instance = self.book.instance(resource_id)
        except NotFoundError:
            return  # not a pool instance: nothing was claimed
        if instance.state == GONE or ctx.job.id not in instance.jobs:
            return
        pool = self.book.pool(instance.pool)
        work = remote_work_dir(self.settings, ctx.job.id)
        shell = pool_scripts.clean_job(work, pool_scripts.job_user(ctx.job.id))
        if instance.state == READY:
            # Idle expiry if the instance runs no other job (it decides: a job may have started meanwhile).
            idle_until = utcnow() + timedelta(minutes=min(pool.idle_minutes, pool.ttl_minutes))
            shell += "\n" + pool_scripts.job_ended(
                self.settings.remote_work_dir, resource_id, ctx.job.id, int(idle_until.timestamp())
            )
        try:
            result = self._transport(ctx.job, ctx.attempt, resource_id).run(["sh", "-c", shell], timeout=300)
        except (BackendError, TimeoutError) as exc:
            self.fleet.drain(pool, instance, f"cleaning up after {ctx.job.id} failed: {exc}")
            self.fleet.upkeep(pool)  # marks it gone when EC2 no longer runs it
            # Drained: no job goes there again and the keeper ends it, so a retried cleanup could add nothing.
            raise PermanentError(f"cleaning up {ctx.job.id} on {resource_id} failed: {exc}") from exc
        if not result.ok:
            what = pool_scripts.output_value(result.stdout, "left") or result.stderr.strip()[-200:]
            self.fleet.drain(pool, instance, f"cleaning up after {ctx.job.id} left {what}")
            raise PermanentError(f"cleaning up {ctx.job.id} on {resource_id} left {what}; the instance is drained")
        self.fleet.set_expiry_tag(self.book.release(resource_id, ctx.job.id), result.stdout)

    def _maybe_upkeep(self, pool: Pool) -> None:
        now = utcnow().timestamp()
        if now - self._last_upkeep >= self.upkeep_interval:
            self._last_upkeep = now
            self.fleet.upkeep(pool)

    # -- what the console shows -----------------------------------------------------------------

    def would_create(self) -> dict[str, object]:
        instances = self._pool_instances()
        ready = [i for i in instances if i.state == READY]
        return {
            "resource": f"a slot on warm pool {self.pool_name} (no new instance; the job gets its own Unix user)",
            "pool": self.pool_name,
            "instance_type": self.settings.ec2_instance_type,
            "ready_instances": len(ready),
            "slots": sum(i.slots for i in ready),
            "busy_slots": sum(len(i.jobs) for i in ready),
            "draining_instances": sum(1 for i in instances if i.state == DRAINING),
        }

    def hourly_cost(self) -> float:
        """A job's share of an instance: its price over the slots it has."""
        slots = max((i.slots for i in self._pool_instances()), default=1) or 1
        return (ec2_hourly(self.settings.ec2_instance_type, self.settings.spot_price) or 0.0) / slots

    def _pool_instances(self) -> list[PoolInstance]:
        if self._ledger is None and not locations.ledger_path(self.settings.state_dir).exists():
            return []  # a dry run writes nothing, not even a new ledger
        return self.book.instances(self.pool_name)
