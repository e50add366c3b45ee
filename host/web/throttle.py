"""Failed-login limits per client address and per account.

A guesser at one address meets a doubling lock-out. A guesser spread over many addresses
puts the account *under attack*: every address that has failed in that time then waits out a
cool-off after a single failure, so each address buys one guess per cool-off. An address
that has not failed is never held back: a flood from a guest Wi-Fi cannot lock the admin out
of the phone in the electrician's hand. The memory is bounded: the least recently failed
addresses are forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_ACCOUNT = "admin"


@dataclass
class _AddressRecord:
    failures: int
    last_failure: float


@dataclass
class _AccountRecord:
    recent: deque[float]  # times of the last failures from any address (bounded)
    attack_until: float = 0.0


@dataclass
class LoginThrottle:
    """``free_failures`` per address, then 1 s, 2 s, 4 s … up to ``max_lock_s``; a success
    clears the address. More than ``account_failures_per_minute`` failures on one account
    from all addresses together start ``attack_cooloff_s`` of one-failure lock-outs."""

    clock: Callable[[], float] = time.monotonic
    free_failures: int = 3
    max_lock_s: float = 300.0
    account_failures_per_minute: int = 30
    attack_cooloff_s: float = 300.0
    max_addresses: int = 4096
    max_accounts: int = 16
    _addresses: OrderedDict[str, _AddressRecord] = field(default_factory=OrderedDict)
    _accounts: OrderedDict[str, _AccountRecord] = field(default_factory=OrderedDict)

    def retry_after(self, client: str, account: str = DEFAULT_ACCOUNT) -> float:
        """Seconds ``client`` must wait before trying ``account`` again (0: go ahead)."""
        now = self.clock()
        record = self._addresses.get(client)
        if record is None:
            return 0.0
        since = now - record.last_failure
        wait = 0.0
        if record.failures >= self.free_failures:
            wait = min(self.max_lock_s, 2.0 ** (record.failures - self.free_failures)) - since
        if self._under_attack(account, now):
            wait = max(wait, self.attack_cooloff_s - since)
        if wait <= 0.0 and since > 2 * max(self.max_lock_s, self.attack_cooloff_s):
            del self._addresses[client]  # long quiet: a clean slate
        return max(0.0, wait)

    def failed(self, client: str, account: str = DEFAULT_ACCOUNT) -> None:
        now = self.clock()
        record = self._addresses.pop(client, None)
        count = 0 if record is None else record.failures
        self._addresses[client] = _AddressRecord(count + 1, now)  # most recent last
        while len(self._addresses) > self.max_addresses:
            self._addresses.popitem(last=False)
        state = self._account(account)
        state.recent.append(now)
        window_full = len(state.recent) == state.recent.maxlen
        if window_full and now - state.recent[0] < 60.0:
            state.attack_until = now + self.attack_cooloff_s

    def succeeded(self, client: str, account: str = DEFAULT_ACCOUNT) -> None:
        self._addresses.pop(client, None)

    def under_attack(self, account: str = DEFAULT_ACCOUNT) -> bool:
        return self._under_attack(account, self.clock())

    @property
    def addresses_remembered(self) -> int:
        return len(self._addresses)

    def _under_attack(self, account: str, now: float) -> bool:
        state = self._accounts.get(account)
        return state is not None and now < state.attack_until

    def _account(self, account: str) -> _AccountRecord:
        state = self._accounts.pop(account, None)
        if state is None:
            state = _AccountRecord(deque(maxlen=self.account_failures_per_minute))
        self._accounts[account] = state
        while len(self._accounts) > self.max_accounts:
            self._accounts.popitem(last=False)
        return state
