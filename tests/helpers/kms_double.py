"""SSE-KMS as S3 enforces it, a front door on the moto server (moto encrypts nothing and checks no IAM).

What it follows (S3 user guide, "Using server-side encryption with AWS KMS keys (SSE-KMS)", section
"Permissions required for SSE-KMS"; and CreateMultipartUpload, "Permissions"): S3 calls KMS on behalf
of the requester, and KMS authorises that principal:
- PutObject, and the destination of CopyObject, into a bucket whose default encryption (or the
  request's `x-amz-server-side-encryption` headers) is `aws:kms`/`aws:kms:dsse` with a customer
  managed key needs kms:GenerateDataKey on the key;
- GetObject, and the source of CopyObject, of an object encrypted with such a key needs kms:Decrypt
  (HeadObject reads only metadata and needs nothing);
- CreateMultipartUpload needs both (S3 decrypts the parts to complete the upload).
The request comes from S3, so policies see `kms:ViaService` = `s3.<region>.amazonaws.com`.

Refused, S3 answers HTTP 403 AccessDenied with KMS's words (IAM user guide, "Troubleshoot access
denied error messages"): "User: <principal ARN> is not authorized to perform: kms:GenerateDataKey on
resource: <key ARN> because no identity-based policy allows the kms:GenerateDataKey action".

Who asks: the access key of the request's SigV4 scope, resolved the way moto's own IAM enforcement
does (moto.iam.access_control): an assumed role's temporary key (an instance profile's role, see
ssm_double's Run Command) or an IAM user's key; its identity policies (inline and attached) are read
from moto IAM and evaluated by moto's IAMPolicyStatement. Keys IAM does not know (the tests' own
`testing` key stands for the account's root) and the AWS managed key `aws/s3` (its key policy lets
every principal of the account use it through S3) pass. Key policies and grants are not modelled:
keys are assumed to carry the default key policy, which delegates to IAM.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote

from tests.helpers.expiring_credentials import _signer

KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
GENERATE, DECRYPT = "kms:GenerateDataKey", "kms:Decrypt"


class KmsGate:
    """`wrap(app)` refuses S3 requests whose principal may not use the object's SSE-KMS key."""

    def __init__(self, account: str = "123456789012", region: str = "us-east-1") -> None:
        self.account, self.region = account, region
        self.refused: list[tuple[str, str]] = []  # (principal ARN, action)

    def wrap(self, app):
        def door(environ, start_response):
            key, service = _signer(environ)
            if service == "s3":
                refusal = self._check(environ, key)
                if refusal is not None:
                    _drain(environ)
                    start_response("403 Forbidden", [("Content-Type", "application/xml")])
                    return [refusal]
            return app(environ, start_response)

        return door

    # -- what the request needs -------------------------------------------------------------------

    def _check(self, environ, access_key: str) -> bytes | None:
        bucket, object_key = _bucket_and_key(environ)
        if not bucket or not object_key:
            return None
        method, query = environ.get("REQUEST_METHOD", ""), parse_qs(environ.get("QUERY_STRING", ""), True)
        needs: list[tuple[str, str]] = []  # (action, key ARN)
        if method == "PUT" and "partNumber" not in query and not ({"tagging", "acl", "retention"} & set(query)):
            source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
            if source:
                needs += [(DECRYPT, arn) for arn in self._object_key(*_split_source(source))]
            needs += [(GENERATE, arn) for arn in self._write_key(environ, bucket)]
        elif method == "POST" and "uploads" in query:
            needs += [(action, arn) for arn in self._write_key(environ, bucket) for action in (GENERATE, DECRYPT)]
        elif method == "GET" and not ({"tagging", "acl", "attributes", "retention", "legal-hold"} & set(query)):
            needs += [(DECRYPT, arn) for arn in self._object_key(bucket, object_key)]
        if not needs:
            return None
        principal = self._principal(environ, access_key)
        if principal is None:
            return None
        arn, policies = principal
        for action, key_arn in needs:
            if not _allowed(policies, action, key_arn, f"s3.{self.region}.amazonaws.com"):
                self.refused.append((arn, action))
                return _access_denied(arn, action, key_arn)
        return None

    def _write_key(self, environ, bucket: str) -> list[str]:
        """The customer managed key a write into `bucket` is encrypted with (none: no KMS call)."""
        algorithm = environ.get("HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION")
        key_id = environ.get("HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_AWS_KMS_KEY_ID", "")
        if algorithm is None:
            found = self._s3().buckets.get(bucket)
            rule = ((found.encryption or {}).get("Rule") or {}) if found is not None else {}
            default = rule.get("ApplyServerSideEncryptionByDefault") or {}
            algorithm, key_id = default.get("SSEAlgorithm"), default.get("KMSMasterKeyID", "")
        return self._customer_key(key_id) if algorithm in KMS_ALGORITHMS else []

    def _object_key(self, bucket: str, object_key: str) -> list[str]:
        found = self._s3().buckets.get(bucket)
        stored = found.keys.get(object_key) if found is not None else None
        if stored is None or stored.encryption not in KMS_ALGORITHMS:
            return []
        return self._customer_key(stored.kms_key_id or "")

    def _customer_key(self, key_id: str) -> list[str]:
        """[key ARN] of a customer managed key; [] for aws/s3 (named or implied) and unknown keys."""
        from moto.kms.models import kms_backends

        if not key_id or key_id.endswith("alias/aws/s3"):
            return []
        try:
            key = kms_backends[self.account][self.region].describe_key(key_id)
        except (KeyError, TypeError):
            return []
        return [] if key.key_manager == "AWS" else [key.arn]

    def _s3(self):
        from moto.s3.models import s3_backends

        return s3_backends[self.account]["aws"]

    # -- who asks ---------------------------------------------------------------------------------

    def _principal(self, environ, access_key: str) -> tuple[str, list] | None:
        """(ARN, identity policies) of the key's IAM user or assumed role; None for a key IAM does not know."""
        from moto.iam.access_control import CreateAccessKeyFailure, create_access_key

        headers = {}
        if environ.get("HTTP_X_AMZ_SECURITY_TOKEN"):
            headers["X-Amz-Security-Token"] = environ["HTTP_X_AMZ_SECURITY_TOKEN"]
        try:
            found = create_access_key(self.account, "aws", access_key, headers)
        except CreateAccessKeyFailure:
            return None
        return found.arn, found.collect_policies()


