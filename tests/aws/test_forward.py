"""`fceval-tui forward` and the console's forwards: an SSM port-forwarding session through the double (the
fake `aws` with session-manager-plugin in tests/helpers/ssm_double.py), to a tiny echo server the test runs
on 127.0.0.1 "on the instance"."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from botocore.stub import Stubber

from fceval_tui.domain.models import JobSpec
from fceval_tui.services.forwarding import Forwards, forward_target
from fceval_tui.transports.port_forward import forward_argv
from tests.helpers.cli import run_cli
from tests.helpers.fleet import GREETING, echo_server, is_free, running_jobs, talk


def _running_job(world, ledger, backend: str = "ec2", resource: str | None = None):
    return running_jobs(world, ledger, 1, backend, None if resource is None else [resource])[0]


def _forward_events(ledger) -> list:
    return [e for e in ledger.events() if e.kind == "operator_forward"]


def test_a_forward_carries_bytes_both_ways_and_closing_it_frees_the_port(aws_env, aws_settings, ssm_sessions, ledger):
    job = _running_job(aws_env, ledger)
    forwards = Forwards(aws_settings(), ledger, "tester@host")
    payload = secrets.token_bytes(200_000)
    with echo_server() as remote_port:
        forward = forwards.open(job.id, remote_port)
        assert forward.url == f"http://127.0.0.1:{forward.local_port}" and forward.alive
        assert talk(forward.local_port, payload) == GREETING + payload
        assert talk(forward.local_port, b"second connection") == GREETING + b"second connection"
        assert [f.id for f in forwards.list()] == [forward.id]

        forwards.close(forward.id)

        assert forwards.list() == [] and not forward.alive
        assert is_free(forward.local_port)
    [call] = [c for c in ssm_sessions.calls() if "start-session" in c]
    assert call[call.index("--target") + 1] == job.resource_id
    assert call[call.index("--document-name") + 1] == "AWS-StartPortForwardingSession"
    assert json.loads(call[call.index("--parameters") + 1]) == {
        "portNumber": [str(remote_port)],
        "localPortNumber": [str(forward.local_port)],
    }
    opened, closed = _forward_events(ledger)
    assert (opened.detail["action"], closed.detail["action"]) == ("open", "close")
    assert opened.job_id == job.id and opened.detail["by"] == "tester@host"
    assert opened.detail["local_port"] == forward.local_port and opened.detail["remote_port"] == remote_port


def test_closing_every_forward_ends_their_sessions(aws_env, aws_settings, ssm_sessions, ledger):
    job = _running_job(aws_env, ledger)
    forwards = Forwards(aws_settings(), ledger, "tester@host")
    with echo_server() as remote_port:
        opened = [forwards.open(job.id, remote_port) for _ in range(2)]
        forwards.close_all()
    assert forwards.list() == [] and all(is_free(f.local_port) for f in opened)
    assert [e.detail["reason"] for e in _forward_events(ledger) if e.detail["action"] == "close"] == [
        "console exit"
    ] * 2


def test_a_forward_being_closed_stays_listed_until_its_session_ended(aws_env, aws_settings, ssm_sessions, ledger):
    """Closing takes a while (the session is signalled and waited for). The console closes a forward in a
    worker thread: a forward that left the list before its session ended was missed by the console's exit
    (close_all), which returned with that session still up and its close not yet logged (seen under load)."""
    job = _running_job(aws_env, ledger)
    forwards = Forwards(aws_settings(), ledger, "tester@host")
    with echo_server() as remote_port:
        forward = forwards.open(job.id, remote_port)
        entered, release = threading.Event(), threading.Event()
        end_session = forward.session.close

        def slow_close(*args, **kwargs):
            entered.set()
            release.wait(30)
            end_session(*args, **kwargs)

        forward.session.close = slow_close
        worker = threading.Thread(target=forwards.close, args=(forward.id, "closed in the console"))
        worker.start()
        assert entered.wait(30)
        listed = [f.id for f in forwards.list()]  # its session is still up
        exiting = threading.Thread(target=lambda: (forwards.close_all(), seen.append(forward.alive)))
        seen: list[bool] = []
        exiting.start()
        release.set()
        worker.join(30)
        exiting.join(30)
    assert listed == [forward.id]
    assert seen == [False]  # close_all returned only once the worker's close had ended the session
    assert forwards.list() == [] and is_free(forward.local_port)
    closes = [e.detail["reason"] for e in _forward_events(ledger) if e.detail["action"] == "close"]
    assert closes == ["closed in the console"]


@contextlib.contextmanager
def _forward_cli(state_dir, job):
    """`fceval-tui forward JOB PORT` to an echo server, once it has printed its URL line: (process, line)."""
    argv = [sys.executable, "-m", "fceval_tui", "--state-dir", str(state_dir), "forward", job.id]
    with echo_server() as remote_port:
        proc = subprocess.Popen([*argv, str(remote_port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.startswith("forwarding http://127.0.0.1:") and f"-> {job.resource_id} port" in line, (
                line + proc.stderr.read()
            )
            yield proc, line
        finally:
            if proc.poll() is None:
                proc.kill()


def test_forward_cli_prints_the_url_and_stops_on_ctrl_c(aws_env, ssm_sessions, ledger, state_dir):
    job = _running_job(aws_env, ledger)
    with _forward_cli(state_dir, job) as (proc, line):
        local_port = int(line.split("127.0.0.1:")[1].split()[0])
        assert talk(local_port, b"ping") == GREETING + b"ping"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    assert is_free(local_port)
    assert [e.detail["action"] for e in _forward_events(ledger)] == ["open", "close"]


def test_forward_cli_says_when_the_session_ends_by_itself(aws_env, ssm_sessions, ledger, state_dir):
    """The session dies under the CLI (the network, the machine): it says so and exits 1, without Ctrl-C."""
    job = _running_job(aws_env, ledger)
    with _forward_cli(state_dir, job) as (proc, _):
        guard = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        os.killpg(int(guard[0]), signal.SIGKILL)  # the session's whole process group, as a crash would
        assert proc.wait(30) == 1
        assert "the forwarding session ended (exit -9)" in proc.stderr.read()
    assert [e.detail["action"] for e in _forward_events(ledger)] == ["open", "close"]


def test_forward_refuses_what_it_cannot_reach_in_one_line(aws_env, ssm_sessions, ledger, state_dir):
    gone = _running_job(aws_env, ledger)
    aws_env.client("ec2").terminate_instances(InstanceIds=[gone.resource_id])
    local, _ = ledger.create_run("local", 1, [JobSpec("a", "t")])
    with socket.create_server(("127.0.0.1", 0)) as busy:
        cases = [
            ([gone.id, "8080"], "TargetNotConnected"),
            ([ledger.jobs(run_id=local.id)[0].id, "8080"], "runs on this machine, so there is nothing to forward"),
            (["x;reboot", "8080"], "not a valid job id"),
            ([gone.id, "70000"], "not a TCP port"),
            ([gone.id, "80", "--local-port", str(busy.getsockname()[1])], "is not free"),
        ]
        for words, says in cases:
            res = run_cli("forward", *words, state_dir=state_dir)
            assert res.code == 2 and says in res.err and res.err.count("\n") == 1, (words, res.err)


def test_an_ecs_job_is_reached_through_its_containers_runtime_id(aws_settings, ledger):
    from fceval_tui.backends.aws import AwsClients
    from fceval_tui.backends.ecs_task_definition import CONTAINER

    settings = aws_settings()
    task = f"arn:aws:ecs:us-east-1:123456789012:task/{settings.ecs_cluster}/0123456789abcdef0123456789abcdef"
    job = _running_job(None, ledger, backend="ecs", resource=task)
    ecs = AwsClients(settings.region, settings.profile, ("ecs",)).ecs
    # moto's DescribeTasks has no runtimeId: the stubbed answer follows the API reference (Container.runtimeId).
    with Stubber(ecs) as stub:
        reply = {
            "tasks": [
                {
                    "taskArn": task,
                    "clusterArn": f"arn:aws:ecs:us-east-1:123456789012:cluster/{settings.ecs_cluster}",
                    "lastStatus": "RUNNING",
                    "containers": [
                        {"name": "sidecar", "runtimeId": "0123456789abcdef0123456789abcdef-1111111111"},
                        {"name": CONTAINER, "runtimeId": "0123456789abcdef0123456789abcdef-2222222222"},
                    ],
                }
            ],
            "failures": [],
        }
        stub.add_response("describe_tasks", reply, {"cluster": settings.ecs_cluster, "tasks": [task]})
        target = forward_target(settings, job, ecs)
    assert (
        target
        == f"ecs:{settings.ecs_cluster}_0123456789abcdef0123456789abcdef_0123456789abcdef0123456789abcdef-2222222222"
    )
    argv = forward_argv(
        target, 8888, 9999, region="us-east-1", profile="p", command_prefix=("aws-vault", "exec", "p", "--")
    )
    assert argv[:5] == ["aws-vault", "exec", "p", "--", "aws"]
    assert argv[argv.index("--target") + 1] == target


def test_the_forward_process_group_is_gone_after_close(aws_env, aws_settings, ssm_sessions, ledger):
    job = _running_job(aws_env, ledger)
    forwards = Forwards(aws_settings(), ledger, "tester@host")
    with echo_server() as remote_port:
        forward = forwards.open(job.id, remote_port)
        group = forward.session.pid
        forwards.close(forward.id)
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)


def _forward_processes(local_port: int) -> list[int]:
    """Processes of this machine still forwarding `local_port` (the fake aws CLI carries it in its argv)."""
    wanted = f'"localPortNumber": ["{local_port}"]'.encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if wanted in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_a_forward_ends_when_its_console_is_killed_with_sigkill(aws_env, ssm_sessions, ledger, state_dir):
    """The console gets no chance to close anything: the forward still ends, and its port is free again."""
    import time

    job = _running_job(aws_env, ledger)
    argv = [sys.executable, "-m", "fceval_tui", "--state-dir", str(state_dir), "forward", job.id]
    with echo_server() as remote_port:
        proc = subprocess.Popen([*argv, str(remote_port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.startswith("forwarding http://127.0.0.1:"), line + proc.stderr.read()
            local_port = int(line.split("127.0.0.1:")[1].split()[0])
            assert talk(local_port, b"ping") == GREETING + b"ping" and _forward_processes(local_port)
            proc.kill()
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        deadline = time.monotonic() + 30  # a bound on waiting, not a speed assertion
        while (_forward_processes(local_port) or not is_free(local_port)) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _forward_processes(local_port)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert left == [], "the port forward outlived its killed console"
    assert is_free(local_port)
