"""End to end on the local backend: real tmux on a private socket, real SQLite, the real CLI."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fceval_tui.locations import tmux_socket_name
from tests.helpers.cli import REPO, run_cli


def _sessions(state_dir):
    proc = subprocess.run(
        ["tmux", "-L", tmux_socket_name(state_dir), "ls", "-F", "#{session_name}"], capture_output=True, text=True
    )
    return proc.stdout.split()


def _status(state_dir, run_id=None):
    res = run_cli("status", *([run_id] if run_id else []), "--json", state_dir=state_dir)
    assert res.code == 0, res.err
    return json.loads(res.out)


def test_example_jobs_end_to_end(state_dir, fast_env):
    res = run_cli("launch", "--jobs", str(REPO / "examples" / "jobs.csv"), "--json", state_dir=state_dir, env=fast_env)
    assert res.code == 1, res.err  # the example file fails one task on purpose
    run_id = json.loads(res.out.splitlines()[0])["run_id"]
    jobs = {j["task_id"]: j for j in _status(state_dir, run_id)}
    assert {j["state"] for t, j in jobs.items() if t != "always-fail-demo"} == {"succeeded"}
    failed = jobs["always-fail-demo"]
    assert (
        failed["state"] == "failed" and failed["exit_code"] == 3 and "agent step exited with code 3" in failed["error"]
    )
    ok = jobs["hello-world"]
    assert ok["exit_code"] == 0 and ok["attempts"] == 1
    required = {
        "id",
        "run_id",
        "agent",
        "task_id",
        "model",
        "backend",
        "state",
        "attempts",
        "exit_code",
        "resource_id",
        "started_at",
        "ended_at",
        "artifacts",
        "cost_usd",
    }
    assert required <= set(ok)
    archive, report = ok["artifacts"]
    assert archive.endswith(f"runs/dummy/hello-world/{run_id}.tar.gz") and os.path.isfile(archive)
    assert "/grades/dummy/hello-world/" in report and report.endswith("_grading_report.json.gz")
    assert any("/failed_runs/biomni/always-fail-demo/" in a for a in failed["artifacts"])
    assert _sessions(state_dir) == []  # sessions cleaned up when jobs end
    assert len(_trace(fast_env)) == 6
    asked = jobs["ask-the-operator"]  # nobody answered its question: it went on with its default
    assert asked["state"] == "succeeded" and asked["attempts"] == 1


def test_human_launch_output_has_a_summary(state_dir, fast_env):
    res = run_cli("launch", "--task-id", "t1", "--task-id", "t2", "--agent", "aide", state_dir=state_dir, env=fast_env)
    assert res.code == 0, res.err
    assert "2 succeeded" in res.out and "artifacts:" in res.out


HOSTILE = ["x; touch {p}", "$(touch {p})", "`touch {p}`", "a' ; touch {p} ; '", 'b" ; touch {p} ; "', "| touch {p}"]


def test_shell_metacharacters_are_data(state_dir, fast_env, tmp_path):
    pwned = tmp_path / "pwned"
    jobs = tmp_path / "hostile.csv"
    with open(jobs, "w", newline="") as fh:
        csv.writer(fh).writerows([f"ag$(touch {pwned})", h.format(p=pwned)] for h in HOSTILE)
    res = run_cli("launch", "--jobs", str(jobs), state_dir=state_dir, env=fast_env)
    assert res.code == 0, res.out + res.err
    assert not pwned.exists()
    assert sorted(t["task_id"] for t in _trace(fast_env)) == sorted(h.format(p=pwned) for h in HOSTILE)


def test_newline_in_a_task_id_is_refused(state_dir, fast_env):
    res = run_cli("launch", "--task-id", "a\nb", "--agent", "x", state_dir=state_dir, env=fast_env)
    assert res.code == 2 and "control character" in res.err and "Traceback" not in res.err


def test_timeout_ends_timed_out_and_kills_the_session(state_dir, fast_env):
    env = dict(fast_env, FCEVAL_RUN_COMMAND="sleep 30 # {task_id}", FCEVAL_GRADE_COMMAND="")
    res = run_cli(
        "launch", "--task-id", "slow", "--agent", "a", "--timeout", "0.02", "--json", state_dir=state_dir, env=env
    )
    assert res.code == 1
    (job,) = _status(state_dir)
    assert job["state"] == "timed_out"
    assert _sessions(state_dir) == []


def test_cancel_a_running_job_from_another_process(state_dir, fast_env):
    env = dict(fast_env, FCEVAL_RUN_COMMAND="sleep 30 # {task_id}", FCEVAL_GRADE_COMMAND="")
    res = run_cli(
        "launch", "--task-id", "a", "--task-id", "b", "--agent", "x", "--detach", "--json", state_dir=state_dir, env=env
    )
    assert res.code == 0, res.err
    run_id = json.loads(res.out)["run_id"]
    _wait(lambda: {j["state"] for j in _status(state_dir, run_id)} == {"running"})
    first = _status(state_dir, run_id)[0]["id"]
    assert run_cli("cancel", first, state_dir=state_dir).code == 0
    assert first not in _sessions(state_dir)
    res = run_cli("cancel", "--run", run_id, state_dir=state_dir)
    assert res.code == 0 and "cancelled 1 job" in res.out
    _wait(lambda: _sessions(state_dir) == [])
    assert {j["state"] for j in _status(state_dir, run_id)} == {"cancelled"}


def test_lost_session_is_retried_and_attempts_recorded(state_dir, fast_env, tmp_path):
    gate = tmp_path / "gate"  # the first attempt cannot finish before its session is killed, however slow the test
    env = dict(fast_env, FCEVAL_RUN_COMMAND=_after(gate, "echo {task_id}"), FCEVAL_GRADE_COMMAND="")
    res = run_cli("launch", "--task-id", "t", "--agent", "a", "--detach", "--json", state_dir=state_dir, env=env)
    run_id = json.loads(res.out)["run_id"]
    _wait(lambda: _status(state_dir, run_id)[0]["state"] == "running")
    job_id = _status(state_dir, run_id)[0]["id"]
    subprocess.run(["tmux", "-L", tmux_socket_name(state_dir), "kill-session", "-t", job_id], check=True)
    gate.touch()
    _wait(lambda: _status(state_dir, run_id)[0]["state"] == "succeeded", timeout=60)
    job = _status(state_dir, run_id)[0]
    assert job["attempts"] == 2


def test_kill_9_then_resume_completes_every_job_exactly_once(state_dir, fast_env):
    env = dict(os.environ, **fast_env)
    # No job can finish while the test waits for three running and kills the runner: else, under load, one
    # finishes and the next is caught half started (its attempt lost), or three are never seen running at once.
    gate = state_dir.parent / "gate"
    env["FCEVAL_RUN_COMMAND"] = _after(gate, env["FCEVAL_RUN_COMMAND"])
    jobs = state_dir.parent / "jobs.csv"
    jobs.write_text("".join(f"aide,task-{i}\n" for i in range(6)))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fceval_tui",
            "--state-dir",
            str(state_dir),
            "launch",
            "--jobs",
            str(jobs),
            "--concurrent",
            "3",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    run_id = json.loads(proc.stdout.readline())["run_id"]
    _wait(lambda: sum(j["state"] == "running" for j in _status(state_dir, run_id)) == 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _status(state_dir, run_id)
    assert any(j["state"] not in ("succeeded", "failed") for j in before)
    gate.touch()
    res = run_cli("resume", run_id, state_dir=state_dir, env=fast_env)
    assert res.code == 0, res.out + res.err
    after = _status(state_dir, run_id)
    assert {j["state"] for j in after} == {"succeeded"}
    assert sorted(t["task_id"] for t in _trace(fast_env)) == [
        f"task-{i}" for i in range(6)
    ]  # every job ran exactly once
    assert all(j["attempts"] == 1 for j in after)


def test_resume_of_a_finished_run_does_nothing(state_dir, fast_env):
    res = run_cli("launch", "--task-id", "t", "--agent", "a", "--json", state_dir=state_dir, env=fast_env)
    run_id = json.loads(res.out)["run_id"]
    res = run_cli("resume", run_id, state_dir=state_dir, env=fast_env)
    assert res.code == 0
    assert len(_trace(fast_env)) == 1


def _trace(fast_env) -> list[dict]:
    """One entry per agent run the example harness made."""
    with open(fast_env["FCEVAL_EXAMPLE_TRACE"]) as fh:
        return [json.loads(line) for line in fh]


def _after(gate, command: str) -> str:
    """`command` once the file `gate` exists: the test decides when a job may finish."""
    return f"until [ -e {gate} ]; do sleep 0.05; done; {command}"


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail("condition not reached in time")


def test_tail_a_job_prints_its_lines_once_and_exits_when_it_ends(state_dir, fast_env):
    env = dict(
        fast_env,
        FCEVAL_RUN_COMMAND="for i in 1 2 3 4 5; do echo line-$i; sleep 0.2; done # {task_id}",
        FCEVAL_GRADE_COMMAND="",
        FCEVAL_KEEP_SESSIONS="true",
    )
    res = run_cli("launch", "--task-id", "t", "--agent", "a", "--detach", "--json", state_dir=state_dir, env=env)
    run_id = json.loads(res.out)["run_id"]
    _wait(lambda: _status(state_dir, run_id)[0]["state"] in ("running", "succeeded"))
    job_id = _status(state_dir, run_id)[0]["id"]
    res = run_cli("tail", job_id, "--from-start", state_dir=state_dir, timeout=60)
    assert res.code == 0, res.err
    lines = [line for line in res.out.splitlines() if line.startswith("line-")]
    assert lines == [f"line-{i}" for i in range(1, 6)]


def test_tail_of_a_missing_target_is_a_usage_error(state_dir):
    res = run_cli("tail", "-L", "fceval-no-such-socket", "-t", "nothing", state_dir=state_dir)
    assert res.code == 2 and "no tmux pane 'nothing'" in res.err and "Traceback" not in res.err
    res = run_cli("attach", "r0-nope", state_dir=state_dir)
    assert res.code == 2 and "no job 'r0-nope'" in res.err


def test_resume_mid_attempt_states_finishes_each_job(state_dir, settings_factory, ledger, fast_env, monkeypatch):
    """A runner killed while provisioning, waiting for capacity, or between creating a session and
    starting the script in it: resume completes the same jobs without an internal error."""
    from fceval_tui.backends.local import IDLE_COMMAND
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState
    from fceval_tui.services.runner import Runner

    monkeypatch.setenv("FCEVAL_EXAMPLE_TRACE", fast_env["FCEVAL_EXAMPLE_TRACE"])  # tmux passes it to the harness
    settings = settings_factory()
    run, jobs = Runner(ledger, settings).create_run([JobSpec("a", f"t{i}") for i in range(3)])
    ledger.transition(jobs[0].id, JobState.STARTING, attempts=1)  # killed before recording the session
    ledger.transition(jobs[1].id, JobState.WAITING_CAPACITY, attempts=1)
    ledger.transition(jobs[2].id, JobState.STARTING, attempts=1, resource_id=jobs[2].id)
    subprocess.run(
        ["tmux", "-L", tmux_socket_name(state_dir), "new-session", "-d", "-s", jobs[2].id, IDLE_COMMAND], check=True
    )  # the session exists, its script never started
    totals = Runner(ledger, settings, backoff_base=0.01).run(run.id)
    assert totals.counts == {"succeeded": 3}
    final = {j.id: j for j in ledger.jobs(run_id=run.id)}
    assert final[jobs[0].id].attempts == 1 and final[jobs[1].id].attempts == 1
    assert final[jobs[2].id].attempts == 2  # the never-started attempt was given up, then retried
    assert sorted(t["task_id"] for t in _trace(fast_env)) == ["t0", "t1", "t2"]


def test_a_retry_joins_the_run_being_driven(state_dir, settings_factory, ledger, fast_env, monkeypatch, tmp_path):
    """A job put back to pending while its run is driven is picked up by that same runner."""
    import threading

    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState
    from fceval_tui.domain.template import CommandTemplate
    from fceval_tui.services.job_actions import retry_jobs
    from fceval_tui.services.runner import Runner

    monkeypatch.setenv("FCEVAL_EXAMPLE_TRACE", fast_env["FCEVAL_EXAMPLE_TRACE"])
    settings = settings_factory(FCEVAL_GRADE_COMMAND="")
    run, (failing, slow) = Runner(ledger, settings).create_run([JobSpec("a", "will-fail"), JobSpec("a", "slow")])
    # "slow" keeps the run (and its runner) busy until the failed job has been retried, however slow the machine.
    gate = tmp_path / "gate"
    slow_down = settings.run_command.text + " && case {task_id} in slow) " + _after(gate, ":") + ";; esac"
    settings = settings.replace(run_command=CommandTemplate("FCEVAL_RUN_COMMAND", slow_down))
    runner = Runner(ledger, settings)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("totals", runner.run(run.id)))
    thread.start()
    try:
        _wait(lambda: ledger.get_job(failing.id).state == JobState.FAILED)
        assert ledger.get_job(slow.id).state == JobState.RUNNING
        retry_jobs(ledger, [failing.id])
        _wait(lambda: ledger.get_job(failing.id).attempts == 2 and ledger.get_job(failing.id).state.is_final)
    finally:
        gate.touch()
        thread.join(60)
    job = ledger.get_job(failing.id)
    assert job.state == JobState.FAILED and job.attempts == 2  # ran again, in the same run
    assert [t["task_id"] for t in _trace(fast_env)].count("will-fail") == 2


def test_a_killed_session_is_noticed_while_other_sessions_live(state_dir, settings_factory, ledger, tmp_path):
    """tmux 3.3a's `display -p -t` on a missing session exits 0 with empty fields when the server
    still has other sessions: the vanished job must still be retried at once, not at its timeout."""
    import threading

    from fceval_tui.backends.local import LocalBackend
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState
    from fceval_tui.services.job_actions import cancel_jobs
    from fceval_tui.services.runner import Runner

    seen = tmp_path / "seen"
    seen.mkdir()
    # The first attempt of each job sleeps; a second attempt finishes at once.
    command = f"if [ -e {seen}/{{task_id}} ]; then echo again; else touch {seen}/{{task_id}}; sleep 60; fi"
    settings = settings_factory(FCEVAL_RUN_COMMAND=command, FCEVAL_GRADE_COMMAND="")
    run, (lost, keeper) = Runner(ledger, settings).create_run([JobSpec("a", "lost"), JobSpec("a", "keeper")])
    runner = Runner(ledger, settings, backoff_base=0.01)
    thread = threading.Thread(target=runner.run, args=(run.id,))
    thread.start()
    try:
        _wait(lambda: {j.state for j in ledger.jobs(run_id=run.id)} == {JobState.RUNNING})
        # RUNNING means the session was started, not that its shell got to the marker yet (under load).
        _wait(lambda: (seen / "lost").exists() and (seen / "keeper").exists())
        LocalBackend(settings).tmux("kill-session", "-t", f"={lost.id}")  # on the backend's private socket
        _wait(lambda: ledger.get_job(lost.id).state == JobState.SUCCEEDED, timeout=20)
        assert ledger.get_job(lost.id).attempts == 2
        assert ledger.get_job(keeper.id).state == JobState.RUNNING  # its session kept the server up
        retry = next(e for e in ledger.events(job_id=lost.id) if e.kind == "retry_scheduled")
        assert "gone" in retry.detail["error"]
    finally:
        cancel_jobs(ledger, settings, [keeper.id])
        thread.join(30)
    assert not thread.is_alive()


def test_observe_matches_the_session_name_exactly(state_dir, settings_factory):
    """A missing session is gone even when another session's name starts with its name."""
    from fceval_tui.backends.base import ResourceGone
    from fceval_tui.backends.local import LocalBackend
    from fceval_tui.domain.models import Job
    from fceval_tui.domain.states import JobState
    from fceval_tui.services.runner import stop_context

    backend = LocalBackend(settings_factory())
    backend.tmux("new-session", "-d", "-s", "r0-0010", "sleep 60")
    missing = Job("r0-001", "r0", 1, "a", "t", "", "", "local", JobState.RUNNING, attempts=1)
    ctx = stop_context(backend.settings, missing)
    ctx.work_dir.mkdir(parents=True)
    with pytest.raises(ResourceGone):
        backend.observe(ctx, "r0-001")


