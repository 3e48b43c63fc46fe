from __future__ import annotations

from server.rpc.limits import Limiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10, clock)
    assert sum(bucket.take() for _ in range(15)) == 10
    clock.t += 0.5
    assert sum(bucket.take() for _ in range(15)) == 5
    clock.t += 100
    assert sum(bucket.take() for _ in range(15)) == 10  # never more than one second's burst


def test_limiter_is_per_tenant_and_follows_config_changes() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    assert all(limiter.allow("a", 0) for _ in range(1000))  # 0: unlimited
    assert sum(limiter.allow("a", 3) for _ in range(10)) == 3
    assert sum(limiter.allow("b", 3) for _ in range(10)) == 3
    assert sum(limiter.allow("a", 5) for _ in range(10)) == 5  # new limit, new bucket
