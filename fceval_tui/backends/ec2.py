"""EC2 backend: one instance per job attempt, driven through SSM Run Command.

provision  find-or-launch the instance (tag lookup + ClientToken: a retried launch never makes two),
           zones tried in turn on capacity errors; user data schedules the TTL shutdown first
           (the dead-man's switch, with InstanceInitiatedShutdownBehavior=terminate), installs tmux
           and mounts the NVMe instance store when asked
start      wait for running and for the SSM agent, write the manifest of expected uploads to
           staging (the console's alone), and send the pipeline script and the job's values
           (`pipeline.ENV_FILE`, with the attempt's inbox) inside the Run Command that starts the
           pipeline in tmux: the instance reads nothing from S3
observe    the status board (ec2_board): every watched job's reports in its inbox and its instance's
           state, for one ListObjectsV2 per run and one DescribeInstances per 200 instances a poll
collect    copy the uploads from the attempt's inbox to the artifact layout and check every one
cancel / cleanup   terminate the instance (whatever happened) and delete the staged objects

Run Command runs as root; Session Manager sessions (tail, the live mirror, attach) run as
`SESSION_USER`. Both reach the job's one tmux server on its explicit socket: see remote_tmux.

The AMI is looked up in ec2_image, the VPC and the security group in ec2_network.
"""

from __future__ import annotations

import math
import shlex
import time
from datetime import UTC, datetime
from typing import ClassVar

from fceval_tui.backends import ec2_board, ec2_launch, ec2_look, ec2_spot_price, remote_tmux
from fceval_tui.backends.aws import AWS_ERRORS, AwsClients, classify, error_code, tag_filter, tag_map
from fceval_tui.backends.aws_constants import (
    ATTEMPT_TAG,
    EC2_SECURITY_GROUP,
    INBOX_PREFIX,
    JOB_ID_TAG,
    MANAGED_BY,
    MANAGED_BY_TAG,
    POOL_TAG,
)
from fceval_tui.backends.base import (
    JobContext,
    Observation,
    Outcome,
    Resource,
    ResourceGone,
    TmuxTarget,
)
from fceval_tui.backends.cloud import CloudBackend, remote_work_dir
from fceval_tui.backends.ec2_board import GONE_STATES, Ec2Board, Watched, attempt_key
from fceval_tui.backends.ec2_image import AL2023_PARAMETER, Ec2Images, architecture
from fceval_tui.backends.ec2_network import Ec2Network
from fceval_tui.backends.manifest import MANIFEST, Manifest, load_manifest, verify_uploads
from fceval_tui.backends.staging import Staging
from fceval_tui.config import Settings
from fceval_tui.domain import pipeline
from fceval_tui.domain.models import Job, utcnow
from fceval_tui.domain.prices import cost_so_far, ec2_hourly
from fceval_tui.domain.states import JobState
from fceval_tui.domain.triage import ErrorClass
from fceval_tui.errors import CapacityError, PermanentError, TransientError
from fceval_tui.transports.ssm import SsmTransport

LIVE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
# The OS user of Session Manager sessions unless Run As is configured (AWS: Session Manager, "Turn on
# run as support for Linux and macOS managed nodes"); the agent creates it at the first session.
SESSION_USER = "ssm-user"


def ttl_minutes(ctx: JobContext) -> int:
    return max(1, math.ceil((ctx.expires_at - utcnow()).total_seconds() / 60))


def user_data(ctx: JobContext, work_root: str, use_nvme: bool) -> str:
    """First-boot script. The TTL shutdown comes first so it holds even if the rest fails."""
    banner = f"fceval-tui job {ctx.job.id} attempt {ctx.attempt}"
    return first_boot_script(banner, ttl_minutes(ctx), work_root, use_nvme)


def first_boot_script(banner: str, ttl: int, work_root: str, use_nvme: bool, then: tuple[str, ...] = ()) -> str:
    """The shutdown in `ttl` minutes first, then tmux, the work root (on the NVMe store when asked), and
    the lines `then` (a warm pool's own TTL watcher)."""
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# {banner}",
        f"shutdown -h +{ttl} 'fceval-tui TTL reached'",
        "dnf install -y tmux || yum install -y tmux || (apt-get update && apt-get install -y tmux)",
        f"mkdir -p {q(work_root)}",
    ]
    if use_nvme:
        # Instance store disks show up as NVMe devices with this model name; use the first one.
        lines += [
            "disk=$(ls /dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_* 2>/dev/null"
            " | grep -v -- -part | head -n 1)",
            'if [ -n "$disk" ]; then',
            f'  mkfs.xfs -f "$disk" && mount -o noatime "$disk" {q(work_root)}',
            "fi",
        ]
    return "\n".join([*lines, *then]) + "\n"


