"""Machine-wide state that tests share: an account or a group that some tests need on this machine.

More than one test process can use it at once (pytest-xdist's workers, or another checkout's run on the
same machine), so none may remove it while another still holds it. Each process holds it through a file
named by its pid, under a lock; the last one out removes it, and only if it was not there when the first
holder of that period arrived (then the tests made it, not the machine's owner). A holder that died
without letting go (a killed run) is dropped by the next one that takes the lock.
"""

from __future__ import annotations

import fcntl
import os
import pwd
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fceval_tui.ledger import pid_exists

ROOT = Path("/tmp/fceval-tests-machine")


@contextmanager
def _locked(name: str) -> Iterator[Path]:
    ROOT.mkdir(mode=0o700, exist_ok=True)
    with open(ROOT / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            holders = ROOT / f"{name}.holders"
            holders.mkdir(exist_ok=True)
            for holder in holders.iterdir():
                if not pid_exists(int(holder.name)):
                    holder.unlink()
            yield holders
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def held(
    name: str,
    exists: Callable[[], bool],
    remove: Callable[[], None],
    create: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold `name` while the block runs: `create` it if missing (when given), and `remove` it when the last
    holder leaves if the tests made it (it did not exist when the first holder arrived)."""
    owned = ROOT / f"{name}.owned"
    me = str(os.getpid())
    with _locked(name) as holders:
        if not any(holders.iterdir()):
            if exists():
                owned.unlink(missing_ok=True)
            else:
                owned.touch()
        if create is not None and not exists():
            create()
        (holders / me).touch()
    try:
        yield
    finally:
        with _locked(name) as holders:
            (holders / me).unlink(missing_ok=True)
            if not any(holders.iterdir()) and owned.exists():
                remove()
                owned.unlink()


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
