"""The moto server of bench/fleet_bench.py, in a process of its own so that the runner's thousand job
threads and the server do not share one interpreter lock, with light compute doubles installed: each
"instance", task or Batch job does what the pipeline does as seen from AWS (its archive and, on EC2,
its status reports into the attempt's inbox, named by the job's values in the launch command, the
task definition or the Batch overrides) and then ends as its service shows an ended job.

    python bench/fleet_doubles.py     prints `port N`, then obeys lines on stdin:
        finish SECONDS|never          jobs started from now on end that long after they started
        started s3://INBOX            a job the bench put on compute itself (a seeded EC2 instance)
"""

from __future__ import annotations

import base64
import datetime
import io
import logging
import re
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.aws import MotoWorld  # noqa: E402

UPLOAD_ENV = "FCEVAL_JOB_UPLOAD_PREFIX"
INBOX_RUN = "run.tar.gz"


class Fleet:
    """The jobs' compute: registered by the patched services when they start a job; with `finish_after`
    set, each job uploads and reports after that many seconds and then ends."""

    def __init__(self, endpoint: str) -> None:
        self.s3 = MotoWorld(endpoint=endpoint).client("s3")
        self.finish_after: float | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[float, str, Callable[[], None]]] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def reset(self, finish_after: float | None) -> None:
        """A new measurement: forget the jobs of the last one (their compute stays as it is)."""
        with self._lock:
            self._pending = []
            self.finish_after = finish_after

    def started(self, inbox: str, end: Callable[[], None]) -> None:
        with self._lock:
            self._pending.append((time.monotonic(), inbox, end))

    def _loop(self) -> None:
        while True:
            time.sleep(0.2)
            if self.finish_after is None:
                continue
            now = time.monotonic()
            with self._lock:
                due = [p for p in self._pending if now - p[0] >= self.finish_after]
                self._pending = [p for p in self._pending if now - p[0] < self.finish_after]
            for _, inbox, end in due:
                bucket, prefix = inbox[len("s3://") :].split("/", 1)
                self.s3.put_object(Bucket=bucket, Key=f"{prefix}/{INBOX_RUN}", Body=b"archive")
                self.s3.put_object(Bucket=bucket, Key=f"{prefix}/status/uploading", Body=b"")
                self.s3.put_object(Bucket=bucket, Key=f"{prefix}/status/exit-0", Body=b"")
                end()


def install_doubles(fleet: Fleet) -> None:
    from moto.batch.utils import JobStatus
    from moto.batch_simple.models import BatchSimpleBackend
    from moto.core.responses import ActionResult
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.moto_api import state_manager
    from moto.ssm.models import SimpleSystemManagerBackend
    from moto.ssm.responses import SimpleSystemManagerResponse

    original_send = SimpleSystemManagerBackend.send_command

    def send_command(self, **kwargs):
        command = original_send(self, **kwargs)
        script = "\n".join(command.parameters.get("commands", []))
        for blob in re.findall(r"printf %s ([A-Za-z0-9+/=]+) \|", script):  # the launch's bundle
            with tarfile.open(fileobj=io.BytesIO(base64.b64decode(blob))) as tar:
                env = tar.extractfile("job.env").read().decode()
            inbox = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith(UPLOAD_ENV + "="))
            fleet.started(inbox, lambda: None)  # the instance stays up until the console terminates it
        return command

    def describe_instance_information(self):
        wanted = [v for f in self._get_param("Filters", []) if f["Key"] == "InstanceIds" for v in f["Values"]]
        info = [{"InstanceId": i, "PingStatus": "Online", "PlatformType": "Linux"} for i in wanted]
        return ActionResult({"InstanceInformationList": info})

    def list_command_invocations(self):
        # The board's look rounds (not in moto): every pipeline of the light fleet is alive, so nothing is printed.
        command = self.ssm_backend.get_command_by_id(self._get_param("CommandId"))
        items = [
            {"CommandId": command.command_id, "InstanceId": i, "Status": "Success", "CommandPlugins": [{"Output": ""}]}
            for i in command.instance_ids
        ]
        return ActionResult({"CommandInvocations": items})

    SimpleSystemManagerBackend.send_command = send_command
    TaggedEC2Resource.get_tags = _tags_of
    SimpleSystemManagerResponse.describe_instance_information = describe_instance_information
    SimpleSystemManagerResponse.list_command_invocations = list_command_invocations

    original_run = EC2ContainerServiceBackend.run_task

    def run_task(self, *args, **kwargs):
        tasks = original_run(self, *args, **kwargs)
        for task in tasks:
            definition = self.describe_task_definition(task.task_definition_arn).container_definitions[0]
            env = {item["name"]: item["value"] for item in definition.get("environment") or []}
            task.last_status = "RUNNING"
            task.containers[0].last_status = "RUNNING"

            def end(task=task) -> None:
                task.containers[0].exitCode = 0
                task.containers[0].last_status = "STOPPED"
                task.stop_code = "EssentialContainerExited"
                task.stopped_reason = "Essential container in task exited"
                task.desired_status = task.last_status = "STOPPED"

            fleet.started(env[UPLOAD_ENV], end)
        return tasks

    EC2ContainerServiceBackend.run_task = run_task
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})

    def start_job(self, include_start_attempt, job) -> None:
        self.backend._jobs[job.job_id] = job
        job.job_started_at = datetime.datetime.now()
        job.log_stream_name = job._stream_name
        job._start_attempt()
        job.status = JobStatus.RUNNING
        env = {item["name"]: item["value"] for item in (job.container_overrides or {}).get("environment", [])}

        def end(job=job) -> None:
            job.exit_code = 0
            job.latest_attempt["container"]["exitCode"] = 0
            job._mark_stopped(success=True)

        fleet.started(env[UPLOAD_ENV], end)

    BatchSimpleBackend._mark_job_as_finished = start_job


def _tags_of(resource) -> list[dict[str, str]]:
    """moto's own lookup scans every tag of the region for each resource it describes: describing a
    thousand tagged instances took minutes. The same answer from the tag table's index."""
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource.id), "")
    tags = resource.ec2_backend.tags.get(resource.id, {})
    return [{"resource_id": resource.id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]


def serve() -> int:
    from moto.moto_api._internal.models import moto_api_backend
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the access log would bury the bench's numbers
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_api_backend.set_config({"batch": {"use_docker": False}})
    fleet = Fleet(f"http://{host}:{port}")
    install_doubles(fleet)
    print(f"port {port}", flush=True)
    for line in sys.stdin:  # the bench closing the pipe ends the server
        verb, _, arg = line.strip().partition(" ")
        if verb == "finish":
            fleet.reset(None if arg == "never" else float(arg))
        elif verb == "started":
            fleet.started(arg, lambda: None)
        print("ok", flush=True)
    server.stop()
    return 0


class FleetServer:
    """The bench's handle on the server process."""

    def __init__(self) -> None:
        import subprocess

        self._proc = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        first = self._proc.stdout.readline().split()
        if first[:1] != ["port"]:
            raise SystemExit(f"the moto server did not start (it printed {first!r})")
        self.endpoint = f"http://127.0.0.1:{first[1]}"
        self._lock = threading.Lock()

    def _say(self, line: str) -> None:
        with self._lock:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
            self._proc.stdout.readline()

    def reset(self, finish_after: float | None) -> None:
        self._say(f"finish {'never' if finish_after is None else finish_after}")

    def started(self, inbox: str) -> None:
        self._say(f"started {inbox}")

    def stop(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(30)


if __name__ == "__main__":
    sys.exit(serve())
