"""The CLI contract: exit codes, one-line errors, dry runs, fast --help."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.cli import REPO, run_cli


def test_help_imports_neither_boto3_nor_textual():
    code = (
        "import sys\nfrom fceval_tui.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('boto3', 'botocore', 'textual', 'libtmux') if m in sys.modules]\n"
        "print('LOADED', bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "LOADED []" in out
    assert "launch" in out and "teardown" in out


def test_dry_run_prints_exactly_what_would_run_and_writes_nothing(state_dir, fast_env):
    res = run_cli(
        "launch",
        "--task-id",
        "x; rm -rf /",
        "--agent",
        "aide",
        "--dry-run",
        "--json",
        state_dir=state_dir,
        env=fast_env,
    )
    assert res.code == 0, res.err
    plan = json.loads(res.out)
    (job,) = plan["jobs"]
    assert "'x; rm -rf /'" in job["run_command"]
    assert job["tmux"][:2] == ["tmux", "-L"]
    assert job["artifacts"][0].endswith(f"runs/aide/x__rm_-rf_/{plan['run_id']}.tar.gz")
    assert not (state_dir / "work").exists()
    assert list(state_dir.iterdir()) == []  # no ledger, no logs folder: a dry run writes nothing
    assert json.loads(run_cli("status", "--json", state_dir=state_dir).out) == []
    human = run_cli("launch", "--task-id", "t1", "--agent", "aide", "--dry-run", state_dir=state_dir, env=fast_env)
    assert "dry run" in human.out and "run:" in human.out and "harness.py agent" in human.out


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["launch", "--jobs", "missing.csv"], {}, "missing.csv: job file not found"),
        (["launch", "--task-id", "t"], {}, "--task-id needs an agent"),
        (["launch", "--jobs", "EMPTY"], {}, "no jobs found"),
        (["launch", "--jobs", "ONECOL"], {}, "ONECOL:2: expected 'agent,task_id[,model]'"),
        (["launch", "--jobs", "LATIN1"], {}, "not valid UTF-8"),
        (
            ["launch", "--task-id", "t", "--agent", "a", "--concurrent", "-3"],
            {},
            "FCEVAL_CONCURRENT='-3' is out of range",
        ),
        (["launch", "--task-id", "t", "--agent", "a", "--backend", "k8s"], {}, "FCEVAL_BACKEND='k8s'"),
        (["launch", "--task-id", "t", "--agent", "a"], {"FC_EVAL_S3_BUCKET": "Bad_Bucket"}, "FC_EVAL_S3_BUCKET"),
        (
            ["launch", "--task-id", "t", "--agent", "a"],
            {"FCEVAL_RUN_COMMAND": "go {oops}"},
            "unknown placeholder {oops}",
        ),
        (["status", "nope"], {}, "no run 'nope'"),
        (["cancel", "nope"], {}, "no job 'nope'"),
        (["resume", "nope"], {}, "no run 'nope'"),
        (["launch"], {}, "one of the arguments --jobs --task-id is required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(state_dir, tmp_path, args, env, needle):
    (tmp_path / "EMPTY").write_text("# nothing\n")
    (tmp_path / "ONECOL").write_text("agent,task_id\naide\n")
    (tmp_path / "LATIN1").write_bytes("aide,caf\xe9\n".encode("latin-1"))
    args = [str(tmp_path / a) if a in ("EMPTY", "ONECOL", "LATIN1") else a for a in args]
    res = run_cli(*args, state_dir=state_dir, env=env)
    assert res.code == 2, (res.out, res.err)
    assert needle in res.err
    assert "Traceback" not in res.err
    assert len(res.err.strip().splitlines()) == 1


def test_env_file_that_does_not_parse_exits_2(state_dir, tmp_path):
    bad = tmp_path / "bad.env"
    bad.write_text("FCEVAL_CONCURRENT=2\n'unterminated\n")
    res = run_cli("--env-file", str(bad), "status", state_dir=state_dir)
    assert res.code == 2 and "bad.env:2: cannot parse" in res.err
    res = run_cli("--env-file", str(tmp_path / "absent.env"), "status", state_dir=state_dir)
    assert res.code == 2 and "file not found" in res.err


def test_dotenv_in_cwd_is_read(state_dir, tmp_path):
    (tmp_path / "cwd" / ".env").write_text("FCEVAL_CONCURRENT=0\n")
    res = run_cli("launch", "--task-id", "t", "--agent", "a", "--dry-run", state_dir=state_dir)
    assert res.code == 2 and "FCEVAL_CONCURRENT='0'" in res.err


def test_state_dir_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        target = locked / "state"
        res = run_cli("status", state_dir=target)
        if os.geteuid() == 0:
            # root ignores permission bits; a path under a regular file cannot be created by anyone.
            res = run_cli("status", state_dir=REPO / "README.md" / "state")
        assert res.code == 2 and "is not writable" in res.err and "--state-dir" in res.err
    finally:
        locked.chmod(0o700)


def test_tmux_missing_from_path(state_dir, tmp_path, fast_env):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(sys.executable, bindir / "python3")
    res = run_cli("launch", "--task-id", "t", "--agent", "a", state_dir=state_dir, env=dict(fast_env, PATH=str(bindir)))
    assert res.code == 2
    assert "tmux is not installed or not on PATH" in res.err
    assert json.loads(run_cli("status", "--json", state_dir=state_dir).out) == []  # nothing half-created


def test_status_without_runs_is_friendly(state_dir):
    res = run_cli("status", state_dir=state_dir)
    assert res.code == 0 and "no runs yet" in res.out


@pytest.mark.parametrize(
    "args",
    [("tail", "{job}"), ("attach", "{job}"), ("tail", "-L", "somewhere", "-t", "x"), ("cancel", "{job}")],
)
def test_subcommands_without_tmux_give_one_line_and_exit_2(ledger, state_dir, tmp_path, args):
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState

    _, jobs = ledger.create_run("local", 1, [JobSpec("a", "t")])
    ledger.transition(jobs[0].id, JobState.PROVISIONING, resource_id=jobs[0].id)
    empty = tmp_path / "no-tmux-here"
    empty.mkdir()
    res = run_cli(*(a.format(job=jobs[0].id) for a in args), state_dir=state_dir, env={"PATH": str(empty)})
    assert res.code == 2, res
    assert "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1
    assert "tmux" in res.err and "fix:" in res.err


def test_state_dir_ledger_and_logs_are_private_to_the_user(tmp_path):
    state = tmp_path / "fresh-state"
    assert run_cli("status", state_dir=state).code == 0
    modes = {
        path.relative_to(state).as_posix(): path.stat().st_mode & 0o777
        for path in [state, *state.rglob("*")]
        if path.name != ".write-test"
    }
    assert modes["."] == 0o700 and modes["logs"] == 0o700
    assert modes["ledger.sqlite3"] == 0o600 and modes["logs/fceval-tui.log"] == 0o600
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes


def test_events_and_resources_have_headless_twins(ledger, state_dir):
    import subprocess as sp

    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState
    from fceval_tui.locations import tmux_socket_name

    run, jobs = ledger.create_run("local", 1, [JobSpec("a", "t[/x]")])
    ledger.transition(jobs[0].id, JobState.PROVISIONING, resource_id=jobs[0].id)
    sp.run(["tmux", "-L", tmux_socket_name(state_dir), "new-session", "-d", "-s", jobs[0].id, "sleep 60"], check=True)
    events = json.loads(run_cli("events", "--run", run.id, "--json", state_dir=state_dir).out)
    assert [(e["kind"], e["to_state"]) for e in events][-1] == ("state", "provisioning")
    assert all(e["run_id"] == run.id for e in events)
    assert "pending → provisioning" in run_cli("events", "--job", jobs[0].id, state_dir=state_dir).out
    listing = json.loads(run_cli("resources", "--json", state_dir=state_dir).out)
    (session,) = [r for r in listing["resources"] if r["id"] == jobs[0].id]
    assert session["kind"] == "tmux-session" and "no live runner" in session["orphan"]
    assert run_cli("events", "--run", "rnope", state_dir=state_dir).code == 2


@pytest.mark.parametrize(
    ("backend", "key", "value"),
    [("ec2", "instance_type", "m5.large"), ("ecs", "cpu_units", 2048), ("batch", "job_queue", "q1")],
)
def test_a_cloud_dry_run_says_what_it_would_create_and_writes_nothing(tmp_path, backend, key, value):
    env = {
        "FC_EVAL_S3_BUCKET": "my-staging",
        "FCEVAL_RUN_COMMAND": "harness {task_id}",
        "FCEVAL_GRADE_COMMAND": "",
        "EC2_INSTANCE_TYPE": "m5.large",
        "FCEVAL_BATCH_QUEUE": "q1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: a dry run makes no AWS call
    }
    state = tmp_path / "state"
    args = ("launch", "--backend", backend, "--task-id", "t", "--agent", "a", "--dry-run", "--json")
    res = run_cli(*args, state_dir=state, env=env)
    assert res.code == 0, res.err
    plan = json.loads(res.out)
    assert plan["would_create"][key] == value and plan["hourly_cost_usd_per_job"] > 0
    assert not state.exists()
