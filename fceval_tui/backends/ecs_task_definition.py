"""What an ECS attempt's task definition holds: the container whose own command runs the pipeline.

`entryPoint` is `/bin/sh -c` and `command` the bootstrap (remote_tmux.container_bootstrap), so an
image's ENTRYPOINT cannot swallow it (ContainerDefinition: `command` becomes the ENTRYPOINT's
arguments; only `entryPoint` overrides it). The job's values are the container's environment.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fceval_tui.backends import remote_tmux
from fceval_tui.backends.aws_constants import ECS_FAMILY_PREFIX, ECS_LOG_STREAM_PREFIX
from fceval_tui.backends.base import JobContext
from fceval_tui.backends.cloud import remote_work_dir
from fceval_tui.backends.manifest import Manifest
from fceval_tui.config import Settings
from fceval_tui.domain import pipeline
from fceval_tui.domain.template import ENV_NAMES
from fceval_tui.errors import PermanentError

CONTAINER = "main"
# Where the bootstrap works when the image's user cannot write FCEVAL_REMOTE_WORK_DIR (fixed, so the
# mirror finds the job's socket without asking the task).
FALLBACK_WORK_ROOT = "/tmp/fceval-tui"
MAX_BOOTSTRAP = 48_000  # RegisterTaskDefinition's request is capped at 64 KiB; leave room for the rest
_IMAGE_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def family_of(job_id: str, attempt: int) -> str:
    return f"{ECS_FAMILY_PREFIX}{job_id}-a{attempt}"


def log_stream(task_arn: str) -> str:
    """The awslogs stream of a task's container: prefix/container/task id (Amazon ECS Developer Guide,
    "Send Amazon ECS logs to CloudWatch": awslogs-stream-prefix)."""
    return f"{ECS_LOG_STREAM_PREFIX}/{CONTAINER}/{task_arn.rsplit('/', 1)[-1]}"


def image_for(template: str, task_id: str) -> str:
    """Image tags allow [A-Za-z0-9_.-]; anything else in a task id (e.g. '/') becomes '-'."""
    return template.replace("{task_id}", _IMAGE_TAG_UNSAFE.sub("-", task_id)[:128])


def work_dirs(settings: Settings, job_id: str) -> tuple[str, str]:
    """The job's work directory in the container, and the one used when that is not writable."""
    return remote_work_dir(settings, job_id), f"{FALLBACK_WORK_ROOT}/{job_id}"


def sockets(settings: Settings, job_id: str) -> list[str]:
    return [f"{work}/tmux.sock" for work in work_dirs(settings, job_id)]


def ttl_seconds(ctx: JobContext) -> int:
    """Seconds until the attempt's expiry (FCEVAL_TTL_MINUTES from its start), at least one."""
    return max(1, int((ctx.expires_at - datetime.now(UTC)).total_seconds()))


def bootstrap(settings: Settings, ctx: JobContext, manifest: Manifest) -> str:
    work, fallback = work_dirs(settings, ctx.job.id)
    # Relative paths: the work directory is decided in the container (see work_dirs).
    script = pipeline.render(
        ".",
        "artifacts",
        ctx.run_command,
        ctx.grade_command,
        upload=manifest.upload_shell(),
        banner=f"fceval-tui job {ctx.job.id} attempt {ctx.attempt} in an ECS task",
    )
    text = remote_tmux.container_bootstrap(
        work, fallback, ctx.job.id, script, ttl_seconds(ctx), ENV_NAMES["artifacts_dir"]
    )
    if len(text) > MAX_BOOTSTRAP:
        raise PermanentError(
            f"the pipeline for {ctx.job.id} is {len(text)} bytes, too long for a task definition",
            "shorten FCEVAL_RUN_COMMAND / FCEVAL_GRADE_COMMAND",
        )
    return text


def definition(settings: Settings, ctx: JobContext, family: str, manifest: Manifest) -> dict:
    """RegisterTaskDefinition's parameters for this attempt."""
    s = settings
    environment = {**ctx.env, **manifest.environment()}
    container = {
        "name": CONTAINER,
        "image": image_for(s.ecs_image, ctx.job.task_id),
        "essential": True,
        "entryPoint": ["/bin/sh", "-c"],
        "command": [bootstrap(settings, ctx, manifest)],
        "environment": [{"name": k, "value": v} for k, v in environment.items()],
        "memory": s.ecs_memory,
        "linuxParameters": {"initProcessEnabled": True},  # recommended for ECS Exec
    }
    if s.ecs_log_group:
        container["logConfiguration"] = {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": s.ecs_log_group,
                "awslogs-region": s.region,
                "awslogs-stream-prefix": ECS_LOG_STREAM_PREFIX,
            },
        }
    params: dict = {
        "family": family,
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": str(s.ecs_cpu),
        "memory": str(s.ecs_memory),
        "containerDefinitions": [container],
        "tags": [{"key": k, "value": v} for k, v in ctx.tags.items()],
    }
    if s.ecs_task_role_arn:
        params["taskRoleArn"] = s.ecs_task_role_arn
    if s.ecs_execution_role_arn:
        params["executionRoleArn"] = s.ecs_execution_role_arn
    return params


# The bootstrap's own exit codes, as the errors a user sees (None: worth another attempt).
EXIT_MEANINGS: dict[int, tuple[str, str | None]] = {
    remote_tmux.EXIT_NO_WORK_DIR: (
        "the image's user can write neither FCEVAL_REMOTE_WORK_DIR nor " + FALLBACK_WORK_ROOT,
        "set FCEVAL_REMOTE_WORK_DIR to a directory the image's USER can create",
    ),
    remote_tmux.EXIT_IMAGE_NO_TMUX: ("tmux is not installed in the task image", "add tmux to FCEVAL_ECS_IMAGE"),
    remote_tmux.EXIT_IMAGE_NO_AWS: (
        "the aws CLI is not installed in the task image (the pipeline uploads its artifacts with `aws s3 cp`)",
        "add the AWS CLI to FCEVAL_ECS_IMAGE",
    ),
    remote_tmux.EXIT_TTL: (
        "the task reached its time-to-live before the pipeline finished",
        "raise FCEVAL_TTL_MINUTES (it must exceed FCEVAL_JOB_TIMEOUT_MINUTES)",
    ),
    remote_tmux.EXIT_PANE_DIED: ("the pipeline ended without finishing (its tmux pane died)", None),
}
