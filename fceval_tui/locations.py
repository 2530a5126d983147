"""Where fceval-tui keeps its files, in one place.

The state dir (`--state-dir`, FCEVAL_STATE_DIR, default: the platform's user state dir) holds the
ledger, logs, job work directories and local artifacts; the user config dir holds themes and the
keymap. Every path is computed when asked for, so tests can point XDG_* or the state dir elsewhere.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fceval_tui.errors import StateDirError

APP_NAME = "fceval-tui"
LEDGER_FILE = "ledger.sqlite3"


def default_state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def private_dir(path: Path) -> Path:
    """Create `path` readable by its owner only (0700); an existing directory is left as its owner set it."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Make sure `path` exists and only its owner can read it (0600): the ledger and the logs hold
    commands, settings and output."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    path.chmod(0o600)
    return path


def ensure_state_dir(path: Path) -> Path:
    """Create the state dir (private to the user) if needed and prove it is writable; a clear error otherwise."""
    path = path.expanduser()
    try:
        private_dir(path)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StateDirError(
            f"state directory {path} is not writable ({exc.strerror})",
            "pass --state-dir DIR or set FCEVAL_STATE_DIR to a writable directory",
        ) from None
    return path


def ledger_path(state_dir: Path) -> Path:
    return state_dir / LEDGER_FILE


def logs_dir(state_dir: Path) -> Path:
    return state_dir / "logs"


def runner_log(state_dir: Path, run_id: str) -> Path:
    """Output of a background runner (`launch --detach`, `resume --detach`)."""
    return logs_dir(state_dir) / f"runner-{run_id}.log"


def job_work_dir(state_dir: Path, run_id: str, job_id: str) -> Path:
    """A job's private directory on this machine: pipeline script, status files, console.log, downloads."""
    return state_dir / "work" / run_id / job_id


def local_artifacts_dir(state_dir: Path) -> Path:
    """The artifact prefix when FCEVAL_ARTIFACTS is unset."""
    return state_dir / "artifacts"


def tmux_conf(state_dir: Path) -> Path:
    """The configuration the local backend's private tmux server starts with."""
    return state_dir / "tmux.conf"


def tmux_socket_name(state_dir: Path) -> str:
    """The local backend's private tmux server (`tmux -L NAME`): one per state dir."""
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:10]
    return f"fceval-{digest}"


def preflight_export(state_dir: Path, backend: str, stamp: str) -> Path:
    return state_dir / f"preflight-{backend}-{stamp}.json"


def user_config_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def user_themes_dir() -> Path:
    return user_config_dir() / "themes"


def keymap_path() -> Path:
    return user_config_dir() / "keymap.toml"
