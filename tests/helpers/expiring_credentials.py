"""Temporary credentials that expire, answered as AWS answers them: a front door on the moto server.

moto checks no signature, so the door reads the access key from each request's SigV4 credential
scope (the Authorization header, or X-Amz-Credential in a query string) and the service it was
signed for. A key given `expire_after(key, calls)` works for that many more requests; after that
every request signed with it is refused the way that service refuses an expired session token. It
never works again: as on AWS, renewing means new credentials (a new key), e.g. the profile's file
rewritten by `aws sso login` or a credential helper. Other keys (the compute's, the tests' own) pass.
The same door serves in-process boto3 clients and `aws` CLI children, since both reach the server.

Each service's answer, from its API reference ("Common Errors"; "Error codes" for EC2 and S3):
- EC2 (EC2 query protocol): HTTP 400 `RequestExpired`, "Request has expired." (EC2 answers
  expired temporary credentials with the code it uses for a late request).
- STS, IAM (query protocol): HTTP 403 `ExpiredToken` in an ErrorResponse.
- S3 (REST-XML): HTTP 400 `ExpiredToken`, "The provided token has expired."
- SSM, ECS, CloudWatch Logs (JSON 1.1): HTTP 403 `ExpiredTokenException`, "The security token
  included in the request is expired".
- Batch (REST-JSON): the same, with the code in the `x-amzn-ErrorType` header.

It also counts requests per API action (`calls("RunInstances")`), whoever signed them.
"""

from __future__ import annotations

import io
import re
import threading
from collections import Counter
from urllib.parse import parse_qs

_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/[^/]+/([^/]+)/aws4_request")
_EXPIRED_JSON = "The security token included in the request is expired"


class ExpiringKeys:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left: dict[str, int] = {}
        self._actions: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # by service

    def expire_after(self, key: str, calls: int = 0) -> None:
        with self._lock:
            self._left[key] = calls

    def calls(self, action: str) -> int:
        with self._lock:
            return self._actions[action]

    def wrap(self, app):
        def door(environ, start_response):
            key, service = _signer(environ)
            action = _action(environ)
            with self._lock:
                self._actions[action] += 1
                left = self._left.get(key)
                expired = left is not None and left <= 0
                if left is not None and not expired:
                    self._left[key] = left - 1
                if expired:
                    self.refused[service] += 1
            if expired:
                status, headers, body = _expired_answer(service)
                start_response(status, headers)
                return [body]
            return app(environ, start_response)

        return door


def _signer(environ) -> tuple[str, str]:
    found = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if found is None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        credential = (query.get("X-Amz-Credential") or [""])[0]
        found = _SCOPE.search("Credential=" + credential)
    return (found.group(1), found.group(2)) if found else ("", "")


def _action(environ) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.rsplit(".", 1)[-1]  # JSON protocols: "AmazonEC2ContainerServiceV20141113.RunTask"
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # put back for moto
        return (parse_qs(body.decode()).get("Action") or [""])[0]  # query protocols: EC2, STS, IAM
    return f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"  # REST protocols: S3, Batch


def _expired_answer(service: str) -> tuple[str, list[tuple[str, str]], bytes]:
    request = "c0ffee00-0000-4000-8000-000000000000"
    if service == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestExpired</Code>'
            f"<Message>Request has expired.</Message></Error></Errors><RequestID>{request}</RequestID></Response>"
        )
        return "400 Bad Request", [("Content-Type", "text/xml")], body.encode()
    if service in ("sts", "iam"):
        body = (
            "<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code>"
            f"<Message>{_EXPIRED_JSON}</Message></Error><RequestId>{request}</RequestId></ErrorResponse>"
        )
        return "403 Forbidden", [("Content-Type", "text/xml")], body.encode()
    if service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ExpiredToken</Code>'
            f"<Message>The provided token has expired.</Message><RequestId>{request}</RequestId></Error>"
        )
        return "400 Bad Request", [("Content-Type", "application/xml")], body.encode()
    body = f'{{"__type": "ExpiredTokenException", "message": "{_EXPIRED_JSON}"}}'
    headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request)]
    if service == "batch":
        headers.append(("x-amzn-ErrorType", "ExpiredTokenException"))
    return "403 Forbidden", headers, body.encode()
