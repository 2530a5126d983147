"""The preflight checks, grouped by area, and which backend needs which."""

from __future__ import annotations

from fceval_tui.services.audit_checks import compute, encryption, iam, identity, local, network, s3
from fceval_tui.services.audit_checks.base import AuditContext, Check, Finding, Findings, Severity

__all__ = ["AuditContext", "Check", "Finding", "Findings", "Severity", "checks_for"]


LOCAL = (
    Check("local.tmux", "local", "tmux", local.check_tmux),
    Check("local.state-dir", "local", "state directory", local.check_state_dir),
)
COMMON = (
    Check("identity.caller", "credentials", "credentials and identity", identity.check_identity),
    Check("region.enabled", "region", "region", identity.check_region),
    Check("s3.staging", "s3", "staging bucket", s3.check_staging_bucket),
    Check("s3.results", "s3", "results bucket", s3.check_results_bucket),
    Check("s3.encryption", "s3", "bucket encryption (SSE-KMS keys)", encryption.check_bucket_encryption),
    Check("iam.caller", "iam", "your permissions", iam.check_caller_permissions),
)
TOOLS = Check("tools", "local tools", "aws CLI and session-manager-plugin", local.check_aws_tools)
NETWORK = Check("network.route", "network", "subnet routes and VPC endpoints", network.check_network)
BY_BACKEND = {
    "local": LOCAL,
    "ec2": COMMON
    + (
        TOOLS,
        Check("iam.instance-role", "iam", "instance profile and role", iam.check_instance_role),
        NETWORK,
        Check("quota.vcpu", "quotas", "vCPU quota", compute.check_quota),
        Check("ec2.ami", "compute", "AMI", compute.check_ami),
        Check("ec2.instance-type", "compute", "instance type offerings", compute.check_instance_type),
    ),
    "ecs": COMMON
    + (
        TOOLS,
        Check("ecs.task-role", "iam", "task role (ECS Exec, S3)", iam.check_task_role),
        NETWORK,
        Check("quota.vcpu", "quotas", "Fargate vCPU quota", compute.check_quota),
        Check("ecs.cluster", "compute", "ECS cluster", compute.check_ecs_cluster),
        Check("ecs.log-group", "compute", "ECS log group", compute.check_ecs_log_group),
    ),
    "batch": COMMON
    + (
        NETWORK,
        Check("batch.queue", "compute", "job queue and definition", compute.check_batch_queue),
    ),
}


def checks_for(backend: str) -> tuple[Check, ...]:
    return BY_BACKEND[backend]
