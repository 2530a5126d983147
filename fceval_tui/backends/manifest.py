"""The manifest of the artifact URLs a job's pipeline uploads to, and their verification in `collect`.

The manifest is written to S3 before the pipeline starts, so a console that was killed and
resumed verifies exactly the keys the pipeline was told to upload (the grading report's name
carries a timestamp that only the starting console knew).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from fceval_tui.backends.aws import AWS_ERRORS, classify, error_code
from fceval_tui.backends.base import JobContext, Outcome
from fceval_tui.backends.staging import Staging
from fceval_tui.config import Settings
from fceval_tui.domain import pipeline
from fceval_tui.domain.artifacts import join_prefix, keys_for, split_s3
from fceval_tui.domain.models import utcnow

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """The artifact URLs the pipeline uploads to, for either verdict."""

    succeeded_run: str
    succeeded_report: str
    failed_run: str
    failed_report: str
    grade: bool

    @classmethod
    def for_job(cls, ctx: JobContext, prefix: str) -> Manifest:
        when = utcnow()
        good, bad = keys_for(ctx.job, True, when), keys_for(ctx.job, False, when)
        return cls(
            join_prefix(prefix, good.run_archive),
            join_prefix(prefix, good.grading_report),
            join_prefix(prefix, bad.run_archive),
            join_prefix(prefix, bad.grading_report),
            bool(ctx.grade_command),
        )

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls(**json.loads(text))

    def urls(self, succeeded: bool) -> tuple[str, str]:
        return (self.succeeded_run, self.succeeded_report) if succeeded else (self.failed_run, self.failed_report)

    def upload_shell(self) -> str:
        """Shell run by the pipeline after packing (`$code` is the job's exit code): copy to S3."""
        q = shlex.quote
        copy = "aws s3 cp --only-show-errors"
        warn = "|| echo 'fceval-tui: upload failed:'"
        return "\n".join(
            [
                f'if [ "$code" -eq 0 ]; then run_url={q(self.succeeded_run)}; report_url={q(self.succeeded_report)}',
                f"else run_url={q(self.failed_run)}; report_url={q(self.failed_report)}; fi",
                f'{copy} {pipeline.RUN_ARCHIVE} "$run_url" {warn} "$run_url" >&2',
                f"if [ -f {pipeline.REPORT_ARCHIVE} ]; then",
                f'  {copy} {pipeline.REPORT_ARCHIVE} "$report_url" {warn} "$report_url" >&2',
                "fi",
            ]
        )


def verify_uploads(s3, manifest: Manifest, exit_code: int | None) -> Outcome:
    """Success needs exit code 0 and every expected upload present in S3; never trust the script alone."""
    succeeded = exit_code == 0
    run_url, report_url = manifest.urls(succeeded)
    expected = [run_url] + ([report_url] if succeeded and manifest.grade else [])
    present: list[str] = []
    missing: list[str] = []
    for url in expected:
        (present if _exists(s3, url) else missing).append(url)
    if not succeeded and _exists(s3, report_url):
        present.append(report_url)  # a failed grade may still have left a report
    if missing:
        return Outcome(False, exit_code, tuple(present), f"expected upload {missing[0]} is missing")
    error = None if succeeded else f"the pipeline exited with code {exit_code}"
    return Outcome(succeeded, exit_code, tuple(present), error)


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
        return Manifest.for_job(ctx, ctx.artifact_prefix)
    return Manifest.from_json(text)
