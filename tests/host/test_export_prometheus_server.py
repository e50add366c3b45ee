"""The Prometheus export against the real Prometheus server (Debian ``prometheus``): two virtual
units as ``smartpdu run --config`` builds them (``tools.virtual.runvirtual.virtual_unit``: the
real firmware, the meter simulator, the service with its web interface and peer exchange).

Prometheus finds its targets only through unit X's ``export.prometheus.file_sd`` list. It
scrapes X every second; a channel current and the L1 voltage read back through its query API
match X's own API. Then unit Y starts and contacts X (``peers.static``): X's list gains Y
and Prometheus scrapes Y with no change to its own configuration (a hot-connected unit).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.host.unitprocs import short_tempdir, write_unit
from tests.host.unitprocs import until as poll_until
from tests.host.webstack import free_port
from tests.requirements import requires
from tools.virtual.runvirtual import virtual_unit

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    requires(PROMETHEUS is not None, "no prometheus binary (Debian: prometheus)"),
]

KEY = "prometheus-site-key-0042"
X_ID, Y_ID = "smartPDU00D0A1", "smartPDU00D0B2"
SEED = 11
SCRAPE_S = 1  # seconds (a Prometheus duration: an integer)

PROMETHEUS_YML = """\
global:
  scrape_interval: {interval}s
  scrape_timeout: {interval}s
scrape_configs:
  - job_name: smartpdu
    honor_labels: true
    file_sd_configs:
      - files: ["{file_sd}"]
        refresh_interval: 1s
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    with short_tempdir("spdu15p-") as folder:
        yield folder


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    return await poll_until(check, timeout, what, interval=0.25)


@contextlib.contextmanager
def prometheus_server(folder: Path, file_sd: Path, port: int) -> Any:
    assert PROMETHEUS is not None
    folder.mkdir()
    config = folder / "prometheus.yml"
    config.write_text(PROMETHEUS_YML.format(interval=SCRAPE_S, file_sd=file_sd))
    log = (folder / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield proc
    except BaseException:
        print("prometheus log:", (folder / "prometheus.log").read_text()[-3000:])
        print("target list:", file_sd.read_text() if file_sd.exists() else "(none)")
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_prometheus_scrapes_units_found_through_file_sd(workdir: Path) -> None:
    x_port, y_port, prom_port = free_port(), free_port(), free_port()
    sd = workdir / "sd"
    sd.mkdir()
    file_sd = sd / "smartpdu.json"
    _, x_config = write_unit(
        workdir / "x", X_ID, "Stage left", x_port, {"A1": 6.5}, key=KEY, seed=SEED,
        config_tail=f'\n[export.prometheus]\nfile_sd = "{file_sd}"\n',
    )  # fmt: skip
    _, y_config = write_unit(
        workdir / "y", Y_ID, "Front of house", y_port, {"A1": 3.0}, key=KEY, seed=SEED,
        static=[f"127.0.0.1:{x_port}"],
    )  # fmt: skip
    prom = f"http://127.0.0.1:{prom_port}"
    async with contextlib.AsyncExitStack() as stack:
        x = await stack.enter_async_context(
            virtual_unit(x_config.parent / "show.toml", config_file=x_config)
        )
        stack.enter_context(prometheus_server(workdir / "prom", file_sd, prom_port))
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def get(url: str) -> Any:
            async with session.get(url) as response:
                assert response.status == 200, url
                return await response.json()

        async def query(expr: str) -> list[dict[str, Any]]:
            try:
                async with session.get(f"{prom}/api/v1/query", params={"query": expr}) as r:
                    body = await r.json()
            except aiohttp.ClientError:
                return []  # not listening yet
            assert body["status"] == "success", body
            return body["data"]["result"]

        async def from_both(expr: str, api: Callable[[], Any]) -> tuple[float, list[float]]:
            """Prometheus's latest value, and the unit's API just before and after."""
            before = await api()
            result = await until(lambda: query(expr), 90, f"{expr} in Prometheus")
            after = await api()
            assert len(result) == 1, result
            at, value = result[0]["value"]
            assert time.time() - float(at) <= SCRAPE_S + 2.0  # the sample of the last scrape
            return float(value), [before, after]

        async def target_list_written() -> bool:
            return file_sd.exists()

        # The service writes the list once its web server is up (slow on a loaded machine).
        await until(target_list_written, 90, "X's file_sd target list")
        assert json.loads(file_sd.read_text())[0]["labels"] == {
            "unit": X_ID,
            "unit_name": "Stage left",
        }
        x_api = f"{x.url}api/v1/units/{X_ID}"

        async def a1_current() -> float | None:
            return (await get(f"{x_api}/channels/A1"))["current_a"]

        await until(a1_current, 90, "A1 live on X")
        value, api = await from_both(
            f'smartpdu_output_current_amperes{{unit="{X_ID}",channel="A1"}}', a1_current
        )
        # The scraped sample lies between the API's readings before and after the query (a
        # reading may change within the scrape interval).
        assert min(api) - 0.05 <= value <= max(api) + 0.05, (value, api)
        assert abs(value - 6.5) <= 0.3

        async def l1_voltage() -> float | None:
            readings = (await get(f"{x_api}/meter"))["readings"]
            found = [r for r in readings if r["name"] == "l1_voltage" and r["freshness"] == "live"]
            return found[0]["value"] if found else None

        await until(l1_voltage, 90, "the meter's L1 voltage live on X")
        value, api = await from_both(
            f'smartpdu_mains_voltage_volts{{unit="{X_ID}",phase="L1"}}', l1_voltage
        )
        readings = [v for v in api if v is not None]
        assert readings and min(readings) - 1.0 <= value <= max(readings) + 1.0, (value, api)

        # --- a second unit connects: X's list gains it, Prometheus scrapes it.
        await stack.enter_async_context(
            virtual_unit(y_config.parent / "show.toml", config_file=y_config)
        )

        async def y_listed() -> bool:
            return Y_ID in {t["labels"]["unit"] for t in json.loads(file_sd.read_text())}

        await until(y_listed, 60, "Y in X's file_sd list")
        targets = await get(f"{x.url}api/v1/prometheus/targets")
        assert [t["labels"]["unit"] for t in targets] == [X_ID, Y_ID]
        assert targets[1]["targets"] == [f"127.0.0.1:{y_port}"]
        assert targets[1]["labels"]["unit_name"] == "Front of house"
        up = await until(lambda: query(f'up{{unit="{Y_ID}"}} == 1'), 60, "Y scraped")
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{y_port}"
        await until(
            lambda: query(f'smartpdu_output_current_amperes{{unit="{Y_ID}",channel="A1"}} > 2.5'),
            90,
            "Y's A1 current in Prometheus",
        )
