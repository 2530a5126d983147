"""A warm pool's instances: launching and preparing them, watching their health, replacing the
unhealthy, ending them. The pool's state is in the ledger (ledger_pools); this module keeps it true to
what EC2 and SSM say.

An instance is launched like a job's (same AMI, network, profile, shutdown behaviour `terminate`) with
the console's tags plus `fceval:pool`, its run-id tag `pool-NAME` and job-id tag `pool-NAME-SEQ` (a
retried launch finds its instance by them, as a job's does). Its first boot starts the expiry watcher
(pool_scripts). Once its SSM agent is online it is prepared (work root, tools, idle expiry, vCPUs) and
takes `vCPUs / FCEVAL_POOL_VCPUS_PER_JOB` jobs at once.

`upkeep` is one pass, with no waiting: instances EC2 no longer runs are marked gone (their claims
dropped); a ready instance whose agent is offline is drained; booting ones whose agent is online are
prepared; a drained instance none of whose jobs is still active is terminated; and a pool that is up
gets new instances until it has its size again, each noted as replacing a drained one ("replacing
i-..."). An instance that ended itself at its expiry (its dead-man's switch: the idle timeout or the TTL)
is not replaced: the pool keeps one fewer. `retire_idle` ends the instances that have had no job for the
pool's idle timeout the same way, without waiting for their switch.

Passes over one pool are serialized in this process (the runner's claims and the console's keeper both
run them); between processes, a launch retried under the same sequence number finds the first one's
instance by its tags and client token.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta

from fceval_tui.backends import pool_scripts
from fceval_tui.backends.aws import AWS_ERRORS, classify, error_code, online_instances, tag_filter
from fceval_tui.backends.aws_constants import (
    EXPIRES_AT_TAG,
    JOB_ID_TAG,
    MANAGED_BY,
    MANAGED_BY_TAG,
    POOL_TAG,
    RUN_ID_TAG,
)
from fceval_tui.backends.ec2 import GONE_STATES, LIVE_STATES, Ec2Backend, first_boot_script
from fceval_tui.backends.remote_tmux import EXIT_NO_TMUX
from fceval_tui.domain.models import iso, utcnow
from fceval_tui.errors import BackendError, NotFoundError, PermanentError, TransientError
from fceval_tui.ledger_pools import BOOTING, DRAINING, GONE, IDLE_NOTE, READY, Pool, PoolBook, PoolInstance
from fceval_tui.transports.ssm import SsmTransport

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _pool_lock(name: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(name, threading.Lock())


def pool_run_id(name: str) -> str:
    """The run-id tag of a pool's instances (they belong to no run)."""
    return f"pool-{name}"


