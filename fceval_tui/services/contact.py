"""How long the runner keeps faith with compute it cannot read, and how long it waits between tries.

A failed status read says nothing about the compute: AWS may be throttling, or this machine's
network may be down for a minute. Compute that is really gone is reported as gone by the backend
(`ResourceGone`). So failures alone end an attempt only when they are many and have lasted: at
least `OBSERVE_FAILURES` in a row over at least `LOST_AFTER` seconds. Throttling never counts: it
only slows the runner down.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fceval_tui.domain.backoff import full_jitter
from fceval_tui.errors import BackendError, ThrottlingError

MAX_BACKOFF = 60.0
# Consecutive failed reads, and how long they must have lasted, before the compute is considered lost.
OBSERVE_FAILURES = 5
LOST_AFTER = 180.0
# Collecting a finished job's uploads ends after so many failed tries in a row (throttled ones not counted:
# the job's timeout bounds those).
COLLECT_TRIES = 20
# Cleaning up an attempt (ending its compute) is tried so many times, throttled or not, before it is left to
# teardown and the TTL. Few: each try repeats every step of the cleanup while the job holds its slot (under the
# fleet bench's 50% throttling storm, 30 tries kept each job for minutes and almost never got through).
CLEANUP_TRIES = 5


def backoff(attempt: int, base: float = 1.0) -> float:
    """The wait after attempt number `attempt` (counted from 1)."""
    return full_jitter(max(0, attempt - 1), base, MAX_BACKOFF)


class Contact:
    """The run of failed reads of one attempt's compute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_tries: int | None = None) -> None:
        self.clock = clock
        self.max_tries = max_tries
        self.failures = 0  # those that count towards loss (or towards `max_tries`)
        self.tries = 0  # every failed read in a row, throttled ones too (for the backoff)
        self._since: float | None = None

    def ok(self) -> None:
        self.failures, self.tries, self._since = 0, 0, None

    def failed(self, error: BackendError) -> bool:
        """Record a failed read; True when the compute is now to be considered lost."""
        self.tries += 1
        if isinstance(error, ThrottlingError):
            return False
        now = self.clock()
        if self._since is None:
            self._since = now
        self.failures += 1
        if self.max_tries is not None:
            return self.failures >= self.max_tries
        return self.failures >= OBSERVE_FAILURES and now - self._since >= LOST_AFTER

    def delay(self, base: float) -> float:
        """The wait before the next read."""
        return backoff(self.tries, base)
