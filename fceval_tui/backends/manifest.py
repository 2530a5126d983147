"""The manifest of a job's uploads, and their delivery and verification in `collect`.

The compute never writes the artifact layout itself: its pipeline copies its archives into the
attempt's inbox (`aws_constants.INBOX_PREFIX`, PutObject only, under a random token that only that
attempt is given), and `collect` copies them, with the console's credentials, to the layout's keys
for the verdict. So an agent on one job cannot read, list or overwrite another job's objects.

The manifest is written to S3 before the pipeline starts, so a console that was killed and
resumed delivers exactly to the keys chosen at start (the grading report's name carries a
timestamp that only the starting console knew).
"""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import dataclass, replace

from fceval_tui.backends.aws import AWS_ERRORS, classify, error_code
from fceval_tui.backends.aws_constants import INBOX_PREFIX
from fceval_tui.backends.base import JobContext, Outcome
from fceval_tui.backends.staging import Staging
from fceval_tui.config import Settings
from fceval_tui.domain import pipeline
from fceval_tui.domain.artifacts import join_prefix, keys_for, split_s3
from fceval_tui.domain.models import utcnow
from fceval_tui.domain.triage import ErrorClass

MANIFEST = "manifest.json"
UPLOAD_ENV = "FCEVAL_JOB_UPLOAD_PREFIX"  # the inbox, in the pipeline's environment
INBOX_RUN, INBOX_REPORT = "run.tar.gz", "grading_report.json.gz"
UPLOAD_ERROR_CHARS = 1500  # of the aws CLI's error kept for the verdict
COPY_OBJECT_LIMIT = 5 * 1024**3  # bytes one CopyObject call copies (S3 API reference, CopyObject)


@dataclass(frozen=True)
class Manifest:
    """The artifact URLs the pipeline uploads to, for either verdict."""

    succeeded_run: str
    succeeded_report: str
    failed_run: str
    failed_report: str
    grade: bool
    inbox: str = ""  # s3:// prefix the pipeline uploads to; empty in manifests written before inboxes

    @classmethod
    def for_job(cls, ctx: JobContext, prefix: str, staging_bucket: str) -> Manifest:
        when = utcnow()
        good, bad = keys_for(ctx.job, True, when), keys_for(ctx.job, False, when)
        token = secrets.token_hex(16)
        return cls(
            join_prefix(prefix, good.run_archive),
            join_prefix(prefix, good.grading_report),
            join_prefix(prefix, bad.run_archive),
            join_prefix(prefix, bad.grading_report),
            bool(ctx.grade_command),
            f"s3://{staging_bucket}/{INBOX_PREFIX}{ctx.job.run_id}/{ctx.job.id}-a{ctx.attempt}-{token}",
        )

    def environment(self) -> dict[str, str]:
        """What the pipeline needs to know besides the job's values: where to upload."""
        return {UPLOAD_ENV: self.inbox}

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls(**json.loads(text))

    @classmethod
    def parse(cls, text: str | None) -> Manifest | None:
        """The manifest in `text`, or None when there is none or it is not one (a stray object)."""
        try:
            return cls.from_json(text) if text else None
        except (ValueError, TypeError):
            return None

    def urls(self, succeeded: bool) -> tuple[str, str]:
        return (self.succeeded_run, self.succeeded_report) if succeeded else (self.failed_run, self.failed_report)

    def upload_shell(self) -> str:
        """Shell run by the pipeline after packing: copy the archives into the inbox (see the module doc).
        A failure's error goes, on one line, to stderr after `pipeline.UPLOAD_FAILED` (found there in a job's
        CloudWatch log), and the first one's to `pipeline.UPLOAD_ERROR`, for `verify_uploads`."""
        err = pipeline.UPLOAD_ERROR
        upload = (
            f'upload() {{ aws s3 cp --only-show-errors "$1" "$2" 2>{err}.tmp; rc=$?; '
            f'if [ "$rc" -eq 0 ]; then cat {err}.tmp >&2; else '
            f"said=$(tr '\\n' ' ' < {err}.tmp | cut -c1-{UPLOAD_ERROR_CHARS}); said=${{said% }}; "
            f'[ -n "$said" ] || said="aws s3 cp $1 exited with code $rc"; '
            f"printf '%s%s\\n' {shlex.quote(pipeline.UPLOAD_FAILED)} \"$said\" >&2; "
            f"[ -f {err} ] || printf '%s\\n' \"$said\" > {err}; fi; "
            f"rm -f {err}.tmp; }}"
        )
        run, report = f'"${UPLOAD_ENV}/{INBOX_RUN}"', f'"${UPLOAD_ENV}/{INBOX_REPORT}"'
        return "\n".join(
            [
                upload,
                f"upload {pipeline.RUN_ARCHIVE} {run}",
                f"if [ -f {pipeline.REPORT_ARCHIVE} ]; then",
                f"  upload {pipeline.REPORT_ARCHIVE} {report}",
                "fi",
            ]
        )


