"""Per-principal rate limiting: a token bucket per subject, in this API process.

Each replica limits on its own, so N replicas allow up to N times the rate; a shared limiter
(e.g. in PostgreSQL or Redis) is not built.
"""

from __future__ import annotations

import math
import time


class TokenBuckets:
    def __init__(self, rate_per_second: float, burst: int) -> None:
        self.rate = rate_per_second
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # subject -> (tokens, updated)
        self._next_prune = time.monotonic() + 600

    def take(self, subject: str) -> float | None:
        """Spend one token: None if allowed, else the seconds until one is available."""
        now = time.monotonic()
        tokens, updated = self._buckets.get(subject, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self.rate)
        if tokens < 1.0:
            self._buckets[subject] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[subject] = (tokens - 1.0, now)
        if now > self._next_prune:  # forget subjects whose bucket has refilled
            full_after = self.burst / self.rate
            self._buckets = {s: b for s, b in self._buckets.items() if now - b[1] < full_after}
            self._next_prune = now + 600
        return None

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))
