"""The per-caller token bucket: a burst, then a steady rate, and a truthful Retry-After."""

from __future__ import annotations

import pytest

from provisioner.ratelimit import RateLimited, RateLimiter


class TestRateLimiter:
    def test_burst_then_refill_per_caller(self) -> None:
        now = [0.0]
        limiter = RateLimiter(per_minute=60, burst=3, clock=lambda: now[0])
        for _ in range(3):
            limiter.take("dana")
        with pytest.raises(RateLimited) as caught:
            limiter.take("dana")
        assert caught.value.retry_after == pytest.approx(1.0)
        limiter.take("erin")  # another caller has their own bucket
        now[0] = 1.0
        limiter.take("dana")

    def test_memory_stays_bounded(self) -> None:
        limiter = RateLimiter(per_minute=60, burst=1, max_keys=10)
        for n in range(100):
            limiter.take(f"caller-{n}")
        assert len(limiter._buckets) == 10
