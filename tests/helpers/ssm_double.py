"""SSM doubles that behave as AWS documents, for the EC2 backend: Run Command runs as root, Session
Manager sessions run as the unprivileged `ssm-user` in a pseudo-terminal with echo on.

What each part follows:
- Run Command (`AWS-RunShellScript`) runs the script as root, through `sh`, in the agent's
  environment (AWS: "Running commands using Systems Manager Run Command"; the agent runs as root),
  where the aws CLI acts as the instance profile's role when the profile has one (InstanceRoleCredentials).
  The "instance" is this machine: `mount` is a stand-in that records what a script asked (mount_calls),
  so that no script remounts the host's /proc.
  GetCommandInvocation returns at most 24,000 characters of StandardOutputContent and 8,000 of
  StandardErrorContent (API reference: GetCommandInvocation); the full output only in the S3 copy.
  SendCommand takes at most 50 InstanceIds (API reference: SendCommand) and refuses the whole call when
  one of them is not a running managed instance (InvalidInstanceId). ListCommandInvocations (not in moto)
  pages at most 50 invocations (MaxResults) and, with Details, gives each plugin's Output: stdout, then
  stderr after the agent's `----------ERROR-------` header, at most 2,500 characters (API reference:
  CommandPlugin). The script runs in a working directory of its own on each instance (the agent's
  orchestration directory): in a `Fleet`, each instance is a directory of its own, and scripts run there.
  ListCommands gives the command's overall status: Failed once an invocation failed (MaxErrors 0).
- Sessions (`aws ssm start-session`, `AWS-StartInteractiveCommand`) run as the system-generated
  `ssm-user` account unless Run As is configured (AWS: Session Manager, "Turn on run as support for
  Linux and macOS managed nodes"). How the agent starts one (aws/amazon-ssm-agent,
  agent/session/shell/shell_unix.go, `StartCommandExecutor` and `getUserCredentials`): `sh -c COMMAND`
  on a new pty (echo on, as a pty starts), the agent's environment plus TERM=xterm-256color,
  LANG=C.UTF-8 when unset and HOME=/home/ssm-user, with the uid, gid and supplementary groups that
  `id ssm-user` reports at session start.
- The CLI needs session-manager-plugin: without it `aws ssm start-session` fails at once
  (AWS: "Install the Session Manager plugin for the AWS CLI").
- Run Command reaches the agent through ec2messages, sessions through ssmmessages (AWS: "Step 6:
  (Optional) Create Amazon VPC endpoints", and "Troubleshooting Session Manager"): an instance that
  reaches the first but not the second (`Ec2Machine.cut_ssmmessages`) runs commands, while every
  session fails with `An error occurred (TargetNotConnected) when calling the StartSession
  operation: <id> is not connected.` (the CLI exits 254, as aws CLI v2 does on a service error).
- Port forwarding (`AWS-StartPortForwardingSession`, AWS: "Start a session", port forwarding): the
  plugin listens on localhost:localPortNumber, prints "Waiting for connections...", and relays each
  connection to portNumber on the instance (here 127.0.0.1 of this machine); a target that is not a
  running instance fails at once with TargetNotConnected; SIGTERM or Ctrl-C ends the session.

The "instance" is a directory outside pytest's private (0700) temp root, so that ssm-user can reach
what root grants it, as on a real machine; its /tmp (TMUX_TMPDIR, where each user's default tmux
socket lives) is sticky and world-writable like /tmp. CI runs the tests as root (needed to drop to
ssm-user, as the agent does); `ssm_user` creates the account if missing and removes it afterwards.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fceval_tui.backends.remote_tmux import TMUX_GROUP
from tests.helpers.aws import MotoWorld
from tests.helpers.job_users import remove_users_homed_under
from tests.helpers.machine_state import held, user_exists
from tests.helpers.tmux_cleanup import kill_processes_in, kill_servers_under

SSM_USER = "ssm-user"
STDOUT_LIMIT, STDERR_LIMIT = 24_000, 8_000
TRUNCATION_MARK = "--output truncated--"
MAX_SEND_TARGETS = 50
PLUGIN_OUTPUT_LIMIT = 2_500
ERROR_HEADER = "\n----------ERROR-------\n"


def agent_truncate(text: str, limit: int) -> str:
    """What the SSM agent returns of an output stream: at most `limit` UTF-8 bytes, the cut marked
    (amazon-ssm-agent agent/contracts TruncateOutput: it keeps limit - len(marker) bytes)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - len(TRUNCATION_MARK)].decode("utf-8", "ignore") + TRUNCATION_MARK


