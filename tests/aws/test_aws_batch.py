"""AWS Batch backend against moto; the Batch compute double runs the submitted command locally."""

from __future__ import annotations

import dataclasses
import time

import pytest

from fceval_tui.backends.batch import BatchBackend, job_name
from fceval_tui.domain.states import JobState
from fceval_tui.errors import PermanentError, TransientError
from tests.helpers.aws import (
    BATCH_QUEUE,
    STAGING,
    check_hello_and_failure,
    client_error,
    declared,
    make_context,
    new_run_id,
    record_calls,
    run_with_runner,
    s3_keys,
    spec,
)


def fast(backend: BatchBackend) -> BatchBackend:
    backend.poll_interval = 0.05
    backend._board.max_age = 0.0
    return backend


def live_jobs(world, run_id: str) -> list[dict]:
    batch = world.client("batch")
    ids = [
        s["jobId"]
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
        for s in batch.list_jobs(jobQueue=BATCH_QUEUE, jobStatus=status)["jobSummaryList"]
    ]
    jobs = batch.describe_jobs(jobs=ids)["jobs"] if ids else []
    return [j for j in jobs if j.get("tags", {}).get("fceval:run-id") == run_id]


def wait_all_ended(world, run_id: str) -> list[dict]:
    """TerminateJob is asynchronous (the job leaves RUNNING when its container stops): wait for it."""
    deadline = time.monotonic() + 15
    while (left := live_jobs(world, run_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def wait_done(backend, ctx, job_id):
    for _ in range(600):
        observation = backend.observe(ctx, job_id)
        if observation.done:
            return observation
        time.sleep(0.05)
    raise AssertionError("the Batch job did not finish")


def test_runner_drives_batch_jobs_end_to_end(aws_settings, batch_compute, aws_env):
    settings = aws_settings(
        FCEVAL_BACKEND="batch", FCEVAL_TTL_MINUTES="30", FCEVAL_BATCH_VCPU="4", FCEVAL_BATCH_GPUS="1"
    )
    backend = fast(BatchBackend(settings))
    calls = record_calls(backend.aws.all())
    run, final = run_with_runner(settings, backend, [spec("hello"), spec("always-fail", agent="biomni")])
    ok, bad = check_hello_and_failure(aws_env, run, final)
    submit = calls.named("SubmitJob")[0]
    assert 29 * 60 <= submit["timeout"]["attemptDurationSeconds"] <= 30 * 60  # the TTL, enforced by Batch
    assert submit["tags"]["ManagedBy"] == "fceval-tui" and submit["propagateTags"] is True
    assert {"type": "VCPU", "value": "4"} in submit["containerOverrides"]["resourceRequirements"]
    assert {"type": "GPU", "value": "1"} in submit["containerOverrides"]["resourceRequirements"]
    assert submit["containerOverrides"]["command"][:2] == ["sh", "-c"]
    assert live_jobs(aws_env, run.id) == []
    assert s3_keys(aws_env, STAGING, f"fceval-tui/staging/{run.id}/") == []
    called, undeclared = declared(BatchBackend, calls)
    assert not undeclared, undeclared
    assert {"batch:SubmitJob", "batch:DescribeJobs"} <= called


def test_logs_come_from_cloudwatch_and_there_is_no_tmux(aws_settings, batch_compute):
    settings = aws_settings()
    backend = fast(BatchBackend(settings))
    ctx = make_context(settings, new_run_id(), backend="batch")
    batch_job = backend.provision(ctx)
    try:
        assert wait_done(backend, ctx, batch_job).exit_code == 0
        job = dataclasses.replace(ctx.job, resource_id=batch_job)
        lines = backend.log_lines(job)
        assert "fceval-tui: pipeline finished with exit code 0" in lines
        assert backend.tmux_target(job) is None
    finally:
        backend.cleanup(ctx, batch_job)


def test_missing_expected_upload_fails_the_job(aws_settings, batch_compute):
    settings = aws_settings(FCEVAL_GRADE_COMMAND="true")  # exit 0, but no grading report
    backend = fast(BatchBackend(settings))
    ctx = make_context(settings, new_run_id(), backend="batch")
    batch_job = backend.provision(ctx)
    outcome = backend.collect(ctx, batch_job, wait_done(backend, ctx, batch_job))
    backend.cleanup(ctx, batch_job)
    assert not outcome.succeeded and outcome.exit_code == 0
    assert outcome.error.startswith("expected upload s3://fceval-results/evals/grades/aide/hello/")


def test_cancel_terminates_the_job(aws_settings, batch_compute, aws_env):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = fast(BatchBackend(settings))
    ctx = make_context(settings, new_run_id(), backend="batch")
    batch_job = backend.provision(ctx)
    assert backend.observe(ctx, batch_job).phase == JobState.RUNNING
    assert [j["jobId"] for j in live_jobs(aws_env, ctx.job.run_id)] == [batch_job]
    backend.cancel(ctx, batch_job)
    observation = wait_done(backend, ctx, batch_job)
    assert "cancelled by fceval-tui" in observation.detail
    outcome = backend.collect(ctx, batch_job, observation)
    assert not outcome.succeeded
    backend.cleanup(ctx, batch_job)
    assert live_jobs(aws_env, ctx.job.run_id) == []


def test_retried_submit_after_a_lost_reply_submits_once(aws_settings, batch_compute, aws_env):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = fast(BatchBackend(settings))
    lost = []

    def lose_reply(**_):
        if not lost:
            lost.append(1)
            raise client_error("ThrottlingException", "Rate exceeded", "SubmitJob")

    backend.aws.batch.meta.events.register("after-call.batch.SubmitJob", lose_reply)
    ctx = make_context(settings, new_run_id(), backend="batch")
    with pytest.raises(TransientError):
        backend.provision(ctx)
    first = backend.provision(ctx)
    assert backend.provision(ctx) == first
    named = aws_env.client("batch").list_jobs(
        jobQueue=BATCH_QUEUE, filters=[{"name": "JOB_NAME", "values": [job_name(ctx.job.id, 1)]}]
    )
    assert [s["jobId"] for s in named["jobSummaryList"]] == [first]
    backend.cleanup(ctx, first)
    assert wait_all_ended(aws_env, ctx.job.run_id) == []


def test_observing_many_jobs_costs_one_describe_per_refresh(aws_settings, batch_compute):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = BatchBackend(settings)
    backend._board.max_age = 3600.0  # one refresh for this test: observe must share it
    run_id = new_run_id()
    contexts = [make_context(settings, run_id, seq=n, backend="batch") for n in (1, 2, 3)]
    ids = [backend.provision(ctx) for ctx in contexts]
    for batch_job in ids:
        backend._board.get(batch_job)  # what the first observe of each job does
    calls = record_calls([backend.aws.batch])
    phases = [backend.observe(ctx, batch_job).phase for ctx, batch_job in zip(contexts, ids, strict=True)]
    assert phases == [JobState.RUNNING] * 3
    assert calls.calls == []  # all three answered from the last batched describe
    backend._board.max_age = 0.0
    backend.observe(contexts[0], ids[0])
    assert [(op, len(params["jobs"])) for _, op, params in calls.calls] == [("DescribeJobs", 3)]
    listed_calls = record_calls([backend.aws.batch])
    listed = [r for r in backend.list_resources() if r.run_id == run_id]
    assert sorted(r.id for r in listed) == sorted(ids)
    assert [op for _, op, _ in listed_calls.calls].count("DescribeJobs") == 1
    for ctx, batch_job in zip(contexts, ids, strict=True):
        backend.cleanup(ctx, batch_job)


def test_overrides_batch_would_fail_after_accepting_them_are_refused_before_submitting(
    aws_settings, batch_compute, aws_env, monkeypatch
):
    from fceval_tui.backends import batch as batch_module

    long_run = "echo " + "x" * 8_200  # a harness call that makes the overrides too long
    settings = aws_settings(FCEVAL_RUN_COMMAND=long_run)
    ctx = make_context(settings, new_run_id(), backend="batch")
    with pytest.raises(PermanentError, match="container overrides for .* are [0-9,]+ bytes") as caught:
        BatchBackend(settings).provision(ctx)
    assert "FCEVAL_RUN_COMMAND" in caught.value.fix
    assert live_jobs(aws_env, ctx.job.run_id) == []  # nothing was submitted
    # What happens without the check: SubmitJob accepts the job, which then fails when Batch starts it.
    monkeypatch.setattr(batch_module, "MAX_OVERRIDES", 10**9)
    backend = fast(BatchBackend(settings))
    batch_job = backend.provision(ctx)
    observation = wait_done(backend, ctx, batch_job)
    assert observation.exit_code is None and "Container Overrides length" in observation.detail
