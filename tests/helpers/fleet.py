"""Helpers for the exec and forward tests: jobs running on moto instances, a tiny echo server standing in
for a service on an instance, and checks on local ports."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fceval_tui.backends.aws_constants import MANAGED_BY, MANAGED_BY_TAG, RUN_ID_TAG
from fceval_tui.domain.models import Job, JobSpec
from fceval_tui.domain.states import JobState

GREETING = b"hello from the instance\n"


def instances(world, count: int, tags: dict[str, str]) -> list[str]:
    ec2 = world.client("ec2")
    ami = ec2.describe_images(Filters=[{"Name": "name", "Values": ["al2023-ami-2023*"]}])["Images"][0]["ImageId"]
    reply = ec2.run_instances(
        ImageId=ami,
        MinCount=count,
        MaxCount=count,
        InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )
    return [item["InstanceId"] for item in reply["Instances"]]


def running_jobs(world, ledger, count: int, backend: str = "ec2", resources: list[str] | None = None) -> list[Job]:
    """A run of `count` running jobs, each on an instance of its own (or on the given resources)."""
    run, jobs = ledger.create_run(backend, count, [JobSpec("aide", f"t{i:02d}") for i in range(count)])
    if resources is None:
        resources = instances(world, count, {MANAGED_BY_TAG: MANAGED_BY, RUN_ID_TAG: run.id})
    out = []
    for job, resource in zip(jobs, resources, strict=True):
        ledger.transition(job.id, JobState.PROVISIONING, attempts=1, resource_id=resource)
        ledger.transition(job.id, JobState.STARTING)
        out.append(ledger.transition(job.id, JobState.RUNNING))
    return out


@contextmanager
def echo_server() -> Iterator[int]:
    """Listens on 127.0.0.1 (its port is yielded): greets each connection, then echoes what it reads."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(GREETING)
                while data := conn.recv(65536):
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone does not)
        listener.close()
        thread.join(10)


def talk(port: int, payload: bytes) -> bytes:
    """Send `payload` to 127.0.0.1:port, then read until the other side is done."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while data := conn.recv(65536):
            received += data
    return received


def is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port, and a server could take it."""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    return True
