"""The per-principal token buckets."""

from __future__ import annotations

import time

import pytest

from api.ratelimit import TokenBuckets


def test_burst_then_rate_per_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    buckets = TokenBuckets(rate_per_second=2.0, burst=3)
    assert [buckets.take("alice") for _ in range(3)] == [None, None, None]
    wait = buckets.take("alice")
    assert wait == pytest.approx(0.5)  # one token comes back every 1/rate seconds
    assert buckets.take("bob") is None  # buckets are per subject
    now[0] += 0.5
    assert buckets.take("alice") is None
    assert buckets.take("alice") is not None
    now[0] += 60  # refills to the burst, not beyond
    assert [buckets.take("alice") for _ in range(4)][-1] is not None
    assert TokenBuckets.retry_after_header(0.2) == "1"
