"""Compute: vCPU quota, AMI, instance type offerings (EC2); cluster and log group (ECS); queue (Batch)."""

from __future__ import annotations

import shlex

import botocore.exceptions

from fceval_tui.services.audit_checks.aws import describe_error
from fceval_tui.services.audit_checks.base import AuditContext, Findings

# Running On-Demand / Spot instance quotas (in vCPUs) by instance family letter group.
ON_DEMAND_QUOTAS = {
    "standard": "L-1216C47A",
    "g": "L-DB2E81BA",
    "p": "L-417A185B",
    "f": "L-74FC7D96",
    "x": "L-7295265B",
    "inf": "L-1945791B",
}
SPOT_QUOTAS = {
    "standard": "L-34B43A08",
    "g": "L-3819A6DF",
    "p": "L-7212CCBC",
    "f": "L-88CF9481",
    "x": "L-E3A00192",
    "inf": "L-B5D1601B",
}
FARGATE_QUOTA = "L-3032A538"  # Fargate On-Demand vCPU resource count
STANDARD_LETTERS = set("acdhimrtz")


def quota_group(instance_type: str) -> str | None:
    family = instance_type.split(".", 1)[0]
    if family.startswith("inf"):
        return "inf"
    if family.startswith("vt") or family[0] == "g":
        return "g"
    if family[0] in ("p", "f", "x"):
        return family[0]
    return "standard" if family[0] in STANDARD_LETTERS else None


def _quota(ctx: AuditContext, service: str, code: str) -> tuple[float | None, str]:
    try:
        reply = ctx.client("service-quotas").get_service_quota(ServiceCode=service, QuotaCode=code)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        return None, describe_error(exc)
    return float(reply["Quota"]["Value"]), reply["Quota"].get("QuotaName", code)


def _instance_vcpus(ctx: AuditContext) -> int:
    kind = ctx.settings.ec2_instance_type
    found = ctx.client("ec2").describe_instance_types(InstanceTypes=[kind])["InstanceTypes"]
    return int(found[0]["VCpuInfo"]["DefaultVCpus"])


