"""The printed caller policy allows every AWS call the product makes, and the `aws` CLI makes on its
behalf: a representative end-to-end run per backend (the tests/aws runner runs, on the same
doubles) is recorded with a botocore event hook, each call is turned into the IAM requests AWS
would authorise (action, resource ARN, condition keys), and each request is evaluated against the
printed policy with services/policy_evaluation.

Approximations (documented, not hidden): the condition keys are the ones the printed policy uses
(tags the request carries or the resource has, read from moto at the moment of the call;
ec2:CreateAction / ecs:CreateAction for tag-on-create; ecs:cluster; s3:prefix); ARNs of resources
a call creates use a placeholder id; the `aws` CLI's calls are read from the argv the product
builds for attach and the live mirror (what the fake `aws` in tests/helpers/tmux.py logs):
`ssm start-session` -> ssm:StartSession on the instance and the document, then ssm:TerminateSession
on the caller's session; `ecs execute-command` -> ecs:ExecuteCommand on the cluster and the task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fceval_tui.backends.aws import iam_actions
from fceval_tui.services import audit
from fceval_tui.services.policy_evaluation import Decision, evaluate
from tests.helpers.aws import QUICK, REGION, RUN, run_with_runner, spec

ACCOUNT = "123456789012"
USERID = "AIDATESTCALLER"  # the caller's aws:userid, which names its sessions


def arn(service: str, resource: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:{service}:{REGION}:{account}:{resource}"


@dataclass
class Recorder:
    """A botocore hook turning each call into IAM requests: (action, resource, context)."""

    world: object
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    operations: set[tuple[str, str]] = field(default_factory=set)

    def __call__(self, model, params, **_: object) -> None:
        service, op = model.service_model.signing_name, model.name
        self.operations.add((service, op))
        self.requests.extend(self.requests_for(service, op, dict(params)))

    def attach(self, clients) -> None:
        for client in clients:
            client.meta.events.register("before-parameter-build.*.*", self)

    # -- tags of existing resources, read from moto before the call changes them -------------------

    def ec2_tags(self, resource_id: str) -> dict:
        reply = self.world.client("ec2").describe_tags(Filters=[{"Name": "resource-id", "Values": [resource_id]}])
        return {t["Key"]: t["Value"] for t in reply["Tags"]}

    def ecs_tags(self, resource_arn: str) -> dict:
        tags = self.world.client("ecs").list_tags_for_resource(resourceArn=resource_arn).get("tags", [])
        return {t["key"]: t["value"] for t in tags}

    def batch_tags(self, job_id: str) -> dict:
        jobs = self.world.client("batch").describe_jobs(jobs=[job_id])["jobs"]
        return jobs[0].get("tags", {}) if jobs else {}

    # -- one call, as IAM sees it --------------------------------------------------------------------

    def requests_for(self, service: str, op: str, p: dict) -> list[tuple[str, str, dict]]:
        managed = lambda tags, prefix="aws:ResourceTag": (  # noqa: E731
            {f"{prefix}/ManagedBy": tags["ManagedBy"]} if "ManagedBy" in tags else {}
        )
        if service == "s3":
            return self._s3(op, p)
        if (service, op) == ("ec2", "RunInstances"):
            tags = {t["Key"]: t["Value"] for t in p["TagSpecifications"][0]["Tags"]}
            request = managed(tags, "aws:RequestTag")
            group = p["SecurityGroupIds"][0]
            created = [arn("ec2", "instance/i-new"), arn("ec2", "volume/vol-new")]
            return (
                [("ec2:RunInstances", r, request) for r in created]
                + [("ec2:CreateTags", r, {**request, "ec2:CreateAction": "RunInstances"}) for r in created]
                + [
                    ("ec2:RunInstances", arn("ec2", f"image/{p['ImageId']}", account=""), {}),
                    ("ec2:RunInstances", arn("ec2", f"subnet/{p.get('SubnetId', 'subnet-default')}"), {}),
                    ("ec2:RunInstances", arn("ec2", "network-interface/eni-new"), {}),
                    (
                        "ec2:RunInstances",
                        arn("ec2", f"security-group/{group}"),
                        managed(self.ec2_tags(group), "ec2:ResourceTag"),
                    ),
                ]
            )
        if (service, op) == ("ec2", "CreateSecurityGroup"):
            tags = {t["Key"]: t["Value"] for t in p["TagSpecifications"][0]["Tags"]}
            request = managed(tags, "aws:RequestTag")
            group = arn("ec2", "security-group/sg-new")
            return [
                ("ec2:CreateSecurityGroup", group, request),
                ("ec2:CreateSecurityGroup", arn("ec2", f"vpc/{p['VpcId']}"), {}),
                ("ec2:CreateTags", group, {**request, "ec2:CreateAction": "CreateSecurityGroup"}),
            ]
        if (service, op) == ("ec2", "TerminateInstances"):
            return [
                ("ec2:TerminateInstances", arn("ec2", f"instance/{i}"), managed(self.ec2_tags(i), "ec2:ResourceTag"))
                for i in p["InstanceIds"]
            ]
        if (service, op) == ("ec2", "DeleteSecurityGroup"):
            group = p["GroupId"]
            tags = managed(self.ec2_tags(group), "ec2:ResourceTag")
            return [("ec2:DeleteSecurityGroup", arn("ec2", f"security-group/{group}"), tags)]
        if (service, op) == ("ssm", "GetParameter"):
            return [("ssm:GetParameter", arn("ssm", f"parameter{p['Name']}", account=""), {})]
        if (service, op) == ("ssm", "SendCommand"):
            document = arn("ssm", f"document/{p['DocumentName']}", account="")
            return [("ssm:SendCommand", document, {})] + [
                ("ssm:SendCommand", arn("ec2", f"instance/{i}"), managed(self.ec2_tags(i), "ssm:resourceTag"))
                for i in p["InstanceIds"]
            ]
        if (service, op) == ("ecs", "RegisterTaskDefinition"):
            tags = {t["key"]: t["value"] for t in p.get("tags", [])}
            request = managed(tags, "aws:RequestTag")
            definition = arn("ecs", f"task-definition/{p['family']}:1")
            return [
                ("ecs:RegisterTaskDefinition", definition, request),
                ("ecs:TagResource", definition, {**request, "ecs:CreateAction": "RegisterTaskDefinition"}),
            ]
        if (service, op) == ("ecs", "RunTask"):
            tags = {t["key"]: t["value"] for t in p.get("tags", [])}
            request = managed(tags, "aws:RequestTag")
            cluster = {"ecs:cluster": arn("ecs", f"cluster/{p['cluster']}")}
            definition = p["taskDefinition"]
            task = arn("ecs", f"task/{p['cluster']}/new")
            return [
                ("ecs:RunTask", definition, {**request, **cluster}),
                ("ecs:TagResource", task, {**request, "ecs:CreateAction": "RunTask"}),
            ]
        if (service, op) in (("ecs", "StopTask"), ("ecs", "DescribeTasks")):
            tasks = [p["task"]] if "task" in p else p["tasks"]
            return [(f"ecs:{op}", t, managed(self.ecs_tags(t))) for t in tasks]
        if (service, op) == ("ecs", "DeleteTaskDefinitions"):
            return [(f"ecs:{op}", d, managed(self.ecs_tags(d))) for d in p["taskDefinitions"]]
        if (service, op) == ("ecs", "ListTasks"):
            return [("ecs:ListTasks", "*", {"ecs:cluster": arn("ecs", f"cluster/{p['cluster']}")})]
        if (service, op) == ("batch", "SubmitJob"):
            request = managed(p.get("tags", {}), "aws:RequestTag")
            return [
                ("batch:SubmitJob", arn("batch", f"job-queue/{p['jobQueue']}"), request),
                ("batch:SubmitJob", arn("batch", f"job-definition/{p['jobDefinition']}"), request),
                ("batch:SubmitJob", arn("batch", "job/new"), request),
                ("batch:TagResource", arn("batch", "job/new"), request),
            ]
        if (service, op) == ("batch", "TerminateJob"):
            tags = managed(self.batch_tags(p["jobId"]))
            return [("batch:TerminateJob", arn("batch", f"job/{p['jobId']}"), tags)]
        if (service, op) == ("logs", "GetLogEvents"):
            stream = f"log-group:{p['logGroupName']}:log-stream:{p['logStreamName']}"
            return [("logs:GetLogEvents", arn("logs", stream), {})]
        return [(action, "*", {}) for action in iam_actions(service, op)]

    def _s3(self, op: str, p: dict) -> list[tuple[str, str, dict]]:
        if op == "ListObjectsV2":
            return [("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", {"s3:prefix": p.get("Prefix", "")})]
        if op in ("CopyObject", "UploadPartCopy"):
            source = p["CopySource"]
            source = f"{source['Bucket']}/{source['Key']}" if isinstance(source, dict) else source
            return [
                ("s3:GetObject", f"arn:aws:s3:::{source}", {}),
                ("s3:PutObject", f"arn:aws:s3:::{p['Bucket']}/{p['Key']}", {}),
            ]
        if op == "DeleteObjects":
            return [("s3:DeleteObject", f"arn:aws:s3:::{p['Bucket']}/{o['Key']}", {}) for o in p["Delete"]["Objects"]]
        if "Key" in p:
            return [(a, f"arn:aws:s3:::{p['Bucket']}/{p['Key']}", {}) for a in iam_actions("s3", op)]
        return [(a, f"arn:aws:s3:::{p['Bucket']}", {}) for a in iam_actions("s3", op)]


def cli_requests(argv: list[str], recorder: Recorder) -> list[tuple[str, str, dict]]:
    """What the `aws` CLI (with session-manager-plugin) asks AWS for, given the product's argv."""
    words = list(argv[argv.index("aws") + 1 :])
    while words and words[0].startswith("--"):  # global options (--region, --profile) and their values
        del words[:2]
    value = lambda flag: words[words.index(flag) + 1]  # noqa: E731
    if words[:2] == ["ssm", "start-session"]:
        instance = value("--target")
        tags = recorder.ec2_tags(instance)
        tag = {"ssm:resourceTag/ManagedBy": tags["ManagedBy"]} if "ManagedBy" in tags else {}
        document = arn("ssm", f"document/{value('--document-name')}", account="")
        return [
            ("ssm:StartSession", arn("ec2", f"instance/{instance}"), tag),
            ("ssm:StartSession", document, {}),
            ("ssm:TerminateSession", arn("ssm", f"session/{USERID}-0123456789abcdef0"), {"aws:userid": USERID}),
        ]
    if words[:2] == ["ecs", "execute-command"]:
        task = value("--task")
        tags = recorder.ecs_tags(task)
        tag = {"aws:ResourceTag/ManagedBy": tags["ManagedBy"]} if "ManagedBy" in tags else {}
        return [
            ("ecs:ExecuteCommand", arn("ecs", f"cluster/{value('--cluster')}"), {}),
            ("ecs:ExecuteCommand", task, tag),
        ]
    raise AssertionError(f"an aws CLI call the test does not know: {words[:2]}")


