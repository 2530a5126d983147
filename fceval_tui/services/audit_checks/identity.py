"""Credentials and region."""

from __future__ import annotations

from fceval_tui.services.audit_checks.aws import describe_error, identity
from fceval_tui.services.audit_checks.base import AuditContext, Findings

LOGIN_FIX = (
    "run `aws sso login --profile NAME` and pass --profile NAME, or export "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on a machine with an instance role"
)


REACH_FIX = (
    "check the network, proxy and AWS_ENDPOINT_URL/--region, then run the audit again "
    "(launch --skip-preflight overrides, and is recorded)"
)


def check_identity(ctx: AuditContext, f: Findings) -> None:
    import botocore.exceptions
    import botocore.parsers

    try:
        caller = identity(ctx)
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as exc:
        f.error("identity.caller", "no usable AWS credentials", str(exc), LOGIN_FIX)
        return
    except (botocore.exceptions.TokenRetrievalError, botocore.exceptions.SSOTokenLoadError) as exc:
        f.error("identity.caller", "the SSO session has expired", str(exc), "run `aws sso login --profile NAME`")
        return
    except botocore.exceptions.ClientError as exc:
        f.error(
            "identity.caller",
            "AWS rejected the credentials",
            describe_error(exc),
            "refresh them (`aws sso login`), check the profile, and that this machine's clock is right",
        )
        return
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
        f.error("identity.caller", "AWS cannot be reached", describe_error(exc), REACH_FIX)
        return
    except (botocore.exceptions.BotoCoreError, botocore.parsers.ResponseParserError) as exc:
        # Unknown identity blocks a cloud launch like an error: nothing else can be trusted.
        f.error("identity.caller", "your AWS identity could not be determined", describe_error(exc), REACH_FIX)
        return
    source = f"profile {ctx.settings.profile}" if ctx.settings.profile else "the default credential chain"
    if caller.kind == "root":
        f.warning(
            "identity.caller",
            f"signed in as the root user of account {caller.account}",
            "root may do anything; jobs work, but a leaked key costs the whole account",
            "use an IAM user or role with the policy from `fceval-tui audit --print-policy caller`",
        )
        return
    f.ok("identity.caller", f"{caller.arn} (account {caller.account})", f"credentials from {source}")
    if ctx.settings.aws_command_prefix and ctx.backend in SESSION_BACKENDS:
        compare_cli_identity(ctx, f, caller.arn)


# Backends whose tail, attach and live mirror run the `aws` CLI (through the command prefix).
SESSION_BACKENDS = ("ec2", "ecs")
CLI_TIMEOUT = 60.0


def compare_cli_identity(ctx: AuditContext, f: Findings, arn: str) -> None:
    """The console's own calls (boto3) do not run FCEVAL_AWS_COMMAND_PREFIX; its sessions do. Both must
    act as one identity, or sessions fail (or reach another account) while jobs run."""
    import json
    import os
    import shlex
    import subprocess

    from fceval_tui.transports.aws_cli import aws_cli_argv

    s = ctx.settings
    prefix = shlex.join(s.aws_command_prefix)
    argv = aws_cli_argv(s.aws_command_prefix, s.region, s.profile, "sts", "get-caller-identity", "--output", "json")
    fix = (
        "make both the same identity: point AWS_PROFILE (--profile) at the credentials the prefix provides, "
        "or change FCEVAL_AWS_COMMAND_PREFIX (the console's own calls use the profile, never the prefix)"
    )
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "AWS_PAGER": ""},
            check=False,
        )
        cli_arn = json.loads(proc.stdout)["Arn"] if proc.returncode == 0 else None
    except FileNotFoundError:
        f.error(
            "identity.cli",
            f"`{prefix}` cannot run: {argv[0]} is not installed",
            "",
            "fix FCEVAL_AWS_COMMAND_PREFIX",
        )
        return
    except subprocess.TimeoutExpired:
        f.unknown("identity.cli", f"`{prefix} aws sts get-caller-identity` did not answer in {CLI_TIMEOUT:.0f} s")
        return
    except (ValueError, KeyError, TypeError):
        cli_arn = None
    if cli_arn is None:
        said = " ".join((proc.stderr or proc.stdout).split())[-300:]
        f.warning("identity.cli", f"the aws CLI through `{prefix}` has no working identity", said, fix)
    elif cli_arn.split(":")[4] != arn.split(":")[4]:
        f.error(
            "identity.cli",
            "the aws CLI and the console's own calls use different AWS accounts",
            f"through `{prefix}`: {cli_arn}; boto3: {arn}",
            fix,
        )
    elif cli_arn != arn:
        f.warning(
            "identity.cli",
            "the aws CLI and the console's own calls act as different identities",
            f"through `{prefix}`: {cli_arn}; boto3: {arn}",
            fix,
        )
    else:
        f.ok("identity.cli", f"the aws CLI through `{prefix}` acts as {cli_arn} too")


def check_region(ctx: AuditContext, f: Findings) -> None:
    region = ctx.settings.region
    regions = ctx.client("ec2").describe_regions(AllRegions=True)["Regions"]
    found = next((r for r in regions if r["RegionName"] == region), None)
    if found is None:
        f.error(
            "region.enabled",
            f"{region} is not an AWS region of this account",
            "known: " + ", ".join(sorted(r["RegionName"] for r in regions)),
            "set AWS_REGION (or --region) to one of them",
        )
    elif found.get("OptInStatus") == "not-opted-in":
        f.error(
            "region.enabled",
            f"{region} is not enabled for this account",
            "the region needs an opt-in",
            f"enable it: `aws account enable-region --region-name {region}`, or choose another AWS_REGION",
        )
    else:
        f.ok("region.enabled", f"{region} is enabled ({found.get('OptInStatus', 'opt-in-not-required')})")
