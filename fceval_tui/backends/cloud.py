"""What the three AWS backends share: the base class of a backend whose pipeline runs on cloud
compute, where that compute works and stages its files, and the settings it cannot do without."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from fceval_tui.backends.aws_constants import DEFAULT_ARTIFACTS_PREFIX
from fceval_tui.backends.base import Backend, JobContext
from fceval_tui.backends.manifest import MANIFEST, Manifest, delete_inbox
from fceval_tui.backends.staging import Staging
from fceval_tui.config import Settings, setting_for_env
from fceval_tui.domain import pipeline
from fceval_tui.domain.models import Job
from fceval_tui.errors import ConfigError


def remote_work_dir(settings: Settings, job_id: str) -> str:
    return settings.remote_work_dir.rstrip("/") + "/" + job_id


class CloudBackend(Backend):
    """A backend whose pipeline runs on cloud compute, under FCEVAL_REMOTE_WORK_DIR/<job id>."""

    aws: object  # AwsClients, built by each subclass

    def check_ready(self) -> None:
        self.aws.check_credentials()
        require_staging_bucket(self.settings, self.name)
        if self.settings.sources.get("run_command") == "default":
            raise ConfigError(
                f"FCEVAL_RUN_COMMAND is not set, and the bundled example harness exists only on this machine, "
                f"not on {self.name} compute",
                "set FCEVAL_RUN_COMMAND (and FCEVAL_GRADE_COMMAND) to the harness command available on your image",
            )
        if self.settings.grade_command and self.settings.sources.get("grade_command") == "default":
            raise ConfigError(
                f"FCEVAL_GRADE_COMMAND is not set, so the grade step is the bundled example grader, which exists "
                f"only on this machine, not on {self.name} compute",
                "set FCEVAL_GRADE_COMMAND to the grader on your image, or to an empty value for no grade step",
            )

    def staging(self, job: Job, attempt: int, expires_at: datetime | None = None) -> Staging:
        """The attempt's staging area (a ConfigError without a staging bucket); objects put in it carry
        `expires_at`, the attempt's hard TTL, for teardown (see Staging)."""
        return Staging.for_job(require_staging_bucket(self.settings, self.name), job, attempt, expires_at)

    def renew_credentials(self) -> str:
        return self.aws.renew()

    def renewal_hint(self, run_id: str) -> str:
        from fceval_tui.backends.credentials import renewal_hint

        return renewal_hint(self.settings, run_id)

    def new_manifest(self, ctx: JobContext) -> Manifest:
        """This attempt's manifest, with its own inbox (written to staging before the pipeline starts): the
        one already staged when a start is repeated (after a pause or a resume), else a fresh one."""
        staging = self.staging(ctx.job, ctx.attempt)
        staged = Manifest.parse(staging.get(self.aws.s3, MANIFEST))
        return staged or Manifest.for_job(ctx, ctx.artifact_prefix, staging.bucket)

    def delete_staged(self, ctx: JobContext) -> None:
        """Remove the attempt's inbox and staging objects (nothing to do without a staging bucket)."""
        if not self.settings.staging_bucket:
            return
        s3 = self.aws.s3
        staging = self.staging(ctx.job, ctx.attempt)
        manifest = Manifest.parse(staging.get(s3, MANIFEST))
        if manifest is not None:
            delete_inbox(s3, manifest)
        staging.delete_all(s3)

    def artifacts_dir(self, job: Job, local_work: Path) -> str:
        return remote_work_dir(self.settings, job.id) + "/artifacts"

    def pipeline_script(
        self, ctx: JobContext, upload: str, where: str, *, run_as: str | None = None, report: str = ""
    ) -> str:
        """The job's pipeline as it runs on the compute, in the remote work directory (its harness steps
        as the user `run_as`, when given; `report`: see pipeline)."""
        return pipeline.render(
            remote_work_dir(self.settings, ctx.job.id),
            self.artifacts_dir(ctx.job, ctx.work_dir),
            ctx.run_command,
            ctx.grade_command,
            upload=upload,
            banner=f"fceval-tui job {ctx.job.id} attempt {ctx.attempt}{where}",
            run_as=run_as,
            report=report,
        )

    def artifact_prefix(self) -> str:
        prefix = cloud_artifact_prefix(self.settings)
        if prefix is not None:
            return prefix
        if self.settings.artifacts:
            raise ConfigError(
                f"FCEVAL_ARTIFACTS={self.settings.artifacts} is a local directory, which {self.name} compute "
                "cannot write to",
                "set FCEVAL_ARTIFACTS=s3://bucket/prefix",
            )
        raise ConfigError(
            f"the {self.name} backend needs somewhere in S3 for artifacts",
            "set FCEVAL_ARTIFACTS=s3://bucket/prefix, S3_BUCKET_NAME or FC_EVAL_S3_BUCKET",
        )


def require_staging_bucket(settings: Settings, backend: str) -> str:
    if not settings.staging_bucket:
        raise ConfigError(
            f"the {backend} backend needs an S3 staging bucket and FC_EVAL_S3_BUCKET is empty",
            "set FC_EVAL_S3_BUCKET=my-fceval-staging in .env (the compute's role needs read/write on it)",
        )
    return settings.staging_bucket


def cloud_artifact_prefix(settings: Settings) -> str | None:
    """The s3:// prefix cloud compute writes artifacts to; None when FCEVAL_ARTIFACTS is a local directory.

    Unset, it defaults to the results bucket (or the staging bucket) under DEFAULT_ARTIFACTS_PREFIX."""
    artifacts = settings.artifacts or ""
    if artifacts.startswith("s3://"):
        return artifacts
    if artifacts:
        return None
    bucket = settings.results_bucket or settings.staging_bucket
    return f"s3://{bucket}/{DEFAULT_ARTIFACTS_PREFIX}" if bucket else None


def require_settings(settings: Settings, backend: str, names: Sequence[str], fix: str) -> None:
    """Stop with one message naming every setting (by its variable) the backend needs but lacks."""
    missing = [name for name in names if not getattr(settings, setting_for_env(name).attr)]
    if missing:
        raise ConfigError(f"the {backend} backend needs {' and '.join(missing)}", fix)
