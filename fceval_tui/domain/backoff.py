"""The one backoff the console uses between retries: exponential, capped, with full jitter."""

from __future__ import annotations

import random


def full_jitter(retry: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retry` (0 for the first): uniform in [0, min(cap, base * 2**retry)].

    Full jitter spreads many clients that failed together (throttling at scale) across the whole window."""
    return (rng or random).uniform(0.0, min(cap, base * 2**retry))
