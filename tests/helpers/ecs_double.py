"""ECS Fargate as AWS runs it: moto holds the API state, real local processes are the containers.

What it models, and the AWS documentation page followed for each:
- Images (a tiny registry in the test: name -> ENTRYPOINT, CMD, USER, env, PATH). The container's
  argv follows "ContainerDefinition" (Amazon ECS API Reference): `entryPoint` overrides the image's
  ENTRYPOINT; `command` overrides CMD and, when the image has an ENTRYPOINT, becomes its arguments.
  As in Docker, an overridden entry point clears the image's CMD. `user` overrides the image's USER.
- RunTask (moto, its state manager keeping the task RUNNING) starts the container's main process as
  that user (dropped with setpriv), with the image's and the task definition's environment, in its
  own process group. When the main process exits, the whole container goes (every process carrying
  the container's marker in its environment, as a PID namespace would) and the task is STOPPED
  with stopCode EssentialContainerExited, the container's exitCode and a stoppedReason ("Amazon ECS
  task lifecycle"; "Stopped Amazon ECS task errors").
- The task role ("Amazon ECS task IAM role"): the container's aws CLI acts as that role when moto IAM
  knows it (task_roles.py); otherwise with the tests' own keys.
- The awslogs log driver ("Send Amazon ECS logs to CloudWatch", "Using the awslogs log driver"): a
  container with `logConfiguration` awslogs has its stdout and stderr, a line an event, in the stream
  `{awslogs-stream-prefix}/{container name}/{task id}` of `awslogs-group`. The group must exist (without
  `awslogs-create-group`): else the task stops with TaskFailedToStart and "ResourceInitializationError:
  failed to validate logger args" ("Stopped Amazon ECS task errors"). The driver ships lines as they are
  written; here they are all written when the container exits, before the task shows STOPPED.
- StopTask sends SIGTERM to the container, then SIGKILL after the stop timeout (30 s on AWS, 2 s
  here) ("StopTask", Amazon ECS API Reference).
- RunTask's clientToken: the same token with other parameters is refused with ConflictException naming
  the tasks the token started in `resourceIds` ("RunTask", "ConflictException", Amazon ECS API Reference).
- ECS Exec (`aws ecs execute-command --interactive --command ...`, through the fake `aws` below):
  "Monitor Amazon ECS containers with ECS Exec", Considerations: commands are run as the root user
  ... even when you specify a user ID for the container. The command gets a pseudo-terminal with
  echo on (the Session Manager agent's shell); the AWS CLI needs session-manager-plugin and fails at
  once without it; ExecuteCommand is refused unless the task is RUNNING and its container's
  ExecuteCommandAgent is RUNNING. DescribeTasks reports that agent in containers[].managedAgents[]
  (moto does not): PENDING for the first `agent_pending_polls` answers, then RUNNING, or STOPPED with
  a reason (`stop_agent`). session-manager-plugin is a separate child of the CLI that behaves as the
  real one does with its stdin and terminal (see _PLUGIN). ExecuteCommand is signed with the
  operator's credentials (`--profile` honoured), and an AWS error is printed as the AWS CLI v2 prints
  it (awscli/errorhandler.py: "aws: [ERROR]: An error occurred (CODE) when calling the OP operation").
"""

from __future__ import annotations

import copy
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.machine_state import held, user_exists
from tests.helpers.task_roles import role_environment

CONTAINER_USER = "fceval-ctr"
MARKER = "FCEVAL_DOUBLE_TASK"  # in every process of a container, so stopping it finds them all
STOP_TIMEOUT = 2.0
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"

# An image's stand-in `aws` CLI: only `aws s3 cp [--only-show-errors] FILE s3://BUCKET/KEY`, to the
# moto server (which does not check signatures). The container user cannot run this machine's
# Python (it lives under /root), so it is curl.
_IMAGE_AWS = """#!/bin/sh
[ "$1" = s3 ] && [ "$2" = cp ] || { echo "image aws stand-in: only 's3 cp' is modelled" >&2; exit 2; }
shift 2
[ "$1" = --only-show-errors ] && shift
dest=${2#s3://}
exec curl -fsS -X PUT --upload-file "$1" "$AWS_ENDPOINT_URL/$dest"
"""

