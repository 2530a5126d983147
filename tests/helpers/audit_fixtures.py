"""Fixtures for the audit and teardown tests: a complete AWS setup on the shared moto server,
built with unique names per test so a test can break one piece without touching the others.
Loaded with `pytest_plugins = ("aws_fixtures", "audit_fixtures")`; helpers are in audit_helpers.py.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest

from fceval_tui.config import load_settings
from tests.helpers.audit import EC2_TRUST, SSM_POLICY_ARN, ensure_ssm_managed_policy
from tests.helpers.aws import REGION


@dataclass
class Network:
    vpc: str
    public_subnet: str
    private_subnet: str
    private_route_table: str


@pytest.fixture(scope="session")
def audit_network(moto_server) -> Network:
    """A VPC of our own: a public subnet (internet gateway, public IPs) and a private one (no route)."""
    ec2 = moto_server.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=public, MapPublicIpOnLaunch={"Value": True})
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=table, SubnetId=public)
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.2.0/24", AvailabilityZone=f"{REGION}a")["Subnet"][
        "SubnetId"
    ]
    private_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=private_table, SubnetId=private)
    return Network(vpc, public, private, private_table)


@dataclass
class AuditWorld:
    """One complete EC2 setup; the names are unique to the test."""

    world: object
    network: Network
    bucket: str
    role: str
    profile: str
    tmp_path: object

    def client(self, service: str):
        return self.world.client(service)

    def settings(self, **env: str):
        environ = {
            "AWS_REGION": REGION,
            "FCEVAL_BACKEND": "ec2",
            "FC_EVAL_S3_BUCKET": self.bucket,
            "FCEVAL_INSTANCE_PROFILE": self.profile,
            "FCEVAL_EC2_SUBNET_ID": self.network.public_subnet,
            "EC2_INSTANCE_TYPE": "c5ad.large",
            "FCEVAL_RUN_COMMAND": "fceval run --task-id {task_id} --output {artifacts_dir}",
            "FCEVAL_GRADE_COMMAND": "fceval grade --task-id {task_id} --run-dir {artifacts_dir}",
        }
        environ.update(env)
        state = self.tmp_path / "state"
        state.mkdir(exist_ok=True)
        return load_settings(environ=environ, state_dir=state)

    def s3_inline_policy(self) -> str:
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:PutObject", "s3:GetEncryptionConfiguration"],
                        "Resource": [f"arn:aws:s3:::{self.bucket}", f"arn:aws:s3:::{self.bucket}/*"],
                    }
                ],
            }
        )


@pytest.fixture
def audit_world(aws_env, audit_network, tmp_path) -> AuditWorld:
    ensure_ssm_managed_policy()
    suffix = uuid.uuid4().hex[:8]
    # The role is named like its instance profile, as FC-Eval sets it up.
    world = AuditWorld(
        aws_env, audit_network, f"audit-staging-{suffix}", f"audit-role-{suffix}", f"audit-role-{suffix}", tmp_path
    )
    world.client("s3").create_bucket(Bucket=world.bucket)
    iam = world.client("iam")
    iam.create_role(RoleName=world.role, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    iam.attach_role_policy(RoleName=world.role, PolicyArn=SSM_POLICY_ARN)
    iam.put_role_policy(RoleName=world.role, PolicyName="staging", PolicyDocument=world.s3_inline_policy())
    iam.create_instance_profile(InstanceProfileName=world.profile)
    iam.add_role_to_instance_profile(InstanceProfileName=world.profile, RoleName=world.role)
    return world
