"""Shared AWS plumbing for the cloud backends: sessions, clients, error classification.

Every boto3 Session is made here. The runner's: one per (profile, region), built once under a lock
(Sessions are not thread-safe), and one client per service built from it up front (clients are
thread-safe and shared by the runner's threads); the audit makes a fresh one per run. botocore does
the retrying of throttled calls (`standard` mode); what is left over after its retries is
classified here into the runner's error kinds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from fceval_tui.domain.artifacts import split_s3
from fceval_tui.errors import (
    CapacityError,
    CredentialsExpired,
    PermanentError,
    ThrottlingError,
    TransientError,
    UserError,
)
from fceval_tui.transports.retry import expired_credentials

RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=70)
# A cheap question asked while credentials are expired: answered or not within seconds.
PROBE_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=10)

_sessions: dict[tuple[str, str], boto3.Session] = {}
_sessions_lock = threading.Lock()


def new_session(region: str, profile: str = "") -> boto3.Session:
    """A new Session (default credential chain when profile is empty); a UserError for an unknown profile."""
    try:
        return boto3.Session(profile_name=profile or None, region_name=region)
    except botocore.exceptions.ProfileNotFound:
        raise UserError(
            f"AWS profile {profile!r} is not configured",
            "check --profile / AWS_PROFILE against ~/.aws/config, or run `aws configure sso`",
        ) from None


def session_for(region: str, profile: str = "") -> boto3.Session:
    """The one shared Session for this profile and region."""
    key = (profile, region)
    with _sessions_lock:
        if key not in _sessions:
            _sessions[key] = new_session(region, profile)
        return _sessions[key]


class AwsClients:
    """The clients one backend uses, built together from one Session."""

    def __init__(self, region: str, profile: str, services: Iterable[str]) -> None:
        self.region = region
        self.profile = profile
        self.session = session_for(region, profile)
        # Built here, once: creating clients from a shared Session in worker threads is not safe.
        with _sessions_lock:
            self._clients = {name: self.session.client(name, config=RETRY_CONFIG) for name in services}

    def __getattr__(self, service: str) -> Any:
        try:
            return self._clients[service]
        except KeyError:
            raise AttributeError(f"no {service} client was built for this backend") from None

    def all(self) -> list[Any]:
        return list(self._clients.values())

    def renew(self) -> str:
        """Swap in a fresh Session and clients once its credentials work (a probe, sts:GetCallerIdentity,
        answers); their ARN. A CredentialsExpired (or another error) while they do not, changing nothing.

        A fresh Session reads the credential chain again: a profile's file rewritten by a credential
        helper, an SSO token cache refreshed by `aws sso login`. Callers reach the clients through
        this object, so every thread uses the new ones from its next call."""
        session = new_session(self.region, self.profile)
        try:
            arn = session.client("sts", config=PROBE_CONFIG).get_caller_identity()["Arn"]
        except AWS_ERRORS as exc:
            raise classify(exc, "sts:GetCallerIdentity") from exc
        with _sessions_lock:
            _sessions[(self.profile, self.region)] = session
            self.session = session
            self._clients = {name: session.client(name, config=RETRY_CONFIG) for name in self._clients}
        return arn

    def check_credentials(self) -> None:
        """Raise a UserError when the credential chain finds nothing (before any API call)."""
        if self.session.get_credentials() is None:
            where = f"profile {self.profile!r}" if self.profile else "the default credential chain"
            raise UserError(
                f"no AWS credentials found in {where}",
                "run `aws sso login --profile NAME` and pass --profile NAME, or export "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on a machine with an instance role",
            )


# Error codes that mean "no capacity or quota right now": the job waits and is retried.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientCapacity",
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "SpotMaxPriceTooLow",
        "InsufficientFreeAddressesInSubnet",
    }
)
# Errors botocore already retried; still worth another attempt later.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)
TRANSIENT_CODES = THROTTLING_CODES | frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "ServerException",
        "Unavailable",
        "IncorrectInstanceState",
        "InvalidInstanceId",  # SSM: agent not (yet) registered or briefly offline
        "TargetNotConnectedException",
    }
)
# Permanent errors and the fix to print with them.
_GRANT = "grant the action to your identity; `fceval-tui audit --print-policy caller` prints the policy"
_AMI = "set EC2_INSTANCE_AMI to an existing AMI id in this region, or leave it empty for Amazon Linux 2023"
PERMANENT_FIXES: dict[str, str] = {
    "UnauthorizedOperation": _GRANT,
    "AccessDenied": _GRANT,
    "AccessDeniedException": _GRANT,
    "AuthFailure": "refresh your credentials (`aws sso login`) or check the clock of this machine",
    "InvalidClientTokenId": "refresh your credentials (`aws sso login`)",
    "InvalidAMIID.Malformed": _AMI,
    "InvalidAMIID.NotFound": _AMI,
    "InvalidAMIID.Unavailable": _AMI,
    "InvalidSubnetID.NotFound": "set FCEVAL_EC2_SUBNET_ID / FCEVAL_ECS_SUBNETS to subnets of this region",
    "InvalidGroup.NotFound": "set FCEVAL_ECS_SECURITY_GROUPS to security groups of this region",
    "ClusterNotFoundException": "create the ECS cluster or set FCEVAL_ECS_CLUSTER to an existing one",
    "NoSuchBucket": "create the bucket or set FC_EVAL_S3_BUCKET / FCEVAL_ARTIFACTS to an existing one",
    "OptInRequired": "enable the service/region for this account",
    "NoSuchEntity": "create the IAM role or instance profile named in the error, or fix FCEVAL_INSTANCE_PROFILE "
    "/ FCEVAL_ECS_TASK_ROLE_ARN / FCEVAL_ECS_EXECUTION_ROLE_ARN",
}


def _code_and_message(exc: botocore.exceptions.ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return str(error.get("Code", "")), str(error.get("Message", ""))


def classify(exc: Exception, doing: str) -> Exception:
    """Turn a botocore exception into the runner's error kinds; `doing` names the action for the message.

    Returns the exception to raise (callers write `raise classify(exc, ...) from exc`)."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return UserError(
            f"{doing}: no usable AWS credentials ({exc})",
            "run `aws sso login --profile NAME` and pass --profile NAME, "
            "or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        )
    expired = expired_credentials(exc)
    if expired is not None:
        return CredentialsExpired(f"{doing}: {expired}")
    if isinstance(exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
        return TransientError(f"{doing}: cannot reach AWS ({exc})", "check the network; the job is retried")
    if not isinstance(exc, botocore.exceptions.ClientError):
        return exc
    code, message = _code_and_message(exc)
    text = f"{doing}: {code}: {message}"
    if code in CAPACITY_CODES or "capacity is unavailable" in message.lower():
        return CapacityError(text, "the job waits and is retried; other zones or instance types may have capacity")
    if code in THROTTLING_CODES or code.startswith("Throttl") or "rate exceeded" in message.lower():
        return ThrottlingError(text, "retried with backoff")
    if code in TRANSIENT_CODES:
        return TransientError(text, "retried with backoff")
    if code == "InvalidParameterValue" and "iaminstanceprofile" in message.lower().replace(" ", ""):
        return PermanentError(
            text,
            "create the instance profile named by FCEVAL_INSTANCE_PROFILE (with the AmazonSSMManagedInstanceCore "
            "policy and S3 access) or set FCEVAL_INSTANCE_PROFILE to an existing one",
        )
    if code in PERMANENT_FIXES:
        return PermanentError(text, PERMANENT_FIXES[code])
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if isinstance(status, int) and status >= 500:
        return TransientError(text, "AWS reported a server error; retried with backoff")
    return PermanentError(text, "check the configuration named in the AWS error")


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, '' for anything else."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return _code_and_message(exc)[0]
    return ""


def chunks(items: Sequence[str], size: int = 100) -> Iterator[Sequence[str]]:
    """Batches for the describe calls that take at most `size` ids (ECS tasks, Batch jobs)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


SSM_IDS_PER_CALL = 50  # DescribeInstanceInformation's InstanceIds filter takes at most 50 values


def online_instances(ssm, instance_ids: Sequence[str], doing: str) -> set[str]:
    """The instances whose SSM agent is Online now (one call per 50 ids); AWS errors classified."""
    online: set[str] = set()
    try:
        for chunk in chunks(instance_ids, SSM_IDS_PER_CALL):
            pages = ssm.get_paginator("describe_instance_information").paginate(
                Filters=[{"Key": "InstanceIds", "Values": list(chunk)}]
            )
            online |= {
                info["InstanceId"]
                for page in pages
                for info in page["InstanceInformationList"]
                if info.get("PingStatus") == "Online"
            }
    except AWS_ERRORS as exc:
        raise classify(exc, f"ssm:DescribeInstanceInformation ({doing})") from exc
    return online


def tag_map(tags: Iterable[dict[str, str]] | None) -> dict[str, str]:
    """EC2-style [{Key, Value}] or ECS-style [{key, value}] tag lists as a dict."""
    result: dict[str, str] = {}
    for tag in tags or ():
        key = tag.get("Key", tag.get("key"))
        if key is not None:
            result[key] = tag.get("Value", tag.get("value", ""))
    return result


def tag_filter(key: str, *values: str) -> dict:
    """An EC2 describe filter on one tag."""
    return {"Name": f"tag:{key}", "Values": list(values)}


# What a boto3 call can raise that `classify` knows how to translate.
AWS_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)


# API operations whose IAM action is not simply service:OperationName.
_ACTIONS_OF_OPERATION = {
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "DeleteObjects"): ("s3:DeleteObject",),
    # A copy reads its source and writes its target; large ones go through a multipart upload.
    ("s3", "CopyObject"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "UploadPartCopy"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    ("s3", "AbortMultipartUpload"): ("s3:AbortMultipartUpload",),
    ("logs", "GetLogEvents"): ("logs:GetLogEvents",),
    ("tagging", "GetResources"): ("tag:GetResources",),  # the Resource Groups Tagging API signs as "tagging"
}


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    """The IAM actions that authorise one API operation (`service` is the signing name: ec2, s3, ecs...)."""
    return _ACTIONS_OF_OPERATION.get((service, operation), (f"{service}:{operation}",))


def upload_file(clients: AwsClients, source: Path, url: str) -> None:
    """Upload one file (multipart when large) to an s3:// URL, with the runner's error kinds."""
    import boto3.exceptions

    bucket, key = split_s3(url)
    try:
        clients.s3.upload_file(str(source), bucket, key)
    except boto3.exceptions.S3UploadFailedError as exc:
        raise PermanentError(
            f"uploading {url} failed: {exc}", "check the bucket exists and you may write to it"
        ) from exc
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        error = classify(exc, f"uploading {url}")
        if isinstance(error, UserError):  # missing credentials: retrying cannot help this job
            raise PermanentError(error.problem, error.fix) from exc
        raise error from exc
