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
- StopTask sends SIGTERM to the container, then SIGKILL after the stop timeout (30 s on AWS, 2 s
  here) ("StopTask", Amazon ECS API Reference).
- ECS Exec (`aws ecs execute-command --interactive --command ...`, through the fake `aws` below):
  "Monitor Amazon ECS containers with ECS Exec", Considerations: commands are run as the root user
  ... even when you specify a user ID for the container. The command gets a pseudo-terminal with
  echo on (the Session Manager agent's shell); the AWS CLI needs session-manager-plugin and fails at
  once without it; a task that is not RUNNING refuses the session. Its credentials are the
  operator's (`--profile` honoured), and an AWS error is printed as the AWS CLI v2 prints it
  (awscli/errorhandler.py: "aws: [ERROR]: An error occurred (CODE) when calling the OP operation").
"""

from __future__ import annotations

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

# The operator's `aws` CLI for `ecs execute-command` (session-manager-plugin included).
_EXEC_AWS = """#!{python}
import json, os, pty, select, shutil, sys, termios, tty, fcntl
import boto3, botocore.exceptions
args = sys.argv[1:]
with open(os.environ["ECS_DOUBLE_DIR"] + "/exec-calls.jsonl", "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[args.index("ecs") + 1 : args.index("ecs") + 2] != ["execute-command"]:
    sys.exit("fake aws: only `ecs execute-command` is modelled")
def arg(name):
    return args[args.index(name) + 1]
if shutil.which("session-manager-plugin") is None:
    sys.stderr.write("\\nSessionManagerPlugin is not found. Please refer to SessionManager Documentation here: "
                     "http://docs.aws.amazon.com/console/systems-manager/session-manager-plugin-not-found\\n")
    sys.exit(255)
session = boto3.Session(profile_name=arg("--profile") if "--profile" in args else None)
try:
    tasks = session.client("ecs").describe_tasks(cluster=arg("--cluster"), tasks=[arg("--task")])["tasks"]
except botocore.exceptions.ClientError as exc:  # the CLI's ClientErrorHandler: the AWS error, exit 254
    error = exc.response["Error"]
    sys.stderr.write(f"\\naws: [ERROR]: An error occurred ({error['Code']}) when calling the ExecuteCommand "
                     f"operation: {error['Message']}\\n")
    sys.exit(254)
except botocore.exceptions.BotoCoreError as exc:  # its GeneralExceptionHandler (expired SSO token...): exit 255
    sys.stderr.write(f"\\naws: [ERROR]: {exc}\\n")
    sys.exit(255)
state_file = os.path.join(os.environ["ECS_DOUBLE_DIR"], arg("--task").rsplit("/", 1)[-1] + ".json")
if not tasks or tasks[0]["lastStatus"] != "RUNNING" or not os.path.exists(state_file):
    sys.stderr.write("\\nAn error occurred (InvalidParameterException) when calling the ExecuteCommand operation: "
                     "The execute command failed because execute command was not enabled when the task was run "
                     "or the execute command agent isn't running. Wait and try again or run a new task with "
                     "execute command enabled and try again.\\n")
    sys.exit(254)
container = json.load(open(state_file))
sys.stdout.write("\\nThe Session Manager plugin was installed successfully. Use the AWS CLI to start a session.\\n\\n")
sys.stdout.write("\\nStarting session with SessionId: ecs-execute-command-0123456789\\n")
sys.stdout.flush()
pid, fd = pty.fork()
if pid == 0:  # root, whatever the container's user
    os.chdir(container["cwd"])
    os.execve("/bin/sh", ["sh", "-c", arg("--command")], {"TERM": "xterm-256color", **container["env"]})
local_tty = os.isatty(0)
saved = termios.tcgetattr(0) if local_tty else None
if local_tty:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\\0" * 8))
    tty.setraw(0)
inputs = [fd, 0]
try:
    while True:
        ready, _, _ = select.select(inputs, [], [])
        if fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            os.write(1, data)
        if 0 in ready:
            data = os.read(0, 65536)
            if data:
                os.write(fd, data)
            else:
                inputs.remove(0)
finally:
    if saved is not None:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
os.waitpid(pid, 0)
sys.stdout.write("\\n\\nExiting session with sessionId: ecs-execute-command-0123456789.\\n\\n")
sys.exit(0)  # like the real CLI: the remote exit code is lost
"""


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
        self._lock = threading.Lock()

    # -- the operator's machine --------------------------------------------------------------

    def install_plugin(self, installed: bool = True) -> None:
        """session-manager-plugin on the operator's PATH (the fake `aws` refuses sessions without it)."""
        plugin = self.bin_dir / "session-manager-plugin"
        if installed:
            plugin.write_text("#!/bin/sh\nexit 0\n")
            plugin.chmod(0o755)
        else:
            plugin.unlink(missing_ok=True)

    def exec_calls(self) -> list[list[str]]:
        path = self.state_dir / "exec-calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    # -- the containers -------------------------------------------------------------------------

    def image(self, name: str) -> Image:
        repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        try:
            return self.images[repository]
        except KeyError:
            raise AssertionError(f"CannotPullContainerError: {name} is not in the test's registry") from None

    def start(self, task, definition: Mapping) -> None:
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
            **self.credentials,  # stand-in for the task role's credentials
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
        container = Container(task.task_arn, argv, user, env, proc, log)
        (self.state_dir / f"{task_id}.json").write_text(json.dumps({"cwd": "/", "env": env}))
        with self._lock:
            self.containers[task.task_arn] = container
        threading.Thread(target=self._wait, args=(task, container), daemon=True).start()

    def _wait(self, task, container: Container) -> None:
        code = container.proc.wait()
        self._kill_rest(container)
        (self.state_dir / (task.task_arn.rsplit("/", 1)[-1] + ".json")).unlink(missing_ok=True)
        if code < 0:
            code = 128 - code  # killed by a signal: Docker reports 128+N
        box = task.containers[0]
        box.exitCode = code
        box.last_status = "STOPPED"
        if not container.stopping:
            task.stop_code = "EssentialContainerExited"
            task.stopped_reason = "Essential container in task exited"
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"

    def stop(self, task_arn: str) -> None:
        """StopTask: SIGTERM to the container, SIGKILL after the stop timeout."""
        with self._lock:
            container = self.containers.get(task_arn)
        if container is None or container.proc.poll() is not None:
            return
        container.stopping = True
        for pid in [container.proc.pid, *_pids_with(MARKER, container.env[MARKER])]:
            _signal(pid, signal.SIGTERM)
        threading.Timer(STOP_TIMEOUT, self._kill_rest, args=(container, True)).start()

    def _kill_rest(self, container: Container, main_too: bool = False) -> None:
        if main_too and container.proc.poll() is None:
            _signal(container.proc.pid, signal.SIGKILL)
        for pid in _pids_with(MARKER, container.env[MARKER]):
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


def _pids_with(name: str, value: str) -> list[int]:
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
    """A non-root account for images that declare USER (CI runs as root)."""
    created = subprocess.run(["useradd", "-m", CONTAINER_USER], capture_output=True, text=True)
    if created.returncode not in (0, 9):  # 9: it already exists
        raise RuntimeError(created.stderr)
    yield CONTAINER_USER
    if created.returncode == 0:
        subprocess.run(["userdel", "-r", CONTAINER_USER], capture_output=True)
        shutil.rmtree("/tmp/fceval-tui", ignore_errors=True)  # the containers' fallback work dirs


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
    from moto.ecs.models import EC2ContainerServiceBackend
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

    def run_task(self, *args, **kwargs):
        tasks = original_run(self, *args, **kwargs)
        for task in tasks:
            definition = self.describe_task_definition(task.task_definition_arn)
            task.containers[0].last_status = "RUNNING"
            double.start(task, definition.container_definitions[0])
        return tasks

    def stop_task(self, cluster_str: str, task_str: str, reason: str):
        task = original_stop(self, cluster_str, task_str, reason)
        task.stop_code = "UserInitiated"
        double.stop(task.task_arn)
        return task

    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", run_task)
    monkeypatch.setattr(EC2ContainerServiceBackend, "stop_task", stop_task)
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