# The operator's `aws` CLI for `ecs execute-command`: like awscli/customizations/ecs/executecommand.py it
# calls ExecuteCommand (refused unless the task runs and its ExecuteCommandAgent is RUNNING) and then runs
# session-manager-plugin as its child with the keyboard's signals ignored (`ignore_user_entered_signals`),
# exiting 255 when the plugin fails (check_call) and 0 otherwise, whatever the remote command did.
_EXEC_AWS = """#!{python}
import json, os, shutil, signal, subprocess, sys
args = sys.argv[1:]
state = os.environ["ECS_DOUBLE_DIR"]
with open(state + "/exec-calls.jsonl", "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[args.index("ecs") + 1 : args.index("ecs") + 2] != ["execute-command"]:
    sys.exit("fake aws: only `ecs execute-command` is modelled")
def arg(name):
    return args[args.index(name) + 1]
plugin = shutil.which("session-manager-plugin")
if plugin is None:
    sys.stderr.write("\\nSessionManagerPlugin is not found. Please refer to SessionManager Documentation here: "
                     "http://docs.aws.amazon.com/console/systems-manager/session-manager-plugin-not-found\\n")
    sys.exit(255)
# ExecuteCommand is signed with the operator's credentials; moto has no ExecuteCommand, so DescribeClusters
# (which leaves the exec agent's polls alone) stands in for the call that authenticates them. Only for a
# named profile: the tests' default keys never expire, and importing boto3 would slow every session.
if "--profile" in args:
    import boto3, botocore.exceptions
    try:
        boto3.Session(profile_name=arg("--profile")).client("ecs").describe_clusters(clusters=[arg("--cluster")])
    except botocore.exceptions.ClientError as exc:  # the CLI's ClientErrorHandler: the AWS error, exit 254
        error = exc.response["Error"]
        sys.stderr.write(f"\\naws: [ERROR]: An error occurred ({error['Code']}) when calling the ExecuteCommand "
                         f"operation: {error['Message']}\\n")
        sys.exit(254)
    except botocore.exceptions.BotoCoreError as exc:  # its GeneralExceptionHandler (expired SSO token...): 255
        sys.stderr.write(f"\\naws: [ERROR]: {exc}\\n")
        sys.exit(255)
task_id = arg("--task").rsplit("/", 1)[-1]
container_file = os.path.join(state, task_id + ".json")
agent_file = os.path.join(state, task_id + ".agent")
agent = open(agent_file).read() if os.path.exists(agent_file) else "PENDING"
if not os.path.exists(container_file) or agent != "RUNNING":
    with open(state + "/exec-refused.jsonl", "a") as log:
        log.write(json.dumps({"task": arg("--task"), "agent": agent}) + "\\n")
    sys.stderr.write("\\nAn error occurred (InvalidParameterException) when calling the ExecuteCommand operation: "
                     "The execute command failed because execute command was not enabled when the task was run "
                     "or the execute command agent isn't running. Wait and try again or run a new task with "
                     "execute command enabled and try again.\\n")
    sys.exit(254)
session = {"SessionId": "ecs-execute-command-0123456789", "command": arg("--command"), "container": container_file}
for user_signal in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
    signal.signal(user_signal, signal.SIG_IGN)
code = subprocess.call([plugin, json.dumps(session), "us-east-1", "StartSession", "", "{}", "https://ecs"])
sys.exit(255 if code else 0)
"""

