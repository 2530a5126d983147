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
