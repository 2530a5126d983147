"""AWS Batch backend: one Batch job per job attempt; Batch schedules the compute.

provision  stage the manifest of expected uploads, then submit_job (found again by name on a
           retry) with the whole pipeline as the container command, vCPU/memory/GPU from config,
           retry attempts, `attemptDurationSeconds` = TTL (the dead-man's switch), tags
start      nothing: Batch starts the job when it has capacity
observe    job status from describe_jobs, batched for every job this console watches (100 ids
           per call, one round per poll interval), so N running jobs cost N/100 calls, not N
collect    verify the uploads in S3 (the pipeline copies them with `aws s3 cp`); one missing, the job's
           log stream says why (log_tail)
cancel     terminate_job; cleanup also terminates (idempotent) and deletes the staging objects

Batch has no tmux: `tmux_target` is None and `log_lines` gives the job's CloudWatch log stream
for the attach view instead.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

from fceval_tui.backends import log_tail
from fceval_tui.backends.aws import AWS_ERRORS, AwsClients, chunks, classify, error_code
from fceval_tui.backends.aws_constants import BATCH_JOB_PREFIX
from fceval_tui.backends.base import (
    JobContext,
    Observation,
    Outcome,
    Resource,
    ResourceGone,
    TmuxTarget,
    is_managed,
)
from fceval_tui.backends.cloud import CloudBackend, remote_work_dir, require_settings
from fceval_tui.backends.manifest import MANIFEST, load_manifest, verify_uploads, with_upload_error
from fceval_tui.backends.status_board import StatusBoard
from fceval_tui.config import Settings
from fceval_tui.domain.models import Job
from fceval_tui.domain.prices import batch_hourly, cost_so_far
from fceval_tui.domain.states import JobState
from fceval_tui.domain.triage import ErrorClass
from fceval_tui.errors import PermanentError

LIVE_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
# SubmitJob accepts larger container overrides, then the job fails when Batch starts it (AWS Batch:
# "ContainerOverrides ... must be less than 8192 bytes" in total): refuse before submitting.
MAX_OVERRIDES = 8_192


def job_name(job_id: str, attempt: int) -> str:
    return f"{BATCH_JOB_PREFIX}{job_id}-a{attempt}"


class _StatusBoard(StatusBoard[dict]):
    """The last describe_jobs answer for every watched Batch job, in batches of 100 (see status_board)."""

    doing = "batch:DescribeJobs"

    def __init__(self, aws: AwsClients, max_age: float) -> None:
        super().__init__(max_age)
        self.aws = aws  # its batch client at each call: renewed credentials bring new clients

    def _fetch(self, keys: Sequence[str]) -> dict[str, dict]:
        seen: dict[str, dict] = {}
        for ids in chunks(keys, 100):
            for item in self.aws.batch.describe_jobs(jobs=list(ids))["jobs"]:
                seen[item["jobId"]] = item
        return seen


class BatchBackend(CloudBackend):
    name = "batch"
    first_state = JobState.PROVISIONING
    poll_interval = 10.0

    # The job role is assumed by the container (ECS tasks); Batch passes it from the job definition.
    compute_principal = "ecs-tasks.amazonaws.com"
    caller_actions: ClassVar[tuple[str, ...]] = (
        "batch:SubmitJob",
        "batch:TagResource",
        "batch:DescribeJobs",
        "batch:ListJobs",
        "batch:TerminateJob",
        "logs:GetLogEvents",
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:DeleteObject",
    )
    instance_actions: ClassVar[tuple[str, ...]] = (
        # The job role: the pipeline uploads its archives into its inbox itself.
        "s3:PutObject",
    )

    def __init__(self, settings: Settings, clients: AwsClients | None = None) -> None:
        super().__init__(settings)
        self.aws = clients or AwsClients(settings.region, settings.profile, ("batch", "logs", "s3"))
        self._board = _StatusBoard(self.aws, max_age=self.poll_interval / 2)

    def check_ready(self) -> None:
        super().check_ready()
        require_settings(
            self.settings,
            self.name,
            ("FCEVAL_BATCH_QUEUE", "FCEVAL_BATCH_JOB_DEFINITION"),
            "set them in .env to an existing job queue and job definition",
        )

    # -- the Backend contract -----------------------------------------------------------------

    def provision(self, ctx: JobContext) -> str:
        name = job_name(ctx.job.id, ctx.attempt)
        existing = self._jobs_named(name)
        if existing:
            return existing[0]  # a retry after a lost SubmitJob response
        s = self.settings
        work = remote_work_dir(s, ctx.job.id)
        manifest = self.new_manifest(ctx)
        script = self.pipeline_script(ctx, manifest.upload_shell(), "")
        # The job's exit code is the pipeline's verdict, so Batch shows agent failures as FAILED.
        command = f'mkdir -p {shlex.quote(work)} || exit 2\n{script}\nexit "$code"\n'
        resources = [{"type": "VCPU", "value": str(s.batch_vcpu)}, {"type": "MEMORY", "value": str(s.batch_memory)}]
        if s.batch_gpus:
            resources.append({"type": "GPU", "value": str(s.batch_gpus)})
        overrides = {
            "command": ["sh", "-c", command],
            "resourceRequirements": resources,
            "environment": [{"name": k, "value": v} for k, v in {**ctx.env, **manifest.environment()}.items()],
        }
        size = len(json.dumps(overrides).encode())
        if size >= MAX_OVERRIDES:
            raise PermanentError(
                f"the Batch container overrides for {ctx.job.id} are {size:,} bytes; Batch fails jobs whose "
                f"overrides reach {MAX_OVERRIDES:,} bytes after accepting them",
                "shorten FCEVAL_RUN_COMMAND / FCEVAL_GRADE_COMMAND (or put the harness call in a script on the image)",
            )
        self.staging(ctx.job, ctx.attempt, ctx.expires_at).put(self.aws.s3, MANIFEST, manifest.to_json())
        ttl = max(60, int((ctx.expires_at - datetime.now(UTC)).total_seconds()))
        try:
            reply = self.aws.batch.submit_job(
                jobName=name,
                jobQueue=s.batch_queue,
                jobDefinition=s.batch_job_definition,
                containerOverrides=overrides,
                # Batch-side retries only for lost hosts (spot reclaim); an agent failure is a verdict.
                retryStrategy={
                    "attempts": s.batch_retry_attempts,
                    "evaluateOnExit": [
                        {"onStatusReason": "Host EC2*", "action": "RETRY"},
                        {"onReason": "*", "action": "EXIT"},
                    ],
                },
                timeout={"attemptDurationSeconds": ttl},
                tags=ctx.tags,
                propagateTags=True,
            )
        except AWS_ERRORS as exc:
            raise classify(exc, f"batch:SubmitJob to {s.batch_queue}") from exc
        return reply["jobId"]

    def start(self, ctx: JobContext, resource_id: str) -> None:
        """Submitting started it; Batch runs it when the queue has capacity."""

    def observe(self, ctx: JobContext, resource_id: str) -> Observation:
        item = self._board.get(resource_id)
        if item is None:
            raise ResourceGone(f"Batch job {resource_id} no longer exists")
        status = item["status"]
        detail = f"Batch {status}" + (f": {item['statusReason']}" if item.get("statusReason") else "")
        if status == "SUCCEEDED":
            code = _exit_code(item)
            return Observation(JobState.UPLOADING, done=True, exit_code=0 if code is None else code, detail=detail)
        if status == "FAILED":
            return Observation(JobState.UPLOADING, done=True, exit_code=_exit_code(item), detail=detail)
        return Observation(JobState.RUNNING, detail=detail)

    def collect(self, ctx: JobContext, resource_id: str, observation: Observation) -> Outcome:
        self._board.forget(resource_id)
        s3 = self.aws.s3
        manifest = load_manifest(s3, self.staging(ctx.job, ctx.attempt), ctx, self.settings)
        outcome = verify_uploads(s3, manifest, observation.exit_code)
        if outcome.error_class == ErrorClass.UPLOAD:
            said = log_tail.upload_error(self.aws.logs, self.settings.batch_log_group, self._log_stream(resource_id))
            outcome = with_upload_error(outcome, manifest, said)
        if outcome.succeeded or observation.exit_code is not None:
            return outcome
        # Killed before the pipeline could report (timeout, spot reclaim): say why.
        return Outcome(False, None, outcome.artifacts, f"{observation.detail}; {outcome.error}")

    def cancel(self, ctx: JobContext, resource_id: str) -> None:
        self._terminate(resource_id, "cancelled by fceval-tui")

    def cleanup(self, ctx: JobContext, resource_id: str) -> None:
        ids = {resource_id, *self._jobs_named(job_name(ctx.job.id, ctx.attempt))} - {""}
        for batch_job_id in sorted(ids):
            self._terminate(batch_job_id, "fceval-tui job ended")
            self._board.forget(batch_job_id)
        self.delete_staged(ctx)

    def would_create(self) -> dict[str, object]:
        s = self.settings
        return {
            "resource": "one Batch job per job attempt (terminated at the end, or by Batch at the TTL)",
            "job_queue": s.batch_queue or "(unset)",
            "job_definition": s.batch_job_definition or "(unset)",
            "vcpus": s.batch_vcpu,
            "memory_mib": s.batch_memory,
            "gpus": s.batch_gpus,
        }

    def hourly_cost(self) -> float:
        return batch_hourly(self.settings.batch_vcpu, self.settings.batch_memory)

    def list_resources(self) -> list[Resource]:
        """One paginated list_jobs per live status, then describe_jobs for ours in batches of 100."""
        now = datetime.now(UTC)
        batch = self.aws.batch
        try:
            ours = [
                summary["jobId"]
                for status in LIVE_STATUSES
                for page in batch.get_paginator("list_jobs").paginate(
                    jobQueue=self.settings.batch_queue, jobStatus=status
                )
                for summary in page["jobSummaryList"]
                if summary["jobName"].startswith(BATCH_JOB_PREFIX)
            ]
            described = [item for ids in chunks(ours, 100) for item in batch.describe_jobs(jobs=list(ids))["jobs"]]
        except AWS_ERRORS as exc:
            raise classify(exc, f"listing fceval-tui jobs in Batch queue {self.settings.batch_queue}") from exc
        hourly = batch_hourly(self.settings.batch_vcpu, self.settings.batch_memory)
        resources = []
        for item in described:
            tags = item.get("tags") or {}
            if not is_managed(tags):
                continue
            started = _ms(item.get("startedAt")) or _ms(item.get("createdAt"))
            resources.append(
                Resource.from_tags(
                    tags,
                    backend=self.name,
                    kind="batch-job",
                    id=item["jobId"],
                    state=item["status"],
                    started_at=started,
                    cost_usd=cost_so_far(hourly, _ms(item.get("startedAt")), now),
                    detail={"queue": self.settings.batch_queue, "name": item.get("jobName")},
                )
            )
        return resources

    def destroy_resource(self, resource: Resource) -> None:
        if resource.kind == "batch-job":
            self._terminate(resource.id, "fceval-tui teardown")
        else:
            super().destroy_resource(resource)

    def tmux_target(self, job: Job) -> TmuxTarget | None:
        return None  # Batch jobs have no tmux; the attach view shows `log_lines` instead

    def log_lines(self, job: Job, limit: int = 500) -> list[str]:
        """The last `limit` lines of the job's CloudWatch log stream (empty until the job has started)."""
        if not job.resource_id:
            return []
        try:
            found = self.aws.batch.describe_jobs(jobs=[job.resource_id])["jobs"]
        except AWS_ERRORS as exc:
            raise classify(exc, f"batch:DescribeJobs {job.resource_id}") from exc
        stream = _log_stream_of(found)
        if not stream:
            return []
        try:
            events = self.aws.logs.get_log_events(
                logGroupName=self.settings.batch_log_group, logStreamName=stream, limit=limit, startFromHead=False
            )["events"]
        except AWS_ERRORS as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return []
            raise classify(exc, f"logs:GetLogEvents {self.settings.batch_log_group} {stream}") from exc
        return [event["message"] for event in events]

    # -- helpers -------------------------------------------------------------------------------

    def _log_stream(self, batch_job_id: str) -> str | None:
        """The job's log stream, for `log_tail` (None when DescribeJobs fails: the reason is then left out)."""
        try:
            return _log_stream_of(self.aws.batch.describe_jobs(jobs=[batch_job_id])["jobs"])
        except AWS_ERRORS:
            return None

    def _jobs_named(self, name: str) -> list[str]:
        try:
            pages = self.aws.batch.get_paginator("list_jobs").paginate(
                jobQueue=self.settings.batch_queue, filters=[{"name": "JOB_NAME", "values": [name]}]
            )
            return [s["jobId"] for page in pages for s in page["jobSummaryList"] if s["jobName"] == name]
        except AWS_ERRORS as exc:
            raise classify(exc, f"batch:ListJobs {name}") from exc

    def _terminate(self, batch_job_id: str, reason: str) -> None:
        try:
            # Also fine for a job that already ended: Batch ignores it.
            self.aws.batch.terminate_job(jobId=batch_job_id, reason=reason)
        except AWS_ERRORS as exc:
            raise classify(exc, f"batch:TerminateJob {batch_job_id}") from exc


def _log_stream_of(found: list[dict]) -> str | None:
    return (found[0].get("container") or {}).get("logStreamName") if found else None


def _exit_code(item: dict) -> int | None:
    code = (item.get("container") or {}).get("exitCode")
    if code is None and item.get("attempts"):
        code = (item["attempts"][-1].get("container") or {}).get("exitCode")
    return int(code) if code is not None else None


def _ms(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value else None
