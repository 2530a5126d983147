"""The names the printed policies are written for: the region's partition, the buckets and key prefixes
the console uses, and the backend's cluster, queue, roles and buckets' keys (from the settings).
botocore is imported only to name the partition."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fceval_tui.backends import backend_class
from fceval_tui.backends.aws_constants import INBOX_PREFIX, S3_ROOT
from fceval_tui.config import Settings
from fceval_tui.domain.artifacts import split_s3
from fceval_tui.services.bucket_keys import BucketKey


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
        log_group=settings.ecs_log_group if backend == "ecs" else settings.batch_log_group,
        pass_roles=tuple(dict.fromkeys(pass_roles)),
        principal=backend_class(backend).compute_principal,
        spot=settings.spot_price is not None,
        keys=tuple(keys),
    )