# session-manager-plugin for a shell session (github.com/aws/session-manager-plugin,
# src/sessionmanagerplugin/session/): `Execute` prints "Starting session with SessionId"; the shell
# session (shellsession/shellsession_unix.go) runs `stty cbreak` and `stty -echo` on its stdin, then reads
# stdin for keystrokes. A read error, io.EOF when stdin is at end of file (nohup, CI, </dev/null), ends
# the session handlers: `ValidateInputAndStartSession` prints "Cannot perform start session: EOF" to
# stdout and main returns, so the plugin exits 0 having shown no command output. When the remote side
# closes the channel it prints "Exiting session with sessionId", restores the saved stty state and then
# runs `stty echo` (`Stop`); killed instead, it restores nothing. The terminal size comes from stdout
# (300x100 when stdout is not a terminal). The command runs as root in the container with its environment.
_PLUGIN = """#!{python}
import fcntl, json, os, pty, select, struct, sys, termios
session = json.loads(sys.argv[1])
sys.stdout.write("\\nStarting session with SessionId: " + session["SessionId"] + "\\n")
sys.stdout.flush()
def cannot_start(reason):
    sys.stdout.write("Cannot perform start session: " + reason + "\\n")
    sys.stdout.flush()
    os._exit(0)
saved = None
if os.isatty(0):
    saved = termios.tcgetattr(0)
    quiet = termios.tcgetattr(0)
    quiet[3] &= ~(termios.ECHO | termios.ICANON)
    termios.tcsetattr(0, termios.TCSANOW, quiet)
typed = b""
if select.select([0], [], [], 0)[0]:
    typed = os.read(0, 1024)
    if not typed:
        cannot_start("EOF")
container = json.load(open(session["container"]))
pid, fd = pty.fork()
if pid == 0:  # root, whatever the container's user
    os.chdir(container["cwd"])
    os.execve("/bin/sh", ["sh", "-c", session["command"]], {"TERM": "xterm-256color", **container["env"]})
size = fcntl.ioctl(1, termios.TIOCGWINSZ, b"\\0" * 8) if os.isatty(1) else struct.pack("HHHH", 100, 300, 0, 0)
fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
if typed:
    os.write(fd, typed)
while True:
    ready, _, _ = select.select([fd, 0], [], [])
    if fd in ready:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        os.write(1, data)
    if 0 in ready:
        data = os.read(0, 1024)
        if not data:
            cannot_start("EOF")
        os.write(fd, data)
os.waitpid(pid, 0)
sys.stdout.write("\\n\\nExiting session with sessionId: " + session["SessionId"] + ".\\n\\n")
sys.stdout.flush()
if saved is not None:
    termios.tcsetattr(0, termios.TCSADRAIN, saved)
    echo = termios.tcgetattr(0)
    echo[3] |= termios.ECHO
    termios.tcsetattr(0, termios.TCSADRAIN, echo)
"""

EXEC_AGENT = "ExecuteCommandAgent"


@dataclass
class ExecAgent:
    """One container's ECS Exec agent as DescribeTasks reports it (API reference, "ManagedAgent";
    "Monitor Amazon ECS containers with ECS Exec"): PENDING after the container starts, RUNNING once
    it has connected (here: after `pending_polls` DescribeTasks answers), or STOPPED with a reason."""

    pending_polls: int
    polls: int = 0
    status: str = "PENDING"
    reason: str = ""
    started_at: float | None = None

    def answer(self) -> dict:
        self.polls += 1
        if self.status == "PENDING" and self.polls > self.pending_polls:
            self.status, self.started_at = "RUNNING", time.time()
        agent = {"name": EXEC_AGENT, "lastStatus": self.status}
        if self.reason:
            agent["reason"] = self.reason
        if self.started_at is not None:
            agent["lastStartedAt"] = self.started_at
        return agent


@dataclass(frozen=True)
class Image:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""  # empty: root
    env: Mapping[str, str] = field(default_factory=dict)
    path: str = BASE_PATH


def effective_argv(image: Image, definition: Mapping) -> list[str]:
    """The container's argv per ContainerDefinition: entryPoint replaces ENTRYPOINT (and clears CMD)."""
    command = definition.get("command")
    if definition.get("entryPoint"):
        return [*definition["entryPoint"], *(command or [])]
    return [*image.entrypoint, *(command if command else image.cmd)]


