"""CSV export of history and of the event log, the show energy report, and the phase-balance
advice: ``GET /api/v1/units/{unit_id}/export/history.csv``, ``…/export/events.csv``,
``…/report`` (JSON or CSV) and ``…/balance``.

Read access like the other history endpoints. The CSV files are streamed: rows are written
as they are read from the database, one window of rows at a time, never the whole file in
memory. Text cells that a spreadsheet would take for a formula (a label or message starting
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) get a leading ``'`` (the OWASP
rule against CSV injection). Nothing here can switch or trip anything (R7).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from host.analysis.balance import Output, advise
from host.analysis.energy import EnergyReport, OutputInfo, build_report
from host.domain import MODEL_GROUPS, parse_channel_id
from host.state import METER_QUANTITIES, Freshness, UnitSnapshot
from host.state.snapshot import ChannelState
from host.storage.history import HistoryPoint
from host.web.app import API_PREFIX, WebContext, http_error, require_read
from host.web.params import query_epoch, unit_context

Resolution = Literal["seconds", "minutes"]
CSV_CHUNK_ROWS = 600  # time rows per database window (600 s or 600 min of every series)
EVENTS_PAGE = 500
MAX_SPAN_S = 31 * 86400.0
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SELECT_PATTERN = re.compile(r"mains|[A-Fa-f](?:[1-9]|1[0-2])?")
KIND_PATTERN = re.compile(r"[a-z_]{1,32}\.[a-z_]{1,32}")
CSV_TYPE = "text/csv; charset=utf-8"


# ----------------------------------------------------------------------------- CSV helpers


def safe_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: formulas in text cells are defused with a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def iso_utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%dT%H%M%SZ")


def export_filename(unit: str, what: str, start: float, end: float) -> str:
    """``<unit>-<what>-<start>-<end>.csv``, only letters, digits, ``.``, ``_`` and ``-``."""
    name = f"{unit}-{what}-{_stamp(start)}-{_stamp(end)}.csv"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


class CsvStream:
    """A ``text/csv`` attachment written row batch by row batch."""

    def __init__(self, request: web.Request, filename: str) -> None:
        self.request = request
        self.response = web.StreamResponse(
            headers={
                "Content-Type": CSV_TYPE,
                "Content-Disposition": f'attachment; filename="{filename}"',
            }
        )
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")
        self.rows = 0

    async def start(self) -> None:
        await self.response.prepare(self.request)

    async def write(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self._writer.writerow([safe_cell(cell) for cell in row])
            self.rows += 1
        data = self._buffer.getvalue()
        if data:
            self._buffer.seek(0)
            self._buffer.truncate()
            await self.response.write(data.encode("utf-8"))

    async def finish(self) -> web.StreamResponse:
        await self.response.write_eof()
        return self.response


# ----------------------------------------------------------------------------- parameters


def span_of(request: web.Request, default_s: float = 3600.0) -> tuple[float, float]:
    """``start``/``end`` (epoch s): end defaults to now, start to ``default_s`` before it."""
    end = query_epoch(request, "end")
    start = query_epoch(request, "start")
    end = time.time() if end is None else end
    start = end - default_s if start is None else start
    if not start < end or end - start > MAX_SPAN_S:
        raise http_error(web.HTTPBadRequest, "need start < end, at most 31 days apart")
    return start, end


def _resolution(request: web.Request, ctx: WebContext, start: float) -> Resolution:
    text = request.query.get("resolution", "auto")
    if text not in ("auto", "seconds", "minutes"):
        raise http_error(web.HTTPBadRequest, "'resolution' is auto, seconds or minutes")
    if text == "auto":
        keep = ctx.storage.history_config.keep_samples_s
        return "seconds" if start >= time.time() - keep - 60 else "minutes"
    return "seconds" if text == "seconds" else "minutes"


def selection(request: web.Request, ctx: WebContext) -> tuple[str, list[tuple[str, str]]]:
    """What a history export covers: a name for the file and its (series, column) pairs."""
    text = request.query.get("select", "mains")
    if not SELECT_PATTERN.fullmatch(text):
        raise http_error(web.HTTPBadRequest, "'select' is a channel (A7), a group (A) or mains")
    snapshot = ctx.state.snapshot()
    if text == "mains":
        series = [(f"sum.L{n}", f"channels L{n} (A)") for n in (1, 2, 3)]
        series += [(f"meter.{q.name}", f"meter {q.label} ({q.unit})") for q in METER_QUANTITIES]
        return "mains", series
    group = text[0].upper()
    if group not in MODEL_GROUPS[ctx.state.model]:
        raise http_error(web.HTTPNotFound, f"this unit has no group {group}")
    if len(text) == 1:
        channels = [ch for ch in snapshot.iter_channels() if ch.group == group]
        return f"group-{group}", [(ch.id, _column(ch.id, ch.label)) for ch in channels]
    g, number = parse_channel_id(text, ctx.state.model)
    ch = snapshot.channel(f"{g}{number}")
    return ch.id, [(ch.id, _column(ch.id, ch.label))]


def _column(cid: str, label: str) -> str:
    return f"{cid} {label} (A)" if label else f"{cid} (A)"


# ----------------------------------------------------------------------------- history CSV


def csv_windows(start: float, end: float, resolution: Resolution) -> list[tuple[int, int]]:
    """[lo, hi] windows of ``CSV_CHUNK_ROWS`` seconds or minutes covering the span."""
    step = CSV_CHUNK_ROWS * (1 if resolution == "seconds" else 60)
    lo, hi = math.floor(start), math.ceil(end)
    if resolution == "minutes":
        lo = lo // 60 * 60
    return [(t, min(t + step - 1, hi)) for t in range(lo, hi + 1, step)]


def history_rows(
    resolution: Resolution, columns: int, points: Sequence[Sequence[HistoryPoint]]
) -> list[list[Any]]:
    """One row per time of the window: ISO time, epoch s, then each series' value(s)."""
    by_t: dict[int, list[Any]] = {}
    width = 1 if resolution == "seconds" else 3
    for index, series_points in enumerate(points):
        for p in series_points:
            row = by_t.setdefault(p.t, [""] * (columns * width))
            values = [p.avg] if width == 1 else [p.min, p.avg, p.max]
            row[index * width : (index + 1) * width] = values
    return [[iso_utc(t), t, *by_t[t]] for t in sorted(by_t)]


