"""Launch-to-harness-running latency per EC2 job, with and without a warm pool, on the test doubles.

For each job: from the runner's `provision` call to the moment the pipeline's `phase` file says
`running` (the harness has been started), through the backend calls the runner makes: RunInstances,
the running waiter, the SSM agent check and the start command without a pool; a slot claim in the
ledger and the start command (the job's user, work directory and tmux server) on a pool. Goal: p50
under 2 s on a warm pool.

The doubles: moto in this process and the SSM Run Command double of tests/helpers/ssm_double.py,
which runs each command on this machine as root (so run this as root). Their instances are running
and their agents online at once: the real boot and agent registration (one to several minutes per
instance, which is what a pool saves) is not in the "new instances" numbers.

    sudo python bench/pool_bench.py [--jobs 10] [--pool-size 2]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASE_TIMEOUT = 60.0


def measure_pool_latency(jobs: int = 10, pool_size: int = 2) -> dict[str, list[float]]:
    """Seconds from provision to harness running per job, `{"new instances": [...], "warm pool": [...]}`,
    printed as a table; empty lists (and a note) when not run as root."""
    if os.geteuid() != 0:
        print("pool_bench: the SSM double runs commands as root and a pool job creates a Unix user: run as root")
        return {"new instances": [], "warm pool": []}
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")

    import pytest
    from moto import mock_aws

    from fceval_tui.backends.remote_tmux import TMUX_GROUP
    from tests.helpers.ssm_double import Ec2Machine, install_run_command

    group_existed = subprocess.run(["getent", "group", TMUX_GROUP], capture_output=True).returncode == 0
    root = Path(tempfile.mkdtemp(prefix="fceval-pool-bench-", dir="/tmp"))
    root.chmod(0o755)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    (root / "fceval").mkdir(mode=0o755)
    env = {key: value for key, value in os.environ.items() if key != "TMUX"}
    env["TMUX_TMPDIR"] = str(root / "tmp")
    machine = Ec2Machine(root, env)
    patch = pytest.MonkeyPatch()
    results: dict[str, list[float]] = {}
    try:
        with mock_aws():
            install_run_command(patch, machine)
            settings = _world(root)
            results["new instances"] = _measure(settings, machine, jobs, pool=None)
            results["warm pool"] = _measure(settings, machine, jobs, pool=pool_size)
    finally:
        patch.undo()
        machine.stop()
        if not group_existed:
            subprocess.run(["groupdel", TMUX_GROUP], capture_output=True)
    _print(results, pool_size)
    return results


def _world(root: Path):
    import boto3

    from fceval_tui.config import load_settings

    s3 = boto3.client("s3", region_name="us-east-1")
    for bucket in ("bench-staging", "bench-results"):
        s3.create_bucket(Bucket=bucket)
    boto3.client("iam", region_name="us-east-1").create_instance_profile(InstanceProfileName="bench-profile")
    state = root / "state"
    state.mkdir()
    return load_settings(
        environ={
            "AWS_REGION": "us-east-1",
            "FC_EVAL_S3_BUCKET": "bench-staging",
            "FCEVAL_ARTIFACTS": "s3://bench-results/evals",
            "FCEVAL_INSTANCE_PROFILE": "bench-profile",
            "FCEVAL_REMOTE_WORK_DIR": str(root / "fceval"),
            "FCEVAL_RUN_COMMAND": "sleep 60",
            "FCEVAL_GRADE_COMMAND": "",
            "EC2_USE_NVME_STORAGE": "false",
            "FCEVAL_POOL_VCPUS_PER_JOB": "256",
        },
        state_dir=state,
    )


def _measure(settings, machine, jobs: int, pool: int | None) -> list[float]:
    from fceval_tui.backends.base import JobContext
    from fceval_tui.backends.ec2 import Ec2Backend
    from fceval_tui.backends.ec2_pool import Ec2PoolBackend
    from fceval_tui.domain.models import Job, utcnow
    from fceval_tui.domain.states import JobState
    from fceval_tui.domain.template import job_environment
    from fceval_tui.ledger import Ledger
    from fceval_tui.services import pool as pools
    from fceval_tui.services.runner import job_values, render_commands

    ledger = Ledger.open(settings.state_dir)
    if pool:
        name = f"bench{secrets.token_hex(2)}"
        pools.pool_up(settings, ledger, name, pool)
        settings = pools.settings_for_run(settings.replace(pool=name), ledger)
        backend = Ec2PoolBackend(settings, ledger=ledger)
    else:
        backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    run_id = "r" + secrets.token_hex(4)
    run_command, grade_command = render_commands(settings)
    latencies = []
    for seq in range(1, jobs + 1):
        job = Job(f"{run_id}-{seq:03d}", run_id, seq, "bench", f"t{seq}", "", "", "ec2", JobState.PROVISIONING, 1)
        work = settings.state_dir / "work" / job.id
        work.mkdir(parents=True)
        remote = f"{settings.remote_work_dir}/{job.id}"
        ctx = JobContext(
            job,
            1,
            run_command,
            grade_command,
            settings.artifact_prefix,
            work,
            utcnow() + timedelta(minutes=settings.ttl_minutes),
            job_environment(job_values(job, remote + "/artifacts")),
        )
        started = time.perf_counter()
        resource = backend.provision(ctx)
        backend.start(ctx, resource)
        phase = Path(remote) / "phase"
        deadline = time.monotonic() + PHASE_TIMEOUT
        while not (phase.exists() and phase.read_text().strip() == "running"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{job.id}: the harness did not start within {PHASE_TIMEOUT} s")
            time.sleep(0.005)
        latencies.append(time.perf_counter() - started)
        backend.cancel(ctx, resource)
        backend.cleanup(ctx, resource)
    if pool:
        pools.pool_down(settings, ledger, settings.pool)
    ledger.close()
    shutil.rmtree(settings.state_dir / "work", ignore_errors=True)
    return latencies


def _print(results: dict[str, list[float]], pool_size: int) -> None:
    print(f"launch-to-harness-running per job on the doubles (pool of {pool_size}; goal: warm p50 < 2 s)")
    print(f"{'compute':<14} {'jobs':>5} {'p50 s':>7} {'p90 s':>7} {'max s':>7}")
    for label, values in results.items():
        if not values:
            continue
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
        print(f"{label:<14} {len(values):>5} {statistics.median(values):>7.3f} {p90:>7.3f} {ordered[-1]:>7.3f}")
    print("(the doubles boot instances and register agents at once: on AWS add 1-several minutes to every")
    print(" 'new instances' job, which is what the pool saves)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--pool-size", type=int, default=2)
    args = parser.parse_args()
    measure_pool_latency(args.jobs, args.pool_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
