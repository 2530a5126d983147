"""The buckets' default SSE-KMS keys, as the printed policies need them. No boto3 here.

S3 calls KMS on behalf of whoever reads or writes an object in a bucket whose default encryption
is SSE-KMS (`aws:kms`) or DSSE-KMS (`aws:kms:dsse`), and KMS authorises that principal (AWS:
"Using server-side encryption with AWS KMS keys (SSE-KMS)", Permissions):

- writing (PutObject, the destination of CopyObject) needs kms:GenerateDataKey on the key;
- reading (GetObject, the source of CopyObject) needs kms:Decrypt;
- a multipart upload needs both: S3 decrypts the parts to complete it (AWS: CreateMultipartUpload,
  "Permissions"). `aws s3 cp` uploads files above 8 MB in parts, so the compute, which only writes
  into its inbox, needs kms:Decrypt as well.

Both are granted only through S3 (kms:ViaService), so neither identity can call KMS directly
with them. With SSE-S3 (AES256) or no default encryption nothing is needed.

The AWS managed key `aws/s3` is different: its key policy itself allows every principal of the
bucket's account to use it through S3, so identity policies need nothing for it (and principals
of other accounts cannot use it at all). It is kept here, marked `aws_managed`, so the audit and
the printed notes can say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
MANAGED_ALIAS = "alias/aws/s3"
# What reading and writing SSE-KMS objects through S3 takes (see the module doc).
KMS_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


@dataclass(frozen=True)
class BucketKey:
    """A bucket's default encryption key, resolved to its key ARN (kms:DescribeKey)."""

    bucket: str
    arn: str
    aws_managed: bool = False

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]


@cache
def dns_suffix(partition: str) -> str:
    """The partition's service host suffix (amazonaws.com, amazonaws.com.cn, ...), as botocore knows it."""
    import botocore.loaders
    import botocore.regions

    resolver = botocore.regions.EndpointResolver(botocore.loaders.create_loader().load_data("endpoints"))
    return resolver.get_partition_dns_suffix(partition) or "amazonaws.com"


def customer_keys(keys: Iterable[BucketKey], buckets: Iterable[str] | None = None) -> list[str]:
    """The ARNs identity policies must grant (AWS managed keys need no grant), for `buckets` if given."""
    wanted = None if buckets is None else set(buckets)
    found = (k.arn for k in keys if not k.aws_managed and (wanted is None or k.bucket in wanted))
    return list(dict.fromkeys(found))


def via_s3(keys: Iterable[BucketKey], partition: str) -> dict:
    """The condition holding the KMS actions to requests S3 makes for the caller (customer keys' regions)."""
    hosts = sorted({f"s3.{k.region}.{dns_suffix(partition)}" for k in keys if not k.aws_managed})
    return {"StringEquals": {"kms:ViaService": hosts[0] if len(hosts) == 1 else hosts}}


def managed_note(key: BucketKey) -> str:
    return (
        f"s3://{key.bucket} is encrypted with the AWS managed key aws/s3 ({key.arn}): its key policy lets "
        f"every principal of account {key.account} use it through S3, so no KMS statement is needed; "
        "roles of other accounts cannot use it (a customer managed key can be shared)"
    )