async def history_csv(request: web.Request) -> web.StreamResponse:
    await require_read(request)
    ctx = unit_context(request)
    start, end = span_of(request)
    what, series = selection(request, ctx)
    resolution = _resolution(request, ctx, start)
    header: list[str] = ["time_utc", "epoch_s"]
    for _name, column in series:
        header += (
            [column]
            if resolution == "seconds"
            else [f"{column} {s}" for s in ("min", "avg", "max")]
        )
    stream = CsvStream(request, export_filename(ctx.state.unit_id, what, start, end))
    await stream.start()
    await stream.write([header])
    for lo, hi in csv_windows(start, end, resolution):
        points = [
            [p for p in await ctx.storage.history(name, lo, hi, resolution) if lo <= p.t <= hi]
            for name, _column in series
        ]
        await stream.write(history_rows(resolution, len(series), points))
    return await stream.finish()


# ----------------------------------------------------------------------------- events CSV

EVENT_HEADER = ["time_utc", "epoch_s", "id", "severity", "kind", "group", "channel", "message",
                "data"]  # fmt: skip


async def events_csv(request: web.Request) -> web.StreamResponse:
    """The event log in [start, end], newest first like the log pane, page by page."""
    await require_read(request)
    ctx = unit_context(request)
    start, end = span_of(request, 86400.0)
    kinds: list[str] = []
    for text in request.query.getall("kind", []):
        for kind in text.split(","):
            if not KIND_PATTERN.fullmatch(kind):
                raise http_error(web.HTTPBadRequest, "'kind' is an event kind like board.offline")
            kinds.append(kind)
    stream = CsvStream(request, export_filename(ctx.state.unit_id, "events", start, end))
    await stream.start()
    await stream.write([EVENT_HEADER])
    before: int | None = None
    while True:
        page = await ctx.storage.events(
            EVENTS_PAGE, before_id=before, kinds=kinds or None, since=start
        )
        await stream.write(
            [
                [
                    iso_utc(e.time),
                    f"{e.time:.3f}",
                    e.id,
                    e.severity,
                    e.kind,
                    e.group or "",
                    e.channel or "",
                    e.message,
                    json.dumps(e.data, sort_keys=True),
                ]
                for e in page
                if e.time <= end
            ]
        )
        if len(page) < EVENTS_PAGE:
            break
        before = page[-1].id
    return await stream.finish()


# ----------------------------------------------------------------------------- energy report


def report_outputs(snapshot: UnitSnapshot) -> list[OutputInfo]:
    return [OutputInfo(ch.id, ch.group, ch.phase, ch.label) for ch in snapshot.iter_channels()]