@dataclass
class Ec2Machine:
    """A directory standing in for an instance's file system, with its /tmp and the work root."""

    root: Path
    env: dict[str, str]
    commands: list[str] = field(default_factory=list)
    agents_offline: set[str] = field(default_factory=set)  # instance ids whose agent lost its connection

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def work_root(self) -> str:
        return str(self.root / "fceval")

    def run_as_root(self, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", "-c", script], cwd="/", env=self.env, capture_output=True, text=True, timeout=timeout
        )

    @property
    def ssmmessages_cut(self) -> Path:
        """While this file exists, the agent cannot reach ssmmessages: sessions fail, commands run."""
        return self.root / ".ssmmessages-unreachable"

    def cut_ssmmessages(self, cut: bool = True) -> None:
        if cut:
            self.ssmmessages_cut.touch()
        else:
            self.ssmmessages_cut.unlink(missing_ok=True)

    def default_socket(self, uid: int) -> Path:
        """Where `tmux` without -L/-S puts the server of user `uid` on this machine."""
        return self.tmp / f"tmux-{uid}" / "default"

    def stop(self) -> None:
        """Kill every tmux server the machine's users started (explicit sockets and default ones), and
        remove the pool job users a failed test left here with their processes (job_users.py)."""
        kill_servers_under(self.root, self.env)
        kill_processes_in(self.root)
        remove_users_homed_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Fleet:
    """Many instances, each a directory of its own (its Run Command working directory); `sends` lists the
    InstanceIds of every SendCommand call, refused ones included."""

    root: Path
    env: dict[str, str]
    commands: list[str] = field(default_factory=list)
    sends: list[list[str]] = field(default_factory=list)

    def instance_dir(self, instance_id: str) -> Path:
        path = self.root / instance_id
        path.mkdir(exist_ok=True)
        return path


