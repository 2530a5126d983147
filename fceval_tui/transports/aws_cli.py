"""The argv of an `aws` CLI call, as the interactive transports run it."""

from __future__ import annotations

from collections.abc import Sequence


def aws_cli_argv(
    command_prefix: Sequence[str], region: str | None, profile: str | None, *words: str, aws: str = "aws"
) -> list[str]:
    """`[*prefix, aws, --region R, --profile P, *words]`: an argv list, nothing is shell-parsed locally."""
    argv = [*command_prefix, aws]
    if region:
        argv += ["--region", region]
    if profile:
        argv += ["--profile", profile]
    return argv + list(words)
