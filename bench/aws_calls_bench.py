"""AWS API calls per console refresh (`list_resources`) with 10, 100 and 1,000 live resources.

Runs against moto in-process (no AWS account needed) and counts calls with a botocore event hook
on the backend's own clients. moto returns ECS ListTasks/ListTaskDefinitions and Batch ListJobs in
one page whatever the size; AWS pages them (100 per page), so on AWS add about N/100 list calls
(e.g. ECS with 1,000 tasks: 10 ListTasks + 10 DescribeTasks + 1 ListTaskDefinitions = 21).
EC2's DescribeInstances (1,000 per page) and the batched describes are counted as AWS makes them.

    python bench/aws_calls_bench.py [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

SERVICES = {"ec2": ("ec2",), "ecs": ("ecs",), "batch": ("batch",)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    sizes = [int(n) for n in parser.parse_args().sizes.split(",")]
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")

    from moto import mock_aws
    from moto.moto_api import state_manager

    rows = []
    with mock_aws(config={"batch": {"use_docker": False}}):
        # moto moves a task towards STOPPED on every DescribeTasks and finishes Batch jobs at once;
        # the console's view of "live" needs them to stay running.
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
        _keep_batch_jobs_running()
        world = _World()
        for size in sizes:
            for name in ("ec2", "ecs", "batch"):
                world.grow(name, size)
                backend = world.backends[name]
                counter = Counter()

                def count(model, counter=counter, **_):
                    counter[model.name] += 1

                for client in backend.aws.all():
                    client.meta.events.register("before-call.*.*", count)
                listed = [r for r in backend.list_resources() if r.kind in ("instance", "task", "batch-job")]
                for client in backend.aws.all():
                    client.meta.events.unregister("before-call.*.*", count)
                rows.append((name, size, len(listed), sum(counter.values()), counter))
    print(f"{'backend':<8} {'live':>6} {'listed':>7} {'calls/refresh':>14}  breakdown (moto; see the docstring)")
    for name, size, listed, total, counter in rows:
        breakdown = ", ".join(f"{op} x{n}" for op, n in sorted(counter.items()))
        print(f"{name:<8} {size:>6} {listed:>7} {total:>14}  {breakdown}")
    return 0


def _keep_batch_jobs_running() -> None:
    from moto.batch.utils import JobStatus
    from moto.batch_simple.models import BatchSimpleBackend

    def start_only(self, include_start_attempt, job):
        self.backend._jobs[job.job_id] = job
        job.status = JobStatus.RUNNING

    BatchSimpleBackend._mark_job_as_finished = start_only


class _World:
    """The AWS resources the backends need, and `grow` to reach N live resources each."""

    def __init__(self) -> None:
        import boto3

        from fceval_tui.backends.aws import AwsClients
        from fceval_tui.backends.batch import BatchBackend
        from fceval_tui.backends.ec2 import Ec2Backend
        from fceval_tui.backends.ecs import EcsBackend
        from fceval_tui.config import load_settings

        ec2 = boto3.client("ec2")
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
        group = ec2.create_security_group(GroupName="bench", Description="bench", VpcId=vpc)["GroupId"]
        boto3.client("s3").create_bucket(Bucket="bench-staging")
        boto3.client("iam").create_instance_profile(InstanceProfileName="bench")
        boto3.client("ecs").create_cluster(clusterName="bench")
        batch = boto3.client("batch")
        role = boto3.client("iam").create_role(RoleName="bench", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        env = batch.create_compute_environment(
            computeEnvironmentName="bench", type="UNMANAGED", state="ENABLED", serviceRole=role
        )
        batch.create_job_queue(
            jobQueueName="bench",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
        )
        batch.register_job_definition(
            jobDefinitionName="bench",
            type="container",
            containerProperties={"image": "busybox", "vcpus": 1, "memory": 512},
        )
        self.state = Path(tempfile.mkdtemp(prefix="fceval-bench-"))
        self.settings = load_settings(
            environ={
                "FC_EVAL_S3_BUCKET": "bench-staging",
                "FCEVAL_ARTIFACTS": "s3://bench-staging/out",
                "FCEVAL_INSTANCE_PROFILE": "bench",
                "FCEVAL_ECS_CLUSTER": "bench",
                "FCEVAL_ECS_IMAGE": "busybox",
                "FCEVAL_ECS_SUBNETS": subnet,
                "FCEVAL_ECS_SECURITY_GROUPS": group,
                "FCEVAL_BATCH_QUEUE": "bench",
                "FCEVAL_BATCH_JOB_DEFINITION": "bench",
            },
            state_dir=self.state,
        )
        region, profile = self.settings.region, self.settings.profile
        self.backends = {
            "ec2": Ec2Backend(self.settings, AwsClients(region, profile, ("ec2", "ssm", "s3"))),
            "ecs": EcsBackend(self.settings, AwsClients(region, profile, ("ecs", "s3"))),
            "batch": BatchBackend(self.settings, AwsClients(region, profile, ("batch", "logs", "s3"))),
        }
        self.live = Counter()
        self.seq = 0

    def grow(self, name: str, size: int) -> None:
        while self.live[name] < size:
            self.seq += 1
            ctx = self._context(name)
            backend = self.backends[name]
            if name == "ec2":
                # One RunInstances for many instances: the bench measures listing, not launching.
                count = size - self.live[name]
                params = backend._launch_params(ctx)
                params.update(MinCount=count, MaxCount=count)
                backend.aws.ec2.run_instances(**params)
                self.live[name] += count
            else:
                backend.provision(ctx)
                self.live[name] += 1

    def _context(self, name: str):
        from fceval_tui.backends.base import JobContext
        from fceval_tui.domain.models import Job, utcnow
        from fceval_tui.domain.states import JobState

        job = Job(
            id=f"rbench-{self.seq:04d}",
            run_id="rbench",
            seq=self.seq,
            agent="a",
            task_id="t",
            model="",
            dataset="",
            backend=name,
            state=JobState.PROVISIONING,
            attempts=1,
        )
        return JobContext(job, 1, "true", None, "s3://bench-staging/out", self.state, utcnow() + timedelta(minutes=60))


if __name__ == "__main__":
    sys.exit(main())
