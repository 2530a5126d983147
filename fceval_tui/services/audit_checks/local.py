"""Checks about this machine: tmux and the state dir (local backend), the aws CLI and the
session-manager-plugin (needed to watch and attach to jobs on EC2 and ECS)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

from fceval_tui.services.audit_checks.base import AuditContext, Findings

MIN_FREE_BYTES = 1 << 30


def _version(argv: list[str]) -> tuple[str | None, str]:
    """(first version-looking token, raw output) of `argv`; (None, why) when it cannot run."""
    try:
        stamp = os.stat(argv[0]).st_mtime_ns
    except OSError as exc:
        return None, str(exc)
    return _cached_version(tuple(argv), stamp)


@functools.lru_cache(maxsize=16)
def _cached_version(argv: tuple[str, ...], stamp: int) -> tuple[str | None, str]:
    # Keyed by the binary's mtime: `aws --version` takes about a second, and a reinstall is noticed.
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    text = (proc.stdout + proc.stderr).strip()
    match = re.search(r"\d+(\.\d+)+[a-z]?", text)
    return (match.group(0) if match else None), text.splitlines()[0] if text else f"exit {proc.returncode}"


def check_tmux(ctx: AuditContext, f: Findings) -> None:
    path = shutil.which("tmux")
    if path is None:
        f.error(
            "local.tmux",
            "tmux is not installed or not on PATH",
            "the local backend runs every job in a tmux session",
            "install it: `sudo apt-get install tmux` (Debian/Ubuntu) or `brew install tmux` (macOS)",
        )
        return
    version, raw = _version([path, "-V"])
    if version is None:
        f.error("local.tmux", f"{path} does not run", raw, "reinstall tmux")
        return
    f.ok("local.tmux", f"tmux {version} at {path}", raw)


def check_state_dir(ctx: AuditContext, f: Findings) -> None:
    state = ctx.settings.state_dir
    probe = state / f".audit-probe-{os.getpid()}"
    try:
        state.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        f.error(
            "local.state-dir",
            f"state directory {state} is not writable ({exc.strerror})",
            str(exc),
            "pass --state-dir DIR or set FCEVAL_STATE_DIR to a writable directory",
        )
        return
    free = shutil.disk_usage(state).free
    if free < MIN_FREE_BYTES:
        f.warning(
            "local.state-dir",
            f"state directory {state} has only {free / 2**20:.0f} MiB free",
            "logs and local artifacts of every job are written there",
            "free some disk space or pass --state-dir DIR on a larger disk",
        )
        return
    f.ok("local.state-dir", f"state directory {state} is writable ({free / 2**30:.1f} GiB free)")


def check_aws_tools(ctx: AuditContext, f: Findings) -> None:
    why = (
        "`fceval-tui tail`, `attach`, `forward` and the console's live mirror go through `aws ssm start-session`"
        if ctx.backend == "ec2"
        else "`fceval-tui tail`, `attach`, `exec` and the console's live mirror go through `aws ecs execute-command`"
        ", `forward` through `aws ssm start-session`"
    )
    aws = shutil.which("aws")
    if aws is None:
        f.warning(
            "tools.aws-cli",
            "the aws CLI is not installed",
            why + "; jobs still run without it",
            "install AWS CLI v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html",
        )
    else:
        version, raw = _version([aws, "--version"])
        if version is None:
            f.warning("tools.aws-cli", f"{aws} does not run", raw, "reinstall AWS CLI v2")
        elif version.split(".")[0] == "1":
            f.warning(
                "tools.aws-cli",
                f"aws CLI {version} is version 1",
                raw + "; v2 is recommended for sessions",
                "install AWS CLI v2",
            )
        else:
            f.ok("tools.aws-cli", f"aws CLI {version} at {aws}", raw)
    plugin = shutil.which("session-manager-plugin")
    if plugin is None:
        f.warning(
            "tools.session-manager-plugin",
            "session-manager-plugin is not installed",
            why + "; jobs run without it",
            "install it: https://docs.aws.amazon.com/systems-manager/latest/userguide/"
            "session-manager-working-with-install-plugin.html",
        )
        return
    version, raw = _version([plugin, "--version"])
    if version is None:
        f.warning("tools.session-manager-plugin", f"{plugin} does not run", raw, "reinstall session-manager-plugin")
    else:
        f.ok("tools.session-manager-plugin", f"session-manager-plugin {version} at {plugin}", raw)
