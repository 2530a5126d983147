"""IAM policy statements for the backends' declared actions.

The backends declare which actions they call (`caller_actions`) and which their compute's role
needs (`instance_actions`); this module assembles the statements `audit --print-policy` prints and
the audit's permission checks test, so both share one derivation: the scope (policy_scope.py) names
the resources, the rules (policy_grants.py) give each action its resources and conditions, and the
statements and their JSON are in policy_document.py. ARNs use the region's partition. No boto3 here.

The offline evaluator of the caller's and roles' policies is in services/policy_evaluation.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from fceval_tui.backends import backend_class
from fceval_tui.config import Settings
from fceval_tui.services.bucket_keys import KMS_ACTIONS, BucketKey
from fceval_tui.services.fleet_actions import fleet_actions
from fceval_tui.services.policy_document import Statement
from fceval_tui.services.policy_grants import IAM_READS, grants
from fceval_tui.services.policy_scope import Scope, scope_for

SSM_MANAGED_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"

# Read-only calls the preflight audit itself makes, by backend (printed with the caller policy so
# the audit can see everything it checks instead of reporting "unknown"). sts:GetCallerIdentity needs none.
_AUDIT_COMMON: tuple[str, ...] = IAM_READS + (
    "ec2:DescribeRegions",
    "ec2:DescribeSubnets",
    "ec2:DescribeRouteTables",
    "ec2:DescribeVpcEndpoints",
    "s3:GetBucketLocation",
    "s3:GetEncryptionConfiguration",  # SSE-KMS buckets need KMS statements (services/bucket_keys.py)
    # the write/read/delete probe under the staging prefix
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
)
AUDIT_ACTIONS: dict[str, tuple[str, ...]] = {
    "ec2": _AUDIT_COMMON
    + (
        "iam:GetInstanceProfile",
        "servicequotas:GetServiceQuota",
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstanceTypeOfferings",
        "ssm:GetParameter",
    ),
    "ecs": _AUDIT_COMMON
    + (
        "servicequotas:GetServiceQuota",
        "ecs:DescribeClusters",
        "ecs:ListTasks",
        "ecs:DescribeTasks",
        "logs:DescribeLogGroups",
    ),
    "batch": _AUDIT_COMMON
    + ("batch:DescribeJobQueues", "batch:DescribeJobDefinitions", "batch:DescribeComputeEnvironments"),
}


def _statements(title: str, actions: Iterable[str], scope: Scope, compute: bool = False) -> list[Statement]:
    """One statement per grant id: the actions sharing its resources and condition."""
    groups: dict[str, tuple[list[str], tuple[str, ...], dict | None]] = {}
    for action in dict.fromkeys(actions):
        for grant in grants(action, compute):
            resources = tuple(grant.resources(scope))
            if not resources:
                continue  # nothing to grant it on: no bucket configured, no role passed, no spot
            condition = grant.condition(scope)
            sid = title + grant.sid
            entry = groups.setdefault(sid, ([], resources, condition))
            if entry[1:] != (resources, condition):
                raise ValueError(f"statement {sid} is given two different scopes")
            entry[0].append(action)
    return [
        Statement(sid, tuple(actions), resources, condition) for sid, (actions, resources, condition) in groups.items()
    ]


def _title(backend: str) -> str:
    return "FcevalTui" + backend.capitalize()


AUDIT_SID = "FcevalTuiPreflightAudit"


def caller_statements(
    backend: str,
    settings: Settings,
    pass_roles: Iterable[str] = (),
    with_audit: bool = True,
    placeholder: bool = False,
    keys: Iterable[BucketKey] = (),
) -> list[Statement]:
    """What the console's identity needs for `backend`, with `exec` and `forward` on its compute (and,
    with_audit, what the preflight reads); `keys`: the buckets' SSE-KMS keys, whose use through S3 it
    needs too."""
    scope = scope_for(backend, settings, pass_roles, placeholder, keys)
    actions = backend_class(backend).caller_actions + KMS_ACTIONS + fleet_actions(backend)
    out = _statements(_title(backend), actions, scope)
    if with_audit:
        audit = AUDIT_ACTIONS[backend] + ("kms:DescribeKey",)
        out += _statements(AUDIT_SID, [a for a in audit if a not in actions], scope)
    return out


def instance_statements(
    backend: str, settings: Settings, placeholder: bool = False, keys: Iterable[BucketKey] = ()
) -> list[Statement]:
    """What the compute's own role needs (instance profile, task role, job role)."""
    scope = scope_for(backend, settings, placeholder=placeholder, keys=keys)
    actions = backend_class(backend).instance_actions
    if any(a.startswith("s3:") for a in actions):
        actions += KMS_ACTIONS
    return _statements(_title(backend) + "Compute", actions, scope, compute=True)
