"""RunInstances and the two ways EC2 refuses a launch that will succeed later or differently: a
just-created instance profile (IAM is eventually consistent), and a client token reused with other
parameters (after a resume, the expiry tag is recomputed)."""

from __future__ import annotations

import secrets
import time

from fceval_tui.backends.aws import AWS_ERRORS, error_code, tag_filter
from fceval_tui.backends.aws_constants import JOB_ID_TAG


def launch(ec2, params: dict, profile_wait: float) -> str:
    """RunInstances with its client token; the instance id. On IdempotentParameterMismatch the instance
    that token made is used if it still runs, else a fresh token launches a new one."""
    try:
        return run_instances(ec2, params, profile_wait)
    except AWS_ERRORS as exc:
        if error_code(exc) != "IdempotentParameterMismatch":
            raise
    token = params["ClientToken"]
    # By the job's tag, then the token: the instances of one job are few.
    job_id = next(t["Value"] for spec in params["TagSpecifications"] for t in spec["Tags"] if t["Key"] == JOB_ID_TAG)
    reservations = ec2.describe_instances(
        Filters=[tag_filter(JOB_ID_TAG, job_id), {"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    earlier = [i["InstanceId"] for r in reservations for i in r["Instances"] if i.get("ClientToken") == token]
    if earlier:
        return earlier[0]
    return run_instances(ec2, {**params, "ClientToken": f"{token[:55]}-{secrets.token_hex(4)}"}, profile_wait)


def run_instances(ec2, params: dict, profile_wait: float) -> str:
    """RunInstances, waiting out a just-created instance profile for up to `profile_wait` seconds: EC2
    rejects a new profile for a while (AWS IAM troubleshooting: "Invalid IAM Instance Profile" right
    after creating it), and the audit's own fix command leads users straight into this."""
    deadline = time.monotonic() + profile_wait
    delay = 0.5
    while True:
        try:
            return ec2.run_instances(**params)["Instances"][0]["InstanceId"]
        except AWS_ERRORS as exc:
            if not _profile_not_yet_visible(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _profile_not_yet_visible(exc: BaseException) -> bool:
    message = str(exc).lower()
    return error_code(exc) == "InvalidParameterValue" and "iaminstanceprofile" in message.replace(" ", "")
