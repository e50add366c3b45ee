"""Login limits per client address and per account (host/web/throttle.py)."""

from __future__ import annotations

from host.web.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_one_address_meets_a_doubling_lock() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    waits = []
    for _ in range(6):
        throttle.failed("10.0.0.9")
        waits.append(throttle.retry_after("10.0.0.9"))
    assert waits == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0]
    clock.t += 8.0
    assert throttle.retry_after("10.0.0.9") == 0.0
    throttle.succeeded("10.0.0.9")
    throttle.failed("10.0.0.9")
    assert throttle.retry_after("10.0.0.9") == 0.0  # a success cleared the count


def test_a_flood_from_many_addresses_does_not_lock_out_a_clean_one() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for n in range(50):
        for _ in range(3):
            throttle.failed(f"10.0.1.{n}")
            clock.t += 0.01
    assert throttle.under_attack()
    assert throttle.retry_after("10.0.2.1") == 0.0  # the admin's phone
    # Under attack, one failure is enough to hold an address for the cool-off …
    throttle.failed("10.0.3.1")
    assert throttle.retry_after("10.0.3.1") == throttle.attack_cooloff_s
    # … and every address of the flood waits it out too.
    assert throttle.retry_after("10.0.1.7") > 290.0
    clock.t += throttle.attack_cooloff_s + 1.0
    assert not throttle.under_attack()
    assert throttle.retry_after("10.0.3.1") == 0.0


def test_the_limiter_memory_is_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock, max_addresses=256)
    for n in range(20_000):
        throttle.failed(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert throttle.addresses_remembered == 256
    # The most recent failures are the ones kept.
    assert throttle.retry_after("10.0.78.31") > 0.0  # n = 19999
    for n in range(100):
        throttle.failed("10.9.9.9", account=f"account-{n}")
    assert len(throttle._accounts) == throttle.max_accounts  # pyright: ignore[reportPrivateUsage]