def check_quota(ctx: AuditContext, f: Findings) -> None:
    s = ctx.settings
    if ctx.backend == "ecs":
        service, code, per_job = "fargate", FARGATE_QUOTA, s.ecs_cpu / 1024
        unit = f"Fargate tasks of {per_job:g} vCPU"
    else:
        group = quota_group(s.ec2_instance_type)
        if group is None:
            f.unknown(
                "quota.vcpu",
                f"no known vCPU quota for {s.ec2_instance_type}",
                "the audit knows the standard, G, P, F, X and Inf families",
                "compare concurrency x vCPUs with your quotas in the Service Quotas console",
            )
            return
        spot = s.spot_price is not None
        service, code = "ec2", (SPOT_QUOTAS if spot else ON_DEMAND_QUOTAS)[group]
        per_job = _instance_vcpus(ctx)
        unit = f"{'spot' if spot else 'on-demand'} {s.ec2_instance_type} ({per_job} vCPUs)"
    needed = s.concurrent * per_job
    value, name = _quota(ctx, service, code)
    if value is None:
        f.unknown(
            "quota.vcpu",
            f"the vCPU quota ({service} {code}) could not be read",
            name,
            f"allow servicequotas:GetServiceQuota, or check by hand: "
            f"`aws service-quotas get-service-quota --service-code {service} --quota-code {code}`",
        )
        return
    detail = f"{name}: {value:g} vCPUs; {s.concurrent} concurrent {unit} need {needed:g} (other workloads share it)"
    raise_fix = (
        f"aws service-quotas request-service-quota-increase --service-code {service} --quota-code {code} "
        f"--desired-value {needed:g}"
    )
    if value < per_job:
        f.error("quota.vcpu", f"the vCPU quota ({value:g}) is below one job ({per_job:g} vCPUs)", detail, raise_fix)
    elif value < needed:
        fits = int(value // per_job)
        f.warning(
            "quota.vcpu",
            f"the vCPU quota fits {fits} of {s.concurrent} concurrent jobs",
            detail + "; the rest wait in waiting_capacity",
            f"{raise_fix}, or lower FCEVAL_CONCURRENT to {fits}",
        )
    else:
        f.ok("quota.vcpu", f"vCPU quota {value:g} covers {needed:g} vCPUs", detail)


def check_ami(ctx: AuditContext, f: Findings) -> None:
    from fceval_tui.backends.ec2_image import AL2023_PARAMETER, architecture

    s = ctx.settings
    arch = architecture(s.ec2_instance_type)
    if s.ec2_ami:
        ami, source = s.ec2_ami, "EC2_INSTANCE_AMI"
    else:
        parameter = AL2023_PARAMETER.format(arch=arch)
        try:
            ami = ctx.client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
        except botocore.exceptions.ClientError as exc:
            f.error(
                "ec2.ami",
                "the latest Amazon Linux 2023 AMI could not be looked up",
                describe_error(exc),
                f"allow ssm:GetParameter on {parameter}, or set EC2_INSTANCE_AMI",
            )
            return
        source = f"latest Amazon Linux 2023 ({parameter})"
    try:
        images = ctx.client("ec2").describe_images(ImageIds=[ami])["Images"]
    except botocore.exceptions.ClientError as exc:
        if "NotFound" not in str(exc) and "Malformed" not in str(exc):
            raise
        images = []
    fix = "set EC2_INSTANCE_AMI to an AMI of this region, or leave it empty for Amazon Linux 2023"
    if not images:
        f.error("ec2.ami", f"AMI {ami} does not exist in {s.region}", f"from {source}", fix)
        return
    image = images[0]
    if image.get("State", "available") != "available":
        f.error("ec2.ami", f"AMI {ami} is {image['State']}", f"from {source}", fix)
    elif image.get("Architecture", arch) != arch:
        f.error(
            "ec2.ami",
            f"AMI {ami} is {image['Architecture']} but {s.ec2_instance_type} is {arch}",
            f"from {source}",
            fix + f", or pick an {image['Architecture']} instance type",
        )
    else:
        f.ok("ec2.ami", f"AMI {ami} exists ({image.get('Name', '')}, {arch})", f"from {source}")


def check_instance_type(ctx: AuditContext, f: Findings) -> None:
    s = ctx.settings
    kind = s.ec2_instance_type
    reply = ctx.client("ec2").describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [kind]}]
    )
    offered = sorted({o["Location"] for o in reply["InstanceTypeOfferings"]})
    if s.ec2_subnet:
        subnet = ctx.client("ec2").describe_subnets(SubnetIds=[s.ec2_subnet])["Subnets"][0]
        wanted, source = [subnet["AvailabilityZone"]], f"the zone of {s.ec2_subnet}"
    elif s.ec2_zones:
        wanted, source = list(s.ec2_zones), "EC2_AVAILABILITY_ZONES"
    else:
        wanted, source = [], "any zone"
    if not offered:
        f.error(
            "ec2.instance-type",
            f"{kind} is not offered in {s.region}",
            "no zone offers it",
            "set EC2_INSTANCE_TYPE to a type offered here (`aws ec2 describe-instance-type-offerings`)",
        )
        return
    missing = [z for z in wanted if z not in offered]
    if wanted and len(missing) == len(wanted):
        f.error(
            "ec2.instance-type",
            f"{kind} is not offered in {', '.join(wanted)} ({source})",
            "offered in: " + ", ".join(offered),
            f"set EC2_AVAILABILITY_ZONES={','.join(offered)}"
            if not s.ec2_subnet
            else "set FCEVAL_EC2_SUBNET_ID to a subnet in one of: " + ", ".join(offered),
        )
    elif missing:
        f.warning(
            "ec2.instance-type",
            f"{kind} is not offered in {', '.join(missing)}",
            "offered in: " + ", ".join(offered) + "; launches there fail and move on to the next zone",
            "set EC2_AVAILABILITY_ZONES=" + ",".join(z for z in wanted if z in offered),
        )
    else:
        f.ok("ec2.instance-type", f"{kind} is offered in {', '.join(wanted or offered)}", f"zones from {source}")


def check_ecs_cluster(ctx: AuditContext, f: Findings) -> None:
    name = ctx.settings.ecs_cluster
    reply = ctx.client("ecs").describe_clusters(clusters=[name])
    clusters = [c for c in reply.get("clusters", []) if c.get("status") == "ACTIVE"]
    if not clusters:
        status = next((c.get("status") for c in reply.get("clusters", [])), "MISSING")
        f.error(
            "ecs.cluster",
            f"ECS cluster {name} is {status.lower()}",
            "FCEVAL_ECS_CLUSTER",
            f"aws ecs create-cluster --cluster-name {shlex.quote(name)}",
        )
        return
    f.ok("ecs.cluster", f"ECS cluster {name} is active", clusters[0].get("clusterArn", ""))
    _ecs_platform(ctx, f, name)


