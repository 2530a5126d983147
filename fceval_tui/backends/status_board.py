"""One shared view of every watched job's compute, refreshed with batched calls, for all backends.

Every job's `observe` reads the board; the board asks AWS at most once per `max_age` for all the
jobs it watches together, so a poll costs calls per run and per batch of machines, never per job.
A job the board has not seen yet is fetched on its own (once in its life) or at the next refresh,
and `fresh` asks for an answer newer than the call (a start waiting for its task), shared by every
caller waiting then.

A refresh that fails (throttled, or AWS out of reach) backs the whole board off: until the backoff
ends, every caller gets the same error without a call to AWS, so a storm of throttling or an outage
slows the poll down instead of multiplying calls by the number of jobs. The runner decides what an
error means for a job (see services/contact.py): throttling never ends one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from fceval_tui.backends.aws import AWS_ERRORS, classify
from fceval_tui.domain.backoff import full_jitter
from fceval_tui.errors import BackendError, TransientError

Item = TypeVar("Item")
MAX_BACKOFF = 30.0  # the longest a board waits between refreshes after failures
UNSEEN_SPACING = 1.0  # seconds between two fetches of jobs new on the board


class StatusBoard(Generic[Item]):
    """Subclasses say how to fetch items by key (`_fetch`) and what they call (`doing`)."""

    doing = "refreshing the status board"
    # Whether a key seen for the first time is fetched at once (else at the next refresh, get() giving
    # None meanwhile): where one fetch costs as much as a whole refresh (EC2's listing), it waits.
    fetch_unseen = True

    def __init__(
        self,
        max_age: float | Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_age = max_age
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._watched: set[str] = set()
        self._seen: dict[str, Item] = {}
        self._started = float("-inf")  # when the last good full refresh began
        self._finished = float("-inf")  # and when it ended
        self._unseen_at = float("-inf")  # when newcomers were last fetched
        self._failures = 0
        self._retry_at = float("-inf")
        self._error: BackendError | None = None

    def get(self, key: str, fresh: bool = False) -> Item | None:
        """The last answer for `key` (None when AWS knows nothing of it, or not yet: see `fetch_unseen`)."""
        asked = self.clock()
        while True:
            with self._lock:
                self._watched.add(key)
                if self._error is not None and self.clock() < self._retry_at:
                    raise _again(self._error)
                wait = 0.0
                # A refresh that ended after this call began serves it, however long it took: else, with
                # a refresh slower than max_age, each caller queued on the lock would refresh in turn.
                stale = self._finished < asked and self.clock() - self._started > self._age()
                if fresh and self._started < asked or stale:
                    self._refresh(self._watched, replace=True)
                elif key not in self._seen and self.fetch_unseen:
                    # Newcomers arriving together (a run starting or resuming) share one fetch a second.
                    wait = self._unseen_at + UNSEEN_SPACING - self.clock()
                    if wait <= 0:
                        self._unseen_at = self.clock()
                        self._refresh({key} | (self._watched - self._seen.keys()), replace=False)
                if wait <= 0 or key in self._seen:
                    return self._seen.get(key)
            self.sleep(wait)

    def forget(self, key: str) -> None:
        with self._lock:
            self._watched.discard(key)
            self._seen.pop(key, None)

    @property
    def backing_off(self) -> bool:
        """Whether the last refresh failed and the board waits before the next."""
        with self._lock:
            return self._error is not None

    def _fetch(self, keys: Sequence[str]) -> dict[str, Item]:
        raise NotImplementedError

    def _age(self) -> float:
        return self.max_age() if callable(self.max_age) else self.max_age

    def _refresh(self, keys: set[str], replace: bool) -> None:
        started = self.clock()
        try:
            found = self._fetch(sorted(keys))
        except AWS_ERRORS as exc:
            # Expired credentials are not backed off: the runner's CredentialGate pauses the callers, and
            # once it renews the clients the next call must go to AWS, not get the old error back.
            error = classify(exc, self.doing)
            self._back_off(error)
            raise error from exc
        except TransientError as exc:
            self._back_off(exc)
            raise
        self._failures, self._error = 0, None
        if replace:
            self._seen, self._started, self._finished = found, started, self.clock()
        else:
            self._seen.update(found)

    def _back_off(self, error: Exception) -> None:
        if not isinstance(error, TransientError):
            return  # permanent errors (denied, misconfigured) are for the runner to report at once
        self._failures += 1
        self._error = error
        # At least one poll interval, doubling with each failure, jittered so many consoles spread out.
        base = max(self._age() * 2, 1.0)
        self._retry_at = self.clock() + base + full_jitter(self._failures - 1, base, MAX_BACKOFF)


def _again(error: BackendError) -> BackendError:
    """A new exception like `error` (one exception object is not raised from several threads)."""
    return type(error)(str(error), error.fix)
