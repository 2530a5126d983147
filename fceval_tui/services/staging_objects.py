"""The console's S3 staging objects as teardown resources: one per run prefix, plus audit probes.

Only the staging prefix (pipeline scripts, manifests, SSM output) and the audit's probe prefix are
listed; artifacts are results, never leftovers, and are never touched here.
"""

from __future__ import annotations

from datetime import datetime

from fceval_tui.backends.aws_constants import AUDIT_PREFIX, STAGING_PREFIX
from fceval_tui.backends.base import Resource
from fceval_tui.config import Settings

BACKEND = "s3"
KIND_STAGING = "staging-objects"
KIND_PROBES = "audit-probes"


def _client(settings: Settings):
    from fceval_tui.backends.aws import new_session

    # A fresh Session per listing, so a teardown run after `aws sso login` sees the new credentials.
    return new_session(settings.region, settings.profile).client("s3")


def list_staging(settings: Settings, s3=None) -> list[Resource]:
    """Raises the runner's error kinds (UserError / BackendError) when the bucket cannot be listed."""
    from fceval_tui.backends.aws import AWS_ERRORS, classify

    bucket = settings.staging_bucket
    s3 = s3 or _client(settings)
    groups: dict[tuple[str, str | None], list[dict]] = {}
    try:
        for prefix in (STAGING_PREFIX, AUDIT_PREFIX):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    if prefix == STAGING_PREFIX:
                        run_id = item["Key"][len(STAGING_PREFIX) :].split("/", 1)[0]
                        groups.setdefault((f"{STAGING_PREFIX}{run_id}/", run_id), []).append(item)
                    else:
                        groups.setdefault((AUDIT_PREFIX, None), []).append(item)
    except AWS_ERRORS as exc:
        raise classify(exc, f"listing staging objects in s3://{bucket}") from exc
    resources = []
    for (prefix, run_id), items in sorted(groups.items(), key=lambda kv: kv[0][0]):
        oldest: datetime | None = min((i["LastModified"] for i in items), default=None)
        resources.append(
            Resource(
                backend=BACKEND,
                kind=KIND_STAGING if run_id else KIND_PROBES,
                id=f"s3://{bucket}/{prefix}",
                state=f"{len(items)} objects",
                run_id=run_id,
                started_at=oldest,
                detail={
                    "bucket": bucket,
                    "prefix": prefix,
                    "objects": len(items),
                    "bytes": sum(i.get("Size", 0) for i in items),
                },
            )
        )
    return resources


def delete_prefix(settings: Settings, resource: Resource, s3=None) -> None:
    from fceval_tui.backends.aws import AWS_ERRORS, classify

    s3 = s3 or _client(settings)
    bucket, prefix = resource.detail["bucket"], resource.detail["prefix"]
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:  # a page holds at most 1,000 keys, DeleteObjects' limit
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    except AWS_ERRORS as exc:
        raise classify(exc, f"deleting s3://{bucket}/{prefix}") from exc
