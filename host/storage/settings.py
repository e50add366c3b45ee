"""User settings and unit numbers: each change committed in its own fsynced transaction, so
once a ``save_*`` coroutine returns the setting survives kill -9 *and* a power cut. They are
rare, so the fsync costs nothing anyone notices."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from host.domain import validate_label
from host.storage.database import Database
from host.supervision import SupervisionSettings


@dataclass(frozen=True)
class StoredSettings:
    unit_name: str | None
    labels: Mapping[str, str]
    supervision: Mapping[str, SupervisionSettings]


class SettingsStore:
    """The unit's name, channel labels, supervision ranges and the detection-order numbers
    of the units."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def save_unit_name(self, name: str) -> None:
        clean = validate_label(name)
        await self._db.write(
            lambda: self._db.durable(
                [
                    (
                        "INSERT OR REPLACE INTO settings (key, value, updated_at) "
                        "VALUES ('unit_name', ?, ?)",
                        (json.dumps(clean), time.time()),
                    )
                ]
            )
        )

    async def save_channel_label(self, channel: str, label: str) -> None:
        clean = validate_label(label)
        await self._db.write(
            lambda: self._db.durable(
                [
                    (
                        "INSERT OR REPLACE INTO channel_labels (channel, label, updated_at) "
                        "VALUES (?, ?, ?)",
                        (channel, clean, time.time()),
                    )
                ]
            )
        )

    async def save_supervision(self, channel: str, settings: SupervisionSettings) -> None:
        s = settings.validated()
        await self._db.write(
            lambda: self._db.durable(
                [
                    (
                        "INSERT OR REPLACE INTO channel_supervision (channel, enabled, min_a, "
                        "max_a, dwell_s, hysteresis_a, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            channel,
                            int(s.enabled),
                            s.min_a,
                            s.max_a,
                            s.dwell_s,
                            s.hysteresis_a,
                            time.time(),
                        ),
                    )
                ]
            )
        )

    async def load(self) -> StoredSettings:
        def job() -> StoredSettings:
            con = self._db.r
            row = con.execute("SELECT value FROM settings WHERE key = 'unit_name'").fetchone()
            labels = dict(con.execute("SELECT channel, label FROM channel_labels").fetchall())
            supervision = {
                channel: SupervisionSettings(bool(enabled), lo, hi, dwell, hyst)
                for channel, enabled, lo, hi, dwell, hyst in con.execute(
                    "SELECT channel, enabled, min_a, max_a, dwell_s, hysteresis_a "
                    "FROM channel_supervision"
                )
            }
            return StoredSettings(None if row is None else json.loads(row[0]), labels, supervision)

        return await self._db.read(job)

    async def unit_number(self, unit_id: str) -> int:
        """The unit's number in detection order: assigned on first sight, then kept for
        good (a unit seen again after a restart keeps its number)."""

        def job() -> int:
            self._db.durable(
                [
                    (
                        "INSERT OR IGNORE INTO units (unit_id, number, first_seen) VALUES "
                        "(?, (SELECT COALESCE(MAX(number), 0) + 1 FROM units), ?)",
                        (unit_id, time.time()),
                    )
                ]
            )
            row = self._db.w.execute("SELECT number FROM units WHERE unit_id = ?", (unit_id,))
            return int(row.fetchone()[0])

        return await self._db.write(job)

    async def unit_numbers(self) -> dict[str, int]:
        return await self._db.read(
            lambda: dict(self._db.r.execute("SELECT unit_id, number FROM units").fetchall())
        )
