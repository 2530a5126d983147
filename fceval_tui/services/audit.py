"""Preflight audit: run the checks for a backend concurrently and report findings.

    report = run_audit(settings, "ec2", on_progress=callback)   # blocking: call from a worker thread

`on_progress` is called from the pool's threads with a CheckEvent when each check starts and
finishes (the console posts it as a message; it must not touch widgets). `launch` calls
`require_no_errors` for cloud backends; `fceval-tui audit` prints the report (fceval_tui/cli/commands/audit.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fceval_tui.config import Settings
from fceval_tui.errors import ConfigError, UserError
from fceval_tui.services import policy
from fceval_tui.services.audit_checks import AuditContext, Check, Finding, Findings, Severity, checks_for
from fceval_tui.services.bucket_keys import BucketKey, managed_note
from fceval_tui.services.policy_document import render
from fceval_tui.services.policy_scope import partition_of

log = logging.getLogger(__name__)
MAX_WORKERS = 8

__all__ = [
    "AuditReport",
    "CheckEvent",
    "Finding",
    "Severity",
    "list_checks",
    "make_context",
    "print_policy",
    "read_bucket_keys",
    "require_no_errors",
    "run_audit",
]


@dataclass(frozen=True)
class CheckEvent:
    """A check started (`finished` False) or finished with its findings."""

    check: Check
    finished: bool
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class AuditReport:
    backend: str
    region: str
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Severity}
        for finding in self.findings:
            counts[finding.severity.value] += 1
        return counts

    def to_json(self) -> list[dict]:
        return [f.to_json() for f in self.findings]

    def export(self, path: Path) -> Path:
        """Write the findings (the `audit --json` list) to a file, for the console's export."""
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


def list_checks(backend: str) -> tuple[Check, ...]:
    """The checks `run_audit` will run for this backend, in report order (for a progress table)."""
    return checks_for(backend)


def make_context(settings: Settings, backend: str, simulator=None, read_only: bool = False) -> AuditContext:
    """Build the AWS clients up front (in the calling thread); raises UserError for a bad profile."""
    clients = {}
    if backend != "local":
        from fceval_tui.services.audit_checks.aws import build_clients

        clients = build_clients(settings, backend)
    return AuditContext(settings, backend, clients, simulator, read_only)


def _failure(check: Check, exc: Exception) -> Finding:
    """What a check that could not finish reports: unknown, with why (never silently dropped)."""
    import botocore.exceptions
    import botocore.parsers

    from fceval_tui.services.audit_checks.aws import describe_error, is_denied

    area_unknown = lambda summary, detail, fix="": Finding(  # noqa: E731
        check.id, check.area, Severity.UNKNOWN, summary, detail, fix
    )
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return area_unknown(f"{check.title}: not checked without AWS credentials", str(exc), "see identity.caller")
    if isinstance(
        exc,
        botocore.exceptions.ClientError | botocore.exceptions.BotoCoreError | botocore.parsers.ResponseParserError,
    ):
        fix = (
            (
                "allow the read-only actions the audit uses (statements FcevalTuiPreflightAudit* of "
                "`fceval-tui audit --print-policy caller`)"
            )
            if is_denied(exc)
            else "run the audit again"
        )
        return area_unknown(f"{check.title}: could not be checked", describe_error(exc), fix)
    if isinstance(exc, UserError):
        return area_unknown(f"{check.title}: could not be checked", exc.problem, exc.fix)
    log.exception("audit check %s failed", check.id)
    return area_unknown(
        f"{check.title}: the check failed ({type(exc).__name__})",
        describe_error(exc),
        "report this as a bug; details are in the log under the state dir",
    )


def _run_one(ctx: AuditContext, check: Check, on_progress: Callable[[CheckEvent], None] | None) -> tuple[Finding, ...]:
    if on_progress:
        on_progress(CheckEvent(check, False))
    findings = Findings(check.area)
    try:
        check.run(ctx, findings)
    except Exception as exc:  # reported as an "unknown" finding with the reason, and logged when unexpected
        findings.items.append(_failure(check, exc))
    result = tuple(findings.items)
    if on_progress:
        on_progress(CheckEvent(check, True, result))
    return result


def run_audit(
    settings: Settings,
    backend: str | None = None,
    on_progress: Callable[[CheckEvent], None] | None = None,
    context: AuditContext | None = None,
    read_only: bool = False,
) -> AuditReport:
    """Run every check for `backend` (default: the configured one) concurrently. Blocking."""
    backend = backend or (context.backend if context else settings.backend)
    ctx = context or make_context(settings, backend, read_only=read_only)
    checks = checks_for(backend)
    with ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="audit") as pool:
        futures = [pool.submit(_run_one, ctx, check, on_progress) for check in checks]
        findings = tuple(f for future in futures for f in future.result())
    return AuditReport(backend, settings.region, findings)


