"""Which failures mean "the credentials expired": AWS error codes, botocore's refresh errors, and the
same conditions in the words the `aws` CLI prints (awscli/errorhandler.py, botocore's messages)."""

from __future__ import annotations

import botocore.exceptions
import pytest

from fceval_tui.backends import aws
from fceval_tui.errors import CredentialsExpired, PermanentError, TransientError, UserError
from fceval_tui.transports.retry import expired_credentials
from tests.helpers.aws import client_error


@pytest.mark.parametrize(
    ("code", "operation"),
    [
        ("ExpiredToken", "GetCallerIdentity"),
        ("ExpiredTokenException", "SendCommand"),
        ("RequestExpired", "RunInstances"),
    ],
)
def test_expired_token_codes_are_expired_credentials_for_the_runner(code, operation):
    error = aws.classify(client_error(code, "The security token included in the request is expired", operation), "x")
    assert isinstance(error, CredentialsExpired) and error.transient
    assert expired_credentials(client_error(code, "m", operation)) is not None


@pytest.mark.parametrize(
    "exc",
    [
        botocore.exceptions.UnauthorizedSSOTokenError(),
        botocore.exceptions.TokenRetrievalError(provider="sso", error_msg="Token has expired and refresh failed"),
        botocore.exceptions.SSOTokenLoadError(error_msg="Token for https://x.awsapps.com/start does not exist"),
        botocore.exceptions.RefreshWithMFAUnsupportedError(),
        botocore.exceptions.CredentialRetrievalError(provider="custom-process", error_msg="exit 1"),
    ],
)
def test_botocores_refresh_errors_are_expired_credentials(exc):
    assert isinstance(aws.classify(exc, "ssm:SendCommand"), CredentialsExpired)
    # ... and so are their messages when an `aws` child prints them.
    assert expired_credentials(f"\naws: [ERROR]: {exc}\n") is not None


@pytest.mark.parametrize(
    "stderr",
    [
        "\nAn error occurred (ExpiredTokenException) when calling the ExecuteCommand operation: "
        "The security token included in the request is expired\n",  # CLI v1
        "\naws: [ERROR]: An error occurred (ExpiredToken) when calling the StartSession operation: expired\n",  # v2
        "An error occurred (RequestExpired) when calling the DescribeInstances operation: Request has expired.",
    ],
)
def test_what_the_aws_cli_prints_for_an_expired_token_is_recognised(stderr):
    found = expired_credentials(stderr)
    assert found is not None and "An error occurred" in str(found) and "\n" not in str(found)


def test_other_failures_are_not_expired_credentials():
    for code in ("AccessDenied", "InvalidClientTokenId", "ThrottlingException", "UnrecognizedClientException"):
        assert (
            expired_credentials(client_error(code, "The security token included in the request is invalid", "X"))
            is None
        )
    assert not expired_credentials(
        "An error occurred (TargetNotConnected) when calling the StartSession operation: i-1 is not connected."
    )
    assert not expired_credentials("SessionManagerPlugin is not found.")
    assert isinstance(aws.classify(client_error("AccessDenied", "no", "RunInstances"), "x"), PermanentError)
    assert isinstance(aws.classify(botocore.exceptions.NoCredentialsError(), "x"), UserError)
    unreachable = botocore.exceptions.EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com")
    assert type(aws.classify(unreachable, "x")) is TransientError