def verify_uploads(s3, manifest: Manifest, exit_code: int | None, upload_error: str = "") -> Outcome:
    """Success needs exit code 0 and every expected upload present in S3; never trust the script alone.
    `upload_error`: what the pipeline's failed upload said (`pipeline.UPLOAD_ERROR`), for the verdict.

    Few calls, as a collect under throttling is retried whole: one listing of the inbox, a copy per
    archive found there, and a HEAD only for what was not delivered now (a collect resumed after its
    inbox was emptied, or manifests from before inboxes)."""
    succeeded = exit_code == 0
    run_url, report_url = manifest.urls(succeeded)
    delivered = _deliver(s3, manifest.inbox, {INBOX_RUN: run_url, INBOX_REPORT: report_url}) if manifest.inbox else ()
    expected = [run_url] + ([report_url] if succeeded and manifest.grade else [])
    present: list[str] = []
    missing: list[str] = []
    for url in expected:
        (present if url in delivered or _exists(s3, url) else missing).append(url)
    if not succeeded and (report_url in delivered or _exists(s3, report_url)):
        present.append(report_url)  # a failed grade may still have left a report
    if missing:
        error = f"expected upload {missing[0]} is missing" + upload_failure(manifest, upload_error)
        return Outcome(False, exit_code, tuple(present), error, ErrorClass.UPLOAD)
    error = None if succeeded else f"the pipeline exited with code {exit_code}"
    return Outcome(succeeded, exit_code, tuple(present), error)


def with_upload_error(outcome: Outcome, manifest: Manifest, upload_error: str) -> Outcome:
    """`verify_uploads`' missing-upload verdict (given no `upload_error`) with what the upload said, found
    afterwards, and the fix; without asking S3 again. Any other outcome as it is."""
    if outcome.error_class != ErrorClass.UPLOAD or not upload_error:
        return outcome
    return replace(outcome, error=(outcome.error or "") + upload_failure(manifest, upload_error))


def upload_failure(manifest: Manifest, upload_error: str) -> str:
    """Why the pipeline's upload failed and the fix, as a suffix of the verdict ("" when it did not say).
    The inbox URL is replaced: its token is what keeps other jobs out of it."""
    if not upload_error:
        return ""
    said = upload_error.replace(manifest.inbox, "the attempt's inbox") if manifest.inbox else upload_error
    if "kms:" in said:
        # S3 asked KMS for the bucket's key on the compute role's behalf (services/bucket_keys.py).
        fix = (
            "the bucket is SSE-KMS encrypted: give the compute role kms:GenerateDataKey and kms:Decrypt on its key "
            "through S3, as in the statements of `fceval-tui audit --print-policy instance`"
        )
    elif "AccessDenied" in said or "Forbidden" in said:
        fix = "give the compute role the statements of `fceval-tui audit --print-policy instance`"
    else:
        return f": {said}"
    return f": {said}; fix: {fix}"


def _deliver(s3, inbox: str, final_urls: dict[str, str]) -> set[str]:
    """Copy the archives found in the inbox to their places in the layout (again after a resume:
    idempotent); the final URLs delivered."""
    bucket, prefix = split_s3(inbox)
    try:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    except AWS_ERRORS as exc:
        # Named without the inbox's URL in job errors: its token is what keeps other jobs out of it.
        raise classify(exc, f"listing the attempt's inbox in s3://{bucket}") from exc
    delivered = set()
    for item in listing:
        name = item["Key"][len(prefix) + 1 :]
        final = final_urls.get(name)
        if final is None:
            continue
        source = {"Bucket": bucket, "Key": item["Key"]}
        target_bucket, target_key = split_s3(final)
        try:
            if item["Size"] <= COPY_OBJECT_LIMIT:
                s3.copy_object(CopySource=source, Bucket=target_bucket, Key=target_key)
            else:
                s3.copy(source, target_bucket, target_key)  # multipart: CopyObject stops at 5 GiB
        except AWS_ERRORS as exc:
            raise classify(exc, f"copying {name} from the attempt's inbox to {final}") from exc
        delivered.add(final)
    return delivered


def _exists(s3, url: str) -> bool:
    bucket, key = split_s3(url)
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except AWS_ERRORS as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise classify(exc, f"checking {url}") from exc


def load_manifest(s3, staging: Staging, ctx: JobContext, settings: Settings) -> Manifest:
    text = staging.get(s3, MANIFEST)
    if text is None:
        # Start never got as far as staging; nothing can have been uploaded under these names.
        return Manifest.for_job(ctx, ctx.artifact_prefix, staging.bucket)
    return Manifest.from_json(text)


def delete_inbox(s3, manifest: Manifest) -> None:
    if manifest.inbox:
        bucket, prefix = split_s3(manifest.inbox)
        Staging(bucket, prefix).delete_all(s3)