def assert_covered(settings, backend: str, requests) -> int:
    printed = json.loads(audit.print_policy(settings, backend, "caller")[0])
    refused = sorted(
        {
            f"{action} on {resource} {context}"
            for action, resource, context in requests
            if evaluate([printed], action, resource, context) is not Decision.ALLOWED
        }
    )
    assert not refused, "\n".join(refused)
    return len({(action, resource) for action, resource, _ in requests})


def test_ec2_calls_are_allowed_by_the_printed_policy(aws_settings, ssm_agent, aws_env):
    from fceval_tui.backends.ec2 import Ec2Backend

    settings = aws_settings(FCEVAL_CONCURRENT="2", FCEVAL_BACKEND="ec2")
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    recorder = Recorder(aws_env)
    recorder.attach(backend.aws.all())
    run, final = run_with_runner(settings, backend, [spec("hello"), spec("always-fail", agent="biomni")])
    assert final["hello"].state.value == "succeeded"
    job = final["hello"]
    target = backend.tmux_target(job)
    argv = target.transport.interactive_argv(["tmux", "attach", "-t", job.id])
    requests = recorder.requests + cli_requests(argv, recorder)
    covered = assert_covered(settings, "ec2", requests)
    assert {"ec2:RunInstances", "ssm:SendCommand", "ssm:StartSession", "ec2:TerminateInstances"} <= {
        a for a, _, _ in requests
    }
    print(f"ec2: {len(recorder.operations)} distinct API operations, {covered} action/resource pairs allowed")