def install_run_command(monkeypatch, machine) -> None:
    """moto records SendCommand and runs nothing: run each script on `machine` as root (this process's
    user), answer GetCommandInvocation and ListCommandInvocations like the agent, and add
    DescribeInstanceInformation (not in moto): every running instance has an online agent unless its id is
    in `machine.agents_offline` (when there is one): then DescribeInstanceInformation says ConnectionLost and
    SendCommand refuses it with InvalidInstanceId, as for a node whose agent is not connected (API
    reference: SendCommand, errors). `machine` has `root` (the working dir), `env`, `commands`; a `Fleet`
    gives each instance its own directory."""
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult
    from moto.s3.models import s3_backends
    from moto.ssm.models import SimpleSystemManagerBackend
    from moto.ssm.responses import SimpleSystemManagerResponse

    original = SimpleSystemManagerBackend.send_command
    role_credentials = InstanceRoleCredentials()
    system_bin = _system_stand_ins(machine.root)
    outputs: dict[tuple[str, str], tuple[str, str]] = {}  # (command id, instance id) -> (stdout, stderr)

    def send_command(self, **kwargs):
        if isinstance(machine, Fleet):
            machine.sends.append(list(kwargs["instance_ids"]))
        if len(kwargs["instance_ids"]) > MAX_SEND_TARGETS:
            raise JsonRESTError(
                "ValidationException",
                f"1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: "
                f"Member must have length less than or equal to {MAX_SEND_TARGETS}",
            )
        offline = getattr(machine, "agents_offline", set())
        for instance_id in kwargs["instance_ids"]:
            if instance_id in offline or not _running(self.account_id, self.region_name, instance_id):
                raise JsonRESTError("InvalidInstanceId", f"Instances [{instance_id}] not in a valid state")
        requested = list(kwargs["instance_ids"])
        command = original(self, **kwargs)
        if not kwargs.get("targets"):
            # moto adds every instance of the region when Targets is empty (an EC2 filter of nothing):
            # AWS runs the command on the InstanceIds given, and only there.
            command.instance_ids = requested
            command.invocations = [inv for inv in command.invocations if inv["InstanceId"] in requested]
            command.invocations.sort(key=lambda inv: requested.index(inv["InstanceId"]))
        script = "\n".join(command.parameters.get("commands", []))
        machine.commands.append(script)
        for invocation in command.invocations:
            cwd = machine.instance_dir(invocation["InstanceId"]) if isinstance(machine, Fleet) else machine.root
            env = {**machine.env, **role_credentials(self.account_id, self.region_name, invocation["InstanceId"])}
            env["PATH"] = f"{system_bin}{os.pathsep}{env.get('PATH', os.defpath)}"
            proc = subprocess.run(["sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
            outputs[command.command_id, invocation["InstanceId"]] = (proc.stdout, proc.stderr)
            invocation.update(
                ResponseCode=proc.returncode,
                Status="Success" if proc.returncode == 0 else "Failed",
                StatusDetails="Success" if proc.returncode == 0 else "Failed",
                StandardOutputContent=agent_truncate(proc.stdout, STDOUT_LIMIT),
                StandardErrorContent=agent_truncate(proc.stderr, STDERR_LIMIT),
            )
            if command.output_s3_bucket_name:
                prefix = f"{command.output_s3_key_prefix}/{command.command_id}/{invocation['InstanceId']}"
                s3 = s3_backends[self.account_id]["aws"]
                for stream, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                    s3.put_object(
                        command.output_s3_bucket_name,
                        f"{prefix}/awsrunShellScript/0.awsrunShellScript/{stream}",
                        text.encode(),
                    )
        # ListCommands: the command's own status sums up its invocations; with MaxErrors 0 one failed
        # invocation fails the command (AWS: "Understanding command statuses", "Using error controls").
        command.error_count = sum(1 for inv in command.invocations if inv["Status"] != "Success")
        command.status = command.status_details = "Failed" if command.error_count else "Success"
        return command

    def describe_instance_information(self):
        wanted = [v for f in self._get_param("Filters", []) if f["Key"] == "InstanceIds" for v in f["Values"]]
        offline = getattr(machine, "agents_offline", set())
        info = [
            {"InstanceId": i, "PingStatus": "ConnectionLost" if i in offline else "Online", "PlatformType": "Linux"}
            for i in wanted
            if _running(self.current_account, self.region, i)
        ]
        return ActionResult({"InstanceInformationList": info})

    def list_command_invocations(self):
        command = self.ssm_backend.get_command_by_id(self._get_param("CommandId"))
        details = self._get_param("Details", False)
        start = int(self._get_param("NextToken") or 0)
        size = int(self._get_param("MaxResults") or MAX_SEND_TARGETS)
        page = command.invocations[start : start + size]
        items = []
        for inv in page:
            item = {
                "CommandId": command.command_id,
                "InstanceId": inv["InstanceId"],
                "Comment": command.comment,
                "DocumentName": command.document_name,
                "DocumentVersion": "$DEFAULT",
                "RequestedDateTime": command.requested_date_time,
                "Status": inv["Status"],
                "StatusDetails": inv["StatusDetails"],
                "StandardOutputUrl": "",
                "StandardErrorUrl": "",
            }
            if details:
                stdout, stderr = outputs.get((command.command_id, inv["InstanceId"]), ("", ""))
                output = stdout + (ERROR_HEADER + stderr if stderr else "")
                item["CommandPlugins"] = [
                    {
                        "Name": inv["PluginName"],
                        "Status": inv["Status"],
                        "StatusDetails": inv["StatusDetails"],
                        "ResponseCode": inv["ResponseCode"],
                        "Output": agent_truncate(output, PLUGIN_OUTPUT_LIMIT),
                    }
                ]
            items.append(item)
        reply: dict = {"CommandInvocations": items}
        if start + size < len(command.invocations):
            reply["NextToken"] = str(start + size)
        return ActionResult(reply)

    monkeypatch.setattr(SimpleSystemManagerBackend, "send_command", send_command)
    monkeypatch.setattr(
        SimpleSystemManagerResponse, "describe_instance_information", describe_instance_information, raising=False
    )
    monkeypatch.setattr(
        SimpleSystemManagerResponse, "list_command_invocations", list_command_invocations, raising=False
    )


SYSTEM_BIN = ".system-bin"
_MOUNT = """#!/bin/sh
# The instance's mount(8), for scripts run by the Run Command double: this "instance" is the test machine,
# whose /proc and file systems a test must never remount. Records the request and succeeds.
printf '%s\\n' "$*" >> "$(dirname "$0")/mount.log"
"""


def _system_stand_ins(root: Path) -> Path:
    """A directory put first on PATH for Run Command scripts, with stand-ins for the commands that would
    change the host itself rather than an instance (`mount`); `mount_calls` reads what they were asked."""
    bin_dir = Path(root) / SYSTEM_BIN
    bin_dir.mkdir(exist_ok=True)
    mount = bin_dir / "mount"
    mount.write_text(_MOUNT)
    mount.chmod(0o755)
    return bin_dir


def mount_calls(machine) -> list[str]:
    """The argument lines of every `mount` a Run Command script on `machine` ran."""
    log = Path(machine.root) / SYSTEM_BIN / "mount.log"
    return log.read_text().splitlines() if log.exists() else []


class InstanceRoleCredentials:
    """What the aws CLI on an instance finds in the instance metadata: temporary credentials of its instance
    profile's role, a session named after the instance (AWS: "Use an IAM role to grant permissions to
    applications running on Amazon EC2 instances"; the session ARN is assumed-role/ROLE/INSTANCE-ID). An
    instance without a profile, or a profile without a role, keeps the machine's environment (the tests'
    own keys), so tests that do not model the role run as before. One session per instance and role."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, str], dict[str, str]] = {}

    def __call__(self, account_id: str, region: str, instance_id: str) -> dict[str, str]:
        from moto.ec2.models import ec2_backends
        from moto.sts.models import sts_backends

        association = ec2_backends[account_id][region].iam_instance_profile_associations.get(instance_id)
        roles = association.iam_instance_profile.roles if association is not None else []
        if not roles:
            return {}
        role_arn = roles[0].arn
        if (instance_id, role_arn) not in self._sessions:
            session = sts_backends[account_id]["aws"].assume_role(region, instance_id, role_arn, None, 21600, None)
            self._sessions[instance_id, role_arn] = {
                "AWS_ACCESS_KEY_ID": session.access_key_id,
                "AWS_SECRET_ACCESS_KEY": session.secret_access_key,
                "AWS_SESSION_TOKEN": session.session_token,
            }
        return self._sessions[instance_id, role_arn]


def _running(account_id: str, region: str, instance_id: str) -> bool:
    from moto.ec2.exceptions import InvalidInstanceIdError
    from moto.ec2.models import ec2_backends

    try:
        return ec2_backends[account_id][region].get_instance(instance_id).state == "running"
    except InvalidInstanceIdError:
        return False


# -- the operator's side: the `aws` CLI with session-manager-plugin ----------------------------------

_FAKE_AWS = r'''#!{python}
"""`aws` on the operator's machine: `ssm start-session` is the Session Manager double (see
tests/helpers/ssm_double.py); every other command is the real aws CLI."""
import json, os, pty, pwd, select, shutil, signal, sys, termios, tty

MACHINE = {machine}
args = sys.argv[1:]
with open(MACHINE["log"], "a") as log:
    log.write(json.dumps(args) + "\n")
if "start-session" not in args:
    os.execv(MACHINE["real_aws"], [MACHINE["real_aws"], *args])
if shutil.which("session-manager-plugin") is None:
    sys.stderr.write("\nSessionManagerPlugin is not found. Please refer to SessionManager Documentation here: "
                     "http://docs.aws.amazon.com/console/systems-manager/session-manager-plugin-not-found\n")
    sys.exit(255)
if os.path.exists(MACHINE["ssmmessages_cut"]):
    target = args[args.index("--target") + 1]
    sys.stderr.write(f"\nAn error occurred (TargetNotConnected) when calling the StartSession operation: "
                     f"{target} is not connected.\n")
    sys.exit(254)

def forward_ports():
    """AWS-StartPortForwardingSession: listen on localhost:localPortNumber and relay each connection to
    portNumber on the target, which here is this machine's 127.0.0.1 (AWS: "Start a session", port
    forwarding). A target that is not a running instance is refused at once, as SSM does."""
    import socket, threading
    target = args[args.index("--target") + 1]
    params = json.loads(args[args.index("--parameters") + 1])
    remote, local = int(params["portNumber"][0]), int(params.get("localPortNumber", ["0"])[0])
    if target.startswith("i-"):
        import boto3
        found = boto3.client("ec2").describe_instances(
            Filters=[{"Name": "instance-id", "Values": [target]}])["Reservations"]
        state = found[0]["Instances"][0]["State"]["Name"] if found else "gone"
        if state != "running":
            sys.stderr.write(f"\nAn error occurred (TargetNotConnected) when calling the StartSession operation: "
                             f"{target} is not connected.\n")
            sys.exit(254)
    listener = socket.socket()
    listener.bind(("127.0.0.1", local))
    listener.listen(8)

    def end(*_):
        listener.close()
        sys.stdout.write("\n\nExiting session with sessionId: fake-0123.\n\n")
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, end)
    sys.stdout.write(f"\nStarting session with SessionId: fake-0123.\nPort {listener.getsockname()[1]} opened "
                     "for sessionId fake-0123.\nWaiting for connections...\n\n")
    sys.stdout.flush()

    def pump(source, sink):
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)

    while True:
        client, _ = listener.accept()
        sys.stdout.write("\nConnection accepted for session [fake-0123]\n")
        sys.stdout.flush()
        try:
            upstream = socket.create_connection(("127.0.0.1", remote))
        except OSError:
            sys.stdout.write("Connection to destination port failed, check SSM Agent logs.\n")
            sys.stdout.flush()
            client.close()
            continue
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(source, sink), daemon=True).start()


command = None
if "--document-name" in args and args[args.index("--document-name") + 1] == "AWS-StartPortForwardingSession":
    forward_ports()
if "--document-name" in args:
    assert args[args.index("--document-name") + 1] == "AWS-StartInteractiveCommand", args
    command = json.loads(args[args.index("--parameters") + 1])["command"][0]
user = pwd.getpwnam("ssm-user")
groups = os.getgrouplist(user.pw_name, user.pw_gid)  # read now, like the agent's `id ssm-user`
env = dict(MACHINE["env"], TERM="xterm-256color", HOME=user.pw_dir)
env.setdefault("LANG", "C.UTF-8")
shell = shutil.which("sh", path=env["PATH"])  # now: after setuid this Python cannot import from /root
size = None
if os.isatty(0):
    size = termios.tcgetwinsize(0)
    saved = termios.tcgetattr(0)
    tty.setraw(0)  # the plugin's local terminal is raw: the remote pty echoes and translates
sys.stdout.buffer.write(b"\r\nStarting session with SessionId: fake-0123\r\n")
sys.stdout.flush()
pid, master = pty.fork()
if pid == 0:
    os.chdir("/")
    os.setgroups(groups)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    argv = ["sh", "-c", command] if command is not None else ["sh"]
    os.execve(shell, argv, env)
if size is not None:
    termios.tcsetwinsize(master, size)
inputs = [0, master]
while True:
    ready, _, _ = select.select(inputs, [], [])
    if master in ready:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        if not data:
            break
        os.write(1, data)
    if 0 in ready:
        data = os.read(0, 65536)
        if data:
            os.write(master, data)
        else:
            inputs.remove(0)
os.waitpid(pid, 0)
if size is not None:
    termios.tcsetattr(0, termios.TCSADRAIN, saved)
sys.stdout.buffer.write(b"\r\n\r\nExiting session with sessionId: fake-0123.\r\n\r\n")
sys.stdout.flush()
sys.exit(0)  # like the real CLI: the remote exit code is lost
'''


@dataclass
class SessionCli:
    """The fake `aws` (and a session-manager-plugin) first on PATH; `calls()` lists each argv."""

    bin_dir: Path
    log: Path

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tmux_group() -> Iterator[str]:
    """The group the EC2 launch script creates on the "instance" (this machine): removed afterwards
    unless it existed before the tests (once no other test process holds it: machine_state.py)."""
    with held(
        "tmux-group",
        exists=lambda: _group_exists(TMUX_GROUP),
        remove=lambda: subprocess.run(["groupdel", TMUX_GROUP], capture_output=True),
    ):
        yield TMUX_GROUP


@pytest.fixture(scope="session")
def ssm_user(tmux_group) -> Iterator[pwd.struct_passwd]:
    """The `ssm-user` account (the agent creates it at the first session; here, once per test session).
    Removed afterwards when created here (before the group, which it may belong to), once no other test
    process holds it."""
    if os.geteuid() != 0:
        pytest.skip("the SSM doubles drop to ssm-user as the agent does: run the tests as root (as CI does)")
    with held(
        "ssm-user",
        exists=lambda: user_exists(SSM_USER),
        create=lambda: subprocess.run(["useradd", "-m", SSM_USER], check=True, capture_output=True),
        remove=lambda: subprocess.run(["userdel", "-r", SSM_USER], capture_output=True),
    ):
        yield pwd.getpwnam(SSM_USER)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture
def ec2_machine(aws_env: MotoWorld, monkeypatch, ssm_user) -> Iterator[Ec2Machine]:
    """An instance's file system and its agent: SendCommand runs scripts here as root."""
    root = Path(tempfile.mkdtemp(prefix="fceval-ec2-", dir="/tmp"))
    root.chmod(0o755)
    (root / "tmp").mkdir(mode=0o777)
    (root / "tmp").chmod(0o1777)
    (root / "fceval").mkdir(mode=0o755)  # what the user data's `mkdir -p` leaves
    env = {key: value for key, value in os.environ.items() if key != "TMUX"}
    env["TMUX_TMPDIR"] = str(root / "tmp")
    machine = Ec2Machine(root, env)
    install_run_command(monkeypatch, machine)
    yield machine
    machine.stop()


