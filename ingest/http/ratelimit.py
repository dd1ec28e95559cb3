"""Token buckets: events per second per source, requests per second per read key."""

from __future__ import annotations

import math
import threading
import time


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = float(rate)
        self.burst = float(max(burst, 1.0))
        self._tokens = self.burst
        self._t = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate)
        self._t = now

    def take(self, n: float = 1.0) -> float:
        """Take n tokens. Returns 0 when granted, else the seconds to wait before n fit."""
        n = min(float(n), self.burst)  # a batch larger than the bucket passes once it is full
        with self._lock:
            self._refill(time.monotonic())
            if self._tokens >= n:
                self._tokens -= n
                return 0.0
            return (n - self._tokens) / self.rate

    def empty(self) -> float:
        """Seconds until at least one token is available (0 if there is one)."""
        with self._lock:
            self._refill(time.monotonic())
            return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate


class RateLimiter:
    """One bucket per name, created on first use. Bucket size: `burst` if given, else
    max(rate, min_burst) so that the largest allowed batch always fits."""

    def __init__(self, rate: float, burst: float | None = None, min_burst: float = 1.0,
                 overrides: dict[str, float] | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.min_burst = min_burst
        self.overrides = overrides or {}
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, name: str) -> TokenBucket:
        b = self._buckets.get(name)
        if b is None:
            with self._lock:
                b = self._buckets.get(name)
                if b is None:
                    rate = self.overrides.get(name, self.rate)
                    burst = self.burst if self.burst is not None else max(rate, self.min_burst)
                    b = self._buckets[name] = TokenBucket(rate, burst)
        return b


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
