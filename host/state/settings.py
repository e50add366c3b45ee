"""What the user sets on the unit: its name, the channel labels (R11) and each channel's
supervision range (R12). Every change is an event; settings restored from storage at
start-up are not."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from host.config import ChannelsConfig
from host.domain import validate_label, validate_unit_name
from host.state.channels import Channel, Channels
from host.state.events import EventHub, EventKind, Severity
from host.supervision import SupervisionSettings


class UnitSettings:
    def __init__(
        self, hub: EventHub, channels: Channels, name: str, config: ChannelsConfig
    ) -> None:
        self._hub = hub
        self._channels = channels
        self._config = config
        self.name = name

    def restore(
        self,
        now: float,
        unit_name: str | None,
        labels: Mapping[str, str] | None,
        supervision: Mapping[str, SupervisionSettings] | None,
    ) -> None:
        """Entries for channels this model does not have are ignored (a unit re-configured
        72 -> 48)."""
        if unit_name is not None:
            self.name = validate_unit_name(unit_name)
        for cid, label in (labels or {}).items():
            with contextlib.suppress(ValueError, KeyError):
                self._channels.get(cid).label = validate_label(label)
        for cid, settings in (supervision or {}).items():
            with contextlib.suppress(ValueError, KeyError):
                ch = self._channels.get(cid)
                self._channels.supervision[ch.id].configure(settings, now)

    def set_unit_name(self, name: str, now: float) -> tuple[str, bool]:
        """The clean name and whether it changed. ValueError for an invalid name."""
        clean = validate_unit_name(name)
        if clean == self.name:
            return clean, False
        old, self.name = self.name, clean
        self._hub.emit(
            now,
            EventKind.SETTINGS_CHANGED,
            Severity.INFO,
            f"unit renamed from '{old}' to '{clean}'" if old else f"unit named '{clean}'",
            setting="unit_name",
            old=old,
            new=clean,
        )
        return clean, True

    def set_channel_label(self, cid: str, label: str, now: float) -> tuple[str, bool]:
        """The clean label and whether it changed. ValueError for an unknown channel or an
        invalid label."""
        ch = self._channels.get(cid)
        clean = validate_label(label)
        if clean == ch.label:
            return clean, False
        old, ch.label = ch.label, clean
        self._hub.emit(
            now,
            EventKind.SETTINGS_CHANGED,
            Severity.INFO,
            f"{ch.id} label set to '{clean}'" if clean else f"{ch.id} label removed",
            group=ch.group,
            channel=ch.id,
            setting="label",
            old=old,
            new=clean,
        )
        return clean, True

    def supervision_defaults(self) -> SupervisionSettings:
        return SupervisionSettings(
            enabled=False,
            min_a=0.0,
            max_a=self._config.rating_a,
            dwell_s=self._config.supervision_dwell_s,
            hysteresis_a=self._config.supervision_hysteresis_a,
        )

    def supervision_of(self, cid: str) -> SupervisionSettings:
        return self._channels.supervision[self._channels.get(cid).id].settings

    def set_supervision(
        self, ch: Channel, settings: SupervisionSettings, now: float, live_current: float | None
    ) -> tuple[SupervisionSettings, bool]:
        """The validated settings and whether they changed. ValueError if out of range.
        ``live_current``: the channel's current if it is live, which the supervisor judges
        at once."""
        settings = settings.validated()
        supervisor = self._channels.supervision[ch.id]
        old = supervisor.settings
        if settings == old:
            return settings, False
        transitions = supervisor.configure(settings, now, live_current)
        if settings.enabled:
            text = f"{ch.id} supervised between {settings.min_a:g} and {settings.max_a:g} A"
        else:
            text = f"{ch.id} supervision switched off"
        self._hub.emit(
            now,
            EventKind.SETTINGS_CHANGED,
            Severity.INFO,
            text,
            group=ch.group,
            channel=ch.id,
            setting="supervision",
            old=old,
            new=settings,
        )
        self._channels.supervision_events(ch, transitions)
        return settings, True