def test_a_pipeline_that_ends_between_observe_reads_is_finished_not_gone(state_dir, settings_factory, monkeypatch):
    """The status files are read before the session: a pipeline that writes `done` and ends its session
    in between is finished, not a lost session (this raced under load and retried a succeeded job)."""
    from fceval_tui.backends.local import LocalBackend
    from fceval_tui.domain import pipeline
    from fceval_tui.domain.models import Job
    from fceval_tui.domain.states import JobState
    from fceval_tui.services.runner import stop_context

    backend = LocalBackend(settings_factory())
    job = Job("r0-001", "r0", 1, "a", "t", "", "", "local", JobState.RUNNING, attempts=1)
    ctx = stop_context(backend.settings, job)
    ctx.work_dir.mkdir(parents=True)
    read_status = LocalBackend._status

    def status_then_finish(work):
        result = read_status(work)
        (work / pipeline.DONE_FILE).write_text("0\n")  # the pipeline finishes, its session is gone
        return result

    monkeypatch.setattr(LocalBackend, "_status", staticmethod(status_then_finish))
    observation = backend.observe(ctx, "r0-001")
    assert observation.done and observation.exit_code == 0


def test_tail_attach_and_send_of_a_job_not_started_or_ended_say_so(state_dir, fast_env, ledger, settings_factory):
    """Not tmux's "no server running": the job's own state, and where an ended job's output is."""
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.services.runner import Runner

    res = run_cli("launch", "--task-id", "t1", "--agent", "aide", "--json", state_dir=state_dir, env=fast_env)
    assert res.code == 0, res.err
    [ended] = _status(state_dir, json.loads(res.out.splitlines()[0])["run_id"])
    _, (waiting,) = Runner(ledger, settings_factory()).create_run([JobSpec("aide", "t2")])
    for command in (["tail"], ["attach"], ["send", "--text", "hi"]):
        res = run_cli(*command, ended["id"], state_dir=state_dir, env=fast_env)
        assert res.code == 2 and "Traceback" not in res.err
        assert f"job {ended['id']} has ended, succeeded (exit 0), and its tmux session with it" in res.err
        assert f"its run archive is {ended['artifacts'][0]}" in res.err and "--keep-sessions" in res.err
        res = run_cli(*command, waiting.id, state_dir=state_dir, env=fast_env)
        assert res.code == 2 and f"job {waiting.id} has not started yet (pending)" in res.err


