"""Where each IAM action applies: its resources and conditions (the rules table), given a policy's
scope. Mutating and shell-granting actions are held to what carries the console's `ManagedBy` tag;
reads that IAM cannot scope stay on "*". The compute's role writes only into its inbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fceval_tui.backends.aws_constants import ECS_FAMILY_PREFIX, MANAGED_BY, MANAGED_BY_TAG
from fceval_tui.services.bucket_keys import KMS_ACTIONS, BucketKey, customer_keys, via_s3
from fceval_tui.services.policy_scope import Scope
from fceval_tui.transports.port_forward import PORT_FORWARD_DOCUMENT

AMI_PARAMETERS = "parameter/aws/service/ami-amazon-linux-latest/*"  # the public AL2023 AMI ids
SPOT_SERVICE = "spot.amazonaws.com"
# The preflight audit's IAM reads (roles, users, groups, policies; never a write).
IAM_READS: tuple[str, ...] = (
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
    # No log group (ECS without FCEVAL_ECS_LOG_GROUP): no logs are read.
    "logs:GetLogEvents": (
        Grant("JobLogs", lambda s: [s.arn("logs", f"log-group:{s.log_group}:log-stream:*")] if s.log_group else []),
    ),
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
_READ_IAM = Grant(
    "ReadIam", lambda s: [f"arn:{s.partition}:iam::*:{kind}/*" for kind in ("role", "user", "group", "policy")]
)
_RULES.update({action: (_READ_IAM,) for action in IAM_READS})
_RULES["iam:GetInstanceProfile"] = (
    Grant("ReadInstanceProfile", lambda s: [f"arn:{s.partition}:iam::*:instance-profile/*"]),
)


def _is_object_action(action: str) -> bool:
    name = action.split(":", 1)[1]
    return action.startswith("s3:") and ("Object" in name or "Multipart" in name)


def _inbox_keys(s: Scope) -> list[BucketKey]:
    return [k for k in s.keys if s.inbox and s.inbox.startswith(f"arn:{s.partition}:s3:::{k.bucket}/")]


def grants(action: str, compute: bool) -> tuple[Grant, ...]:
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
