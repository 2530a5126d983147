"""ECS Exec is used once AWS says it can be: the container's ExecuteCommandAgent reports RUNNING.

DescribeTasks reports the agent in `containers[].managedAgents[]` (Amazon ECS API Reference,
"ManagedAgent"; "Monitor Amazon ECS containers with ECS Exec"): PENDING while it starts, some time
after the task itself is RUNNING; RUNNING once it has connected; STOPPED, with a reason, when it could
not. ExecuteCommand before RUNNING is refused ("... the execute command agent isn't running"), so
callers (tail, attach, send, the live mirror, commands run in the task) wait here first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fceval_tui.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

AGENT = "ExecuteCommandAgent"
WAIT = 120.0  # seconds an agent may stay PENDING before the caller is told why nothing happens

_FIX = (
    "ECS Exec needs the task run with enableExecuteCommand=true (fceval-tui does this), a task role "
    "(FCEVAL_ECS_TASK_ROLE_ARN) allowing ssmmessages:CreateControlChannel, ssmmessages:CreateDataChannel, "
    "ssmmessages:OpenControlChannel and ssmmessages:OpenDataChannel (`fceval-tui audit --print-policy "
    "instance`), and a route from the task to the ssmmessages endpoint (public IP, NAT or a VPC endpoint); "
    "the image needs no agent of its own (ECS mounts one) but must let it run: a writable root file system"
)
_ENDED = "the job's compute has ended; see its output with `fceval-tui status` or in the console"


def agent_status(task: dict, container: str) -> tuple[str, str]:
    """(lastStatus, reason) of the container's exec agent; PENDING while DescribeTasks lists none yet."""
    box = next((c for c in task.get("containers") or [] if c.get("name") == container), {})
    agent = next((a for a in box.get("managedAgents") or [] if a.get("name") == AGENT), {})
    return agent.get("lastStatus") or "PENDING", agent.get("reason") or ""


def wait_until_exec_ready(
    describe: Callable[[], dict | None],
    task_arn: str,
    container: str,
    *,
    timeout: float = WAIT,
    interval: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once `describe()` (the task as DescribeTasks reports it, or None) shows the exec agent
    RUNNING. PermanentError when the task or its agent has stopped, or the task has exec turned off;
    TransientError when the agent is still not RUNNING after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        task = describe()
        if task is None:
            raise PermanentError(f"task {task_arn} no longer exists: nothing to run ECS Exec in", _ENDED)
        if "STOPPED" in (task.get("lastStatus"), task.get("desiredStatus")):
            reason = task.get("stoppedReason") or ("stopping" if task.get("lastStatus") != "STOPPED" else "stopped")
            raise PermanentError(f"task {task_arn} has stopped ({reason}): ECS Exec needs a running task", _ENDED)
        if task.get("enableExecuteCommand") is False:
            raise PermanentError(f"task {task_arn} was started without enableExecuteCommand", _FIX)
        status, reason = agent_status(task, container)
        if status == "RUNNING":
            return
        if status == "STOPPED":
            raise PermanentError(
                f"no ECS Exec into task {task_arn}: its {AGENT} stopped: {reason or 'AWS gave no reason'}", _FIX
            )
        if time.monotonic() + interval > deadline:
            raise TransientError(
                f"no ECS Exec into task {task_arn} yet: its {AGENT} is still {status} after {timeout:g} s "
                f"(the task is {task.get('lastStatus')})",
                "wait a minute and try again; if it never becomes RUNNING: " + _FIX,
            )
        log.info("waiting for %s in %s: %s", AGENT, task_arn, status)
        sleep(interval)
