"""The image EC2 jobs boot from: the latest Amazon Linux 2023 AMI (an SSM public parameter) unless
EC2_INSTANCE_AMI names one, and its root device, each looked up once per backend."""

from __future__ import annotations

import re
import threading

from fceval_tui.backends.aws import AWS_ERRORS, AwsClients, classify
from fceval_tui.config import Settings
from fceval_tui.errors import PermanentError

AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
# Graviton families have a 'g' after the generation digit (c7g, m6gd, t4g); g4dn/g5 are x86 GPUs.
_ARM_FAMILY = re.compile(r"[a-z]+\d+[a-z]*g[a-z]*")


def architecture(instance_type: str) -> str:
    family = instance_type.split(".", 1)[0]
    return "arm64" if _ARM_FAMILY.fullmatch(family) else "x86_64"


class Ec2Images:
    def __init__(self, aws: AwsClients, settings: Settings) -> None:
        self.aws = aws
        self.settings = settings
        self._lock = threading.Lock()
        self._ami: str | None = None
        self._root_device: dict[str, str] = {}

    def ami(self) -> str:
        """EC2_INSTANCE_AMI, or else the latest Amazon Linux 2023 for the instance type's architecture."""
        if self.settings.ec2_ami:
            return self.settings.ec2_ami
        with self._lock:
            if self._ami:
                return self._ami
        name = AL2023_PARAMETER.format(arch=architecture(self.settings.ec2_instance_type))
        try:
            ami = self.aws.ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except AWS_ERRORS as exc:
            raise classify(exc, f"ssm:GetParameter {name} (latest Amazon Linux 2023 AMI)") from exc
        with self._lock:
            self._ami = ami
        return ami

    def root_device(self, ami: str) -> str:
        with self._lock:
            if ami in self._root_device:
                return self._root_device[ami]
        try:
            images = self.aws.ec2.describe_images(ImageIds=[ami])["Images"]
        except AWS_ERRORS as exc:
            raise classify(exc, f"ec2:DescribeImages {ami}") from exc
        if not images:
            raise PermanentError(
                f"AMI {ami} does not exist in {self.settings.region}",
                "set EC2_INSTANCE_AMI to an AMI of this region, or leave it empty",
            )
        device = images[0].get("RootDeviceName") or "/dev/xvda"
        with self._lock:
            self._root_device[ami] = device
        return device