def _kwh(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _amps(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def report_rows(report: EnergyReport) -> list[list[Any]]:
    """The report as CSV rows: a heading block, then phases, groups, outputs and alarms."""
    rows: list[list[Any]] = [
        ["show energy report", report.unit_id, report.unit_name],
        ["start", iso_utc(report.start), f"{report.start:.0f}"],
        ["end", iso_utc(report.end), f"{report.end:.0f}"],
        ["meter total kWh", _kwh(report.meter_total_kwh), f"{report.meter_coverage_pct:.1f} %"],
        ["nominal voltage V", f"{report.nominal_voltage_v:g}"],
        *[["note", note] for note in report.notes],
        [],
        ["phase", "meter kWh", "meter method", "outputs kVAh", "peak meter A", "peak outputs A"],
    ]
    for p in report.phases:
        rows.append([p.phase, _kwh(p.meter_kwh), p.meter_method, _kwh(p.channels_kwh),
                     _amps(p.peak_meter_a), _amps(p.peak_channels_a)])  # fmt: skip
    rows += [[], ["group", "kVAh", "L1 kVAh", "L2 kVAh", "L3 kVAh", "peak A", "voltage"]]
    for g in report.groups:
        rows.append([g.group, _kwh(g.kwh), *(_kwh(g.phase_kwh[ph]) for ph in ("L1", "L2", "L3")),
                     _amps(g.peak_a), g.voltage_source])  # fmt: skip
    rows += [[], ["output", "label", "phase", "kVAh", "peak A", "measured s", "voltage"]]
    for c in report.channels:
        rows.append([c.id, c.label, c.phase, _kwh(c.kwh), _amps(c.peak_a),
                     f"{c.measured_s:.0f}", c.voltage_source])  # fmt: skip
    rows += [[], ["alarm time_utc", "epoch_s", "severity", "kind", "group", "channel", "message"]]
    for e in report.alarms:
        rows.append([iso_utc(e.time), f"{e.time:.3f}", e.severity, e.kind, e.group or "",
                     e.channel or "", e.message])  # fmt: skip
    return rows


async def energy_report(request: web.Request) -> web.StreamResponse:
    await require_read(request)
    ctx = unit_context(request)
    start, end = span_of(request, 86400.0)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise http_error(web.HTTPBadRequest, "'format' is json or csv")
    snapshot = ctx.state.snapshot()
    report = await build_report(
        ctx.storage,
        report_outputs(snapshot),
        start,
        end,
        unit_id=snapshot.unit_id,
        unit_name=snapshot.name,
        nominal_voltage_v=ctx.config.unit.nominal_voltage_v,
    )
    if fmt == "json":
        return web.json_response(report.to_dict())
    stream = CsvStream(request, export_filename(snapshot.unit_id, "energy", start, end))
    await stream.start()
    rows = report_rows(report)
    for at in range(0, len(rows), CSV_CHUNK_ROWS):
        await stream.write(rows[at : at + CSV_CHUNK_ROWS])
    return await stream.finish()


# ----------------------------------------------------------------------------- balance


def balance_outputs(snapshot: UnitSnapshot) -> list[Output]:
    outputs: list[Output] = []
    for group in snapshot.groups:
        for ch in group.channels:
            live = ch.freshness is Freshness.LIVE and ch.current_a is not None
            outputs.append(
                Output(
                    id=ch.id,
                    group=ch.group,
                    phase=ch.phase,
                    current_a=ch.current_a if live else None,
                    label=ch.label,
                    board_online=group.board.online,
                    tripped=ch.state is ChannelState.TRIPPED,
                )
            )
    return outputs


async def balance(request: web.Request) -> web.Response:
    """Read-only advice: nothing is switched (R7)."""
    await require_read(request)
    ctx = unit_context(request)
    snapshot = ctx.state.snapshot()
    data = advise(balance_outputs(snapshot)).to_dict()
    data["unit"] = snapshot.unit_id
    data["at"] = snapshot.taken_at
    data["meter_neutral_a"] = snapshot.meter.live_value("neutral_current")
    return web.json_response(data)


# ----------------------------------------------------------------------------- routes


def add_routes(app: web.Application) -> None:
    u = f"{API_PREFIX}/units/{{unit_id}}"
    app.router.add_get(f"{u}/export/history.csv", history_csv)
    app.router.add_get(f"{u}/export/events.csv", events_csv)
    app.router.add_get(f"{u}/report", energy_report)
    app.router.add_get(f"{u}/balance", balance)
