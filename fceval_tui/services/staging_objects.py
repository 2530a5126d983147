"""The console's S3 objects as teardown resources: per run, its staging prefix and its inbox prefix,
plus the audit's probes.

Only the staging prefix (pipeline scripts, manifests, SSM output), the inbox (archives the compute
uploaded, until `collect` copies them) and the audit's probe prefix are listed; artifacts are
results, never leftovers, and are never touched here.

An attempt's objects carry its expiry so that `--orphans` can leave another console's live attempt
alone without trusting this ledger. Staged objects carry it as user metadata (`Staging.put`; user
metadata needs no permission beyond s3:PutObject, where object tags would need s3:PutObjectTagging
and s3:GetObjectTagging). Inbox objects are written by the compute, which may only PutObject and
sets no metadata: they take the expiry of the same attempt's staged objects (`{run}/{job}/a{n}/`,
written by the console before the pipeline starts and kept until the attempt is cleaned up), read
from one HEAD of its manifest. Their LastModified plus a TTL would need the run's TTL, which only
the unknown run's own ledger knows. An inbox whose staged objects are gone belongs to an attempt
that was cleaned up (or never staged): it carries no expiry, and is an ordinary leftover.
"""

from __future__ import annotations

import re
from datetime import datetime

from fceval_tui.backends.aws_constants import AUDIT_PREFIX, EXPIRES_AT_METADATA, INBOX_PREFIX, STAGING_PREFIX
from fceval_tui.backends.base import Resource
from fceval_tui.config import Settings
from fceval_tui.domain.models import parse_iso

BACKEND = "s3"
KIND_STAGING = "staging-objects"
KIND_INBOX = "inbox-objects"
KIND_PROBES = "audit-probes"
_STAGED = re.compile(r"(?P<run>[^/]+)/(?P<job>[^/]+)/a(?P<attempt>\d+)/")
_INBOX = re.compile(r"(?P<run>[^/]+)/(?P<job>[^/]+)-a(?P<attempt>\d+)-[0-9a-f]+/")


def _client(settings: Settings):
    from fceval_tui.backends.aws import new_session

    # A fresh Session per listing, so a teardown run after `aws sso login` sees the new credentials.
    return new_session(settings.region, settings.profile).client("s3")


def list_staging(settings: Settings, s3=None) -> list[Resource]:
    """Raises the runner's error kinds (UserError / BackendError) when the bucket cannot be listed."""
    from fceval_tui.backends.aws import AWS_ERRORS, classify
    from fceval_tui.backends.manifest import MANIFEST

    bucket = settings.staging_bucket
    s3 = s3 or _client(settings)
    groups: dict[tuple[str, str, str | None], list[dict]] = {}
    # Per kind, each attempt (run, job, n) seen; for staged ones, the key to read the expiry from.
    attempts: dict[str, dict[tuple[str, str, str], str]] = {KIND_STAGING: {}, KIND_INBOX: {}}
    try:
        for kind, root, shape in ((KIND_STAGING, STAGING_PREFIX, _STAGED), (KIND_INBOX, INBOX_PREFIX, _INBOX)):
            for item in _objects(s3, bucket, root):
                rest = item["Key"][len(root) :]
                run_id = rest.split("/", 1)[0]
                groups.setdefault((kind, f"{root}{run_id}/", run_id), []).append(item)
                found = shape.match(rest)
                if found:
                    seen = attempts[kind]
                    attempt = (found["run"], found["job"], found["attempt"])
                    if attempt not in seen or rest.endswith("/" + MANIFEST):  # the manifest is staged first
                        seen[attempt] = item["Key"]
        for item in _objects(s3, bucket, AUDIT_PREFIX):
            groups.setdefault((KIND_PROBES, AUDIT_PREFIX, None), []).append(item)
        expiry = {attempt: _expires_at(s3, bucket, key) for attempt, key in attempts[KIND_STAGING].items()}
    except AWS_ERRORS as exc:
        raise classify(exc, f"listing staging objects in s3://{bucket}") from exc
    resources = []
    for (kind, prefix, run_id), items in sorted(groups.items(), key=lambda kv: kv[0][1]):
        known = [expiry.get(a) for a in attempts.get(kind, {}) if a[0] == run_id]
        expires = [when for when in known if when is not None]
        resources.append(
            Resource(
                backend=BACKEND,
                kind=kind,
                id=f"s3://{bucket}/{prefix}",
                state=f"{len(items)} objects",
                run_id=run_id,
                started_at=min((i["LastModified"] for i in items), default=None),
                expires_at=max(expires, default=None),
                detail={
                    "bucket": bucket,
                    "prefix": prefix,
                    "objects": len(items),
                    "bytes": sum(i.get("Size", 0) for i in items),
                },
            )
        )
    return resources


def _objects(s3, bucket: str, prefix: str):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _expires_at(s3, bucket: str, key: str) -> datetime | None:
    """The expiry a staged object carries (None for one staged before objects carried it, or gone)."""
    from fceval_tui.backends.aws import AWS_ERRORS, error_code

    try:
        metadata = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})
    except AWS_ERRORS as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None  # deleted between the listing and now
        raise
    try:
        return parse_iso(metadata.get(EXPIRES_AT_METADATA))
    except ValueError:
        return None  # not ours to interpret


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
