"""Where EC2 jobs run on the network: the VPC (the subnet's, or the default one) and the shared
egress-only security group the console creates once per VPC and teardown deletes."""

from __future__ import annotations

import threading

from fceval_tui.backends.aws import AWS_ERRORS, AwsClients, classify, error_code, tag_filter
from fceval_tui.backends.aws_constants import EC2_SECURITY_GROUP, MANAGED_BY, MANAGED_BY_TAG
from fceval_tui.config import Settings
from fceval_tui.errors import PermanentError, TransientError


class Ec2Network:
    def __init__(self, aws: AwsClients, settings: Settings) -> None:
        self.aws = aws
        self.settings = settings
        self._lock = threading.Lock()
        self._network: tuple[str, str | None] | None = None
        self._security_groups: dict[str, str] = {}

    def vpc_and_subnet(self) -> tuple[str, str | None]:
        """(VPC id, FCEVAL_EC2_SUBNET_ID or None for the default VPC's choice)."""
        with self._lock:
            if self._network:
                return self._network
        subnet = self.settings.ec2_subnet
        try:
            if subnet:
                found = self.aws.ec2.describe_subnets(SubnetIds=[subnet])["Subnets"]
                vpc = found[0]["VpcId"]
            else:
                vpcs = self.aws.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
                if not vpcs:
                    raise PermanentError(
                        f"there is no default VPC in {self.settings.region}",
                        "set FCEVAL_EC2_SUBNET_ID to a subnet with a route to S3 and SSM",
                    )
                vpc = vpcs[0]["VpcId"]
        except AWS_ERRORS as exc:
            raise classify(exc, "finding the VPC for EC2 jobs") from exc
        with self._lock:
            self._network = (vpc, subnet)
        return self._network

    def security_group(self, vpc: str, tags: dict[str, str]) -> str:
        """The shared egress-only group of this VPC (a new group has no inbound rules), created once."""
        with self._lock:
            if vpc in self._security_groups:
                return self._security_groups[vpc]
        filters = [{"Name": "group-name", "Values": [EC2_SECURITY_GROUP]}, {"Name": "vpc-id", "Values": [vpc]}]
        try:
            found = self.aws.ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
            if found:
                group = found[0]["GroupId"]
            else:
                try:
                    group = self.aws.ec2.create_security_group(
                        GroupName=EC2_SECURITY_GROUP,
                        VpcId=vpc,
                        Description="fceval-tui job instances: no inbound access, outbound only",
                        TagSpecifications=[
                            {
                                "ResourceType": "security-group",
                                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                            }
                        ],
                    )["GroupId"]
                except AWS_ERRORS as exc:
                    if error_code(exc) != "InvalidGroup.Duplicate":
                        raise
                    # Another console thread or process created it first.
                    group = self.aws.ec2.describe_security_groups(Filters=filters)["SecurityGroups"][0]["GroupId"]
        except AWS_ERRORS as exc:
            raise classify(exc, f"preparing security group {EC2_SECURITY_GROUP} in {vpc}") from exc
        with self._lock:
            self._security_groups[vpc] = group
        return group

    def managed_security_groups(self) -> list[dict]:
        """Every security group the console tagged (raises botocore errors: the caller classifies them)."""
        return self.aws.ec2.describe_security_groups(Filters=[tag_filter(MANAGED_BY_TAG, MANAGED_BY)])["SecurityGroups"]

    def delete_security_group(self, group_id: str) -> None:
        try:
            self.aws.ec2.delete_security_group(GroupId=group_id)
        except AWS_ERRORS as exc:
            if error_code(exc) == "InvalidGroup.NotFound":
                return
            if error_code(exc) == "DependencyViolation":
                raise TransientError(
                    f"security group {group_id} is still used by instances that are shutting down",
                    "run teardown again in a minute",
                ) from exc
            raise classify(exc, f"ec2:DeleteSecurityGroup {group_id}") from exc
        with self._lock:
            self._security_groups = {k: v for k, v in self._security_groups.items() if v != group_id}