def require_no_errors(settings: Settings, backend_name: str) -> None:
    """Refuse to launch cloud jobs while an error finding stands."""
    report = run_audit(settings, backend_name)
    if report.has_errors:
        names = "; ".join(f"{f.id}: {f.summary}" for f in report.errors)
        raise UserError(
            f"the preflight audit found {len(report.errors)} error(s) for the {backend_name} backend: {names}",
            f"see `fceval-tui audit --backend {backend_name}` for each fix, or launch with --skip-preflight",
        )


# -- policies -----------------------------------------------------------------------------------


def read_bucket_keys(settings: Settings, backend: str) -> tuple[tuple[BucketKey, ...], list[str]]:
    """The staging and results buckets' SSE-KMS keys, read from AWS for `print_policy`, and notes on
    what they mean or why they could not be read. Blocking (a few S3 and KMS calls)."""
    from fceval_tui.services.audit_checks.aws import build_clients
    from fceval_tui.services.audit_checks.encryption import buckets, read_encryption

    wanted = buckets(settings)
    if backend == "local" or not wanted:
        return (), []
    try:
        clients = build_clients(settings, backend, ("s3", "kms"))
    except UserError as exc:
        return (), [f"the buckets' encryption was not read ({exc.problem}); `fceval-tui audit` checks it"]
    keys, notes = [], []
    for bucket, role in wanted:
        found = read_encryption(clients["s3"], clients["kms"], bucket, role)
        if found.problem:
            notes.append(
                f"the encryption of s3://{bucket} was not read ({found.problem}): if it uses SSE-KMS, grant "
                "kms:GenerateDataKey and kms:Decrypt on its key too (`fceval-tui audit` checks it)"
            )
        elif found.key is not None:
            keys.append(found.key)
            notes.append(
                managed_note(found.key)
                if found.key.aws_managed
                else f"s3://{bucket} uses {found.algorithm} with key {found.key.arn}: the policies grant "
                "kms:GenerateDataKey and kms:Decrypt on it, through S3 only (the compute's, the staging bucket's key)"
            )
    return tuple(keys), notes


def print_policy(
    settings: Settings, backend: str, which: str, keys: tuple[BucketKey, ...] = ()
) -> tuple[str, list[str]]:
    """(policy JSON, notes about placeholders) for the caller or the compute's role; `keys`: the
    buckets' SSE-KMS keys (`read_bucket_keys`)."""
    if backend == "local":
        raise ConfigError(
            "the local backend calls no AWS API, so it needs no IAM policy", "pass --backend ec2, ecs or batch"
        )
    notes = []
    if not settings.staging_bucket:
        notes.append("FC_EVAL_S3_BUCKET is empty: YOUR-STAGING-BUCKET stands for the staging bucket")
    if which == "instance":
        statements = policy.instance_statements(backend, settings, placeholder=True, keys=keys)
        if backend == "ec2":
            notes.append(
                f"the ssm/ssmmessages/ec2messages actions are what {policy.SSM_MANAGED_POLICY} grants; "
                "attaching it instead is fine"
            )
        return render(statements), notes
    roles = _pass_roles_offline(settings, backend, notes)
    statements = policy.caller_statements(backend, settings, roles, placeholder=True, keys=keys)
    if backend == "ec2" and settings.spot_price is None:
        notes.append("no SPOT_PRICE: iam:CreateServiceLinkedRole (for the Spot role, first spot launch) is left out")
    return render(statements), notes


def _pass_roles_offline(settings: Settings, backend: str, notes: list[str]) -> list[str]:
    # Printed without calling AWS; the audit checks iam:PassRole on the role it actually finds.
    partition = partition_of(settings.region)
    if backend == "ec2":
        notes.append(
            f"iam:PassRole assumes the role is named like the instance profile "
            f"({settings.instance_profile}), FC-Eval's convention"
        )
        return [f"arn:{partition}:iam::*:role/{settings.instance_profile}"]
    if backend == "ecs":
        roles = [r for r in (settings.ecs_task_role_arn, settings.ecs_execution_role_arn) if r]
        if not roles:
            notes.append("FCEVAL_ECS_TASK_ROLE_ARN/FCEVAL_ECS_EXECUTION_ROLE_ARN are empty: no role is passed")
        return roles
    return []  # Batch passes no role: the job definition carries it
