"""The runner at fleet scale on the doubles: AWS calls per minute while 10, 100 and 1,000 jobs run
at once, per backend (goal: flat in jobs), jobs failed under a 50% throttling storm (goal: 0), and
the warm pool's launch latency (goal: p50 under 2 s).

Everything runs against a moto server on 127.0.0.1 (bench/fleet_doubles.py, a process of its own)
with the real Runner and backends; calls are counted with a botocore hook on the backend's own
clients (once per API call; the storm also counts the HTTP requests botocore retried). Compute is
a light double there, so that a thousand jobs fit on one machine; tests/helpers has the full
doubles (a real pipeline in tmux), too heavy for a thousand jobs. Last, launch-to-harness-running
latency with and without a warm pool (bench/pool_bench.py, on the full SSM double; as root).

    python bench/fleet_bench.py [--sizes 10,100,1000] [--backends ec2,ecs,batch] [--window 30]
                                [--storm-jobs 30] [--latency-jobs 10]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet_doubles import FleetServer  # noqa: E402
from tests.helpers.aws import BATCH_DEFINITION, BATCH_QUEUE, ECS_CLUSTER, PROFILE, REGION, STAGING, MotoWorld  # noqa: E402

SETTLE = 45.0  # seconds before the window: every job's first look (a resumed EC2 job reads its manifest once)


# -- a 50% throttling storm ------------------------------------------------------------------------

_THROTTLED = {
    # service: (HTTP status, headers, body) as each protocol's throttling error comes back
    "ec2": (
        503,
        {},
        b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit "
        b"exceeded.</Message></Error></Errors><RequestID>bench</RequestID></Response>",
    ),
    "s3": (503, {}, b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"),
    "ssm": (400, {}, b'{"__type":"ThrottlingException","message":"Rate exceeded"}'),
    "ecs": (400, {}, b'{"__type":"ThrottlingException","message":"Rate exceeded"}'),
    "batch": (429, {"x-amzn-ErrorType": "TooManyRequestsException"}, b'{"message":"Too Many Requests"}'),
    "logs": (400, {}, b'{"__type":"ThrottlingException","message":"Rate exceeded"}'),
}


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_):
        yield self.body


def storm(clients, share: float, counter: Counter, rng: random.Random) -> None:
    """Answer `share` of every HTTP request (retries included) with the service's throttling error,
    before it leaves: botocore's retry mode sees exactly what AWS would send."""
    from botocore.awsrequest import AWSResponse

    lock = threading.Lock()

    def maybe_throttle(request, event_name: str, **_):
        service = event_name.split(".")[1]  # before-send.{service id}.{operation}
        with lock:
            counter["requests"] += 1
            if rng.random() >= share or service not in _THROTTLED:
                return None
            counter["throttled"] += 1
        status, headers, body = _THROTTLED[service]
        return AWSResponse(request.url, status, {"x-amzn-RequestId": "bench", **headers}, _Raw(body))

    for client in clients:
        client.meta.events.register("before-send", maybe_throttle)


# -- the measurements ------------------------------------------------------------------------------


