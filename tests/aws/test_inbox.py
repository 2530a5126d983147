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


def test_collect_delivers_the_inbox_to_the_verdicts_keys(aws_settings, aws_env):
    ctx = make_context(aws_settings(FCEVAL_GRADE_COMMAND=""), new_run_id())
    manifest = Manifest.for_job(ctx, ctx.artifact_prefix, STAGING)
    s3 = aws_env.client("s3")
    inbox_key = manifest.inbox.split("/", 3)[3]
    s3.put_object(Bucket=STAGING, Key=f"{inbox_key}/{INBOX_RUN}", Body=b"run")
    s3.put_object(Bucket=STAGING, Key=f"{inbox_key}/{INBOX_REPORT}", Body=b"report")
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

    ctx = make_context(aws_settings(FCEVAL_GRADE_COMMAND="grade"), new_run_id())
    manifest = Manifest.for_job(ctx, ctx.artifact_prefix, STAGING)
    s3 = aws_env.client("s3")
    inbox_key = manifest.inbox.split("/", 3)[3]
    s3.put_object(Bucket=STAGING, Key=f"{inbox_key}/{INBOX_RUN}", Body=b"run")
    s3.put_object(Bucket=STAGING, Key=f"{inbox_key}/{INBOX_REPORT}", Body=b"report")
    calls: Counter = Counter()
    s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
    outcome = verify_uploads(s3, manifest, 0)
    assert outcome.succeeded and set(outcome.artifacts) == {manifest.succeeded_run, manifest.succeeded_report}
    assert calls == {"ListObjectsV2": 1, "CopyObject": 2}
    report_key = manifest.succeeded_report.split("/", 3)[3]
    assert s3.get_object(Bucket=RESULTS, Key=report_key)["Body"].read() == b"report"