@dataclass
class Container:
    task_arn: str
    argv: list[str]
    user: str
    env: dict[str, str]
    proc: subprocess.Popen
    log: Path
    logs: AwsLogs | None = None
    stopping: bool = False

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class EcsDouble:
    """The containers of the tasks moto runs; `images` is the registry (repository name -> Image)."""

    def __init__(self, state_dir: Path, bin_dir: Path, credentials: Mapping[str, str]) -> None:
        self.state_dir = state_dir
        self.bin_dir = bin_dir
        self.credentials = dict(credentials)
        self.images: dict[str, Image] = {}
        self.containers: dict[str, Container] = {}
        self.agents: dict[str, ExecAgent] = {}
        self.agent_pending_polls = 2  # DescribeTasks answers showing the agent PENDING, for tasks started later
        self._lock = threading.Lock()

    # -- the operator's machine --------------------------------------------------------------

    def install_plugin(self, installed: bool = True) -> None:
        """session-manager-plugin on the operator's PATH (the fake `aws` refuses sessions without it)."""
        plugin = self.bin_dir / "session-manager-plugin"
        if installed:
            plugin.write_text(_PLUGIN.replace("{python}", sys.executable))
            plugin.chmod(0o755)
        else:
            plugin.unlink(missing_ok=True)

    def exec_calls(self) -> list[list[str]]:
        return self._jsonl("exec-calls.jsonl")

    def refused_exec(self) -> list[dict]:
        """ExecuteCommand calls refused because the task or its agent was not RUNNING."""
        return self._jsonl("exec-refused.jsonl")

    def _jsonl(self, name: str) -> list:
        path = self.state_dir / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    # -- the ECS Exec agent ------------------------------------------------------------------------

    def stop_agent(self, task_arn: str, reason: str) -> None:
        """The agent gave up (e.g. the task role lacks ssmmessages:*, or no route to the endpoint)."""
        with self._lock:
            agent = self.agents[task_arn]
            agent.status, agent.reason = "STOPPED", reason
        self._write_agent(task_arn, agent)

    def report_agent(self, task) -> None:
        """One DescribeTasks answer about `task`: its container's managedAgents, as AWS reports them."""
        with self._lock:
            agent = self.agents.get(task.task_arn)
            if agent is None:
                return
            task.containers[0].managed_agents = [agent.answer()]
        self._write_agent(task.task_arn, agent)

    def _write_agent(self, task_arn: str, agent: ExecAgent) -> None:
        (self.state_dir / (task_arn.rsplit("/", 1)[-1] + ".agent")).write_text(agent.status)

    # -- the containers -------------------------------------------------------------------------

    def image(self, name: str) -> Image:
        repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        try:
            return self.images[repository]
        except KeyError:
            raise AssertionError(f"CannotPullContainerError: {name} is not in the test's registry") from None

    def start(self, task, definition: Mapping, role: Mapping[str, str] | None = None) -> None:
        logs = _awslogs(task.task_arn, definition)
        if logs is not None and not _group_exists(logs):
            _failed_to_start(task)
            return
        image = self.image(definition["image"])
        user = definition.get("user") or image.user
        task_id = task.task_arn.rsplit("/", 1)[-1]
        home = pwd.getpwnam(user).pw_dir if user else "/root"
        env = {
            "PATH": image.path,
            "HOME": home,
            "HOSTNAME": task_id[:12],
            **image.env,
            **{item["name"]: item["value"] for item in definition.get("environment") or []},
            **self.credentials,  # the tests' own keys, unless the task role is modelled
            **(role or {}),
            MARKER: task_id,
        }
        argv = effective_argv(image, definition)
        drop = ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--"] if user else []
        log = self.state_dir / f"{task_id}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*drop, *argv],
                cwd="/",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        container = Container(task.task_arn, argv, user, env, proc, log, logs)
        (self.state_dir / f"{task_id}.json").write_text(json.dumps({"cwd": "/", "env": env}))
        agent = ExecAgent(self.agent_pending_polls)
        with self._lock:
            self.containers[task.task_arn] = container
            self.agents[task.task_arn] = agent
        self._write_agent(task.task_arn, agent)
        threading.Thread(target=self._wait, args=(task, container), daemon=True).start()

    def _wait(self, task, container: Container) -> None:
        code = container.proc.wait()
        self._kill_rest(container)
        if container.logs is not None:
            container.logs.write(container.output)
        (self.state_dir / (task.task_arn.rsplit("/", 1)[-1] + ".json")).unlink(missing_ok=True)
        with self._lock:
            agent = self.agents[task.task_arn]
            agent.status = "STOPPED"
        self._write_agent(task.task_arn, agent)
        if code < 0:
            code = 128 - code  # killed by a signal: Docker reports 128+N
        with self._lock:  # at once for DescribeTasks (see `answer`)
            box = task.containers[0]
            box.exitCode = code
            box.last_status = "STOPPED"
            if not container.stopping:
                task.stop_code = "EssentialContainerExited"
                task.stopped_reason = "Essential container in task exited"
            task.desired_status = "STOPPED"
            task.last_status = "STOPPED"

    def answer(self, task):
        """`task` as DescribeTasks answers now: one state of it. moto serializes the task objects after the
        call returns, so a container ending meanwhile could show STOPPED and EssentialContainerExited with
        the exit code of a container still running, a state AWS never reports (a wrong verdict, or a job
        taken for lost and retried)."""
        with self._lock:
            copied = copy.copy(task)
            copied.containers = [copy.copy(box) for box in task.containers]
        return copied

    def stop(self, task_arn: str) -> None:
        """StopTask: SIGTERM to the container, SIGKILL after the stop timeout."""
        with self._lock:
            container = self.containers.get(task_arn)
        if container is None or container.proc.poll() is not None:
            return
        container.stopping = True
        for pid in [container.proc.pid, *pids_with(MARKER, container.env[MARKER])]:
            _signal(pid, signal.SIGTERM)
        threading.Timer(STOP_TIMEOUT, self._kill_rest, args=(container, True)).start()

    def _kill_rest(self, container: Container, main_too: bool = False) -> None:
        if main_too and container.proc.poll() is None:
            _signal(container.proc.pid, signal.SIGKILL)
        for pid in pids_with(MARKER, container.env[MARKER]):
            _signal(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        with self._lock:
            containers = list(self.containers.values())
        for container in containers:
            if container.proc.poll() is None:
                container.stopping = True
                _signal(container.proc.pid, signal.SIGKILL)
                container.proc.wait(timeout=10)
            self._kill_rest(container)

    def wait_stopped(self, task_arn: str, timeout: float) -> int:
        container = self.containers[task_arn]
        return container.proc.wait(timeout=timeout)


@dataclass(frozen=True)
class AwsLogs:
    """Where the awslogs driver sends a container's output."""

    account: str
    region: str
    group: str
    stream: str

    def backend(self):
        from moto.logs.models import logs_backends

        return logs_backends[self.account][self.region]

    def write(self, output: str) -> None:
        from moto.core.utils import unix_time_millis

        now = int(unix_time_millis())
        events = [{"timestamp": now, "message": line} for line in output.splitlines() if line]
        self.backend().ensure_log_stream(self.group, self.stream)
        if events:
            self.backend().put_log_events(self.group, self.stream, events)


def _awslogs(task_arn: str, definition: Mapping) -> AwsLogs | None:
    config = definition.get("logConfiguration") or {}
    if config.get("logDriver") != "awslogs":
        return None
    options = config.get("options") or {}
    _, _, _, region, account, _ = task_arn.split(":", 5)
    stream = f"{options['awslogs-stream-prefix']}/{definition['name']}/{task_arn.rsplit('/', 1)[-1]}"
    return AwsLogs(account, options.get("awslogs-region", region), options["awslogs-group"], stream)


def _group_exists(logs: AwsLogs) -> bool:
    return logs.group in logs.backend().groups


def _failed_to_start(task) -> None:
    task.containers[0].last_status = "STOPPED"
    task.stop_code = "TaskFailedToStart"
    task.stopped_reason = (
        "ResourceInitializationError: failed to validate logger args: create stream has been retried 1 times: "
        "failed to create Cloudwatch log stream: ResourceNotFoundException: The specified log group does not exist. "
        ": exit status 1"
    )
    task.desired_status = task.last_status = "STOPPED"


def pids_with(name: str, value: str) -> list[int]:
    needle = f"{name}={value}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def container_user() -> Iterator[str]:
    """A non-root account for images that declare USER (CI runs as root); removed afterwards when created
    here, with the containers' fallback work dirs, once no other test process holds it (machine_state.py)."""

    def create() -> None:
        created = subprocess.run(["useradd", "-m", CONTAINER_USER], capture_output=True, text=True)
        if created.returncode not in (0, 9):  # 9: it already exists
            raise RuntimeError(created.stderr)

    def remove() -> None:
        subprocess.run(["userdel", "-r", CONTAINER_USER], capture_output=True)
        shutil.rmtree("/tmp/fceval-tui", ignore_errors=True)

    with held("container-user", exists=lambda: user_exists(CONTAINER_USER), create=create, remove=remove):
        yield CONTAINER_USER


@pytest.fixture(scope="session")
def image_tools() -> Iterator[Path]:
    """A world-readable directory with the images' stand-in `aws` (tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="fceval-image-"))
    root.chmod(0o755)
    aws = root / "aws"
    aws.write_text(_IMAGE_AWS)
    aws.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ecs_double(aws_env, monkeypatch, tmp_path, container_user, image_tools) -> Iterator[EcsDouble]:
    """Tasks run as real processes; `aws ecs execute-command` on PATH reaches them (plugin installed;
    `ecs_double.install_plugin(False)` removes it)."""
    from moto.core.responses import ActionResult
    from moto.ecs.exceptions import ECSException
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.ecs.responses import EC2ContainerServiceResponse
    from moto.moto_api import state_manager

    state_dir = tmp_path / "ecs-double"
    bin_dir = tmp_path / "ecs-bin"
    for path in (state_dir, bin_dir):
        path.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(_EXEC_AWS.replace("{python}", sys.executable))
    aws.chmod(0o755)
    double = EcsDouble(state_dir, bin_dir, aws_env.env())
    double.install_plugin(True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ECS_DOUBLE_DIR", str(state_dir))
    monkeypatch.delenv("TMUX", raising=False)

    original_run, original_stop = EC2ContainerServiceBackend.run_task, EC2ContainerServiceBackend.stop_task
    original_describe = EC2ContainerServiceBackend.describe_tasks
    original_run_response = EC2ContainerServiceResponse.run_task
    tokens: dict[tuple[str, str, str], tuple[dict, list[str]]] = {}

    def run_task(self, *args, **kwargs):
        tasks = original_run(self, *args, **kwargs)
        for task in tasks:
            definition = self.describe_task_definition(task.task_definition_arn)
            task.containers[0].last_status = "RUNNING"
            task.containers[0].exitCode = None  # AWS has none before the container stops (moto says 0)
            role = role_environment(
                self.account_id, self.region_name, getattr(definition, "task_role_arn", None), task.task_arn
            )
            double.start(task, definition.container_definitions[0], role)
        return tasks

    def stop_task(self, cluster_str: str, task_str: str, reason: str):
        task = original_stop(self, cluster_str, task_str, reason)
        task.stop_code = "UserInitiated"
        double.stop(task.task_arn)
        return task

    def describe_tasks(self, cluster_str: str, tasks: list[str]):
        found = original_describe(self, cluster_str, tasks)
        for task in found:
            double.report_agent(task)
        return [double.answer(task) for task in found]

    class ClientTokenConflict(ECSException):
        def __init__(self, resource_ids: list[str]) -> None:
            super().__init__(
                "ConflictException",
                "The request could not be processed because of conflict in the current state of the resource.",
            )
            self.resource_ids = resource_ids

    def run_task_response(self):
        """RunTask's clientToken (moto ignores it): the same token with the same parameters answers with
        the tasks it started; with other parameters ConflictException, whose resourceIds are those tasks
        (Amazon ECS API Reference, RunTask and ConflictException)."""
        token = self._get_param("clientToken")
        if not token:
            return original_run_response(self)
        request = {k: v for k, v in json.loads(self.body).items() if k != "clientToken"}
        key = (self.current_account, self.region, token)
        with double._lock:
            earlier = tokens.get(key)
        if earlier is not None:
            if earlier[0] != request:
                raise ClientTokenConflict(earlier[1])
            cluster = self._get_param("cluster", "default")
            return ActionResult({"tasks": self.ecs_backend.describe_tasks(cluster, earlier[1]), "failures": []})
        result = original_run_response(self)
        with double._lock:
            tokens[key] = (request, [task.task_arn for task in result.result["tasks"]])
        return result

    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", run_task)
    monkeypatch.setattr(EC2ContainerServiceBackend, "stop_task", stop_task)
    monkeypatch.setattr(EC2ContainerServiceBackend, "describe_tasks", describe_tasks)
    monkeypatch.setattr(EC2ContainerServiceResponse, "run_task", run_task_response)
    yield double
    double.stop_all()
    state_manager.unset_transition("ecs::task")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def shell_image(*entrypoint: str, user: str = CONTAINER_USER, tools: Path | None = None, cmd: Sequence[str] = ()):
    """An image with `sh`, tmux and coreutils (this machine's), and the stand-in `aws` when `tools`."""
    path = f"{tools}:{BASE_PATH}" if tools else BASE_PATH
    return Image(entrypoint=tuple(entrypoint), cmd=tuple(cmd), user=user, path=path)


TASK_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tasks"  # FCEVAL_ECS_IMAGE in aws_settings


@pytest.fixture
def ecs_exec(ecs_double, image_tools):
    """The ECS double with aws_settings' task image (root, no ENTRYPOINT: it runs this machine's Python,
    which lives under /root) and a plain `busybox` for tasks tests register by hand."""
    ecs_double.images[TASK_IMAGE] = shell_image(user="", tools=image_tools)
    ecs_double.images["busybox"] = shell_image(user="")
    return ecs_double
