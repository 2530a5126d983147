"""Text an operator pastes into a live session: from a file or the system clipboard, and how a paste is
logged (its size and a hash, never its content). Blocking: call from a worker thread."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

from fceval_tui.errors import UserError

MAX_PASTE_BYTES = 16 * 1024 * 1024  # a paste is input for a terminal; beyond this it is surely a mistake
# Clipboard readers, first found wins: macOS, Wayland, then X11 (two common tools).
CLIPBOARD_READERS = (
    ("pbpaste",),
    ("wl-paste", "--no-newline"),
    ("xclip", "-selection", "clipboard", "-out"),
    ("xsel", "--clipboard", "--output"),
)
CLIPBOARD_TIMEOUT = 5.0


def paste_detail(text: str) -> dict[str, object]:
    """What the ledger keeps of a paste: its size and SHA-256."""
    data = text.encode()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_paste_file(path: str) -> str:
    """A UTF-8 text file's content; a UserError naming the problem otherwise."""
    path = os.path.expanduser(path.strip())
    try:
        size = os.path.getsize(path)
        if size > MAX_PASTE_BYTES:
            raise UserError(
                f"{path} is {size:,} bytes, more than the {MAX_PASTE_BYTES:,} a paste takes",
                "copy the file to the job's machine another way (e.g. S3) and read it there",
            )
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}", "give the path of a UTF-8 text file") from None


def clipboard_reader() -> tuple[str, ...] | None:
    """The argv of the first clipboard reader on PATH, or None."""
    return next((argv for argv in CLIPBOARD_READERS if shutil.which(argv[0])), None)


def read_clipboard() -> str:
    """The system clipboard's text; a UserError when no reader is installed or it fails."""
    argv = clipboard_reader()
    if argv is None:
        names = ", ".join(reader[0] for reader in CLIPBOARD_READERS)
        raise UserError(
            f"no clipboard reader found on this machine ({names})",
            "paste with your terminal's own paste key instead: in control mode it goes to the pane",
        )
    try:
        done = subprocess.run(argv, capture_output=True, timeout=CLIPBOARD_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"{argv[0]} failed: {exc}", "paste with your terminal's own paste key instead") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()[:200] or f"exit {done.returncode}"
        raise UserError(
            f"{argv[0]} could not read the clipboard: {why}",
            "paste with your terminal's own paste key instead (no display? over SSH the clipboard is the far side's)",
        )
    if len(done.stdout) > MAX_PASTE_BYTES:
        raise UserError(f"the clipboard holds {len(done.stdout):,} bytes, more than a paste takes", "copy less")
    return done.stdout.decode("utf-8", errors="replace")