class PoolFleet:
    """The instances of the pools in one ledger, through one EC2 backend's clients and settings."""

    def __init__(self, ec2: Ec2Backend, book: PoolBook) -> None:
        self.ec2 = ec2
        self.book = book
        self.settings = ec2.settings

    # -- launching ----------------------------------------------------------------------------------

    def tags(self, pool: Pool, seq: int, expires_at: datetime) -> dict[str, str]:
        return {
            MANAGED_BY_TAG: MANAGED_BY,
            RUN_ID_TAG: pool_run_id(pool.name),
            JOB_ID_TAG: f"{pool_run_id(pool.name)}-{seq}",
            EXPIRES_AT_TAG: iso(expires_at),
            POOL_TAG: pool.name,
        }

    def launch(self, pool: Pool) -> PoolInstance:
        """One new instance for the pool (found instead, when an earlier try launched it); not waited for."""
        seq = self.book.next_seq(pool.name)
        expires = utcnow() + timedelta(minutes=pool.ttl_minutes)
        tags = self.tags(pool, seq, expires)
        found = self.tagged(pool.name, tags[JOB_ID_TAG], ("pending", "running"))
        if found:
            instance_id = found[0]
        else:
            root = self.settings.remote_work_dir
            boot = first_boot_script(
                f"fceval-tui warm pool {pool.name} instance {seq}",
                math.ceil(pool.ttl_minutes),
                root,
                self.settings.ec2_use_nvme,
                then=pool_scripts.watcher_lines(root, int(expires.timestamp())),
            )
            params = self.ec2.instance_params(tags, boot, {k: v for k, v in tags.items() if k != JOB_ID_TAG})
            token = f"fceval-pool-{pool.name}-{int(pool.created_at.timestamp())}-{seq}"
            instance_id = self.ec2.launch_in_zones(params, token)
        instance = self.book.add_instance(pool.name, instance_id, seq, expires)
        self.book.record("pool_instance_launched", pool.name, instance=instance_id, seq=seq)
        return instance

    def tagged(self, pool: str, job_tag: str | None = None, states: tuple[str, ...] = LIVE_STATES) -> list[str]:
        """Instances in `states` with the pool's tag (and that job-id tag), whatever the ledger says."""
        filters = [tag_filter(POOL_TAG, pool), {"Name": "instance-state-name", "Values": list(states)}]
        if job_tag:
            filters.append(tag_filter(JOB_ID_TAG, job_tag))
        try:
            reservations = self.ec2.aws.ec2.describe_instances(Filters=filters)["Reservations"]
        except AWS_ERRORS as exc:
            raise classify(exc, f"looking up pool {pool}'s instances") from exc
        return [item["InstanceId"] for r in reservations for item in r["Instances"]]

    def prepare(self, pool: Pool, instance: PoolInstance) -> PoolInstance:
        """Make a booted instance (agent online) ready for jobs; it starts idle."""
        expires = utcnow() + timedelta(minutes=min(pool.idle_minutes, pool.ttl_minutes))
        script = pool_scripts.prepare_script(self.settings.remote_work_dir, instance.id, int(expires.timestamp()))
        try:
            result = self.transport(instance.id).run(["sh", "-c", script], timeout=600)
        except TimeoutError as exc:
            raise TransientError(f"preparing pool instance {instance.id} timed out: {exc}") from exc
        if result.exit_code in (EXIT_NO_TMUX, pool_scripts.EXIT_NO_RUNUSER):
            raise PermanentError(
                f"pool instance {instance.id} cannot run jobs: {result.stderr.strip()}",
                "use an AMI with tmux and util-linux (runuser), or give the subnet access to the package repositories",
            )
        if not result.ok:
            raise TransientError(f"preparing pool instance {instance.id} failed: {result.stderr.strip()[-300:]}")
        vcpus = int(pool_scripts.output_value(result.stdout, "vcpus") or 1)
        slots = max(1, vcpus // self.settings.pool_vcpus_per_job)
        ready = self.book.update_instance(instance.id, state=READY, slots=slots, idle_since=utcnow())
        self.set_expiry_tag(ready, result.stdout)
        self.book.record("pool_instance_ready", pool.name, instance=instance.id, vcpus=vcpus, slots=slots)
        return self.book.instance(instance.id)

    def set_expiry_tag(self, instance: PoolInstance, stdout: str) -> None:
        """Keep the expiry tag and the ledger equal to the expiry a script reported as in force."""
        epoch = pool_scripts.output_value(stdout, "expires")
        if not epoch or not epoch.isdigit():
            return
        expires = datetime.fromtimestamp(int(epoch), tz=utcnow().tzinfo)
        if instance.expires_at and abs((instance.expires_at - expires).total_seconds()) < 1:
            return
        try:
            self.ec2.aws.ec2.create_tags(Resources=[instance.id], Tags=[{"Key": EXPIRES_AT_TAG, "Value": iso(expires)}])
        except AWS_ERRORS as exc:
            raise classify(exc, f"ec2:CreateTags {instance.id}") from exc
        self.book.update_instance(instance.id, expires_at=expires)

    def transport(self, instance_id: str) -> SsmTransport:
        """Run Command on a pool instance, for the pool's own short scripts (no S3 copy of the output)."""
        return SsmTransport(
            self.ec2.aws.ssm,
            instance_id,
            region=self.settings.region,
            profile=self.settings.profile or None,
            poll_interval=min(1.0, self.ec2.poll_interval),
        )

    # -- health ---------------------------------------------------------------------------------------

    def upkeep(self, pool: Pool) -> list[PoolInstance]:
        """One pass (see the module doc); the pool's live instances after it."""
        with _pool_lock(pool.name):
            self._refresh(pool)
            instances = self.book.instances(pool.name)
            for instance in instances:
                if instance.state == DRAINING and not self._active_jobs(instance):
                    self.terminate(pool, [instance.id], f"drained ({instance.note})")
            pool = self.book.pool(pool.name)  # its size may have shrunk
            if pool.up:
                live = [i for i in self.book.instances(pool.name) if i.state in (BOOTING, READY)]
                replaced = [i for i in instances if i.state == DRAINING and "replaced by" not in (i.note or "")]
                for n in range(pool.size - len(live)):
                    new = self.launch(pool)
                    if n < len(replaced):
                        old = replaced[n]
                        self.book.update_instance(new.id, note=f"replacing {old.id} ({old.note})")
                        if self.book.instance(old.id).state == DRAINING:
                            self.book.update_instance(old.id, note=f"{old.note}; replaced by {new.id}")
            return self.book.instances(pool.name)

    def retire_idle(self, pool: Pool, now: datetime) -> list[str]:
        """Terminate the pool's ready instances that have had no job for its idle timeout (one call for
        all of them), the pool one smaller for each; their ids."""
        cutoff = now - timedelta(minutes=pool.idle_minutes)
        note = f"{IDLE_NOTE} {pool.idle_minutes:g} min (FCEVAL_POOL_IDLE_MINUTES): terminated"
        with _pool_lock(pool.name):
            idle = [
                i.id
                for i in self.book.instances(pool.name)
                if i.state == READY and not i.jobs and self.book.retire_idle(i.id, cutoff, note)
            ]
            if idle:
                self.book.record("pool_instances_idle", pool.name, instances=idle, idle_minutes=pool.idle_minutes)
                self.terminate(pool, idle, note)
            return idle

    def refresh(self, pool: Pool) -> list[PoolInstance]:
        """The observing half of `upkeep`: gone instances marked, offline ones drained, booted ones
        prepared; nothing launched or terminated."""
        with _pool_lock(pool.name):
            self._refresh(pool)
            return self.book.instances(pool.name)

    def _refresh(self, pool: Pool) -> None:
        instances = self.book.instances(pool.name)
        states = self._ec2_states([i.id for i in instances])
        now = utcnow()
        for instance in instances:
            state = states.get(instance.id)
            if state is None or state in GONE_STATES or state == "terminated":
                said = f"EC2 says {state or 'it no longer exists'}"
                if instance.expires_at is not None and instance.expires_at <= now and instance.state != DRAINING:
                    self.book.shrink(pool.name)  # its own switch ended it: not replaced
                    said += f" after its expiry {iso(instance.expires_at)}: ended itself, not replaced"
                self._gone(pool, instance, said)
        instances = self.book.instances(pool.name)
        online = self._online([i.id for i in instances])
        for instance in instances:
            if instance.state == READY and instance.id not in online:
                self.drain(pool, instance, "its SSM agent is offline")
            elif instance.state == BOOTING and instance.id in online:
                try:
                    self.prepare(pool, instance)
                except BackendError as exc:
                    self.drain(pool, instance, f"preparing it failed: {exc}")

    def wait_ready(self, pool: Pool, timeout: float) -> list[PoolInstance]:
        """Upkeep until the pool has `size` ready instances; TransientError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            instances = self.upkeep(pool)
            ready = [i for i in instances if i.state == READY]
            if len(ready) >= pool.size:
                return instances
            if time.monotonic() > deadline:
                raise TransientError(
                    f"pool {pool.name}: {len(ready)} of {pool.size} instances ready after {int(timeout)} s",
                    "see `fceval-tui pool status`; check the instance profile has AmazonSSMManagedInstanceCore",
                )
            time.sleep(self.ec2.poll_interval)

    def drain(self, pool: Pool, instance: PoolInstance, reason: str) -> None:
        """No new jobs on this instance; upkeep terminates it once its jobs are done, and replaces it."""
        if instance.state in (DRAINING, GONE):
            return
        self.book.update_instance(instance.id, state=DRAINING, note=reason)
        self.book.record("pool_instance_drained", pool.name, instance=instance.id, reason=reason)

    def terminate(self, pool: Pool, instance_ids: list[str], reason: str, wait: bool = False) -> None:
        if not instance_ids:
            return
        try:
            self.ec2.aws.ec2.terminate_instances(InstanceIds=instance_ids)
            if wait:
                delay = max(1, int(self.ec2.poll_interval))
                self.ec2.aws.ec2.get_waiter("instance_terminated").wait(
                    InstanceIds=instance_ids, WaiterConfig={"Delay": delay, "MaxAttempts": int(900 / delay) + 1}
                )
        except AWS_ERRORS as exc:
            if error_code(exc) != "InvalidInstanceID.NotFound":
                raise classify(exc, f"ec2:TerminateInstances {', '.join(instance_ids)}") from exc
        known = {i.id: i for i in self.book.instances(pool.name)}
        for instance_id in instance_ids:
            if instance_id in known:
                self._gone(pool, known[instance_id], reason)

    def _gone(self, pool: Pool, instance: PoolInstance, reason: str) -> None:
        if instance.state == GONE:
            return
        self.book.drop_claims(instance.id)
        self.book.update_instance(instance.id, state=GONE, note=reason)
        self.book.record("pool_instance_gone", pool.name, instance=instance.id, reason=reason)

    def _active_jobs(self, instance: PoolInstance) -> list[str]:
        active = []
        for job_id in instance.jobs:
            try:
                if not self.book.ledger.get_job(job_id).state.is_final:
                    active.append(job_id)
            except NotFoundError:
                continue
        return active

    def _ec2_states(self, instance_ids: list[str]) -> dict[str, str]:
        if not instance_ids:
            return {}
        try:
            pages = self.ec2.aws.ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": instance_ids}]
            )
            found = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        except AWS_ERRORS as exc:
            raise classify(exc, "ec2:DescribeInstances (pool instances)") from exc
        return {i["InstanceId"]: i["State"]["Name"] for i in found}

    def _online(self, instance_ids: list[str]) -> set[str]:
        return online_instances(self.ec2.aws.ssm, instance_ids, "pool instances")