class Bench:
    def __init__(self, world: MotoWorld, fleet: FleetServer) -> None:
        self.world = world
        self.fleet = fleet
        self.state = Path(tempfile.mkdtemp(prefix="fceval-fleet-bench-"))

    def settings(self, backend: str, concurrent: int):
        from fceval_tui.config import load_settings

        environ = {
            "AWS_REGION": REGION,
            "FCEVAL_BACKEND": backend,
            "FCEVAL_CONCURRENT": str(concurrent),
            "FC_EVAL_S3_BUCKET": STAGING,
            "FCEVAL_ARTIFACTS": f"s3://{STAGING}/bench-artifacts",
            "FCEVAL_INSTANCE_PROFILE": PROFILE,
            "FCEVAL_RUN_COMMAND": "harness --task {task_id}",
            "FCEVAL_GRADE_COMMAND": "",
            "FCEVAL_ECS_CLUSTER": ECS_CLUSTER,
            "FCEVAL_ECS_IMAGE": "busybox",
            "FCEVAL_ECS_SUBNETS": self.world.subnet,
            "FCEVAL_ECS_SECURITY_GROUPS": self.world.security_group,
            "FCEVAL_BATCH_QUEUE": BATCH_QUEUE,
            "FCEVAL_BATCH_JOB_DEFINITION": BATCH_DEFINITION,
        }
        return load_settings(environ=environ, state_dir=self.state)

    def drive(self, backend_name: str, jobs: int, until: Callable, prepare=None, run: str | None = None):
        """Launch `jobs` jobs with the real runner at that concurrency; `until(ledger, run_id, calls)`
        returns when the measurement is over, with what it measured; returns that and the job states."""
        from fceval_tui.backends import make_backend
        from fceval_tui.domain.models import JobSpec
        from fceval_tui.ledger import Ledger
        from fceval_tui.services.runner import Runner

        settings = self.settings(backend_name, min(jobs, 1000))
        backend = make_backend(backend_name, settings)
        calls: Counter = Counter()

        def count(model, **_):
            calls[model.name] += 1

        for client in backend.aws.all():
            client.meta.events.register("before-call.*.*", count)
        if prepare:
            prepare(backend)
        ledger = Ledger.open(settings.state_dir)
        runner = Runner(ledger, settings, backend)
        if run is None:
            run = runner.create_run([JobSpec("bench", f"task-{n}") for n in range(jobs)], skip_preflight=True)[0].id
        driver = threading.Thread(target=runner.run, args=(run,), daemon=True)
        driver.start()
        try:
            window = until(ledger, run, calls)
        finally:
            runner.stop()
            driver.join()  # every job's thread is done before the ledger closes
        states = Counter(job.state.value for job in ledger.jobs(run))
        ledger.close()
        return window, states

    def calls_per_minute(self, backend_name: str, jobs: int, window: float) -> tuple[Counter, Counter]:
        """Calls the runner makes while `jobs` jobs all run: the steady state, after every job's first
        look. The jobs' compute is made first and the runner resumes the run (as after `kill -9`), so
        that a thousand launches through one moto server do not take the hour they would."""
        self.fleet.reset(None)
        seed = self.seed(backend_name, jobs)

        def until(ledger, run_id, calls):
            time.sleep(SETTLE)
            before = Counter(calls)
            time.sleep(window)
            return Counter({op: n - before[op] for op, n in calls.items() if n - before[op]})

        return self.drive(backend_name, jobs, until, run=seed)

    def seed(self, backend_name: str, jobs: int) -> str:
        """A run of `jobs` jobs already running on their compute, as a runner killed mid-run leaves it."""
        from concurrent.futures import ThreadPoolExecutor
        from datetime import timedelta

        from fceval_tui.backends import make_backend
        from fceval_tui.backends.base import JobContext
        from fceval_tui.backends.manifest import MANIFEST
        from fceval_tui.domain.models import JobSpec, utcnow
        from fceval_tui.domain.states import JobState
        from fceval_tui.ledger import Ledger

        settings = self.settings(backend_name, min(jobs, 1000))
        backend = make_backend(backend_name, settings)
        ledger = Ledger.open(settings.state_dir)
        run, created = ledger.create_run(
            backend_name, settings.concurrent, [JobSpec("bench", f"task-{n}") for n in range(jobs)], settings={}
        )
        contexts = [
            JobContext(job, 1, "harness", None, settings.artifact_prefix, self.state, utcnow() + timedelta(hours=3))
            for job in created
        ]
        if backend_name == "ec2":  # one RunInstances for all: the bench measures watching, not launching
            params = backend._launch_params(contexts[0])
            params.update(MinCount=jobs, MaxCount=jobs)
            ids = [i["InstanceId"] for i in backend.aws.ec2.run_instances(**params)["Instances"]]

            def stage(pair):
                ctx, _ = pair
                manifest = backend.new_manifest(ctx)
                backend.staging(ctx.job, 1, ctx.expires_at).put(backend.aws.s3, MANIFEST, manifest.to_json())
                self.fleet.started(manifest.inbox)
        else:
            ids = [""] * jobs

            def stage(pair):
                ctx, index = pair
                ids[index] = backend.provision(ctx)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(stage, [(ctx, n) for n, ctx in enumerate(contexts)]))
        for job, resource in zip(created, ids, strict=True):
            job = ledger.transition(job.id, JobState.PROVISIONING, attempts=1, started_at=utcnow())
            job = ledger.transition(job.id, JobState.STARTING, resource_id=resource)
            ledger.transition(job.id, JobState.RUNNING)
        ledger.close()
        return run.id

    def throttling_storm(self, backend_name: str, jobs: int, share: float = 0.5) -> tuple[Counter, Counter]:
        """Every request of the runner's clients throttled with probability `share`, start to finish."""
        self.fleet.reset(3.0)
        traffic: Counter = Counter()
        rng = random.Random(11)

        def until(ledger, run_id, calls):
            began = time.monotonic()
            shown = began
            while not all(j.state.is_final for j in ledger.jobs(run_id)):
                if time.monotonic() - began > 1800:
                    raise SystemExit(f"{backend_name}: the storm run did not end within 30 min")
                if time.monotonic() - shown > 60:  # a storm takes minutes: say where it stands
                    shown = time.monotonic()
                    states = Counter(j.state.value for j in ledger.jobs(run_id))
                    print(f"  {backend_name} after {shown - began:.0f} s: {dict(states)}", file=sys.stderr, flush=True)
                time.sleep(1.0)
            return Counter(calls)

        _, states = self.drive(backend_name, jobs, until, prepare=lambda b: storm(b.aws.all(), share, traffic, rng))
        return states, traffic


