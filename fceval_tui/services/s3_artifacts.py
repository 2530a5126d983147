"""Artifacts under an s3:// prefix (used when the local backend stores results in S3)."""

from __future__ import annotations

from pathlib import Path

from fceval_tui.errors import PermanentError, TransientError


def split_s3(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def upload_file(source: Path, url: str) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, key = split_s3(url)
    client = boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))
    try:
        client.upload_file(str(source), bucket, key)
    except NoCredentialsError:
        raise PermanentError(
            "no AWS credentials to upload artifacts to " + url,
            "configure credentials (aws configure / AWS_PROFILE) or use a local FCEVAL_ARTIFACTS",
        ) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise PermanentError(
            f"uploading {url} failed: {code}", "check the bucket exists and you may write to it"
        ) from None
    except BotoCoreError as exc:
        raise TransientError(f"uploading {url} failed: {exc}") from None
