"""Words for the values the snapshots carry, where a screen or a log needs them."""

from __future__ import annotations

from host.breaker import TRIP_CAUSE_TEXT, TripCause
from host.supervision import SupervisionStatus


def trip_cause_text(cause: TripCause) -> str:
    return TRIP_CAUSE_TEXT[cause]


def supervision_status_text(status: SupervisionStatus) -> str:
    return {
        SupervisionStatus.UNSUPERVISED: "not supervised",
        SupervisionStatus.OK: "within range",
        SupervisionStatus.BELOW_MIN: "below minimum",
        SupervisionStatus.ABOVE_MAX: "above maximum",
    }[status]
