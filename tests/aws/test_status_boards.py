"""The status boards (backends/status_board.py, ec2_board.py): what a poll costs with many jobs, and
what throttling does to it, on the moto server and the SSM/Batch doubles."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fceval_tui.backends.base import ResourceGone
from fceval_tui.backends.batch import BatchBackend
from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.domain.states import JobState
from fceval_tui.domain.triage import ErrorClass
from fceval_tui.errors import ThrottlingError
from tests.helpers.aws import client_error, make_context, new_run_id, record_calls, run_with_runner, spec

DEADLINE = 30.0  # a bound on waiting for the doubles, not a speed assertion


def _started(backend, settings, run_id, seqs):
    contexts = [make_context(settings, run_id, seq=n) for n in seqs]
    ids = []
    for ctx in contexts:
        ids.append(backend.provision(ctx))
        backend.start(ctx, ids[-1])
    return contexts, ids


def test_observing_many_ec2_jobs_costs_calls_per_run_not_per_job(aws_settings, ssm_agent):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60", FCEVAL_GRADE_COMMAND="")
    backend = Ec2Backend(settings)
    backend.poll_interval = 3600.0  # one refresh for the first part: observe must share it
    contexts, ids = _started(backend, settings, new_run_id(), (1, 2, 3))
    try:
        for ctx, instance_id in zip(contexts, ids, strict=True):
            backend.observe(ctx, instance_id)  # each job's first look
        calls = record_calls(backend.aws.all())
        phases = [backend.observe(ctx, i).phase for ctx, i in zip(contexts, ids, strict=True)]
        assert phases == [JobState.RUNNING] * 3
        assert calls.calls == []  # all three answered from the board, no Run Command per job
        backend.poll_interval = 0.0
        backend.observe(contexts[0], ids[0])
        described = calls.named("DescribeInstances")
        assert len(described) == 1 and sorted(described[0]["Filters"][0]["Values"]) == sorted(ids)
        assert len(calls.named("ListObjectsV2")) == 1  # the run's inbox: every job's reports at once
        assert calls.named("GetCommandInvocation") == []
        assert len(calls.named("SendCommand")) <= 1  # at most the access round, for all three at once
    finally:
        for ctx, instance_id in zip(contexts, ids, strict=True):
            backend.cleanup(ctx, instance_id)


def test_a_pipeline_killed_mid_run_is_seen_as_ended(aws_settings, ssm_agent):
    """Its trap reports `died` into the inbox: the board sees it without reading the instance. (A pane
    that is only closed leaves the pipeline running on: it then reports its own end as usual.)"""
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60", FCEVAL_GRADE_COMMAND="")
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    (ctx,), (instance_id,) = _started(backend, settings, new_run_id(), (1,))
    try:
        assert backend.observe(ctx, instance_id).phase == JobState.RUNNING
        socket = f"{settings.remote_work_dir}/{ctx.job.id}/tmux.sock"
        pane = ssm_agent.tmux("-S", socket, "display-message", "-p", "-t", f"={ctx.job.id}:", "#{pane_pid}")
        os.killpg(int(pane.stdout), signal.SIGTERM)  # the pipeline and its harness, as `kill -- -PGID` does
        deadline = time.monotonic() + DEADLINE
        with pytest.raises(ResourceGone, match="ended without finishing"):
            while time.monotonic() < deadline:
                backend.observe(ctx, instance_id)
                time.sleep(0.1)
    finally:
        backend.cleanup(ctx, instance_id)


def test_a_pipeline_killed_without_a_word_ends_its_job_as_lost_before_the_timeout(aws_settings, ssm_agent, tmp_path):
    """SIGKILL runs no trap, so nothing is reported (as after a reboot, or with no `aws` CLI on the
    machine): the board's look round (one Run Command per 50 instances) finds the pane dead, and the job
    ends as lost at once instead of running into its timeout."""
    started = tmp_path / "started"
    settings = aws_settings(
        FCEVAL_BACKEND="ec2",
        FCEVAL_RUN_COMMAND=f"touch {started}; while :; do sleep 0.05; done",
        FCEVAL_MAX_ATTEMPTS="1",
        FCEVAL_JOB_TIMEOUT_MINUTES="1",
    )
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    backend._board.looks.every = 0.2
    calls = record_calls([backend.aws.ssm])
    original_start = backend.start

    def start(ctx, resource_id):
        original_start(ctx, resource_id)
        deadline = time.monotonic() + DEADLINE
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        socket = f"{settings.remote_work_dir}/{ctx.job.id}/tmux.sock"
        pane = ssm_agent.tmux("-S", socket, "display-message", "-p", "-t", f"={ctx.job.id}:", "#{pane_pid}")
        os.killpg(int(pane.stdout), signal.SIGKILL)  # the pipeline and its harness: no trap runs

    backend.start = start
    _, final = run_with_runner(settings, backend, [spec("hello")])
    job = final["hello"]
    assert job.state == JobState.FAILED and job.error_class == ErrorClass.LOST_SESSION, (job.state, job.error)
    assert "pane is dead" in job.error, job.error
    # The round that found it: a Run Command for the instance, its answer read with ListCommandInvocations.
    assert calls.named("ListCommandInvocations")


def test_a_pipeline_on_a_machine_without_the_aws_cli_ends_when_it_finishes(
    aws_settings, ssm_agent, tmp_path, monkeypatch
):
    """No `aws` CLI on the instance: the pipeline can neither report nor upload. The look round reads its
    `done` file, so the job ends as soon as the pipeline does (its uploads missing), not at its timeout."""
    bare = tmp_path / "bin"  # what the machine has on PATH: everything this one has but `aws`
    bare.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for tool in Path(folder).glob("*") if os.path.isdir(folder) else ():
            if tool.name != "aws" and not (bare / tool.name).exists() and os.access(tool, os.X_OK):
                (bare / tool.name).symlink_to(tool)
    monkeypatch.setenv("PATH", str(bare))
    settings = aws_settings(FCEVAL_BACKEND="ec2", FCEVAL_MAX_ATTEMPTS="1", FCEVAL_JOB_TIMEOUT_MINUTES="1")
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    backend._board.looks.every = 0.2
    _, final = run_with_runner(settings, backend, [spec("hello")])
    job = final["hello"]
    assert job.state == JobState.FAILED and job.error_class == ErrorClass.UPLOAD, (job.state, job.error)
    assert job.exit_code == 0, job  # the harness itself succeeded: its code came from the look round


def test_look_rounds_whose_answers_cannot_be_read_do_not_pile_up(aws_settings, ssm_agent):
    """While ListCommandInvocations fails (an outage, throttling), an instance gets no new round: the
    commands to read stay one per batch of instances instead of one more per round."""
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60", FCEVAL_GRADE_COMMAND="")
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.0
    backend._board.looks.every = 0.0
    (ctx,), (instance_id,) = _started(backend, settings, new_run_id(), (1,))

    def unreadable(model, **_):
        raise client_error("ThrottlingException", "Rate exceeded", model.name)

    backend.aws.ssm.meta.events.register("before-call.ssm.ListCommandInvocations", unreadable)
    calls = record_calls([backend.aws.ssm])
    try:
        for _ in range(5):
            assert backend.observe(ctx, instance_id).phase == JobState.RUNNING
        assert len(calls.named("SendCommand")) <= 1 and len(calls.named("ListCommandInvocations")) >= 4
    finally:
        backend.aws.ssm.meta.events.unregister("before-call.ssm.ListCommandInvocations", unreadable)
        backend.cleanup(ctx, instance_id)


def test_throttled_status_reads_slow_the_poll_down_and_never_fail_the_job(aws_settings, ssm_agent):
    """Every status call is throttled (after botocore's own retries) for the first seconds of the run:
    the board backs off as a whole, and the job goes on and succeeds on its first attempt."""
    settings = aws_settings(FCEVAL_BACKEND="ec2")
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    storm: list[float] = []
    throttled: list[str] = []

    def throttle(model, **_):
        if storm and time.monotonic() < storm[0]:
            throttled.append(model.name)
            raise client_error("RequestLimitExceeded", "Request limit exceeded.", model.name)

    original_start = backend.start

    def start(ctx, resource_id):
        original_start(ctx, resource_id)
        storm.append(time.monotonic() + 6.0)

    backend.start = start
    for client in backend.aws.all():
        client.meta.events.register("before-call.*.*", throttle)
    _, final = run_with_runner(settings, backend, [spec("hello")])
    job = final["hello"]
    assert throttled, "the storm did not happen"
    assert job.state == JobState.SUCCEEDED and job.attempts == 1, (job.state, job.attempts, job.error)
    # Without the board's backoff, polls every 0.05-0.1 s would have made about a hundred calls in the storm.
    assert len(throttled) <= 20, throttled


def test_a_throttled_board_makes_no_call_until_its_backoff_ends(aws_settings, batch_compute):
    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = BatchBackend(settings)
    backend.poll_interval = 0.05
    run_id = new_run_id()
    contexts = [make_context(settings, run_id, seq=n, backend="batch") for n in (1, 2, 3)]
    ids = [backend.provision(ctx) for ctx in contexts]
    try:
        for ctx, batch_job in zip(contexts, ids, strict=True):
            backend.observe(ctx, batch_job)
        backend._board.max_age = 0.0  # every look would refresh

        def throttle(**_):
            raise client_error("TooManyRequestsException", "Too Many Requests", "DescribeJobs")

        backend.aws.batch.meta.events.register("before-call.batch.DescribeJobs", throttle)
        calls = record_calls([backend.aws.batch])
        for _ in range(4):
            for ctx, batch_job in zip(contexts, ids, strict=True):
                with pytest.raises(ThrottlingError):
                    backend.observe(ctx, batch_job)
        assert len(calls.named("DescribeJobs")) == 1  # the first failure backs the whole board off
        assert backend._board.backing_off
    finally:
        backend.aws.batch.meta.events.unregister("before-call.batch.DescribeJobs", throttle)
        for ctx, batch_job in zip(contexts, ids, strict=True):
            backend.cleanup(ctx, batch_job)


def test_a_refresh_slower_than_the_poll_serves_every_caller_waiting_for_it():
    """At 1,000 instances a refresh can take longer than the board's max age: the callers queued on it
    take its answer instead of each refreshing again in turn (the fleet bench's EC2 run at 1,000 jobs
    made one refresh per job, and never finished)."""
    import threading

    from fceval_tui.backends.status_board import StatusBoard

    # The board's clock moves only while a refresh runs: a caller the loaded machine starts late, after the
    # refresh ended, asked no later than it ended (with the wall clock it began a second, third... refresh).
    now = [0.0]

    class Slow(StatusBoard[int]):
        fetches = 0

        def _fetch(self, keys):
            Slow.fetches += 1
            time.sleep(0.3)  # the callers queue on the lock meanwhile
            now[0] += 0.3
            return dict.fromkeys(keys, 1)

    board = Slow(max_age=0.01, clock=lambda: now[0], sleep=lambda seconds: now.__setitem__(0, now[0] + seconds))
    jobs = [f"job-{n}" for n in range(8)]
    for job in jobs:
        board.get(job)  # every job on the board (a refresh each: each is stale at once)
    Slow.fetches = 0
    now[0] += 0.05  # stale now: the next caller refreshes, and those queued behind it wait for that
    callers = [threading.Thread(target=board.get, args=(job,)) for job in jobs]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(DEADLINE)
    assert Slow.fetches <= 2, Slow.fetches


@pytest.mark.parametrize("name", ["ConnectionClosedError", "ReadTimeoutError", "ResponseStreamingError"])
def test_a_connection_dropped_mid_call_is_transient(name):
    """Seen at 1,000 jobs: the endpoint closed connections under load; the error escaped as an internal
    error that failed jobs. Any HTTP-level failure of a call is worth another try."""
    import botocore.exceptions

    from fceval_tui.backends.aws import classify
    from fceval_tui.errors import TransientError

    error = getattr(botocore.exceptions, name)(endpoint_url="http://127.0.0.1:1/", error="closed")
    assert isinstance(classify(error, "ec2:RunInstances"), TransientError)
