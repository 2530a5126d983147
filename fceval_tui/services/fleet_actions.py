"""The IAM actions `exec` and `forward` call, by backend: the audit and the printed caller policy add them
to the backend's own `caller_actions` (kept here, free of boto3, so that policy.py can read them)."""

from __future__ import annotations

# exec (services/fleet_exec.py): Run Command on EC2 instances, ECS Exec in ECS tasks.
EXEC_ACTIONS: dict[str, tuple[str, ...]] = {
    "ec2": (
        "ec2:DescribeInstances",  # --pool: the pool's instances, by tag
        "ssm:SendCommand",
        "ssm:ListCommandInvocations",
        "ssm:GetCommandInvocation",  # an output longer than ListCommandInvocations keeps
        "ssm:DescribeInstanceInformation",  # which instances of a refused batch are online
        "ssm:CancelCommand",  # Ctrl-C, or no answer in time
    ),
    "ecs": ("ecs:ExecuteCommand",),
}
# forward (services/forwarding.py): a Session Manager session with AWS-StartPortForwardingSession.
FORWARD_ACTIONS: dict[str, tuple[str, ...]] = {
    "ec2": ("ssm:StartSession", "ssm:TerminateSession"),
    "ecs": ("ecs:DescribeTasks", "ssm:StartSession", "ssm:TerminateSession"),  # the container's runtime id
}


def fleet_actions(backend: str) -> tuple[str, ...]:
    return EXEC_ACTIONS.get(backend, ()) + FORWARD_ACTIONS.get(backend, ())