def launch_latency(jobs: int) -> list[str]:
    """Launch-to-harness-running latency per job with and without a warm pool (goal: p50 under 2 s on a
    warm pool): bench/pool_bench.py, in a process of its own (it runs moto in-process, apart from this
    bench's server)."""
    script = Path(__file__).with_name("pool_bench.py")
    done = subprocess.run([sys.executable, str(script), "--jobs", str(jobs)], capture_output=True, text=True)
    return (done.stdout + done.stderr).rstrip().splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--backends", default="ec2,ecs,batch")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of steady state measured per size")
    parser.add_argument("--storm-jobs", type=int, default=30)
    parser.add_argument("--latency-jobs", type=int, default=10, help="jobs per launch-latency measurement (0: skip)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    names = args.backends.split(",")
    from tests.helpers.aws_fixtures import _create_world

    fleet = FleetServer()
    world = MotoWorld(endpoint=fleet.endpoint)
    for key in [k for k in os.environ if k.startswith(("AWS_", "FCEVAL_"))]:
        del os.environ[key]
    os.environ.update(world.env())
    _create_world(world)
    bench = Bench(world, fleet)

    print("AWS calls per minute made by the runner while N jobs run at once (default poll intervals)")
    print(f"{'backend':<8} {'jobs':>6} {'running':>8} {'calls/min':>10} {'per job/min':>12}  breakdown per minute")
    for name in names:
        for size in sizes:
            calls, states = bench.calls_per_minute(name, size, args.window)
            scale = 60.0 / args.window
            total = sum(calls.values()) * scale
            breakdown = ", ".join(f"{op} {n * scale:.0f}" for op, n in sorted(calls.items()))
            running = states.get("running", 0)
            print(f"{name:<8} {size:>6} {running:>8} {total:>10.0f} {total / size:>12.2f}  {breakdown}", flush=True)
            if running < size:
                print(f"         not running: {dict(s for s in states.items() if s[0] != 'running')}", flush=True)

    print(f"\nA 50% throttling storm on every request of the runner's clients ({args.storm_jobs} jobs a backend)")
    print(f"{'backend':<8} {'jobs':>6} {'failed':>7} {'succeeded':>10} {'requests':>9} {'throttled':>10} {'min':>5}")
    for name in names if args.storm_jobs else ():
        began = time.monotonic()
        states, traffic = bench.throttling_storm(name, args.storm_jobs)
        failed = sum(n for s, n in states.items() if s in ("failed", "timed_out", "cancelled"))
        print(
            f"{name:<8} {args.storm_jobs:>6} {failed:>7} {states.get('succeeded', 0):>10} "
            f"{traffic['requests']:>9} {traffic['throttled']:>10} {(time.monotonic() - began) / 60:>5.1f}",
            flush=True,
        )

    print()
    for line in launch_latency(args.latency_jobs) if args.latency_jobs else ():
        print(line)
    fleet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