def test_ecs_calls_are_allowed_by_the_printed_policy(aws_settings, ecs_exec, aws_env):
    from fceval_tui.backends.ecs import EcsBackend

    # A container has only its task definition's environment (no FCEVAL_EXAMPLE_SECONDS): the harness is told.
    settings = aws_settings(FCEVAL_BACKEND="ecs", FCEVAL_RUN_COMMAND=f"{RUN} --seconds {QUICK}")
    backend = EcsBackend(settings)
    backend.poll_interval = 0.05
    recorder = Recorder(aws_env)
    recorder.attach(backend.aws.all())
    run, final = run_with_runner(settings, backend, [spec("hello")])
    job = final["hello"]
    assert job.state.value == "succeeded", job.error
    argv = backend._ecs_exec(job.resource_id).interactive_argv(["tmux", "attach", "-t", job.id])
    requests = recorder.requests + cli_requests(argv, recorder)
    covered = assert_covered(settings, "ecs", requests)
    assert {"ecs:RunTask", "ecs:ExecuteCommand", "ecs:StopTask"} <= {a for a, _, _ in requests}
    print(f"ecs: {len(recorder.operations)} distinct API operations, {covered} action/resource pairs allowed")


def test_batch_calls_are_allowed_by_the_printed_policy(aws_settings, batch_compute, aws_env):
    from fceval_tui.backends.batch import BatchBackend

    settings = aws_settings(FCEVAL_BACKEND="batch")
    backend = BatchBackend(settings)
    backend.poll_interval = 0.05
    recorder = Recorder(aws_env)
    recorder.attach(backend.aws.all())
    run, final = run_with_runner(settings, backend, [spec("hello"), spec("always-fail", agent="biomni")])
    assert final["hello"].state.value == "succeeded", final["hello"].error
    backend.log_lines(final["hello"])
    covered = assert_covered(settings, "batch", recorder.requests)
    assert {"batch:SubmitJob", "batch:DescribeJobs"} <= {a for a, _, _ in recorder.requests}
    print(f"batch: {len(recorder.operations)} distinct API operations, {covered} action/resource pairs allowed")