def _allowed(policies: list, action: str, resource: str, via: str) -> bool:
    """Identity policies allow `action` on `resource` (an explicit Deny wins; nothing allows: denied)."""
    from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult

    context = {"kms:ViaService": via}
    allowed = False
    for policy in policies:
        statements = IAMPolicy(policy)._policy_json["Statement"]
        for statement in statements if isinstance(statements, list) else [statements]:
            result = IAMPolicyStatement(statement).is_action_permitted(action, resource, None, context)
            # moto answers DENIED for an Allow whose condition does not hold: that Allow just does not apply.
            if result == PermissionResult.DENIED and statement.get("Effect") == "Deny":
                return False
            allowed = allowed or (result == PermissionResult.PERMITTED and statement.get("Effect") == "Allow")
    return allowed


def _access_denied(principal: str, action: str, key_arn: str) -> bytes:
    message = (
        f"User: {principal} is not authorized to perform: {action} on resource: {key_arn} "
        f"because no identity-based policy allows the {action} action"
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        f"<Message>{message}</Message><RequestId>c0ffee00kms</RequestId></Error>"
    )
    return body.encode()


def _bucket_and_key(environ) -> tuple[str, str]:
    """Path-style (`/bucket/key`, what botocore uses on an IP endpoint) or virtual-hosted addressing."""
    path = unquote(environ.get("PATH_INFO", ""))
    host = environ.get("HTTP_HOST", "").split(":")[0]
    first = host.split(".")[0]
    if host.count(".") >= 1 and not host.replace(".", "").isdigit() and first not in ("s3", "localhost"):
        return first, path.lstrip("/")
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


def _split_source(source: str) -> tuple[str, str]:
    bucket, _, key = unquote(source.split("?")[0]).lstrip("/").partition("/")
    return bucket, key


def _drain(environ) -> None:
    """Read the refused request's body, so the connection stays usable for the client's next request."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        stream.read()
