"""Sessions that cannot attach, on the doubles that behave as AWS does: an EC2 instance's sessions run
as ssm-user while Run Command runs as root (tests/helpers/ssm_double.py), the agent may reach
ec2messages but not ssmmessages (TargetNotConnected), the aws CLI may not find the plugin under a
command prefix; ECS Exec refuses a task whose agent is not running (tests/helpers/ecs_double.py).
Each failure is told with the remote's words and the fix, within a few sessions, not retried silently.
"""

from __future__ import annotations

import io

import pytest

from fceval_tui.services.mirror import Mirror
from fceval_tui.services.mirror.session_failure import STATUS_FIX, SessionError
from fceval_tui.services.mirror.tail import check_attachable, tail
from fceval_tui.transports.retry import RetryPolicy
from fceval_tui.transports.ssm import SsmTransport
from tests.helpers.aws import ECS_CLUSTER, REGION
from tests.helpers.ssm_double import SSM_USER

FAST = RetryPolicy(attempts=8, base=0.05, cap=0.2)


@pytest.fixture
def instance(aws_env, ec2_machine):
    """A running instance whose Run Command executes on `ec2_machine` as root."""
    ec2 = aws_env.client("ec2")
    images = ec2.describe_images(Filters=[{"Name": "name", "Values": ["al2023-ami-2023*"]}])["Images"]
    instance_id = ec2.run_instances(ImageId=images[0]["ImageId"], MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    yield instance_id
    ec2.terminate_instances(InstanceIds=[instance_id])


def _transport(aws_env, instance, **kwargs) -> SsmTransport:
    return SsmTransport(aws_env.client("ssm"), instance, region=REGION, poll_interval=0.05, **kwargs)


def _sessions(cli) -> list[list[str]]:
    return [argv for argv in cli.calls() if "start-session" in argv]


@pytest.fixture
def shared_pane(ec2_machine, ssm_user):
    """A pane on an explicit socket that both root (commands) and ssm-user (sessions) reach."""
    socket = ec2_machine.tmp / "shared.sock"
    started = ec2_machine.run_as_root(
        f"runuser -u {SSM_USER} -- tmux -S {socket} new-session -d -s job -x 80 -y 24 'echo first-line; sleep 60'"
    )
    assert started.returncode == 0, started.stderr
    return ("-S", str(socket)), "job"


def test_target_not_connected_is_told_and_the_mirror_attaches_once_it_is_back(
    aws_env, instance, ec2_machine, ssm_sessions, shared_pane
):
    ec2_machine.cut_ssmmessages()  # commands run (ec2messages), sessions fail (ssmmessages)
    args, session = shared_pane
    mirror = Mirror(_transport(aws_env, instance), args, session, from_start=True, want_screen=False, retry_policy=FAST)
    told, lines = [], []
    with mirror:  # start() returns once the repeated failure is told
        for update in mirror:
            if update.session_failure:
                told.append(update.session_failure)
                ec2_machine.cut_ssmmessages(False)
            lines += update.lines
            if "first-line" in lines:
                break
    assert len(told) == 1, told
    assert f"An error occurred (TargetNotConnected) when calling the StartSession operation: {instance}" in told[0]
    assert "SSM agent is not online" in told[0] and "retrying" in told[0]
    assert "first-line" in lines
    assert len(_sessions(ssm_sessions)) >= 4  # three failures told, then it attached


def test_a_plugin_the_aws_cli_cannot_find_ends_tail_and_attach_at_once(
    aws_env, instance, ssm_sessions, shared_pane, tmp_path
):
    bare = tmp_path / "prefix-bin"
    bare.mkdir()
    (bare / "aws").symlink_to(ssm_sessions.bin_dir / "aws")
    # The console finds the plugin; the aws CLI, run under the command prefix, does not.
    transport = _transport(aws_env, instance, command_prefix=("env", f"PATH={bare}:/usr/bin:/bin"))
    assert transport.can_stream()
    args, session = shared_pane
    with pytest.raises(SessionError) as caught:
        tail(transport, args, session, False, io.StringIO(), err=io.StringIO())
    assert "SessionManagerPlugin is not found" in caught.value.problem
    assert "install session-manager-plugin" in caught.value.fix
    with pytest.raises(SessionError) as probed:
        check_attachable(transport, args, session)
    assert probed.value.problem == caught.value.problem
    assert len(_sessions(ssm_sessions)) == 2  # certain from one session each


def test_sessions_that_miss_the_jobs_server_as_ssm_user(aws_env, instance, ec2_machine, ssm_sessions):
    """Root's server on a socket name: Run Command sees the pane, ssm-user's sessions look in their own
    socket directory and get tmux's "no sessions" (the field report's `tail` that printed nothing)."""
    name = f"fceval-{instance[-8:]}"
    started = ec2_machine.run_as_root(f"tmux -L {name} new-session -d -s job 'sleep 60'")
    assert started.returncode == 0, started.stderr
    transport = _transport(aws_env, instance)
    err = io.StringIO()
    with pytest.raises(SessionError) as caught:
        tail(transport, ("-L", name), "job", True, io.StringIO(), err=err)
    assert "no sessions" in caught.value.problem and f"SSM {instance}" in caught.value.problem
    assert caught.value.fix == STATUS_FIX
    assert len(_sessions(ssm_sessions)) == 3
    with pytest.raises(SessionError) as probed:
        check_attachable(transport, ("-L", name), "job", retry_policy=FAST)
    assert "no server running" in probed.value.problem and probed.value.fix == STATUS_FIX


def test_attach_to_a_task_whose_exec_agent_is_not_running(ecs_double):
    from fceval_tui.transports.ecs_exec import EcsExecTransport

    task = f"arn:aws:ecs:{REGION}:123456789012:task/{ECS_CLUSTER}/0123456789abcdef0123456789abcdef"
    transport = EcsExecTransport(ECS_CLUSTER, task, "main", region=REGION)
    told: list[str] = []
    with pytest.raises(SessionError) as caught:
        check_attachable(
            transport, ("-S", "/tmp/fceval/job/tmux.sock"), "job", on_failure=told.append, retry_policy=FAST
        )
    assert len(told) == 1 and "(InvalidParameterException)" in told[0] and "retrying" in told[0]
    assert "execute command agent isn't running" in caught.value.problem
    assert "ECS Exec agent in the task is not running" in caught.value.fix
    assert len(ecs_double.exec_calls()) == FAST.attempts  # retried, since the agent may still start
