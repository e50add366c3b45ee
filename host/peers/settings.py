"""Timing and sources of the peer exchange, and the counters every layer adds to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from host.config import PeersConfig


@dataclass(frozen=True)
class PeerSettings:
    """Timing and sources of the exchange; :meth:`from_config` maps ``[peers]``."""

    exchange_s: float = 1.0  # how often each known unit is contacted (summaries refresh)
    offline_after_s: float = 5.0  # no fresh summary this long: shown offline
    forget_after_s: float = 3600.0  # ... and dropped from the list after this
    retry_s: float = 5.0  # unreachable addresses are retried this often (backoff cap)
    freshness_s: float = 10.0  # a request's timestamp may be this far off (replay window)
    request_timeout_s: float = 2.0
    network_check_s: float = 1.0  # how often own addresses and cable links are looked at
    mdns: bool = True
    static: tuple[str, ...] = ()  # "host:port" of units mDNS cannot reach

    @classmethod
    def from_config(cls, config: PeersConfig, **overrides: Any) -> PeerSettings:
        settings = cls(retry_s=config.announce_s, static=config.static, mdns=config.mdns)
        for key in ("offline_after_s", "forget_after_s"):  # once PeersConfig has them
            value = getattr(config, key, None)
            if isinstance(value, int | float):
                overrides.setdefault(key, float(value))
        return cls(**{**settings.__dict__, **overrides})


STAT_KEYS = (
    "polls_ok",
    "polls_failed",
    "requests_ok",
    "rejected_malformed",
    "rejected_unsigned",
    "rejected_signature",
    "rejected_oversize",
    "rejected_replay",
    "rejected_impostor",
    "rejected_version",
    "rejected_self",
    "rejected_echo",
    "units_found",
    "units_forgotten",
    "mdns_ignored",
    "internal_errors",
)