def test_the_evaluation_refuses_what_the_policy_holds_back(aws_settings):
    """The check has teeth: untagged instances, other documents and other buckets are refused."""
    settings = aws_settings(FCEVAL_BACKEND="ec2")
    printed = json.loads(audit.print_policy(settings, "ec2", "caller")[0])
    instance = arn("ec2", "instance/i-0123456789abcdef0")
    untagged = [
        ("ec2:TerminateInstances", instance, {}),
        ("ssm:SendCommand", instance, {"ssm:resourceTag/ManagedBy": "someone-else"}),
        ("ssm:SendCommand", arn("ssm", "document/AWS-RunPowerShellScript", account=""), {}),
        ("ssm:StartSession", arn("ssm", "document/SSM-SessionManagerRunShell"), {}),
        ("ssm:TerminateSession", arn("ssm", "session/AIDAOTHER-0123"), {"aws:userid": USERID}),
        ("s3:GetObject", "arn:aws:s3:::another-bucket/fceval-tui/x", {}),
        ("ec2:RunInstances", arn("ec2", "instance/i-new"), {}),
    ]
    # Without the tag the evaluator cannot call the condition met ("conditional"); never "allowed".
    decisions = {request[:2]: evaluate([printed], *request) for request in untagged}
    assert Decision.ALLOWED not in decisions.values(), decisions