@pytest.fixture
def ssm_fleet(aws_env: MotoWorld, monkeypatch, tmp_path) -> Fleet:
    """Run Command on many instances, each its own directory; the agent runs scripts as root (this user)."""
    root = tmp_path / "fleet"
    root.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "TMUX"}
    fleet = Fleet(root, env)
    install_run_command(monkeypatch, fleet)
    return fleet


@pytest.fixture
def ssm_sessions(ec2_machine: Ec2Machine, tmp_path, monkeypatch) -> SessionCli:
    """The operator's `aws` CLI with session-manager-plugin installed: sessions reach `ec2_machine` as
    ssm-user. Put first on PATH here (and so in every child process: run_cli passes os.environ on)."""
    real_aws = shutil.which("aws")
    if real_aws is None:
        pytest.skip("the pipeline uploads with the aws CLI: install it (pip install awscli)")
    bin_dir = tmp_path / "operator-bin"
    bin_dir.mkdir()
    log = tmp_path / "aws-calls.jsonl"
    spec = {
        "env": ec2_machine.env,
        "log": str(log),
        "real_aws": real_aws,
        "ssmmessages_cut": str(ec2_machine.ssmmessages_cut),
    }
    aws = bin_dir / "aws"
    aws.write_text(_FAKE_AWS.replace("{python}", sys.executable).replace("{machine}", repr(spec)))
    plugin = bin_dir / "session-manager-plugin"
    plugin.write_text("#!/bin/sh\nexit 0\n")
    for script in (aws, plugin):
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("TMUX", raising=False)
    return SessionCli(bin_dir, log)
