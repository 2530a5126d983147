"""Uploads go to the attempt's inbox (write-only, unguessable) and the console delivers them to the layout."""

from __future__ import annotations

import re

from fceval_tui.backends.aws_constants import INBOX_PREFIX
from fceval_tui.backends.manifest import INBOX_REPORT, INBOX_RUN, UPLOAD_ENV, Manifest, delete_inbox, verify_uploads
from tests.helpers.aws import RESULTS, STAGING, make_context, new_run_id, s3_keys


def test_each_attempt_gets_its_own_unguessable_inbox(aws_settings):
    ctx = make_context(aws_settings(), new_run_id())
    first = Manifest.for_job(ctx, ctx.artifact_prefix, STAGING)
    second = Manifest.for_job(ctx, ctx.artifact_prefix, STAGING)
    pattern = rf"s3://{STAGING}/{INBOX_PREFIX}{ctx.job.run_id}/{ctx.job.id}-a1-[0-9a-f]{{32}}"
    assert re.fullmatch(pattern, first.inbox) and first.inbox != second.inbox
    assert first.environment() == {UPLOAD_ENV: first.inbox}
    assert first.inbox not in first.upload_shell()  # the pipeline reads it from its environment


def _uploaded(aws_settings, aws_env, grade_command: str):
    """A manifest whose inbox holds both archives, as a pipeline leaves it; its S3 client and inbox key."""
    ctx = make_context(aws_settings(FCEVAL_GRADE_COMMAND=grade_command), new_run_id())
    manifest = Manifest.for_job(ctx, ctx.artifact_prefix, STAGING)
    s3 = aws_env.client("s3")
    inbox_key = manifest.inbox.split("/", 3)[3]
    s3.put_object(Bucket=STAGING, Key=f"{inbox_key}/{INBOX_RUN}", Body=b"run")
    s3.put_object(Bucket=STAGING, Key=f"{inbox_key}/{INBOX_REPORT}", Body=b"report")
    return manifest, s3, inbox_key


def test_collect_delivers_the_inbox_to_the_verdicts_keys(aws_settings, aws_env):
    manifest, s3, inbox_key = _uploaded(aws_settings, aws_env, grade_command="")
    outcome = verify_uploads(s3, manifest, 3)  # a failed run: the failed_* keys
    assert not outcome.succeeded and outcome.error == "the pipeline exited with code 3"
    assert set(outcome.artifacts) == {manifest.failed_run, manifest.failed_report}
    run_key = manifest.failed_run.split("/", 3)[3]
    assert s3.get_object(Bucket=RESULTS, Key=run_key)["Body"].read() == b"run"
    assert verify_uploads(s3, manifest, 3) == outcome  # again after a resume: same result
    delete_inbox(s3, manifest)
    assert s3_keys(aws_env, STAGING, inbox_key) == []
    assert verify_uploads(s3, manifest, 3) == outcome  # the inbox gone: the layout's own keys are read


def test_a_collect_is_one_listing_and_a_copy_per_archive(aws_settings, aws_env):
    """A collect under throttling is retried whole: each call it makes is a call that can be refused."""
    from collections import Counter

    manifest, s3, _ = _uploaded(aws_settings, aws_env, grade_command="grade")
    calls: Counter = Counter()
    s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
    outcome = verify_uploads(s3, manifest, 0)
    assert outcome.succeeded and set(outcome.artifacts) == {manifest.succeeded_run, manifest.succeeded_report}
    assert calls == {"ListObjectsV2": 1, "CopyObject": 2}
    report_key = manifest.succeeded_report.split("/", 3)[3]
    assert s3.get_object(Bucket=RESULTS, Key=report_key)["Body"].read() == b"report"


def test_a_failed_upload_says_its_error_once_on_a_line_the_console_finds_in_a_log(tmp_path):
    """The upload lines' stderr (what CloudWatch Logs keeps of an ECS or Batch job) carries the first failed
    upload's error after `pipeline.UPLOAD_FAILED`, as `upload.err` does; the ECS bootstrap's relay repeats it."""
    import subprocess

    from fceval_tui.domain import pipeline

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(
        '#!/bin/sh\nprintf \'upload failed: %s to %s\\nAn error occurred (AccessDenied)\\n\' "$4" "$5" >&2\nexit 1\n'
    )
    (bin_dir / "aws").chmod(0o755)
    (tmp_path / "out").mkdir()
    for name in (pipeline.RUN_ARCHIVE, pipeline.REPORT_ARCHIVE):
        (tmp_path / name).write_bytes(b"x")
    manifest = Manifest("a", "b", "c", "d", True, "s3://bucket/inbox/token")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", UPLOAD_ENV: manifest.inbox}
    script = manifest.upload_shell() + "\n" + pipeline.relay_upload_error()
    done = subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    lines = done.stderr.splitlines()
    first = f"upload failed: out/run.tar.gz to {manifest.inbox}/{INBOX_RUN} An error occurred (AccessDenied)"
    assert (tmp_path / pipeline.UPLOAD_ERROR).read_text().strip() == first
    assert [line for line in lines if line.startswith(pipeline.UPLOAD_FAILED)] == [
        pipeline.UPLOAD_FAILED + first,
        pipeline.UPLOAD_FAILED + first.replace("run.tar.gz", "grading_report.json.gz"),
        pipeline.UPLOAD_FAILED + first,  # the relay, from upload.err
    ]
    assert pipeline.upload_error_in(lines) == first
    assert pipeline.upload_error_in(["agent output", "fceval-tui: pipeline finished with exit code 0"]) == ""
