"""RunTask and the client token it carries: a token reused with other parameters (after a resume the
expiry tag is recomputed, or the attempt's task definition was registered again) is refused with
ConflictException, whose `resourceIds` are the tasks that token started (Amazon ECS API Reference,
RunTask: "The provided clientToken is already in use with a different RunTask request")."""

from __future__ import annotations

import secrets

from fceval_tui.backends.aws import AWS_ERRORS, error_code
from fceval_tui.backends.aws_constants import ECS_STARTED_BY
from fceval_tui.backends.base import JobContext
from fceval_tui.backends.ecs_task_definition import family_of
from fceval_tui.config import Settings

_LIVE = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING")
TOKEN_LENGTH = 64  # RunTask's clientToken: up to 64 characters


def launch(ecs, params: dict) -> dict:
    """RunTask's reply for `params` (with their clientToken). On ConflictException a task that token
    started is used (as a reply naming it) while it is still live, else a fresh token runs a new one."""
    try:
        return ecs.run_task(**params)
    except AWS_ERRORS as exc:
        if error_code(exc) != "ConflictException":
            raise
        earlier = list(getattr(exc, "response", {}).get("resourceIds") or [])
    if earlier:
        tasks = ecs.describe_tasks(cluster=params["cluster"], tasks=earlier)["tasks"]
        live = [t for t in tasks if t.get("lastStatus") in _LIVE and t.get("desiredStatus") != "STOPPED"]
        if live:
            return {"tasks": live[:1], "failures": []}
    token = params["clientToken"]
    fresh = f"{token[: TOKEN_LENGTH - 9]}-{secrets.token_hex(4)}"
    return ecs.run_task(**{**params, "clientToken": fresh})


def run_task_params(settings: Settings, ctx: JobContext, definition: str) -> dict:
    """RunTask's parameters for this attempt; its clientToken makes a retried call start no second task."""
    s = settings
    return {
        "cluster": s.ecs_cluster,
        "taskDefinition": definition,
        "launchType": "FARGATE",
        "enableExecuteCommand": True,
        "startedBy": ECS_STARTED_BY,
        "clientToken": family_of(ctx.job.id, ctx.attempt)[-TOKEN_LENGTH:],
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(s.ecs_subnets),
                "securityGroups": list(s.ecs_security_groups),
                "assignPublicIp": "ENABLED" if s.ecs_public_ip else "DISABLED",
            }
        },
        "tags": [{"key": k, "value": v} for k, v in ctx.tags.items()],
    }