def check_ecs_log_group(ctx: AuditContext, f: Findings) -> None:
    """Fargate does not create an awslogs group: a task whose group is missing never starts."""
    name = ctx.settings.ecs_log_group
    if not name:
        f.ok("ecs.log-group", "no ECS log group set", "a failed upload is reported without the aws CLI's reason")
        return
    pages = ctx.client("logs").get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
    if not any(group["logGroupName"] == name for page in pages for group in page.get("logGroups", [])):
        f.error(
            "ecs.log-group",
            f"ECS log group {name} does not exist",
            "FCEVAL_ECS_LOG_GROUP: tasks would fail to start (ResourceInitializationError)",
            f"aws logs create-log-group --log-group-name {shlex.quote(name)}",
        )
        return
    f.ok("ecs.log-group", f"ECS log group {name} exists", "tasks' output, and why an upload failed")


def _ecs_platform(ctx: AuditContext, f: Findings, cluster: str) -> None:
    """ECS Exec needs Fargate platform 1.4.0 or later. The backend pins none (so LATEST, 1.4.0 on
    Linux); tasks it already runs show what was actually used."""
    from fceval_tui.backends.aws_constants import ECS_STARTED_BY

    ecs = ctx.client("ecs")
    arns = ecs.list_tasks(cluster=cluster, startedBy=ECS_STARTED_BY, maxResults=100).get("taskArns", [])
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
    old = sorted(
        {
            t["platformVersion"]
            for t in tasks
            if t.get("platformVersion", "LATEST") != "LATEST" and _version_tuple(t["platformVersion"]) < (1, 4)
        }
    )
    if old:
        f.error(
            "ecs.platform",
            f"fceval-tui tasks in {cluster} run on Fargate platform {', '.join(old)}",
            "ECS Exec (start, watch, attach) needs platform version 1.4.0 or later",
            "stop those tasks (`fceval-tui teardown --orphans`) and check the cluster's capacity providers",
        )
        return
    f.ok(
        "ecs.platform",
        "Fargate platform LATEST (1.4.0 or later), which ECS Exec needs",
        f"tasks are started without a pinned platform version; {len(tasks)} running task(s) checked",
    )


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def check_batch_queue(ctx: AuditContext, f: Findings) -> None:
    s = ctx.settings
    batch = ctx.client("batch")
    if not s.batch_queue:
        f.error(
            "batch.queue",
            "no job queue configured (FCEVAL_BATCH_QUEUE is empty)",
            "",
            "set FCEVAL_BATCH_QUEUE to a VALID and ENABLED AWS Batch job queue",
        )
    else:
        queues = batch.describe_job_queues(jobQueues=[s.batch_queue])["jobQueues"]
        if not queues:
            f.error(
                "batch.queue",
                f"job queue {s.batch_queue} does not exist",
                "FCEVAL_BATCH_QUEUE",
                "create it in the AWS Batch console, or set FCEVAL_BATCH_QUEUE to an existing queue",
            )
        else:
            q = queues[0]
            state, status = q.get("state"), q.get("status")
            if state == "ENABLED" and status == "VALID":
                f.ok("batch.queue", f"job queue {s.batch_queue} is VALID and ENABLED")
            else:
                f.error(
                    "batch.queue",
                    f"job queue {s.batch_queue} is {status} and {state}",
                    q.get("statusReason", ""),
                    f"aws batch update-job-queue --job-queue {shlex.quote(s.batch_queue)} --state ENABLED"
                    if status == "VALID"
                    else "fix the queue's compute environments (see statusReason)",
                )
    if not s.batch_job_definition:
        f.error(
            "batch.job-definition",
            "no job definition configured (FCEVAL_BATCH_JOB_DEFINITION is empty)",
            "",
            "set FCEVAL_BATCH_JOB_DEFINITION to an ACTIVE job definition",
        )
        return
    name = s.batch_job_definition
    found = batch.describe_job_definitions(jobDefinitionName=name.split(":")[0], status="ACTIVE")["jobDefinitions"]
    if not found:
        f.error(
            "batch.job-definition",
            f"job definition {name} has no ACTIVE revision",
            "FCEVAL_BATCH_JOB_DEFINITION",
            "register it (`aws batch register-job-definition`) or set FCEVAL_BATCH_JOB_DEFINITION",
        )
    else:
        f.ok("batch.job-definition", f"job definition {name} is active (revision {found[-1].get('revision')})")
