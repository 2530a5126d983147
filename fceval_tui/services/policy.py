"""IAM policy statements derived from the backends' action lists, and a small policy evaluator.

The backends declare which actions they call (`caller_actions`) and which their compute's role
needs (`instance_actions`); this module scopes those actions to resources (S3 objects under the
console's prefixes, the buckets, the role passed to the compute) so that `audit --print-policy`
and the audit's permission checks use one derivation. No boto3 here.

The evaluator answers "would these identity policies allow action A on resource R?" for the
audit's fallback when iam:SimulatePrincipalPolicy itself is denied. It does what can be done
offline: explicit Deny wins, an Allow with a Condition is reported as conditional, and
permission boundaries, SCPs and resource policies are out of its sight (the findings say so).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from fceval_tui.backends import backend_class
from fceval_tui.backends.aws_constants import S3_ROOT
from fceval_tui.config import Settings
from fceval_tui.domain.artifacts import split_s3

SSM_MANAGED_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"

# Read-only calls the preflight audit itself makes (printed with the caller policy so the audit
# can see everything it checks instead of reporting "unknown").
AUDIT_ACTIONS: tuple[str, ...] = (
    "iam:GetInstanceProfile",
    "iam:GetRole",
    "iam:GetUser",
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
    "servicequotas:GetServiceQuota",
    "ec2:DescribeRegions",
    "ec2:DescribeRouteTables",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstanceTypeOfferings",
    "s3:GetBucketLocation",
    "ecs:DescribeClusters",
    "batch:DescribeJobQueues",
    "batch:DescribeJobDefinitions",
    "batch:DescribeComputeEnvironments",
)


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
            doc["Condition"] = dict(self.condition)
        return doc

    def context(self) -> dict[str, str]:
        """The request context this statement is written for (e.g. iam:PassedToService)."""
        return {key: value for operator in (self.condition or {}).values() for key, value in operator.items()}

    def context_entries(self) -> list[dict]:
        """The same context for the policy simulator, so a conditional Allow can match."""
        return [
            {"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": "string"}
            for key, value in self.context().items()
        ]


def sample_resource(resource: str) -> str:
    """A concrete ARN for a pattern (the simulator and the evaluator need one resource, not a glob)."""
    return resource[:-1] + "permission-probe" if resource.endswith("/*") else resource


def document(statements: Iterable[Statement]) -> dict:
    return {"Version": "2012-10-17", "Statement": [s.to_json() for s in statements]}


def render(statements: Iterable[Statement]) -> str:
    return json.dumps(document(statements), indent=2)


# -- deriving statements ------------------------------------------------------------------------


def _is_object_action(action: str) -> bool:
    name = action.split(":", 1)[1]
    return "Object" in name or "Multipart" in name


def _artifact_location(settings: Settings) -> tuple[str | None, str]:
    """(bucket, key prefix) where cloud compute writes artifacts (None: a local directory, which the audit reports)."""
    from fceval_tui.backends.cloud import cloud_artifact_prefix

    url = cloud_artifact_prefix(settings)
    if url is None:
        return None, ""
    bucket, prefix = split_s3(url)
    return bucket, (prefix.rstrip("/") + "/") if prefix else ""


def s3_targets(settings: Settings, placeholder: bool = False) -> tuple[list[str], list[str]]:
    """(object ARN patterns, bucket ARNs) the console and its compute use."""
    staging = settings.staging_bucket or ("YOUR-STAGING-BUCKET" if placeholder else None)
    objects, buckets = [], []
    if staging:
        objects.append(f"arn:aws:s3:::{staging}/{S3_ROOT}*")  # staging, default artifacts, audit probes
        buckets.append(f"arn:aws:s3:::{staging}")
    bucket, prefix = _artifact_location(settings)
    if bucket:
        pattern = f"arn:aws:s3:::{bucket}/{prefix}*"
        if not any(pattern.startswith(o[:-1]) for o in objects):
            objects.append(pattern)
        if f"arn:aws:s3:::{bucket}" not in buckets:
            buckets.append(f"arn:aws:s3:::{bucket}")
    return objects, buckets


def _title(backend: str) -> str:
    return "FcevalTui" + backend.capitalize()


def statements_for(
    backend: str, actions: Iterable[str], settings: Settings, pass_roles: Iterable[str] = (), placeholder: bool = False
) -> list[Statement]:
    """Scope an action list: S3 object actions to the prefixes, bucket actions to the buckets,
    iam:PassRole to the given roles (only towards the backend's compute principal); the rest to "*"."""
    actions = list(dict.fromkeys(actions))
    objects, buckets = s3_targets(settings, placeholder)
    general = [a for a in actions if not a.startswith("s3:") and a != "iam:PassRole"]
    object_actions = [a for a in actions if a.startswith("s3:") and _is_object_action(a)]
    bucket_actions = [a for a in actions if a.startswith("s3:") and not _is_object_action(a)]
    title = _title(backend)
    out = []
    if general:
        out.append(Statement(f"{title}Actions", tuple(general), ("*",)))
    if object_actions and objects:
        out.append(Statement(f"{title}Objects", tuple(object_actions), tuple(objects)))
    if bucket_actions and buckets:
        out.append(Statement(f"{title}Buckets", tuple(bucket_actions), tuple(buckets)))
    roles = tuple(dict.fromkeys(pass_roles))
    if "iam:PassRole" in actions and roles:
        condition = {"StringEquals": {"iam:PassedToService": backend_class(backend).compute_principal}}
        out.append(Statement(f"{title}PassRole", ("iam:PassRole",), roles, condition))
    return out


def caller_statements(
    backend: str,
    caller_actions: Iterable[str],
    settings: Settings,
    pass_roles: Iterable[str] = (),
    with_audit: bool = True,
    placeholder: bool = False,
) -> list[Statement]:
    out = statements_for(backend, caller_actions, settings, pass_roles, placeholder)
    if with_audit:
        out.append(Statement("FcevalTuiPreflightAudit", AUDIT_ACTIONS, ("*",)))
    return out


def only_missing(statements: Iterable[Statement], missing: Mapping[str, Iterable[str]]) -> list[Statement]:
    """The statements cut down to what is missing ({sid: actions}), for a fix snippet."""
    out = []
    for s in statements:
        wanted = [a for a in s.actions if a in set(missing.get(s.sid, ()))]
        if wanted:
            out.append(Statement(s.sid, tuple(wanted), s.resources, s.condition))
    return out


# -- evaluating identity policies ---------------------------------------------------------------


class Decision(StrEnum):
    ALLOWED = "allowed"
    DENIED = "explicitly denied"
    CONDITIONAL = "allowed only under conditions"
    IMPLICIT = "not allowed"


def _glob(pattern: str, case: bool) -> re.Pattern:
    # IAM wildcards are only * and ?; every other character is literal (unlike fnmatch's [..]).
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(body, 0 if case else re.IGNORECASE)


def _listify(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str | dict) else list(value)


def _matches(statement: Mapping, key: str, value: str, case: bool) -> bool:
    if key in statement:
        return any(_glob(p, case).fullmatch(value) for p in _listify(statement[key]))
    negated = "Not" + key
    if negated in statement:
        return not any(_glob(p, case).fullmatch(value) for p in _listify(statement[negated]))
    return False


def parse_document(doc) -> dict:
    """boto3 decodes IAM documents to dicts; a raw (URL-encoded) JSON string is accepted too."""
    if isinstance(doc, str):
        from urllib.parse import unquote

        return json.loads(unquote(doc))
    return dict(doc or {})


# Condition operators the evaluator can decide when it is given the key's value.
_OPERATORS = {
    "StringEquals": lambda value, wanted: value in wanted,
    "StringLike": lambda value, wanted: any(_glob(w, True).fullmatch(value) for w in wanted),
}


def _condition_holds(condition: Mapping, context: Mapping[str, str]) -> bool | None:
    """True/False when every operator and key is known from `context`; None when it cannot tell."""
    for operator, entries in condition.items():
        test = _OPERATORS.get(operator)
        if test is None:
            return None
        for key, wanted in entries.items():
            if key not in context:
                return None
            if not test(context[key], _listify(wanted)):
                return False
    return True


def evaluate(documents: Iterable, action: str, resource: str, context: Mapping[str, str] | None = None) -> Decision:
    """What identity policies say about `action` on `resource`; `context` gives condition keys' values."""
    allowed = conditional_allow = conditional_deny = False
    for doc in documents:
        for statement in _listify(parse_document(doc).get("Statement")):
            if not (
                _matches(statement, "Action", action, case=False)
                and _matches(statement, "Resource", resource, case=True)
            ):
                continue
            holds = _condition_holds(statement["Condition"], context or {}) if statement.get("Condition") else True
            if holds is False:
                continue
            if statement.get("Effect") == "Deny":
                if holds:
                    return Decision.DENIED
                conditional_deny = True
            elif statement.get("Effect") == "Allow":
                conditional_allow |= holds is None
                allowed |= bool(holds)
    if allowed:
        return Decision.CONDITIONAL if conditional_deny else Decision.ALLOWED
    return Decision.CONDITIONAL if conditional_allow else Decision.IMPLICIT


def trusts_service(trust_document, service: str) -> bool:
    """Whether a role's trust policy lets `service` assume it."""
    for statement in _listify(parse_document(trust_document).get("Statement")):
        if statement.get("Effect") != "Allow":
            continue
        if not any(_glob(p, False).fullmatch("sts:AssumeRole") for p in _listify(statement.get("Action"))):
            continue
        principal = statement.get("Principal") or {}
        services = _listify(principal.get("Service")) if isinstance(principal, dict) else []
        if service in services:
            return True
    return False
