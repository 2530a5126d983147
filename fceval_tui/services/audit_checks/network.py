"""Networking: every subnet jobs may land in reaches the AWS services they use (SSM, S3, ...),
through the internet (a NAT gateway, or an internet gateway plus a public IP) or VPC endpoints."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from fceval_tui.services.audit_checks.base import AuditContext, Findings

ENDPOINTS = {
    "ec2": ("ssm", "ssmmessages", "ec2messages", "s3"),
    "ecs": ("ssmmessages", "s3", "ecr.api", "ecr.dkr", "logs"),
    "batch": ("s3", "ecr.api", "ecr.dkr", "logs"),
}


@dataclass(frozen=True)
class Verdict:
    subnet: str
    ok: bool
    how: str
    # Enough to write the fix for a subnet that cannot reach the services:
    vpc: str = ""
    zone: str = ""
    table: str | None = None  # its route table (explicit or the VPC's main one)
    route: str | None = None  # its default route: "igw", "other" or None
    missing: tuple[str, ...] = ()  # VPC endpoints it lacks


def _subnets(ctx: AuditContext) -> tuple[list[dict], str]:
    """Subnets jobs may use, and where that choice comes from (for the finding)."""
    ec2 = ctx.client("ec2")
    s = ctx.settings
    if ctx.backend == "ec2":
        if s.ec2_subnet:
            return ec2.describe_subnets(SubnetIds=[s.ec2_subnet])["Subnets"], "FCEVAL_EC2_SUBNET_ID"
        filters = [{"Name": "default-for-az", "Values": ["true"]}]
        if s.ec2_zones:
            filters.append({"Name": "availability-zone", "Values": list(s.ec2_zones)})
        return ec2.describe_subnets(Filters=filters)["Subnets"], "the default VPC"
    if ctx.backend == "ecs":
        subnets = list(s.ecs_subnets)
        return (ec2.describe_subnets(SubnetIds=subnets)["Subnets"] if subnets else []), "FCEVAL_ECS_SUBNETS"
    queue = ctx.client("batch").describe_job_queues(jobQueues=[s.batch_queue])["jobQueues"] if s.batch_queue else []
    envs = [e["computeEnvironment"] for q in queue for e in q.get("computeEnvironmentOrder", [])]
    described = (
        ctx.client("batch").describe_compute_environments(computeEnvironments=envs)["computeEnvironments"]
        if envs
        else []
    )
    ids = sorted({sid for e in described for sid in (e.get("computeResources") or {}).get("subnets", [])})
    subnets = ec2.describe_subnets(SubnetIds=ids)["Subnets"] if ids else []
    return subnets, f"the compute environments of {s.batch_queue}"


def _route_table(ctx: AuditContext, subnet: dict) -> dict | None:
    ec2 = ctx.client("ec2")
    explicit = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet["SubnetId"]]}])[
        "RouteTables"
    ]
    if explicit:
        return explicit[0]
    main = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [subnet["VpcId"]]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    return main[0] if main else None


def _default_route(table: dict | None) -> str | None:
    for route in (table or {}).get("Routes", []):
        if route.get("DestinationCidrBlock") != "0.0.0.0/0" or route.get("State", "active") != "active":
            continue
        if route.get("NatGatewayId"):
            return "nat"
        if str(route.get("GatewayId", "")).startswith("igw-"):
            return "igw"
        if route.get("TransitGatewayId") or route.get("NetworkInterfaceId") or route.get("InstanceId"):
            return "other"
    return None


def _endpoints(ctx: AuditContext, vpc: str) -> list[dict]:
    return ctx.once(
        ("endpoints", vpc),
        lambda: ctx.client("ec2").describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"],
    )


def _missing_endpoints(ctx: AuditContext, subnet: dict, table: dict | None) -> list[str]:
    region = ctx.settings.region
    present = set()
    for endpoint in _endpoints(ctx, subnet["VpcId"]):
        if endpoint.get("State", "available").lower() != "available":
            continue
        service = endpoint["ServiceName"].split(f".{region}.", 1)[-1]
        if endpoint.get("VpcEndpointType") == "Gateway":
            if table and table["RouteTableId"] in endpoint.get("RouteTableIds", []):
                present.add(service)
        elif endpoint.get("PrivateDnsEnabled") or service == "s3":
            present.add(service)
    return [service for service in ENDPOINTS[ctx.backend] if service not in present]


def _public_ip(ctx: AuditContext, subnet: dict) -> bool:
    if ctx.backend == "ecs":
        return bool(ctx.settings.ecs_public_ip)
    return bool(subnet.get("MapPublicIpOnLaunch"))


def _verdict(ctx: AuditContext, subnet: dict) -> Verdict:
    sid = subnet["SubnetId"]
    table = _route_table(ctx, subnet)
    route = _default_route(table)
    public = _public_ip(ctx, subnet)
    if route == "nat":
        return Verdict(sid, True, "default route through a NAT gateway")
    if route == "igw" and public:
        return Verdict(sid, True, "default route through an internet gateway, with public IPs")
    missing = _missing_endpoints(ctx, subnet, table)
    if not missing:
        return Verdict(sid, True, "VPC endpoints for " + ", ".join(ENDPOINTS[ctx.backend]))
    if route == "other":
        return Verdict(sid, True, "default route through a transit gateway or appliance (not verified further)")
    why = (
        ("internet gateway route but no public IP" if route == "igw" else "no default route")
        + "; missing VPC endpoints: "
        + ", ".join(missing)
    )
    table_id = table["RouteTableId"] if table else None
    return Verdict(
        sid, False, why, subnet["VpcId"], subnet.get("AvailabilityZone", ""), table_id, route, tuple(missing)
    )


def _internet_fixes(ctx: AuditContext, bad: list[Verdict]) -> list[str]:
    """Give the subnets internet access: public IPs where an internet gateway route exists, else one
    NAT gateway route per route table (subnets often share one)."""
    fixes = []
    public = [v.subnet for v in bad if v.route == "igw"]
    if public and ctx.backend == "ecs":
        fixes.append("set FCEVAL_ECS_ASSIGN_PUBLIC_IP=true")
    elif len(public) == 1:
        fixes.append(f"aws ec2 modify-subnet-attribute --subnet-id {public[0]} --map-public-ip-on-launch")
    elif public:
        command = 'aws ec2 modify-subnet-attribute --subnet-id "$s" --map-public-ip-on-launch'
        fixes.append(f"for s in {' '.join(public)}; do {command}; done")
    routed = [v for v in bad if v.route != "igw"]
    routes = [
        f"aws ec2 create-route --route-table-id {table} --destination-cidr-block 0.0.0.0/0 --nat-gateway-id NAT_ID"
        for table in dict.fromkeys(v.table for v in routed if v.table)
    ]
    if routes:
        routes[-1] += " (NAT_ID: a NAT gateway in a public subnet of the VPC)"
    fixes.extend(routes)
    for v in routed:
        if not v.table:
            fixes.append(f"add a NAT gateway route for 0.0.0.0/0 to the route table of {v.subnet}")
    return fixes


def _endpoint_fixes(ctx: AuditContext, bad: list[Verdict]) -> list[str]:
    """One create-vpc-endpoint per VPC and service: a gateway endpoint (S3) on every route table that
    lacks it; an interface endpoint (private DNS, so it serves the whole VPC) in one subnet per zone,
    as AWS allows no more."""
    fixes = []
    for vpc in dict.fromkeys(v.vpc for v in bad):
        in_vpc = [v for v in bad if v.vpc == vpc]
        for service in ENDPOINTS[ctx.backend]:
            lacking = [v for v in in_vpc if service in v.missing]
            if not lacking:
                continue
            name = shlex.quote(f"com.amazonaws.{ctx.settings.region}.{service}")
            tables = list(dict.fromkeys(v.table for v in lacking if v.table))
            if service == "s3" and tables:
                fixes.append(
                    f"aws ec2 create-vpc-endpoint --vpc-id {vpc} --service-name {name} "
                    f"--route-table-ids {' '.join(tables)}"
                )
                lacking = [v for v in lacking if not v.table]
                if not lacking:
                    continue
            one_per_zone: dict[str, str] = {}
            for v in lacking:
                one_per_zone.setdefault(v.zone, v.subnet)
            fixes.append(
                f"aws ec2 create-vpc-endpoint --vpc-id {vpc} --vpc-endpoint-type Interface "
                f"--service-name {name} --subnet-ids {' '.join(one_per_zone.values())} --private-dns-enabled"
            )
    return fixes


def _fix(ctx: AuditContext, bad: list[Verdict]) -> str:
    internet, endpoints = _internet_fixes(ctx, bad), _endpoint_fixes(ctx, bad)
    text = "either give them internet access: " + "; ".join(internet)
    return text + (", or create VPC endpoints: " + "; ".join(endpoints) if endpoints else "")


def _detail(verdicts: list[Verdict]) -> str:
    """Subnets in the same situation share one clause."""
    by_how: dict[str, list[str]] = {}
    for v in verdicts:
        by_how.setdefault(v.how, []).append(v.subnet)
    return "; ".join(f"{', '.join(subnets)}: {how}" for how, subnets in by_how.items())


def check_network(ctx: AuditContext, f: Findings) -> None:
    subnets, source = _subnets(ctx)
    needs = "/".join(ENDPOINTS[ctx.backend])
    if not subnets and ctx.backend == "batch":
        f.unknown(
            "network.route",
            f"no subnets listed by {source}",
            "unmanaged compute environments choose their own network; it cannot be checked from here",
            "make sure its instances reach " + needs.replace("/", ", "),
        )
        return
    if not subnets:
        fix = {
            "ec2": "set FCEVAL_EC2_SUBNET_ID, or create a default VPC: `aws ec2 create-default-vpc`",
            "ecs": "set FCEVAL_ECS_SUBNETS=subnet-...",
            "batch": "check the job queue's compute environments (see batch.queue)",
        }[ctx.backend]
        f.error("network.route", f"no subnet for jobs ({source})", f"jobs need a subnet that reaches {needs}", fix)
        return
    verdicts = [_verdict(ctx, subnet) for subnet in subnets]
    bad = [v for v in verdicts if not v.ok]
    detail = _detail(verdicts)
    if bad:
        f.error(
            "network.route",
            f"{len(bad)} of {len(verdicts)} subnets ({source}) cannot reach {needs}",
            detail,
            _fix(ctx, bad),
        )
    else:
        f.ok("network.route", f"{len(verdicts)} subnet(s) ({source}) reach {needs}", detail)
