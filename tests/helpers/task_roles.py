"""The credentials a container finds for its task or job role, for the ECS and Batch doubles.

AWS: "Amazon ECS task IAM role" (Amazon ECS Developer Guide) and "IAM roles for tasks" (AWS Batch User
Guide, a job definition's `jobRoleArn`): the container's SDKs and aws CLI get temporary credentials of
that role from the container credentials endpoint, so its calls are the role's (assumed-role/ROLE/SESSION).
Here they are the role's session from moto STS, put in the container's environment. A role moto IAM does
not know (or none) gives nothing: the container keeps the tests' own keys, as before this was modelled.
"""

from __future__ import annotations


def role_environment(account_id: str, region: str, role_arn: str | None, session: str) -> dict[str, str]:
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    if not role_arn:
        return {}
    try:
        iam_backends[account_id]["aws"].get_role_by_arn(role_arn)
    except NotFoundException:
        return {}
    found = sts_backends[account_id]["aws"].assume_role(region, session, role_arn, None, 3600, None)
    return {
        "AWS_ACCESS_KEY_ID": found.access_key_id,
        "AWS_SECRET_ACCESS_KEY": found.secret_access_key,
        "AWS_SESSION_TOKEN": found.session_token,
    }
