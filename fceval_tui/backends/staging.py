"""The per-attempt staging area in the staging bucket: the pipeline script, the manifest and SSM output."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from fceval_tui.backends.aws import AWS_ERRORS, classify, error_code
from fceval_tui.backends.aws_constants import EXPIRES_AT_METADATA, JOB_ID_METADATA, RUN_ID_METADATA, STAGING_PREFIX
from fceval_tui.domain.models import Job, iso


@dataclass(frozen=True)
class Staging:
    """Per-attempt staging prefix in the staging bucket. Objects put with an expiry carry it (and their
    run and job) as user metadata: teardown leaves another console's attempt alone until then."""

    bucket: str
    prefix: str
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def for_job(cls, bucket: str, job: Job, attempt: int, expires_at: datetime | None = None) -> Staging:
        """`expires_at` (the attempt's hard TTL) is needed to put objects; reading and deleting do without."""
        metadata = {RUN_ID_METADATA: job.run_id, JOB_ID_METADATA: job.id}
        if expires_at is not None:
            metadata[EXPIRES_AT_METADATA] = iso(expires_at)
        return cls(bucket, f"{STAGING_PREFIX}{job.run_id}/{job.id}/a{attempt}", metadata)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def url(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def put(self, s3, name: str, body: str) -> None:
        try:
            s3.put_object(Bucket=self.bucket, Key=self.key(name), Body=body.encode(), Metadata=self.metadata)
        except AWS_ERRORS as exc:
            raise classify(exc, f"staging {self.url(name)}") from exc

    def get(self, s3, name: str) -> str | None:
        try:
            return s3.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read().decode()
        except AWS_ERRORS as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise classify(exc, f"reading {self.url(name)}") from exc

    def delete_all(self, s3) -> None:
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + "/")
            for page in pages:
                objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if objects:
                    s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        except AWS_ERRORS as exc:
            raise classify(exc, f"deleting staging objects under s3://{self.bucket}/{self.prefix}") from exc
