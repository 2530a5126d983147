"""What the three AWS backends share about running the pipeline on remote compute.

- where the job works remotely, and the run/grade commands re-pointed there;
- the staging area in S3 (pipeline script and a manifest of the expected artifact keys);
- the upload step (`aws s3 cp` to the artifact layout) and its verification in `collect`.

The manifest is written to S3 before the pipeline starts, so a console that was killed and
resumed verifies exactly the keys the pipeline was told to upload (the grading report's name
carries a timestamp that only the starting console knew).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fceval_tui.backends.aws import AWS_ERRORS, classify, error_code
from fceval_tui.backends.base import Backend, JobContext, Observation, Outcome, ResourceGone
from fceval_tui.config import Settings, setting_for_env
from fceval_tui.domain import pipeline
from fceval_tui.domain.artifacts import join_prefix, keys_for, split_s3
from fceval_tui.domain.models import Job, utcnow
from fceval_tui.domain.states import JobState
from fceval_tui.errors import ConfigError

STAGING_ROOT = "fceval-tui/staging"
MANIFEST = "manifest.json"


def remote_work_dir(settings: Settings, job_id: str) -> str:
    return settings.remote_work_dir.rstrip("/") + "/" + job_id


class RemoteBackend(Backend):
    """A backend whose pipeline runs on remote compute, under FCEVAL_REMOTE_WORK_DIR/<job id>."""

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

    def artifacts_dir(self, job: Job, local_work: Path) -> str:
        return remote_work_dir(self.settings, job.id) + "/artifacts"

    def pipeline_script(self, ctx: JobContext, upload: str, where: str) -> str:
        """The job's pipeline as it runs on the compute, in the remote work directory."""
        return pipeline.render(
            remote_work_dir(self.settings, ctx.job.id),
            self.artifacts_dir(ctx.job, ctx.work_dir),
            ctx.run_command,
            ctx.grade_command,
            upload=upload,
            banner=f"fceval-tui job {ctx.job.id} attempt {ctx.attempt}{where}",
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

    Unset, it defaults to the results bucket (or the staging bucket) under fceval-tui/artifacts."""
    artifacts = settings.artifacts or ""
    if artifacts.startswith("s3://"):
        return artifacts
    if artifacts:
        return None
    bucket = settings.results_bucket or settings.staging_bucket
    return f"s3://{bucket}/fceval-tui/artifacts" if bucket else None


@dataclass(frozen=True)
class Staging:
    """Per-attempt staging prefix in the staging bucket."""

    bucket: str
    prefix: str

    @classmethod
    def for_job(cls, bucket: str, job: Job, attempt: int) -> Staging:
        return cls(bucket, f"{STAGING_ROOT}/{job.run_id}/{job.id}/a{attempt}")

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def url(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def put(self, s3, name: str, body: str) -> None:
        try:
            s3.put_object(Bucket=self.bucket, Key=self.key(name), Body=body.encode())
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


# -- the pipeline in tmux on the remote side (EC2 through SSM, ECS through ECS Exec) -----------

EXIT_NO_TMUX = 4
EXIT_NO_SCRIPT = 3


def launch_script(work: str, session: str, fetch: Callable[[str, str], str]) -> str:
    """Shell that fetches the staged pipeline and its values and starts it in tmux, unless it already
    runs there.

    `fetch(name, path)` gives trusted shell (built with shlex.quote) copying the staged file `name`
    to the quoted `path`. Exit codes: 4 tmux missing, 3 a staged file could not be fetched."""
    q = shlex.quote
    target = f"={session}"
    script = f"{work}/{pipeline.SCRIPT_NAME}"
    env_file = f"{work}/{pipeline.ENV_FILE}"
    conf = f"{work}/tmux.conf"
    return "\n".join(
        [
            # On EC2, user data may still be installing tmux when the SSM agent comes online.
            "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1; fi",
            f"mkdir -p {q(work)} || exit 2",
            f"command -v tmux >/dev/null 2>&1 || {{ echo 'tmux is not installed' >&2; exit {EXIT_NO_TMUX}; }}",
            f"if tmux has-session -t {q(target)} 2>/dev/null; then exit 0; fi",
            fetch(pipeline.SCRIPT_NAME, q(script)) + f" || exit {EXIT_NO_SCRIPT}",
            f"(umask 077 && {fetch(pipeline.ENV_FILE, q(env_file))}) || exit {EXIT_NO_SCRIPT}",
            # Read when the (per-machine) tmux server starts: long history for the mirror, and
            # the pane stays after the pipeline exits so its last screen can still be seen.
            f"printf 'set -g history-limit {pipeline.HISTORY_LIMIT}\\nset -g remain-on-exit on\\n' > {q(conf)}",
            shlex.join(
                [
                    "tmux",
                    "-f",
                    conf,
                    "new-session",
                    "-d",
                    "-s",
                    session,
                    "-x",
                    "200",
                    "-y",
                    "50",
                    "-c",
                    work,
                    "sleep 2147483647",
                ]
            ),
            shlex.join(
                ["tmux", "pipe-pane", "-o", "-t", target + ":", "cat >> " + q(f"{work}/{pipeline.CONSOLE_LOG}")]
            ),
            shlex.join(["tmux", "respawn-pane", "-k", "-t", target + ":", "sh " + q(script)]),
        ]
    )


def status_script(work: str, session: str) -> str:
    """The pane state first, then the status files: a dead pane without `done` means the pipeline died."""
    q = shlex.quote
    pane = f"tmux display-message -p -t {q('=' + session + ':')} '#{{pane_dead}}' 2>/dev/null || echo gone"
    return f'printf "pane=%s\\n" "$({pane})"\n{pipeline.status_command(work)}'


def pane_state(stdout: str) -> str:
    return next((line[5:] for line in stdout.splitlines() if line.startswith("pane=")), "")


def observation(stdout: str, resource_id: str, check_gone: Callable[[str], None]) -> Observation:
    """Read the output of `status_script`. A dead pane without `done` means the pipeline died:
    `check_gone` raises ResourceGone first when the compute itself was reaped."""
    status = pipeline.parse_status_output(stdout)
    if status.done:
        return Observation(JobState.UPLOADING, done=True, exit_code=status.exit_code)
    pane = pane_state(stdout)
    if pane in ("1", "gone"):
        check_gone(resource_id)
        raise ResourceGone(f"the pipeline on {resource_id} ended without finishing (tmux pane: {pane})")
    return Observation(status.state, exit_code=status.run_exit)


def require_settings(settings: Settings, backend: str, names: Sequence[str], fix: str) -> None:
    """Stop with one message naming every setting (by its variable) the backend needs but lacks."""
    missing = [name for name in names if not getattr(settings, setting_for_env(name).attr)]
    if missing:
        raise ConfigError(f"the {backend} backend needs {' and '.join(missing)}", fix)