class Ec2Backend(CloudBackend):
    name = "ec2"
    first_state = JobState.PROVISIONING
    poll_interval = 5.0
    agent_timeout = 900.0  # first boot + SSM agent registration; slow AMIs take several minutes

    compute_principal = "ec2.amazonaws.com"
    caller_actions: ClassVar[tuple[str, ...]] = (
        "ec2:DescribeImages",
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup",
        "ec2:DeleteSecurityGroup",
        "ec2:DescribeInstances",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
        "iam:PassRole",
        "iam:CreateServiceLinkedRole",  # AWS creates the Spot role on the first spot launch (spot only)
        *ec2_spot_price.ACTIONS,  # the spot price an attempt launched at (spot only)
        "ssm:GetParameter",
        "ssm:DescribeInstanceInformation",
        "ssm:SendCommand",
        "ssm:GetCommandInvocation",
        "ssm:ListCommandInvocations",  # the status board's look rounds (ec2_look)
        "ssm:CancelCommand",
        "ssm:StartSession",  # the `aws` CLI's, for attach and the live mirror
        "ssm:TerminateSession",
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:DeleteObject",
    )
    instance_actions: ClassVar[tuple[str, ...]] = (
        # AmazonSSMManagedInstanceCore (the agent). The instance reads nothing from S3.
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
        "ec2messages:GetMessages",
        "ec2messages:AcknowledgeMessage",
        "ec2messages:SendReply",
        # The pipeline's uploads into its inbox, and the agent's copy of long command outputs
        # (`_ssm_output`, also under the inbox prefix), before which it reads the bucket's
        # encryption (AWS: "Create an IAM instance profile for Systems Manager", S3 output bucket).
        "s3:PutObject",
        "s3:GetEncryptionConfiguration",
    )

    profile_wait = 120.0  # how long a new instance profile may take to become usable by EC2

    def __init__(self, settings: Settings, clients: AwsClients | None = None) -> None:
        super().__init__(settings)
        self.aws = clients or AwsClients(settings.region, settings.profile, ("ec2", "ssm", "s3"))
        self.images = Ec2Images(self.aws, settings)
        self.network = Ec2Network(self.aws, settings)
        self._board = Ec2Board(self.aws, lambda: self.poll_interval / 2, settings.remote_work_dir, SESSION_USER)

    # -- the Backend contract -----------------------------------------------------------------

    def provision(self, ctx: JobContext) -> str:
        existing = self._instances_of(ctx)
        if existing:
            return existing[0]["InstanceId"]  # a retry after a lost RunInstances response
        # One token per (job, attempt, zone): AWS rejects a token reused with other parameters.
        return self.launch_in_zones(self._launch_params(ctx), f"fceval-{ctx.job.id}-a{ctx.attempt}")

    def launch_in_zones(self, params: dict, token: str) -> str:
        """RunInstances in the configured zones in turn (the next on a capacity error); the instance id."""
        subnet = params.get("SubnetId")
        zones: tuple[str | None, ...] = () if subnet else self.settings.ec2_zones
        last: Exception | None = None
        for index, zone in enumerate(zones or (None,)):
            attempt_params = dict(params)
            attempt_params["ClientToken"] = f"{token}-z{index}"[:64]
            if zone:
                attempt_params["Placement"] = {"AvailabilityZone": zone}
            try:
                return ec2_launch.launch(self.aws.ec2, attempt_params, self.profile_wait)
            except AWS_ERRORS as exc:
                where = f" in {zone}" if zone else ""
                error = classify(exc, f"ec2:RunInstances {self.settings.ec2_instance_type}{where}")
                if not isinstance(error, CapacityError) and error_code(exc) != "Unsupported":
                    raise error from exc
                last = error
        if isinstance(last, CapacityError):
            raise last
        raise PermanentError(
            f"{self.settings.ec2_instance_type} is not offered in zones {', '.join(zones)}: {last}",
            "choose other EC2_AVAILABILITY_ZONES or another EC2_INSTANCE_TYPE",
        )

    def start(self, ctx: JobContext, resource_id: str) -> None:
        self._wait_running(resource_id)
        self._wait_agent(resource_id)
        work = remote_work_dir(self.settings, ctx.job.id)
        manifest = self.new_manifest(ctx)
        self.staging(ctx.job, ctx.attempt, ctx.expires_at).put(self.aws.s3, MANIFEST, manifest.to_json())
        files = remote_tmux.bundle(
            {
                pipeline.SCRIPT_NAME: self.pipeline_script(
                    ctx, manifest.upload_shell(), f" on {resource_id}", report=ec2_board.report_shell()
                ),
                pipeline.ENV_FILE: pipeline.env_file_text({**ctx.env, **manifest.environment()}),
            }
        )
        socket = remote_tmux.socket_path(work)
        launch = remote_tmux.launch_script(work, ctx.job.id, socket=socket, grant_user=SESSION_USER)
        try:
            # The bundle travels inside the SSM command (Run Command has no stdin): base64 in its
            # parameters, decoded by a shell builtin, so it is in no process's argv on the instance.
            transport = self._transport(ctx.job, ctx.attempt, resource_id)
            result = transport.run(["sh", "-c", launch], stdin=files, timeout=600)
        except TimeoutError as exc:
            raise TransientError(f"starting the pipeline on {resource_id} timed out: {exc}") from exc
        if result.exit_code == remote_tmux.EXIT_NO_TMUX:
            raise PermanentError(
                f"tmux is not installed on {resource_id}: {result.stderr.strip()}",
                "use an AMI with tmux, or give the subnet access to the package repositories",
            )
        if not result.ok:
            detail = result.stderr.strip()[-300:]
            raise TransientError(f"starting the pipeline on {resource_id} failed (exit {result.exit_code}): {detail}")
        self._board.watch(attempt_key(ctx.job.id, ctx.attempt), Watched(resource_id, manifest.inbox))

    def observe(self, ctx: JobContext, resource_id: str) -> Observation:
        key = attempt_key(ctx.job.id, ctx.attempt)
        if not self._board.watches(key):  # a resumed job: its inbox is in the manifest staged at start
            manifest = Manifest.parse(self.staging(ctx.job, ctx.attempt).get(self.aws.s3, MANIFEST))
            if manifest is None or not manifest.inbox:
                raise ResourceGone(f"no manifest with an inbox for {key}: its pipeline cannot report")
            self._board.watch(key, Watched(resource_id, manifest.inbox))
        sighting = self._board.get(key)
        if sighting is None:  # watched since the last refresh: its pipeline was just started
            return Observation(JobState.RUNNING, detail="EC2: not on the status board yet")
        return ec2_board.observation(sighting, resource_id)

    def collect(self, ctx: JobContext, resource_id: str, observation: Observation) -> Outcome:
        self._board.forget(attempt_key(ctx.job.id, ctx.attempt))
        manifest = load_manifest(self.aws.s3, self.staging(ctx.job, ctx.attempt), ctx, self.settings)
        outcome = verify_uploads(self.aws.s3, manifest, observation.exit_code, observation.detail)
        if outcome.error_class == ErrorClass.UPLOAD and not observation.detail:
            transport = self._transport(ctx.job, ctx.attempt, resource_id)
            said = ec2_look.upload_error(transport, remote_work_dir(self.settings, ctx.job.id))
            outcome = verify_uploads(self.aws.s3, manifest, observation.exit_code, said)
        return outcome

    def cancel(self, ctx: JobContext, resource_id: str) -> None:
        self._terminate([resource_id])

    def cleanup(self, ctx: JobContext, resource_id: str) -> None:
        self._board.forget(attempt_key(ctx.job.id, ctx.attempt))
        # Also whatever carries this attempt's tags: a launch whose reply was lost is found here.
        ids = {resource_id} | {item["InstanceId"] for item in self._instances_of(ctx)}
        self._terminate(sorted(i for i in ids if i.startswith("i-")))
        self.delete_staged(ctx)
        if self.settings.staging_bucket:
            self._ssm_output(ctx.job, ctx.attempt).delete_all(self.aws.s3)

    def would_create(self) -> dict[str, object]:
        s = self.settings
        arch = architecture(s.ec2_instance_type)
        return {
            "resource": "one EC2 instance per job attempt (terminated at the end, or by itself at the TTL)",
            "instance_type": s.ec2_instance_type,
            "ami": s.ec2_ami or f"latest Amazon Linux 2023 ({AL2023_PARAMETER.format(arch=arch)})",
            "market": f"spot, at most ${s.spot_price:g}/h" if s.spot_price is not None else "on-demand",
            "zones": ", ".join(s.ec2_zones) or "any",
            "subnet": s.ec2_subnet or "the default VPC",
            "root_volume_gb": s.ec2_root_volume_gb,
            "nvme_work_dir": s.ec2_use_nvme,
            "security_group": f"{EC2_SECURITY_GROUP} (egress only; created once per VPC if missing)",
            "instance_profile": s.instance_profile,
        }

    def hourly_cost(self) -> float:
        return ec2_hourly(self.settings.ec2_instance_type, self.settings.spot_price) or 0.0

    def attempt_price(self, ctx: JobContext, resource_id: str) -> ec2_spot_price.HourlyPrice:
        s = self.settings
        return ec2_spot_price.launch_price(self.aws.ec2, resource_id, s.ec2_instance_type, s.spot_price)

    def list_resources(self) -> list[Resource]:
        now = datetime.now(UTC)
        resources: list[Resource] = []
        try:
            pages = self.aws.ec2.get_paginator("describe_instances").paginate(
                Filters=[
                    tag_filter(MANAGED_BY_TAG, MANAGED_BY),
                    {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
                ],
                PaginationConfig={"PageSize": 1000},
            )
            for page in pages:
                for reservation in page["Reservations"]:
                    resources.extend(self._instance_resource(item, now) for item in reservation["Instances"])
            groups = self.network.managed_security_groups()
        except AWS_ERRORS as exc:
            raise classify(exc, "listing fceval-tui EC2 resources") from exc
        for group in groups:
            resources.append(
                Resource.from_tags(
                    tag_map(group.get("Tags")),
                    backend=self.name,
                    kind="security-group",
                    id=group["GroupId"],
                    state="available",
                    detail={"name": group.get("GroupName"), "vpc": group.get("VpcId")},
                )
            )
        return resources

    def destroy_resource(self, resource: Resource) -> None:
        if resource.kind == "instance":
            self._terminate([resource.id])
        elif resource.kind == "security-group":
            self.network.delete_security_group(resource.id)
        else:
            super().destroy_resource(resource)

    def tmux_target(self, job: Job) -> TmuxTarget | None:
        if not job.resource_id:
            return None
        work = remote_work_dir(self.settings, job.id)
        return TmuxTarget(remote_tmux.tmux_args(work), job.id, self._transport(job, job.attempts, job.resource_id))

    # -- launching ------------------------------------------------------------------------------

    def _launch_params(self, ctx: JobContext) -> dict:
        boot = user_data(ctx, self.settings.remote_work_dir, self.settings.ec2_use_nvme)
        return self.instance_params({**ctx.tags, ATTEMPT_TAG: str(ctx.attempt)}, boot, ctx.tags)

    def instance_params(self, tag_values: dict[str, str], boot_script: str, group_tags: dict[str, str]) -> dict:
        """RunInstances parameters for one instance of the configured type that runs `boot_script` first
        and carries `tag_values` (so do its volume and spot request); `group_tags` tag a new security group."""
        settings = self.settings
        ami = self.images.ami()
        vpc, subnet = self.network.vpc_and_subnet()
        tags = [{"Key": k, "Value": v} for k, v in tag_values.items()]
        params: dict = {
            "ImageId": ami,
            "InstanceType": settings.ec2_instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "IamInstanceProfile": {"Name": settings.instance_profile},
            "InstanceInitiatedShutdownBehavior": "terminate",
            "UserData": boot_script,
            "BlockDeviceMappings": [
                {
                    "DeviceName": self.images.root_device(ami),
                    "Ebs": {
                        "VolumeSize": settings.ec2_root_volume_gb,
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ],
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "SecurityGroupIds": [self.network.security_group(vpc, group_tags)],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        }
        if subnet:
            params["SubnetId"] = subnet
        if settings.spot_price is not None:
            params["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "MaxPrice": f"{settings.spot_price:g}",
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                },
            }
            params["TagSpecifications"].append({"ResourceType": "spot-instances-request", "Tags": tags})
        return params

    # -- running ---------------------------------------------------------------------------------

    def _instances_of(self, ctx: JobContext) -> list[dict]:
        filters = [
            tag_filter(JOB_ID_TAG, ctx.job.id),
            tag_filter(ATTEMPT_TAG, str(ctx.attempt)),
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
        try:
            reservations = self.aws.ec2.describe_instances(Filters=filters)["Reservations"]
        except AWS_ERRORS as exc:
            raise classify(exc, f"looking up the instance of {ctx.job.id}") from exc
        return [item for r in reservations for item in r["Instances"]]

    def _wait_running(self, instance_id: str) -> None:
        delay = max(1, int(self.poll_interval))
        waiter = self.aws.ec2.get_waiter("instance_running")
        try:
            waiter.wait(InstanceIds=[instance_id], WaiterConfig={"Delay": delay, "MaxAttempts": int(600 / delay) + 1})
        except AWS_ERRORS as exc:
            self._raise_if_gone(instance_id)
            raise TransientError(f"{instance_id} did not reach running: {exc}") from exc

    def _wait_agent(self, instance_id: str) -> None:
        deadline = time.monotonic() + self.agent_timeout
        while True:
            try:
                info = self.aws.ssm.describe_instance_information(
                    Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
                )["InstanceInformationList"]
            except AWS_ERRORS as exc:
                raise classify(exc, f"ssm:DescribeInstanceInformation {instance_id}") from exc
            if info and info[0].get("PingStatus") == "Online":
                return
            if time.monotonic() > deadline:
                raise TransientError(
                    f"the SSM agent on {instance_id} did not come online within {int(self.agent_timeout)} s",
                    "check that FCEVAL_INSTANCE_PROFILE has AmazonSSMManagedInstanceCore and the subnet reaches SSM",
                )
            self._raise_if_gone(instance_id)
            time.sleep(self.poll_interval)

    def _raise_if_gone(self, instance_id: str) -> None:
        try:
            reservations = self.aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except AWS_ERRORS as exc:
            if error_code(exc) == "InvalidInstanceID.NotFound":
                raise ResourceGone(f"instance {instance_id} no longer exists") from exc
            raise classify(exc, f"ec2:DescribeInstances {instance_id}") from exc
        instances = [item for r in reservations for item in r["Instances"]]
        if not instances:
            raise ResourceGone(f"instance {instance_id} no longer exists")
        state = instances[0]["State"]["Name"]
        if state in GONE_STATES:
            reason = instances[0].get("StateReason", {}).get("Message", "")
            raise ResourceGone(f"instance {instance_id} is {state}" + (f" ({reason})" if reason else ""))

    def _terminate(self, instance_ids: list[str]) -> None:
        if not instance_ids:
            return
        try:
            self.aws.ec2.terminate_instances(InstanceIds=instance_ids)
        except AWS_ERRORS as exc:
            if error_code(exc) == "InvalidInstanceID.NotFound" and len(instance_ids) == 1:
                return  # already gone
            raise classify(exc, f"ec2:TerminateInstances {', '.join(instance_ids)}") from exc

    def _transport(self, job: Job, attempt: int, instance_id: str) -> SsmTransport:
        output = self._ssm_output(job, attempt)
        return SsmTransport(
            self.aws.ssm,
            instance_id,
            s3_client=self.aws.s3,
            output_bucket=output.bucket,
            output_prefix=output.prefix,
            region=self.settings.region,
            profile=self.settings.profile or None,
            command_prefix=self.settings.aws_command_prefix,
            poll_interval=min(1.0, self.poll_interval),
        )

    def _ssm_output(self, job: Job, attempt: int) -> Staging:
        """Where the agent copies full command outputs (deleted in cleanup). The agent writes with the
        instance's role, whose only S3 write is under the inbox prefix; the keys carry the command id,
        which only the console and that instance know, and the console reads nothing else there."""
        bucket = self.staging(job, attempt).bucket
        return Staging(bucket, f"{INBOX_PREFIX}{job.run_id}/{job.id}-a{attempt}-ssm-output")

    def _instance_resource(self, item: dict, now: datetime) -> Resource:
        spot = self.settings.spot_price if item.get("InstanceLifecycle") == "spot" else None
        launched = item.get("LaunchTime")
        tags = tag_map(item.get("Tags"))
        return Resource.from_tags(
            tags,
            backend=self.name,
            kind="instance",
            id=item["InstanceId"],
            state=item["State"]["Name"],
            started_at=launched,
            cost_usd=cost_so_far(ec2_hourly(item["InstanceType"], spot), launched, now),
            detail={
                "type": item["InstanceType"],
                "zone": item.get("Placement", {}).get("AvailabilityZone"),
                "lifecycle": item.get("InstanceLifecycle", "on-demand"),
                **({"pool": tags[POOL_TAG]} if POOL_TAG in tags else {}),
            },
        )