def test_exec_and_forward_calls_are_allowed_by_the_printed_policy(aws_settings, ssm_fleet, aws_env):
    """`exec --pool` (with an instance SSM refuses, so the batch is narrowed) and `forward` on EC2."""
    from fceval_tui.backends.aws import AwsClients
    from fceval_tui.services.fleet_exec import pool_instance_ids, run_on_fleet
    from fceval_tui.services.fleet_targets import Machine, Selection
    from fceval_tui.transports.port_forward import forward_argv

    settings = aws_settings(FCEVAL_BACKEND="ec2")
    clients = AwsClients(settings.region, settings.profile, ("ec2", "ssm"))
    recorder = Recorder(aws_env)
    recorder.attach(clients.all())
    ec2 = aws_env.client("ec2")
    ami = ec2.describe_images(Filters=[{"Name": "name", "Values": ["al2023-ami-2023*"]}])["Images"][0]["ImageId"]
    tags = [{"Key": "ManagedBy", "Value": "fceval-tui"}, {"Key": "fceval:pool", "Value": "policy-pool"}]
    reply = ec2.run_instances(
        ImageId=ami, MinCount=3, MaxCount=3, TagSpecifications=[{"ResourceType": "instance", "Tags": tags}]
    )
    ids = [i["InstanceId"] for i in reply["Instances"]]
    ec2.terminate_instances(InstanceIds=ids[:1])
    live = pool_instance_ids(clients.ec2, "policy-pool")
    assert sorted(live) == sorted(ids[1:])
    selection = Selection(tuple(Machine(i, "ec2") for i in ids), "pool policy-pool", pool="policy-pool")
    report = run_on_fleet(settings, selection, "true", clients=clients, poll_interval=0.05)
    assert [r.label for r in report.results].count("ok") == 2
    argv = forward_argv(ids[1], 8888, 9999, region=settings.region)
    requests = recorder.requests + cli_requests(argv, recorder)
    covered = assert_covered(settings, "ec2", requests)
    assert {
        "ec2:DescribeInstances",
        "ssm:SendCommand",
        "ssm:DescribeInstanceInformation",
        "ssm:ListCommandInvocations",
        "ssm:StartSession",
    } <= {a for a, _, _ in requests}
    print(f"exec + forward: {covered} action/resource pairs allowed")


def test_an_ecs_forward_is_allowed_on_tagged_tasks_only(aws_settings):
    settings = aws_settings(FCEVAL_BACKEND="ecs")
    printed = json.loads(audit.print_policy(settings, "ecs", "caller")[0])
    task = arn("ecs", f"task/{settings.ecs_cluster}/0123456789abcdef0123456789abcdef")
    document = arn("ssm", "document/AWS-StartPortForwardingSession", account="")
    tagged = {"aws:ResourceTag/ManagedBy": "fceval-tui"}
    allowed = [
        ("ecs:DescribeTasks", task, tagged),
        ("ssm:StartSession", task, tagged),
        ("ssm:StartSession", document, {}),
        ("ssm:TerminateSession", arn("ssm", f"session/{USERID}-0123456789abcdef0"), {"aws:userid": USERID}),
    ]
    assert all(evaluate([printed], *request) is Decision.ALLOWED for request in allowed)
    refused = [
        ("ssm:StartSession", task, {"aws:ResourceTag/ManagedBy": "someone-else"}),
        ("ssm:StartSession", arn("ssm", "document/AWS-StartInteractiveCommand", account=""), {}),
        ("ssm:StartSession", arn("ec2", "instance/i-0123456789abcdef0"), {"ssm:resourceTag/ManagedBy": "fceval-tui"}),
    ]
    assert all(evaluate([printed], *request) is not Decision.ALLOWED for request in refused)