def test_a_job_waiting_for_capacity_starts_once_another_job_of_the_run_ends(
    state_dir, settings_factory, ledger, monkeypatch
):
    """One slot, as on a warm pool: the second job waits for capacity and starts soon after the first has
    ended, not at the end of a backoff grown while the first ran (up to a minute: under load a pool test
    timed out waiting for it). A slot can be freed by another process (a cancel), so this is a bounded poll."""
    import threading

    from fceval_tui.backends.ec2_pool import Ec2PoolBackend
    from fceval_tui.backends.local import LocalBackend
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState
    from fceval_tui.errors import CapacityError
    from fceval_tui.services import runner as runner_module
    from fceval_tui.services.runner import Runner

    class OneSlot(LocalBackend):
        first_state = JobState.PROVISIONING  # as a cloud backend's, from which a job may wait for capacity
        capacity_wait_cap = Ec2PoolBackend.capacity_wait_cap
        holder: str | None = None

        def provision(self, ctx):
            with lock:
                if self.holder not in (None, ctx.job.id):
                    raise CapacityError("the one slot is busy")
                self.holder = ctx.job.id
            return super().provision(ctx)

        def cleanup(self, ctx, resource_id):
            super().cleanup(ctx, resource_id)
            with lock:
                if self.holder == ctx.job.id:
                    self.holder = None

    lock = threading.Lock()
    monkeypatch.setattr(runner_module, "backoff", lambda attempt, base=1.0: 600.0)  # a backoff grown long
    settings = settings_factory(FCEVAL_CONCURRENT="2", FCEVAL_RUN_COMMAND="echo {task_id}", FCEVAL_GRADE_COMMAND="")
    runner = Runner(ledger, settings, OneSlot(settings))
    run, jobs = runner.create_run([JobSpec("a", "first"), JobSpec("a", "second")])
    thread = threading.Thread(target=runner.run, args=(run.id,))
    thread.start()
    thread.join(60)  # a bound on waiting: the run needs seconds, the backoff ten minutes
    finished = not thread.is_alive()
    runner.stop()
    thread.join(60)
    assert finished
    assert {j.state for j in ledger.jobs(run_id=run.id)} == {JobState.SUCCEEDED}
