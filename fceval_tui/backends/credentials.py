"""The console's AWS credentials as the operator knows them: what renews them, and until when they last.

Read from the local AWS configuration only, never an API call: the profile (SSO or not, an assumed
role that needs an MFA code), the process environment, and the SSO token cache that `aws sso login`
writes. Where the end is not written down (a role botocore re-assumes by itself, a credential process,
an SSO session whose token botocore refreshes), it is unknown, and nothing is guessed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fceval_tui.config import Settings

# botocore's default for an assumed role's session (AssumeRole DurationSeconds) when the profile
# sets no `duration_seconds`.
ROLE_SESSION_SECONDS = 3600


@dataclass(frozen=True)
class Expiry:
    at: datetime
    what: str  # whose end this is, for the operator: "the SSO token of profile eval"


def profile_name(settings: Settings) -> str:
    return settings.profile or os.environ.get("AWS_PROFILE", "")


def profile_config(settings: Settings) -> dict:
    """The profile's section of ~/.aws/config (empty for an unknown profile or none)."""
    import botocore.exceptions
    import botocore.session

    try:
        return botocore.session.Session(profile=settings.profile or None).get_scoped_config()
    except botocore.exceptions.ProfileNotFound:
        return {}


def is_sso(config: dict) -> bool:
    return bool(config.get("sso_session") or config.get("sso_start_url"))


def from_environment(settings: Settings) -> bool:
    """Whether botocore takes the keys from this process's environment (an explicit profile overrides them)."""
    return not settings.profile and bool(os.environ.get("AWS_ACCESS_KEY_ID"))


def renewal_hint(settings: Settings, run_id: str) -> str:
    """What the operator runs so that the console's calls work again."""
    name = profile_name(settings)
    if is_sso(profile_config(settings)):
        return "run `aws sso login" + (f" --profile {shlex.quote(name)}`" if name else "`")
    if from_environment(settings):
        # No other process can change this one's environment.
        return (
            "renew the credentials: this runner reads them from its environment (AWS_ACCESS_KEY_ID), which "
            f"cannot change from outside, so stop it and run `fceval-tui resume {run_id}` from a shell with "
            "fresh ones; the compute keeps running meanwhile"
        )
    source = f"profile {name}" if name else "the default credential chain"
    if settings.aws_command_prefix:
        return (
            f"renew your credentials (the AWS command prefix `{shlex.join(settings.aws_command_prefix)}`, "
            f"and {source}, which the console's own calls use)"
        )
    return f"renew your credentials ({source})"


def credential_expiry(settings: Settings, now: datetime) -> Expiry | None:
    """When the console's credentials stop working without the operator, where that is written down."""
    if from_environment(settings):
        raw = os.environ.get("AWS_CREDENTIAL_EXPIRATION", "")
        at = _parse_time(raw)
        return Expiry(at, "the credentials in the environment (AWS_CREDENTIAL_EXPIRATION)") if at else None
    config = profile_config(settings)
    name = profile_name(settings) or "default"
    if is_sso(config):
        return _sso_token_expiry(config, name)
    if config.get("role_arn") and config.get("mfa_serial"):
        # botocore assumes the role at the first call and cannot renew it without a code.
        seconds = int(config.get("duration_seconds") or ROLE_SESSION_SECONDS)
        return Expiry(now + timedelta(seconds=seconds), f"the MFA role session of profile {name}")
    return None


def _sso_token_expiry(config: dict, name: str) -> Expiry | None:
    # botocore.utils.SSOTokenLoader: the cache file is named by the SHA-1 of the sso-session's name
    # (or, for a legacy profile, of its start URL).
    key = config.get("sso_session") or config.get("sso_start_url", "")
    path = Path.home() / ".aws" / "sso" / "cache" / (hashlib.sha1(key.encode()).hexdigest() + ".json")
    try:
        token = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # no token: the audit reports that the session has expired
    if config.get("sso_session") and token.get("refreshToken"):
        return None  # botocore refreshes the token; how long it may is set in IAM Identity Center
    at = _parse_time(str(token.get("expiresAt", "")))
    return Expiry(at, f"the SSO token of profile {name}") if at else None


def _parse_time(text: str) -> datetime | None:
    text = text.strip().replace("UTC", "+00:00").replace("Z", "+00:00")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
