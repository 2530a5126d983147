"""IAM: the compute's role (instance profile, trust, SSM, S3) and the caller's permissions.

The caller's permissions are simulated with iam:SimulatePrincipalPolicy against the statements
`audit --print-policy caller` prints (same derivation). When the simulator itself is refused,
the caller's attached and inline policies are read and evaluated instead, and the finding says so.
"""

from __future__ import annotations

import json
import shlex

import botocore.exceptions
import botocore.parsers

from fceval_tui.services import policy
from fceval_tui.services.audit_checks import aws, encryption
from fceval_tui.services.audit_checks.base import AuditContext, Findings
from fceval_tui.services.policy_document import Statement, document, only_missing, sample_resource
from fceval_tui.services.policy_evaluation import Decision, evaluate, trusts_service


def _trust_doc(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def _evaluate(documents: list, statements: list[Statement]) -> dict[tuple[str, str], Decision]:
    return {
        (a, sample_resource(r)): evaluate(documents, a, sample_resource(r), s.context())
        for s in statements
        for r in s.resources
        for a in s.actions
    }


def _role_access(
    ctx: AuditContext,
    f: Findings,
    id: str,
    role: dict,
    statements: list[Statement],
    what: str,
    policy_name: str = "fceval-tui",
    why: str = "",
) -> None:
    """Whether the role's own policies allow `statements` (evaluated from its policies, not simulated)."""
    docs = [doc for _, doc in aws.role_policies(ctx, role["RoleName"])]
    decisions = _evaluate(docs, statements)
    missing = sorted({f"{a} on {r}" for (a, r), d in decisions.items() if d is not Decision.ALLOWED})
    if not missing:
        f.ok(
            id,
            f"role {role['RoleName']} allows {what}",
            "evaluated from its attached and inline policies: " + ", ".join(sorted({a for a, _ in decisions})),
        )
        return
    conditional = all(d is Decision.CONDITIONAL for d in decisions.values() if d is not Decision.ALLOWED)
    text = json.dumps(document(statements))
    fix = (
        f"aws iam put-role-policy --role-name {shlex.quote(role['RoleName'])} --policy-name {policy_name} "
        f"--policy-document {shlex.quote(text)}"
    )
    detail = why + "missing: " + "; ".join(missing) + " (evaluated from its attached and inline policies)"
    if conditional:
        f.warning(id, f"role {role['RoleName']} allows {what} only under conditions", detail, fix)
    else:
        f.error(id, f"role {role['RoleName']} does not allow {what}", detail, fix)


def check_instance_role(ctx: AuditContext, f: Findings) -> None:
    name = ctx.settings.instance_profile
    found = aws.instance_role(ctx)
    role = found.role
    role_name = role["RoleName"] if role else name
    principal = ctx.backend_class.compute_principal
    q = shlex.quote
    if found.profile is None:
        f.error(
            "iam.instance-profile",
            f"instance profile {name} does not exist",
            "EC2 jobs are launched with it (FCEVAL_INSTANCE_PROFILE)",
            f"aws iam create-instance-profile --instance-profile-name {q(name)} && "
            f"aws iam add-role-to-instance-profile --instance-profile-name {q(name)} --role-name {q(role_name)}",
        )
    elif role is None:
        f.ok("iam.instance-profile", f"instance profile {name} exists (it holds no role: see iam.role)")
    else:
        f.ok("iam.instance-profile", f"instance profile {name} exists and holds role {role_name}")
    if role is None:
        holds = f"instance profile {name} holds no role" if found.profile else f"no role named {name}"
        f.error(
            "iam.role",
            f"no role for the job instances: {holds}",
            "the instance role lets the SSM agent connect and the pipeline reach S3",
            f"aws iam create-role --role-name {q(name)} --assume-role-policy-document "
            f"{q(_trust_doc(principal))} && aws iam add-role-to-instance-profile "
            f"--instance-profile-name {q(name)} --role-name {q(name)}",
        )
        for id in ("iam.role.trust", "iam.role.ssm", "iam.role.s3"):
            f.unknown(id, "no role to check", "see iam.role")
        return
    how = "through the instance profile" if found.via_profile else "by name (FC-Eval convention)"
    f.ok("iam.role", f"role {role_name} found {how}", role["Arn"])
    if trusts_service(role.get("AssumeRolePolicyDocument"), principal):
        f.ok("iam.role.trust", f"role {role_name} trusts {principal}")
    else:
        f.error(
            "iam.role.trust",
            f"role {role_name} does not trust {principal}",
            "instances cannot assume it, so the SSM agent and the pipeline have no credentials",
            f"aws iam update-assume-role-policy --role-name {q(role_name)} --policy-document "
            f"{q(_trust_doc(principal))}",
        )
    _ssm_policy(ctx, f, role)
    _role_s3(ctx, f, "iam.role.s3", role)
    _role_kms(ctx, f, "iam.role.kms", role)


def _ssm_policy(ctx: AuditContext, f: Findings, role: dict) -> None:
    sources = [source for source, _ in aws.role_policies(ctx, role["RoleName"])]
    if policy.SSM_MANAGED_POLICY in sources:
        f.ok("iam.role.ssm", f"AmazonSSMManagedInstanceCore is attached to {role['RoleName']}")
        return
    agent = [a for a in ctx.backend_class.instance_actions if a.split(":")[0] in ("ssm", "ssmmessages", "ec2messages")]
    docs = [doc for _, doc in aws.role_policies(ctx, role["RoleName"])]
    missing = [a for a in agent if evaluate(docs, a, "*") is not Decision.ALLOWED]
    if agent and not missing:
        f.ok(
            "iam.role.ssm",
            f"{role['RoleName']} allows what the SSM agent needs",
            "without AmazonSSMManagedInstanceCore: " + ", ".join(agent),
        )
        return
    f.error(
        "iam.role.ssm",
        f"AmazonSSMManagedInstanceCore is not attached to {role['RoleName']}",
        "without it the instance's SSM agent never comes online and no job can start"
        + (f"; missing: {', '.join(missing)}" if missing else ""),
        f"aws iam attach-role-policy --role-name {shlex.quote(role['RoleName'])} "
        f"--policy-arn {policy.SSM_MANAGED_POLICY}",
    )


def _role_s3(ctx: AuditContext, f: Findings, id: str, role: dict) -> None:
    if not any(a.startswith("s3:") for a in ctx.backend_class.instance_actions):
        return  # this backend's compute does not call S3 itself
    if not ctx.settings.staging_bucket:
        f.unknown(id, "no staging bucket configured to check access to", "see s3.staging.exists")
        return
    statements = [
        s for s in policy.instance_statements(ctx.backend, ctx.settings) if all(a.startswith("s3:") for a in s.actions)
    ]
    _role_access(ctx, f, id, role, statements, "the S3 access the pipeline needs")


def _kms_statements(statements: list[Statement]) -> list[Statement]:
    return [s for s in statements if any(a.startswith("kms:") for a in s.actions)]


def _role_kms(ctx: AuditContext, f: Findings, id: str, role: dict) -> None:
    """The staging bucket's SSE-KMS key, which S3 uses for the compute's writes into its inbox."""
    keys = encryption.bucket_keys(ctx)
    statements = _kms_statements(policy.instance_statements(ctx.backend, ctx.settings, keys=keys))
    if not statements:
        return  # no customer managed key on the staging bucket: nothing to grant
    arns = ", ".join(r for s in statements for r in s.resources)
    _role_access(
        ctx,
        f,
        id,
        role,
        statements,
        f"the use of the staging bucket's SSE-KMS key {arns} through S3",
        policy_name="fceval-tui-kms",
        why="without them every upload into the inbox is refused (AccessDenied from KMS); ",
    )


def check_task_role(ctx: AuditContext, f: Findings) -> None:
    """ECS: the task role exists, trusts ECS tasks, allows ECS Exec (ssmmessages) and S3."""
    arn = ctx.settings.ecs_task_role_arn
    principal = ctx.backend_class.compute_principal
    if not arn:
        f.error(
            "ecs.task-role",
            "no task role configured (FCEVAL_ECS_TASK_ROLE_ARN is empty)",
            "ECS Exec, which the console uses to start and watch the pipeline, needs a task role",
            f"create a role trusted by {principal} and set FCEVAL_ECS_TASK_ROLE_ARN to its ARN",
        )
        _no_task_role(ctx, f)
        return
    role = aws.role_by_arn(ctx, arn)
    if role is None:
        f.error(
            "ecs.task-role",
            f"task role {arn} does not exist",
            "set in FCEVAL_ECS_TASK_ROLE_ARN",
            f"aws iam create-role --role-name {shlex.quote(arn.rsplit('/', 1)[-1])} "
            f"--assume-role-policy-document {shlex.quote(_trust_doc(principal))}",
        )
        _no_task_role(ctx, f)
        return
    f.ok("ecs.task-role", f"task role {role['RoleName']} exists", role["Arn"])
    if trusts_service(role.get("AssumeRolePolicyDocument"), principal):
        f.ok("ecs.task-role.trust", f"{role['RoleName']} trusts {principal}")
    else:
        f.error(
            "ecs.task-role.trust",
            f"{role['RoleName']} does not trust {principal}",
            "tasks cannot assume it",
            f"aws iam update-assume-role-policy --role-name {shlex.quote(role['RoleName'])} "
            f"--policy-document {shlex.quote(_trust_doc(principal))}",
        )
    exec_actions = tuple(a for a in ctx.backend_class.instance_actions if a.startswith("ssmmessages:"))
    exec_statement = [Statement("FcevalTuiEcsExec", exec_actions, ("*",))]
    _role_access(ctx, f, "ecs.task-role.exec", role, exec_statement, "ECS Exec (ssmmessages)")
    _role_s3(ctx, f, "ecs.task-role.s3", role)
    _role_kms(ctx, f, "ecs.task-role.kms", role)


def _no_task_role(ctx: AuditContext, f: Findings) -> None:
    ids = ["ecs.task-role.trust", "ecs.task-role.exec"]
    if any(a.startswith("s3:") for a in ctx.backend_class.instance_actions):
        ids.append("ecs.task-role.s3")
    for id in ids:
        f.unknown(id, "no task role to check", "see ecs.task-role")


# -- the caller ---------------------------------------------------------------------------------


def pass_role_targets(ctx: AuditContext) -> list[str]:
    """The roles the backend hands to AWS (iam:PassRole), as found or configured."""
    if ctx.backend == "ec2":
        role = aws.instance_role(ctx).role
        return [role["Arn"]] if role else []
    if ctx.backend == "ecs":
        return [a for a in (ctx.settings.ecs_task_role_arn, ctx.settings.ecs_execution_role_arn) if a]
    return []


def _simulate(ctx: AuditContext, principal: str, statements: list[Statement]) -> dict[tuple[str, str], Decision]:
    simulator = ctx.iam_simulator
    decisions: dict[tuple[str, str], Decision] = {}
    mapping = {"allowed": Decision.ALLOWED, "explicitDeny": Decision.DENIED, "implicitDeny": Decision.IMPLICIT}
    for statement in statements:
        for resource in statement.resources:
            sample = sample_resource(resource)
            params = {"PolicySourceArn": principal, "ActionNames": list(statement.actions), "ResourceArns": [sample]}
            context = statement.context_entries()
            if context:
                params["ContextEntries"] = context
            for page in simulator.get_paginator("simulate_principal_policy").paginate(**params):
                for result in page["EvaluationResults"]:
                    decision = mapping.get(result["EvalDecision"], Decision.IMPLICIT)
                    decisions[(result["EvalActionName"], sample)] = decision
    return decisions


def _missing_snippet(statements: list[Statement], decisions: dict) -> str:
    missing: dict[str, list[str]] = {}
    for s in statements:
        for r in s.resources:
            for a in s.actions:
                if decisions.get((a, sample_resource(r))) is not Decision.ALLOWED:
                    missing.setdefault(s.sid, []).append(a)
    return json.dumps(document(only_missing(statements, missing)))


def _report(
    f: Findings, id: str, what: str, statements: list[Statement], decisions: dict, how: str, whole_policy: str
) -> None:
    wanted = {(a, sample_resource(r)) for s in statements for r in s.resources for a in s.actions}
    bad = {k: decisions.get(k, Decision.IMPLICIT) for k in wanted if decisions.get(k) is not Decision.ALLOWED}
    if not bad:
        f.ok(id, f"allowed: {what}", f"{len(wanted)} action/resource pairs, {how}")
        return
    listing = "; ".join(f"{a} on {r}: {d.value}" for (a, r), d in sorted(bad.items()))
    fix = (
        "add to your identity's policy: "
        + _missing_snippet(statements, decisions)
        + f" (the whole policy: `{whole_policy}`)"
    )
    if all(d is Decision.CONDITIONAL for d in bad.values()):
        f.warning(id, f"{what}: allowed only under conditions the audit cannot evaluate", f"{listing} ({how})", fix)
    else:
        f.error(id, f"not allowed: {what}", f"{listing} ({how})", fix)


# What a call to AWS can fail with: an error reply, no reply, or a reply that is not AWS's (an HTML page).
_AWS_FAILURES = (
    botocore.exceptions.ClientError,
    botocore.exceptions.BotoCoreError,
    botocore.parsers.ResponseParserError,
)


def _has(f: Findings, id: str) -> bool:
    return any(item.id == id for item in f.items)


def check_caller_permissions(ctx: AuditContext, f: Findings) -> None:
    caller = aws.identity(ctx)
    cls = ctx.backend_class
    if caller.kind == "root":
        f.ok("iam.caller.actions", "the root user may call every action", "see identity.caller")
        if "iam:PassRole" in cls.caller_actions:
            f.ok("iam.caller.passrole", "the root user may pass every role")
        return
    try:
        targets = pass_role_targets(ctx)
    except botocore.exceptions.ClientError as exc:
        targets = []
        f.unknown("iam.caller.passrole", "could not find the role to check iam:PassRole on", aws.describe_error(exc))
    whole = f"fceval-tui audit --backend {ctx.backend} --print-policy caller"
    keys = encryption.bucket_keys(ctx)
    everything = policy.caller_statements(ctx.backend, ctx.settings, targets, with_audit=False, keys=keys)
    kms = _kms_statements(everything)
    actions = [s for s in everything if "iam:PassRole" not in s.actions and s not in kms]
    passing = [s for s in everything if "iam:PassRole" in s.actions]
    principal = aws.principal_arn(ctx, caller)
    try:
        decisions = _simulate(ctx, principal, everything)
        how = f"simulated for {principal} with iam:SimulatePrincipalPolicy"
    except _AWS_FAILURES as exc:
        # Whatever the reason (denied, throttled, unreachable, an unreadable reply), read the policies instead.
        why = (
            "iam:SimulatePrincipalPolicy was denied" if aws.is_denied(exc) else "iam:SimulatePrincipalPolicy failed"
        ) + f" ({aws.describe_error(exc)})"
        try:
            docs = [doc for _, doc in aws.caller_policies(ctx, caller)]
        except _AWS_FAILURES as read_exc:
            detail = f"{why}; reading your policies failed too ({aws.describe_error(read_exc)})"
            fix = f"allow iam:SimulatePrincipalPolicy on {principal}, or compare your policy with `{whole}`"
            f.unknown("iam.caller.actions", "could not evaluate your permissions", detail, fix)
            if "iam:PassRole" in cls.caller_actions and not _has(f, "iam.caller.passrole"):
                f.unknown("iam.caller.passrole", "could not evaluate iam:PassRole", detail, fix)
            if kms:
                f.unknown("iam.caller.kms", "could not evaluate the use of the buckets' KMS keys", detail, fix)
            return
        decisions = _evaluate(docs, everything)
        how = (
            f"{why}; evaluated your attached and inline policies instead "
            "(permission boundaries, SCPs and resource policies not considered)"
        )
    count = len({a for s in actions for a in s.actions})
    _report(
        f, "iam.caller.actions", f"the {count} actions the {ctx.backend} backend calls", actions, decisions, how, whole
    )
    if kms:
        arns = ", ".join(r for s in kms for r in s.resources)
        what = f"the use of the buckets' SSE-KMS keys through S3 (uploads, reads, collecting results): {arns}"
        _report(f, "iam.caller.kms", what, kms, decisions, how, whole)
    if "iam:PassRole" not in cls.caller_actions or _has(f, "iam.caller.passrole"):
        return
    if not passing:
        f.unknown(
            "iam.caller.passrole",
            "no role found to check iam:PassRole on",
            "see the role findings" if ctx.backend == "ec2" else "no role ARN configured",
        )
        return
    _report(
        f,
        "iam.caller.passrole",
        "iam:PassRole on " + ", ".join(r for s in passing for r in s.resources),
        passing,
        decisions,
        how,
        whole,
    )
