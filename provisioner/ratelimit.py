"""Per-caller rate limits for the writing endpoints (a token bucket per principal).

Each user and each integration client gets `burst` requests at once and `per_minute` more
every minute. Buckets live in the process: with several replicas the effective limit is
per replica (documented); a shared limiter belongs in front (ingress) or in Redis later.
Refusals are 429 problems with Retry-After, and never reveal other callers' usage.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from provisioner.errors import ProvisionerError


class RateLimited(ProvisionerError):
    code: ClassVar[str] = "rate-limited"
    title: ClassVar[str] = "Too many requests; slow down"

    def __init__(self, *, retry_after: float) -> None:
        super().__init__(f"try again in {math.ceil(retry_after)} seconds")
        self.retry_after = retry_after


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key, bounded in memory (least recently used keys are dropped)."""

    def __init__(
        self,
        *,
        per_minute: int,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> None:
        """Spend one token for `key`.

        Raises:
            RateLimited: the bucket is empty; `retry_after` says when one is back.
        """
        now = self._clock()
        bucket = self._buckets.pop(key, None) or _Bucket(tokens=self._burst, updated=now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        self._buckets[key] = bucket
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            raise RateLimited(retry_after=(1.0 - bucket.tokens) / self._rate)
        bucket.tokens -= 1.0
