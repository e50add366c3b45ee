"""Pane A across units, through the real service (issue 7): two virtual units as
``smartpdu run --config`` builds them (``tools.virtual.runvirtual.virtual_unit``: a virtual smartPDU
36 with the real firmware and meter simulator, the aggregator service, its web interface
and peer directory), in this process on 127.0.0.1, each with its own config file.

Unit X's web interface — ``GET /api/v1/units``, the view pane A is drawn from, and the live
WebSocket — lists unit Y with the L1/L2/L3/N of Y's own virtual PDU, follows Y's load as it
changes, links to Y's own web interface, and shows Y offline once Y stops.

No namespaces here, so no mDNS: python-zeroconf announces on every interface, which on a
test machine would be its real LAN, and a machine with loopback only has no multicast. X
finds Y through ``peers.static`` instead; from there on it is the same signed exchange
(``test_peers_units_netns.py`` covers discovery over real mDNS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from host.web.view import apply_patch
from tests.host.unitprocs import short_tempdir, until, write_unit
from tests.host.webstack import free_port
from tools.virtual.runvirtual import VirtualUnit, virtual_unit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "front-of-house-site-key-0042"
OFFLINE_AFTER_S = 2.0
X_ID, Y_ID = "smartPDU00C0A1", "smartPDU00C0B2"
SEED = 7


def loads_of(l1: float, l2: float, l3: float) -> dict[str, float]:
    """Steady loads on L1, L2 and L3 of a smartPDU 36 (A1, A2 and B3)."""
    return {"A1": l1, "A2": l2, "B3": l3}


@pytest.fixture
def workdir() -> Iterator[Path]:
    with short_tempdir("spdu7s-") as folder:
        yield folder


def phases_of(unit: VirtualUnit) -> dict[str, float]:
    pdu = unit.pdu
    return {
        "l1": pdu.expected_phase_amps("L1"),
        "l2": pdu.expected_phase_amps("L2"),
        "l3": pdu.expected_phase_amps("L3"),
        "n": pdu.expected_neutral_amps(),
    }


def matches(row: dict[str, Any] | None, want: dict[str, float], tolerance: float = 0.1) -> bool:
    return row is not None and all(
        row.get(k) is not None and abs(row[k] - v) <= tolerance for k, v in want.items()
    )


async def test_pane_a_of_one_unit_shows_another_and_links_to_it(workdir: Path) -> None:
    x_port, y_port = free_port(), free_port()
    offline = f"offline_after_s = {OFFLINE_AFTER_S}\n"
    y_files = write_unit(
        workdir / "y", Y_ID, "Front of house", y_port, loads_of(4.0, 6.5, 2.0),
        key=KEY, seed=SEED, config_tail=offline,
    )  # fmt: skip
    x_files = write_unit(
        workdir / "x", X_ID, "Stage left", x_port, loads_of(1.0, 1.5, 3.0),
        key=KEY, seed=SEED, static=[f"127.0.0.1:{y_port}"], config_tail=offline,
    )  # fmt: skip
    y_url = f"http://127.0.0.1:{y_port}/"
    figures: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as stack:
        started = time.monotonic()
        y_context = virtual_unit(y_files[0], config_file=y_files[1])
        async with asyncio.TaskGroup() as group:  # started side by side; a failure stops both
            y_task = group.create_task(stack.enter_async_context(y_context))
            x_task = group.create_task(
                stack.enter_async_context(virtual_unit(x_files[0], config_file=x_files[1]))
            )
        y, x = y_task.result(), x_task.result()
        figures["both_ready_s"] = time.monotonic() - started
        assert x.url == f"http://127.0.0.1:{x_port}/" and y.url == y_url
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def units(base: str) -> list[dict[str, Any]]:
            async with session.get(base + "api/v1/units") as response:
                assert response.status == 200
                return await response.json()

        async def y_on_x() -> dict[str, Any] | None:
            rows = {row["id"]: row for row in await units(x.url)}
            row = rows.get(Y_ID)
            if row is None or row["source"] != "meter" or not matches(row, phases_of(y)):
                return None
            return row

        # --- X's units API lists Y with Y's own virtual PDU's figures.
        row = await until(y_on_x, 90, "Y with its meter figures in X's pane A")
        figures["y_figures_on_x_s"] = time.monotonic() - started
        rows = await units(x.url)
        assert [r["id"] for r in rows] == [X_ID, Y_ID] and rows[0]["local"] is True
        assert row["local"] is False and row["reachable"] is True and row["online"] is True
        assert row["name"] == row["custom_name"] == "Front of house"
        assert row["model"] == 36 and row["number"] == 2 and row["via"] == "direct"
        assert matches(rows[0], phases_of(x))  # X's own row: X's PDU, not Y's
        assert not matches(rows[0], phases_of(y), tolerance=0.5)

        # --- the link opens Y's own web interface, where Y is the local unit.
        assert row["url"] == y_url
        async with session.get(row["url"]) as response:
            assert response.status == 200 and response.content_type == "text/html"
            assert "<html" in (await response.text()).lower()
        y_rows = await units(row["url"])
        assert y_rows[0]["id"] == Y_ID and y_rows[0]["local"] is True
        for key in ("l1", "l2", "l3", "n"):
            assert abs(y_rows[0][key] - row[key]) <= 0.15, key
        # Y never had X configured: it learnt X from X's signed requests.
        assert [r["id"] for r in y_rows] == [Y_ID, X_ID]
        assert y_rows[1]["url"] is not None and y_rows[1]["url"].endswith(f":{x_port}/")

        # --- the view pane A is drawn from, and the live WebSocket, carry the same row.
        async with session.get(f"{x.url}api/v1/units/{X_ID}/view") as response:
            view = await response.json()
        in_view = {u["id"]: u for u in view["units"]}
        assert in_view[Y_ID]["url"] == y_url and matches(in_view[Y_ID], phases_of(y))
        ws = await stack.enter_async_context(session.ws_connect(f"{x.url}api/v1/ws"))
        first = json.loads((await ws.receive(timeout=5)).data)
        assert first["type"] == "full"
        live = first["view"]
        assert {u["id"]: u for u in live["units"]}[Y_ID]["url"] == y_url

        # --- Y's load changes: X's browsers are sent Y's new figures.
        changed = time.monotonic()
        await y.pdu.set_channel("A", 1, "resistive", 9.0)
        want = phases_of(y)
        assert want["l1"] > 8.5

        async def pushed() -> bool:
            nonlocal live
            message = json.loads((await ws.receive(timeout=10)).data)
            if message["type"] == "full":
                live = message["view"]
            elif message["type"] == "patch":
                live = apply_patch(live, message["patch"])
            return matches({u["id"]: u for u in live["units"]}.get(Y_ID), want)

        await until(pushed, 30, "Y's new L1 pushed to X's browsers")
        figures["y_change_pushed_s"] = time.monotonic() - changed

        # --- Y stops: X shows it offline, without figures, after peers.offline_after_s.
        async def y_offline() -> dict[str, Any] | None:
            rows = {r["id"]: r for r in await units(x.url)}
            gone = rows.get(Y_ID)
            return gone if gone is not None and not gone["reachable"] else None

        stopped = time.monotonic()
        await y_context.__aexit__(None, None, None)  # the stack's own exit is then a no-op
        row = await until(y_offline, 15, "Y offline on X")
        figures["y_stop_to_offline_s"] = time.monotonic() - stopped
        assert row["online"] is False and row["url"] == y_url
        assert row["l1"] is None and row["l2"] is None and row["l3"] is None and row["n"] is None
        assert figures["y_stop_to_offline_s"] <= OFFLINE_AFTER_S + 3.0, figures
        await ws.close()
    print("service figures:", json.dumps({k: round(v, 2) for k, v in figures.items()}))
