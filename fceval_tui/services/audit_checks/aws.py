"""AWS plumbing shared by the audit's checks: clients, the caller, roles and their policies.

The audit builds its own short-lived boto3 Session with few retries and short timeouts: a broken
setup (no network, no permission, an API a region lacks) should be reported in seconds, not
after the minutes of backoff the runner's clients are configured for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fceval_tui.services.audit_checks.base import AuditContext

SERVICES = {
    "ec2": ("sts", "s3", "kms", "iam", "ec2", "ssm", "service-quotas"),
    "ecs": ("sts", "s3", "kms", "iam", "ec2", "ecs", "logs", "service-quotas"),
    "batch": ("sts", "s3", "kms", "iam", "ec2", "batch"),
}


def build_clients(settings, backend: str, services: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A fresh Session per audit, so re-running it after `aws sso login` or a profile fix sees the change."""
    from botocore.config import Config

    from fceval_tui.backends.aws import new_session

    session = new_session(settings.region, settings.profile)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)
    return {name: session.client(name, config=config) for name in services or SERVICES[backend]}


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


_HTML = re.compile(r"<\s*(!doctype|html|head|body|title)\b", re.IGNORECASE)
MAX_DETAIL = 300


def describe_error(exc: BaseException) -> str:
    """One line for a finding's detail: the AWS code and message, or the exception's text; an
    endpoint's HTML error page (a proxy, or a service double) is named, never repeated."""
    response = getattr(exc, "response", None)
    if response:
        error = response.get("Error", {})
        text = f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    else:
        text, status = str(exc) or type(exc).__name__, None
    if _HTML.search(text):
        http = f"HTTP {status} " if status else ""
        return f"{type(exc).__name__}: the endpoint answered with an {http}HTML page, not an AWS reply"
    line = " ".join(text.split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"


def is_denied(exc: BaseException) -> bool:
    code = error_code(exc)
    return code in (
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "403",
        "Forbidden",
    ) or code.endswith("AccessDenied")


def not_found(exc: BaseException) -> bool:
    return error_code(exc) in ("NoSuchEntity", "NoSuchBucket", "404", "NotFound")


# -- the caller ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    account: str
    arn: str  # as STS reports it
    kind: str  # user, role, root, federated
    name: str
    partition: str = "aws"


def identity(ctx: AuditContext) -> Caller:
    def compute() -> Caller:
        reply = ctx.client("sts").get_caller_identity()
        arn = reply["Arn"]
        partition = arn.split(":")[1]
        resource = arn.split(":", 5)[5]
        if resource == "root":
            return Caller(reply["Account"], arn, "root", "root", partition)
        kind, _, rest = resource.partition("/")
        if kind == "assumed-role":
            return Caller(reply["Account"], arn, "role", rest.split("/")[0], partition)
        if kind == "user":
            return Caller(reply["Account"], arn, "user", rest.rsplit("/", 1)[-1], partition)
        return Caller(reply["Account"], arn, "federated", rest, partition)

    return ctx.once("identity", compute)


def principal_arn(ctx: AuditContext, caller: Caller) -> str:
    """The IAM ARN the policy simulator wants: a role's real ARN (with its path, e.g. SSO roles)."""
    if caller.kind == "role":

        def compute() -> str:
            import botocore.exceptions

            try:
                return ctx.client("iam").get_role(RoleName=caller.name)["Role"]["Arn"]
            except botocore.exceptions.ClientError:
                # Without iam:GetRole assume no path; the simulator then reports what it finds.
                return f"arn:{caller.partition}:iam::{caller.account}:role/{caller.name}"

        return ctx.once(("principal", caller.arn), compute)
    if caller.kind == "user":
        path = caller.arn.split(":user", 1)[1]
        return f"arn:{caller.partition}:iam::{caller.account}:user{path}"
    return caller.arn


# -- roles and their policies -------------------------------------------------------------------


@dataclass(frozen=True)
class RoleLookup:
    """The instance profile (None if missing) and the role found through it or by the same name."""

    profile: dict | None
    role: dict | None
    via_profile: bool


def instance_role(ctx: AuditContext) -> RoleLookup:
    def compute() -> RoleLookup:
        import botocore.exceptions

        iam = ctx.client("iam")
        name = ctx.settings.instance_profile
        try:
            profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        except botocore.exceptions.ClientError as exc:
            if not not_found(exc):
                raise
            profile = None
        if profile and profile.get("Roles"):
            role_name = profile["Roles"][0]["RoleName"]
            return RoleLookup(profile, iam.get_role(RoleName=role_name)["Role"], True)
        # FC-Eval's convention: the role has the profile's name. Report it even without the profile.
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except botocore.exceptions.ClientError as exc:
            if not not_found(exc):
                raise
            role = None
        return RoleLookup(profile, role, False)

    return ctx.once("instance-role", compute)


def role_by_arn(ctx: AuditContext, arn: str) -> dict | None:
    def compute() -> dict | None:
        import botocore.exceptions

        try:
            return ctx.client("iam").get_role(RoleName=arn.rsplit("/", 1)[-1])["Role"]
        except botocore.exceptions.ClientError as exc:
            if not_found(exc):
                return None
            raise

    return ctx.once(("role", arn), compute)


def _managed_document(ctx: AuditContext, policy_arn: str) -> dict:
    def compute() -> dict:
        iam = ctx.client("iam")
        version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
        return iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]["Document"]

    return ctx.once(("policy", policy_arn), compute)


def _attached_and_inline(ctx: AuditContext, kind: str, name: str) -> list[tuple[str, dict]]:
    iam = ctx.client("iam")
    key = {"role": "RoleName", "user": "UserName", "group": "GroupName"}[kind]
    cap = kind.capitalize()
    docs: list[tuple[str, dict]] = []
    for page in iam.get_paginator(f"list_attached_{kind}_policies").paginate(**{key: name}):
        for policy in page["AttachedPolicies"]:
            docs.append((policy["PolicyArn"], _managed_document(ctx, policy["PolicyArn"])))
    for page in iam.get_paginator(f"list_{kind}_policies").paginate(**{key: name}):
        for policy_name in page["PolicyNames"]:
            reply = getattr(iam, f"get_{kind}_policy")(**{key: name, "PolicyName": policy_name})
            docs.append((f"{cap} inline policy {policy_name}", reply["PolicyDocument"]))
    return docs


def role_policies(ctx: AuditContext, role_name: str) -> list[tuple[str, dict]]:
    """(source, document) for every policy attached to or inlined in the role."""
    return ctx.once(("role-policies", role_name), lambda: _attached_and_inline(ctx, "role", role_name))


def caller_policies(ctx: AuditContext, caller: Caller) -> list[tuple[str, dict]]:
    """The caller's identity policies: a user's own and its groups', or the assumed role's."""

    def compute() -> list[tuple[str, dict]]:
        if caller.kind == "role":
            return _attached_and_inline(ctx, "role", caller.name)
        docs = _attached_and_inline(ctx, "user", caller.name)
        for page in ctx.client("iam").get_paginator("list_groups_for_user").paginate(UserName=caller.name):
            for group in page["Groups"]:
                docs.extend(_attached_and_inline(ctx, "group", group["GroupName"]))
        return docs

    return ctx.once(("caller-policies", caller.arn), compute)
