"""IAM policy statements for the backends' declared actions.

The backends declare which actions they call (`caller_actions`) and which their compute's role
needs (`instance_actions`); this module gives each action its resources and conditions (the
`_RULES` table) so that `audit --print-policy` and the audit's permission checks share one
derivation. Mutating and shell-granting actions are held to what carries the console's
`ManagedBy` tag; reads that IAM cannot scope stay on "*". ARNs use the region's partition.
No boto3 here (botocore is imported only to name the partition).

The offline evaluator of the caller's and roles' policies is in services/policy_evaluation.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from fceval_tui.backends import backend_class
from fceval_tui.backends.aws_constants import ECS_FAMILY_PREFIX, INBOX_PREFIX, MANAGED_BY, MANAGED_BY_TAG, S3_ROOT
from fceval_tui.config import Settings
from fceval_tui.domain.artifacts import split_s3
from fceval_tui.services.bucket_keys import KMS_ACTIONS, BucketKey, customer_keys, via_s3
from fceval_tui.services.fleet_actions import fleet_actions
from fceval_tui.transports.port_forward import PORT_FORWARD_DOCUMENT

SSM_MANAGED_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
AMI_PARAMETERS = "parameter/aws/service/ami-amazon-linux-latest/*"  # the public AL2023 AMI ids
SPOT_SERVICE = "spot.amazonaws.com"
# What the audit sends as the caller's user id when a resource names ${aws:userid} (sessions).
PROBE_USERID = "AIDAPERMISSIONPROBE"

# Read-only calls the preflight audit itself makes, by backend (printed with the caller policy so
# the audit can see everything it checks instead of reporting "unknown"). sts:GetCallerIdentity needs none.
_AUDIT_COMMON: tuple[str, ...] = (
    "iam:GetRole",
    "iam:ListAttachedRolePolicies",
    "iam:ListRolePolicies",
    "iam:GetRolePolicy",
    "iam:ListAttachedUserPolicies",
    "iam:ListUserPolicies",
    "iam:GetUserPolicy",
    "iam:ListGroupsForUser",
    "iam:ListAttachedGroupPolicies",
    "iam:ListGroupPolicies",
    "iam:GetGroupPolicy",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    "iam:SimulatePrincipalPolicy",
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
    + ("servicequotas:GetServiceQuota", "ecs:DescribeClusters", "ecs:ListTasks", "ecs:DescribeTasks"),
    "batch": _AUDIT_COMMON
    + ("batch:DescribeJobQueues", "batch:DescribeJobDefinitions", "batch:DescribeComputeEnvironments"),
}


@dataclass(frozen=True)
class Statement:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: Mapping | None = None

    def to_json(self) -> dict:
        doc: dict = {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": list(self.actions) if len(self.actions) > 1 else self.actions[0],
            "Resource": list(self.resources) if len(self.resources) > 1 else self.resources[0],
        }
        if self.condition:
            doc["Condition"] = {op: dict(entries) for op, entries in self.condition.items()}
        return doc

    def context(self) -> dict[str, str]:
        """The request context this statement is written for (e.g. iam:PassedToService, a resource's tag)."""
        context = {
            key: sample_resource(_listify(value)[0])
            for operator in (self.condition or {}).values()
            for key, value in operator.items()
        }
        if any("${aws:userid}" in r for r in self.resources):
            context["aws:userid"] = PROBE_USERID
        return context

    def context_entries(self) -> list[dict]:
        """The same context for the policy simulator, so a conditional Allow can match."""
        return [
            {"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": "string"}
            for key, value in self.context().items()
        ]


def sample_resource(pattern: str) -> str:
    """A concrete ARN for a pattern (the simulator and the evaluator need one resource, not a glob)."""
    if not pattern.startswith("arn:"):
        return pattern
    parts = pattern.replace("${aws:userid}", PROBE_USERID).split(":", 5)
    if len(parts) == 6 and parts[4] == "*":
        parts[4] = "000000000000"
    return ":".join(parts).replace("*", "permission-probe")


def document(statements: Iterable[Statement]) -> dict:
    return {"Version": "2012-10-17", "Statement": [s.to_json() for s in statements]}


def render(statements: Iterable[Statement]) -> str:
    return json.dumps(document(statements), indent=2)


# -- where each action applies -----------------------------------------------------------------


def partition_of(region: str) -> str:
    import botocore.exceptions
    import botocore.session

    try:
        return botocore.session.get_session().get_partition_for_region(region)
    except botocore.exceptions.UnknownRegionError:
        return "aws"  # the audit's region check reports an unknown region


@dataclass(frozen=True)
class Scope:
    """The names the policies are written for: partition, region, buckets and the backend's resources."""

    partition: str
    region: str
    backend: str
    objects: tuple[str, ...]  # object ARN patterns the console reads and writes
    buckets: tuple[str, ...]
    prefixes: tuple[str, ...]  # key prefixes it lists (s3:prefix)
    inbox: str | None  # the compute's only S3 target
    cluster: str = ""
    queue: str = ""
    job_definition: str = ""
    log_group: str = ""
    pass_roles: tuple[str, ...] = ()
    principal: str | None = None  # the service the roles are passed to
    spot: bool = False
    keys: tuple[BucketKey, ...] = ()  # the buckets' default SSE-KMS keys (empty: none, or not read)

    def arn(self, service: str, resource: str, account: str = "*", region: str | None = None) -> str:
        return f"arn:{self.partition}:{service}:{self.region if region is None else region}:{account}:{resource}"

    def ec2(self, kind: str) -> str:
        return self.arn("ec2", f"{kind}/*", account="" if kind == "image" else "*")

    def named(self, service: str, kind: str, name: str) -> str:
        """An ECS/Batch resource given by name or ARN in the settings."""
        return name if name.startswith("arn:") else self.arn(service, f"{kind}/{name}")


def _artifact_location(settings: Settings) -> tuple[str | None, str]:
    """(bucket, key prefix) where artifacts are kept (None: a local directory, which the audit reports)."""
    from fceval_tui.backends.cloud import cloud_artifact_prefix

    url = cloud_artifact_prefix(settings)
    if url is None:
        return None, ""
    bucket, prefix = split_s3(url)
    return bucket, (prefix.rstrip("/") + "/") if prefix else ""


def scope_for(
    backend: str,
    settings: Settings,
    pass_roles: Iterable[str] = (),
    placeholder: bool = False,
    keys: Iterable[BucketKey] = (),
) -> Scope:
    partition = partition_of(settings.region)
    staging = settings.staging_bucket or ("YOUR-STAGING-BUCKET" if placeholder else None)
    objects, buckets, prefixes = [], [], []
    if staging:
        objects.append(f"arn:{partition}:s3:::{staging}/{S3_ROOT}*")  # staging, inboxes, default artifacts, probes
        buckets.append(f"arn:{partition}:s3:::{staging}")
        prefixes.append(f"{S3_ROOT}*")
    bucket, prefix = _artifact_location(settings)
    if bucket:
        pattern = f"arn:{partition}:s3:::{bucket}/{prefix}*"
        if not any(pattern.startswith(o[:-1]) for o in objects):
            objects.append(pattern)
            prefixes.append(f"{prefix}*")
        if f"arn:{partition}:s3:::{bucket}" not in buckets:
            buckets.append(f"arn:{partition}:s3:::{bucket}")
    return Scope(
        partition=partition,
        region=settings.region,
        backend=backend,
        objects=tuple(objects),
        buckets=tuple(buckets),
        prefixes=tuple(dict.fromkeys(prefixes)),
        inbox=f"arn:{partition}:s3:::{staging}/{INBOX_PREFIX}*" if staging else None,
        cluster=settings.ecs_cluster or ("YOUR-CLUSTER" if placeholder else ""),
        queue=settings.batch_queue or ("YOUR-QUEUE" if placeholder else ""),
        job_definition=settings.batch_job_definition or ("YOUR-JOB-DEFINITION" if placeholder else ""),
        log_group=settings.batch_log_group,
        pass_roles=tuple(dict.fromkeys(pass_roles)),
        principal=backend_class(backend).compute_principal,
        spot=settings.spot_price is not None,
        keys=tuple(keys),
    )


def _equals(key: str, value) -> dict:
    return {"StringEquals": {key: value}}


_REQUEST_TAG = _equals(f"aws:RequestTag/{MANAGED_BY_TAG}", MANAGED_BY)
_RESOURCE_TAG = _equals(f"aws:ResourceTag/{MANAGED_BY_TAG}", MANAGED_BY)
_EC2_RESOURCE_TAG = _equals(f"ec2:ResourceTag/{MANAGED_BY_TAG}", MANAGED_BY)
_SSM_RESOURCE_TAG = _equals(f"ssm:resourceTag/{MANAGED_BY_TAG}", MANAGED_BY)


@dataclass(frozen=True)
class Grant:
    """Part of a statement: its id suffix, its resources and its condition (both from the scope)."""

    sid: str
    resources: Callable[[Scope], list[str]]
    condition: Callable[[Scope], dict | None] = lambda scope: None


def _ecs_definitions(s: Scope) -> list[str]:
    return [s.arn("ecs", f"task-definition/{ECS_FAMILY_PREFIX}*:*")]


def _ecs_tasks(s: Scope) -> list[str]:
    cluster = s.cluster.rsplit("/", 1)[-1]
    return [s.arn("ecs", f"task/{cluster}/*")]


def _batch_definitions(s: Scope) -> list[str]:
    name = s.job_definition
    if name.startswith("arn:"):
        return [name]
    base = name.split(":")[0]
    return [s.arn("batch", f"job-definition/{base}"), s.arn("batch", f"job-definition/{base}:*")]


def _spot_role(s: Scope) -> list[str]:
    # AWS creates it on an account's first spot launch; on-demand launches never need it.
    return [f"arn:{s.partition}:iam::*:role/aws-service-role/{SPOT_SERVICE}/AWSServiceRoleForEC2Spot"] if s.spot else []


def _session_documents(s: Scope) -> list[str]:
    documents = (["AWS-StartInteractiveCommand"] if s.backend == "ec2" else []) + [PORT_FORWARD_DOCUMENT]
    return [s.arn("ssm", f"document/{name}", account="") for name in documents]


_LAUNCHED = Grant("Launch", lambda s: [s.ec2("instance"), s.ec2("volume")], lambda s: _REQUEST_TAG)
_LAUNCH_FROM = Grant("LaunchFrom", lambda s: [s.ec2("image"), s.ec2("subnet"), s.ec2("network-interface")])
_LAUNCH_GROUP = Grant("LaunchInGroup", lambda s: [s.ec2("security-group")], lambda s: _EC2_RESOURCE_TAG)


def _spot_request(s: Scope) -> list[str]:
    # A spot launch tags its request too (ec2:CreateTags on create).
    return [s.ec2("spot-instances-request")] if s.spot else []


def _tag_on_create(s: Scope) -> dict:
    return {
        "StringEquals": {
            "ec2:CreateAction": ["RunInstances", "CreateSecurityGroup"],
            f"aws:RequestTag/{MANAGED_BY_TAG}": MANAGED_BY,
        }
    }


# Actions not listed here are reads that IAM cannot scope to a resource: they stay on "*".
_RULES: dict[str, tuple[Grant, ...]] = {
    # EC2: launch only tagged instances from the managed security group; end only tagged ones.
    "ec2:RunInstances": (_LAUNCHED, _LAUNCH_FROM, _LAUNCH_GROUP),
    "ec2:CreateTags": (
        Grant(
            "TagOnCreate",
            lambda s: [s.ec2("instance"), s.ec2("volume"), s.ec2("security-group")] + _spot_request(s),
            _tag_on_create,
        ),
    ),
    "ec2:CreateSecurityGroup": (
        Grant("CreateGroup", lambda s: [s.ec2("security-group")], lambda s: _REQUEST_TAG),
        Grant("CreateGroupIn", lambda s: [s.ec2("vpc")]),
    ),
    "ec2:DeleteSecurityGroup": (
        Grant("DeleteTaggedGroup", lambda s: [s.ec2("security-group")], lambda s: _EC2_RESOURCE_TAG),
    ),
    "ec2:TerminateInstances": (Grant("TerminateTagged", lambda s: [s.ec2("instance")], lambda s: _EC2_RESOURCE_TAG),),
    "ssm:GetParameter": (Grant("AmiParameter", lambda s: [s.arn("ssm", AMI_PARAMETERS, account="")]),),
    # Shell access: Run Command and sessions only on tagged instances, only with these documents.
    "ssm:SendCommand": (
        Grant("RunShellScript", lambda s: [s.arn("ssm", "document/AWS-RunShellScript", account="")]),
        Grant("ShellOnTagged", lambda s: [s.ec2("instance")], lambda s: _SSM_RESOURCE_TAG),
    ),
    # Sessions: a shell on EC2 (attach, the mirror); port forwarding (`forward`) to instances and ECS tasks.
    "ssm:StartSession": (
        Grant("SessionDocument", _session_documents),
        Grant(
            "ShellOnTagged", lambda s: [s.ec2("instance")] if s.backend == "ec2" else [], lambda s: _SSM_RESOURCE_TAG
        ),
        Grant("ForwardToTagged", lambda s: _ecs_tasks(s) if s.backend == "ecs" else [], lambda s: _RESOURCE_TAG),
    ),
    "ssm:TerminateSession": (Grant("OwnSessions", lambda s: [s.arn("ssm", "session/${aws:userid}-*")]),),
    "iam:PassRole": (
        Grant("PassRole", lambda s: list(s.pass_roles), lambda s: _equals("iam:PassedToService", s.principal)),
    ),
    "iam:CreateServiceLinkedRole": (
        Grant("SpotRole", _spot_role, lambda s: _equals("iam:AWSServiceName", SPOT_SERVICE)),
    ),
    # ECS: only fceval-tui task definitions, run on the configured cluster; Exec and stop only tagged tasks.
    "ecs:RegisterTaskDefinition": (Grant("Definitions", _ecs_definitions, lambda s: _REQUEST_TAG),),
    "ecs:RunTask": (
        Grant(
            "RunTask",
            _ecs_definitions,
            lambda s: {"ArnLike": {"ecs:cluster": s.named("ecs", "cluster", s.cluster)}, **_REQUEST_TAG},
        ),
    ),
    "ecs:TagResource": (
        Grant(
            "TagOnCreate",
            lambda s: _ecs_tasks(s) + _ecs_definitions(s),
            lambda s: {
                "StringEquals": {
                    "ecs:CreateAction": ["RunTask", "RegisterTaskDefinition"],
                    f"aws:RequestTag/{MANAGED_BY_TAG}": MANAGED_BY,
                }
            },
        ),
    ),
    "ecs:StopTask": (Grant("Tagged", _ecs_tasks, lambda s: _RESOURCE_TAG),),
    # Teardown finds definitions by tag, whatever their family: delete only tagged ones.
    "ecs:DeleteTaskDefinitions": (
        Grant("DeleteTagged", lambda s: [s.arn("ecs", "task-definition/*:*")], lambda s: _RESOURCE_TAG),
    ),
    "ecs:ExecuteCommand": (
        Grant("ExecCluster", lambda s: [s.named("ecs", "cluster", s.cluster)]),
        Grant("Tagged", _ecs_tasks, lambda s: _RESOURCE_TAG),
    ),
    "ecs:DescribeTasks": (Grant("Tasks", _ecs_tasks),),
    "ecs:DescribeClusters": (Grant("Cluster", lambda s: [s.named("ecs", "cluster", s.cluster)]),),
    "ecs:ListTasks": (
        Grant(
            "ListTasks", lambda s: ["*"], lambda s: {"ArnLike": {"ecs:cluster": s.named("ecs", "cluster", s.cluster)}}
        ),
    ),
    # Batch: submit only to the configured queue and definition, tagged; end only tagged jobs.
    "batch:SubmitJob": (
        Grant("SubmitTo", lambda s: [s.named("batch", "job-queue", s.queue)] + _batch_definitions(s)),
        Grant("SubmitTagged", lambda s: [s.arn("batch", "job/*")], lambda s: _REQUEST_TAG),
    ),
    "batch:TagResource": (Grant("SubmitTagged", lambda s: [s.arn("batch", "job/*")], lambda s: _REQUEST_TAG),),
    "batch:TerminateJob": (Grant("Tagged", lambda s: [s.arn("batch", "job/*")], lambda s: _RESOURCE_TAG),),
    "logs:GetLogEvents": (Grant("JobLogs", lambda s: [s.arn("logs", f"log-group:{s.log_group}:log-stream:*")]),),
    "s3:GetBucketLocation": (Grant("Buckets", lambda s: list(s.buckets)),),
    # The SSM agent reads the output bucket's encryption before it writes a long command output there.
    "s3:GetEncryptionConfiguration": (Grant("StagingBucket", lambda s: [s.inbox.split("/", 1)[0]] if s.inbox else []),),
    "s3:ListBucket": (
        Grant("Buckets", lambda s: list(s.buckets), lambda s: {"StringLike": {"s3:prefix": list(s.prefixes)}}),
    ),
    # SSE-KMS buckets: S3 uses their keys for the caller, only through S3 (services/bucket_keys.py).
    **{
        action: (Grant("BucketKeys", lambda s: customer_keys(s.keys), lambda s: via_s3(s.keys, s.partition)),)
        for action in KMS_ACTIONS
    },
    "kms:DescribeKey": (Grant("BucketKeyLookup", lambda s: list(dict.fromkeys(k.arn for k in s.keys))),),
}
# The audit's IAM reads: roles, users, groups, policies, instance profiles (never a write).
_READ_IAM = Grant(
    "ReadIam", lambda s: [f"arn:{s.partition}:iam::*:{kind}/*" for kind in ("role", "user", "group", "policy")]
)
_RULES.update({action: (_READ_IAM,) for action in _AUDIT_COMMON if action.startswith("iam:")})
_RULES["iam:GetInstanceProfile"] = (
    Grant("ReadInstanceProfile", lambda s: [f"arn:{s.partition}:iam::*:instance-profile/*"]),
)


def _is_object_action(action: str) -> bool:
    name = action.split(":", 1)[1]
    return action.startswith("s3:") and ("Object" in name or "Multipart" in name)


def _inbox_keys(s: Scope) -> list[BucketKey]:
    return [k for k in s.keys if s.inbox and s.inbox.startswith(f"arn:{s.partition}:s3:::{k.bucket}/")]


def _grants(action: str, compute: bool) -> tuple[Grant, ...]:
    if compute and action in KMS_ACTIONS:  # the compute writes only into its inbox: that bucket's key
        return (
            Grant("InboxKey", lambda s: customer_keys(_inbox_keys(s)), lambda s: via_s3(_inbox_keys(s), s.partition)),
        )
    if not compute and action == "s3:GetEncryptionConfiguration":  # the audit reads every bucket's
        return (Grant("Buckets", lambda s: list(s.buckets)),)
    if _is_object_action(action):
        # The compute writes only into its inbox; the console reads and writes under its prefixes.
        return (
            (Grant("Inbox", lambda s: [s.inbox] if s.inbox else []),)
            if compute
            else (Grant("Objects", lambda s: list(s.objects)),)
        )
    return _RULES.get(action, (Grant("Actions", lambda s: ["*"]),))


def _statements(title: str, actions: Iterable[str], scope: Scope, compute: bool = False) -> list[Statement]:
    """One statement per grant id: the actions sharing its resources and condition."""
    groups: dict[str, tuple[list[str], tuple[str, ...], dict | None]] = {}
    for action in dict.fromkeys(actions):
        for grant in _grants(action, compute):
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


def only_missing(statements: Iterable[Statement], missing: Mapping[str, Iterable[str]]) -> list[Statement]:
    """The statements cut down to what is missing ({sid: actions}), for a fix snippet."""
    out = []
    for s in statements:
        wanted = [a for a in s.actions if a in set(missing.get(s.sid, ()))]
        if wanted:
            out.append(Statement(s.sid, tuple(wanted), s.resources, s.condition))
    return out


def _listify(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str | dict) else list(value)
