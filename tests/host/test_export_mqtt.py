"""MQTT export against a real mosquitto (a subprocess each test owns, on a free port),
read by an independent aiomqtt subscriber.

* the service on a virtual PDU: Home Assistant discovery (valid JSON, unique ids, units,
  device classes, via_device), state topics carrying the values of the unit's own API; the
  broker killed mid-publish and started again (no retained messages kept): clear log lines,
  monitoring and history unaffected, the export reconnects and publishes everything again;
* an unreachable broker and a wrong password: one clear line, no fast retries, monitoring
  unaffected;
* ``smartpdu serve`` killed with SIGKILL: the broker publishes the retained ``offline`` last
  will.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import json
import logging
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from host.config import MqttConfig
from host.export.mqtt import MqttExporter
from tests.host.test_service_kill9 import Processes, _smartpdu, start_sim, write_config
from tests.host.webstack import WebStack, free_port
from tests.requirements import requires

MOSQUITTO = Path("/usr/sbin/mosquitto")
PASSWD = Path("/usr/bin/mosquitto_passwd")
UNIT = "smartPDU00WEB1"  # WebStack's unit
pytestmark = requires(MOSQUITTO.exists(), "mosquitto is not installed")


class Mosquitto:
    """A mosquitto the test owns; ``users`` makes it refuse anonymous clients."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        users: dict[str, str] | None = None,
        tls: Path | None = None,  # a folder with ca.pem, server.pem, server.key
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.users = users
        self.tls = tls
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        # As root mosquitto would switch to its own user, who cannot read the test's files.
        lines = [f"listener {self.port} 127.0.0.1", "persistence false"]
        lines.append(f"user {getpass.getuser()}")
        if self.tls is not None:
            lines += [f"cafile {self.tls / 'ca.pem'}", f"certfile {self.tls / 'server.pem'}"]
            lines.append(f"keyfile {self.tls / 'server.key'}")
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            passwords = self.workdir / "passwords"
            passwords.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    [str(PASSWD), "-b", str(passwords), user, password], check=True, timeout=30
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        conf.write_text("\n".join(lines) + "\n")
        self.starts += 1
        log = (self.workdir / f"mosquitto-{self.starts}.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            str(MOSQUITTO), "-c", str(conf), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                assert self.proc.returncode is None, "mosquitto exited"
                assert time.monotonic() < deadline, "mosquitto did not listen"
                await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(sig)
            await asyncio.wait_for(proc.wait(), 20)


class Subscriber:
    """An independent client: every message on ``#``, reconnecting when the broker goes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latest: dict[str, str] = {}
        self.log: list[tuple[float, str, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=f"test-sub-{id(self)}"
                ) as c:
                    await c.subscribe("#", qos=1)
                    async for message in c.messages:
                        payload = bytes(message.payload).decode()  # type: ignore[arg-type]
                        topic = str(message.topic)
                        self.latest[topic] = payload
                        self.log.append((time.monotonic(), topic, payload))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def discovery(self) -> dict[str, Any]:
        return {
            t: json.loads(p) for t, p in self.latest.items() if t.startswith("homeassistant/") and p
        }


async def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.1)


class MqttStack(WebStack):
    """The WebStack's service with ``[export.mqtt]`` on."""

    def __init__(self, workdir: Path, mqtt: MqttConfig) -> None:
        super().__init__(workdir)
        self.mqtt = mqtt

    def config(self) -> Any:
        return dataclasses.replace(super().config(), mqtt=self.mqtt)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "broker", free_port())
    await mosquitto.start()
    try:
        yield mosquitto
    finally:
        await mosquitto.stop()


EXPECTED_ENTITIES = 36 * 2 + 3 + 14 + 4  # 3 groups of 12 outputs, the mains, boards, events


def check_discovery(found: dict[str, Any]) -> None:
    ids = [p["unique_id"] for p in found.values()]
    assert len(ids) == len(set(ids)) == EXPECTED_ENTITIES, sorted(ids)
    for topic, p in found.items():
        component = topic.split("/")[1]
        assert topic == f"homeassistant/{component}/{p['unique_id']}/config"
        assert p["availability_mode"] == "all"
        assert p["availability"][0]["topic"] == f"smartpdu/{UNIT}/availability"
        assert p["state_topic"].startswith(f"smartpdu/{UNIT}/")
    currents = [p for t, p in found.items() if t.endswith("_current/config") and "sensor/" in t]
    outputs = [p for p in currents if p["device"]["identifiers"][0] != UNIT]
    assert len(outputs) == 36
    for p in outputs:
        assert (p["device_class"], p["unit_of_measurement"], p["state_class"]) == (
            "current",
            "A",
            "measurement",
        )
        assert p["device"]["via_device"] == UNIT  # the group board under the unit
    sensor = {p["unique_id"].removeprefix(f"{UNIT}_"): p for p in found.values()}
    for name, cls, unit in (
        ("l1_voltage", "voltage", "V"),
        ("l2_current", "current", "A"),
        ("l3_power", "power", "W"),
        ("frequency", "frequency", "Hz"),
        ("import_energy", "energy", "kWh"),
    ):
        assert (sensor[name]["device_class"], sensor[name]["unit_of_measurement"]) == (cls, unit)
    assert sensor["import_energy"]["state_class"] == "total_increasing"
    assert sensor["breaker"]["device_class"] == "enum"
    assert "tripped" in sensor["breaker"]["options"]


async def api(http: aiohttp.ClientSession, base: str, path: str) -> Any:
    async with http.get(f"{base.rstrip('/')}/api/v1/units/{UNIT}{path}") as response:
        assert response.status == 200
        return await response.json()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_service_discovery_values_and_broker_restart(
    tmp_path: Path, broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="host.export.mqtt")
    sub = Subscriber(broker.port)
    sub.start()
    mqtt = MqttConfig(enabled=True, host="127.0.0.1", port=broker.port, reconnect_max_s=2.0)
    stack = MqttStack(tmp_path / "pdu", mqtt)
    try:
        await stack.start()
        await stack.set_channel("A", 1, 6.0)
        await stack.set_channel("B", 2, 3.0)
        hostile = 'Amp "rack" ü 🎛️ {x}'
        stack.parts.state.set_channel_label("A1", hostile)
        avail = f"smartpdu/{UNIT}/availability"
        a1 = f"smartpdu/{UNIT}/channel/A1/current"
        await until(lambda: sub.latest.get(avail) == "online", 30, "availability online")
        await until(lambda: len(sub.discovery()) == EXPECTED_ENTITIES, 30, "discovery")
        a1_topic = f"homeassistant/sensor/{UNIT}_A1_current/config"
        await until(
            lambda: sub.discovery()[a1_topic]["name"] == f"A1 {hostile} current", 10, "relabel"
        )
        check_discovery(sub.discovery())
        assert all(hostile not in t for t in sub.latest)  # a label is never in a topic

        async with aiohttp.ClientSession() as http:

            def a1_ok() -> bool:
                return abs(float(sub.latest.get(a1, "0")) - 6.0) < 0.3

            await until(a1_ok, 30, "A1 current published")
            channel = await api(http, stack.url, "/channels/A1")
            assert abs(float(sub.latest[a1]) - channel["current_a"]) <= 0.1 + 0.05
            meter = await api(http, stack.url, "/meter")
            volts = next(r["value"] for r in meter["readings"] if r["name"] == "l1_voltage")
            await until(lambda: f"smartpdu/{UNIT}/mains/l1_voltage" in sub.latest, 10, "L1 V")
            assert abs(float(sub.latest[f"smartpdu/{UNIT}/mains/l1_voltage"]) - volts) < 2.0

            # The broker dies while the export is publishing (mains once a second, events).
            exporter = stack.parts.mqtt
            assert exporter is not None and exporter.connections == 1
            state = stack.parts.state
            await broker.stop(signal.SIGKILL)
            outage_start = time.time()
            before = state.version
            stack.parts.state.set_channel_label("B2", "during the outage")  # an event
            await stack.set_channel("A", 1, 9.0)
            await asyncio.sleep(4)
            # Monitoring unaffected: the model moves on and shows the new load.
            assert state.version > before
            assert abs((state.snapshot().channel("A1").current_a or 0) - 9.0) < 0.3
            assert not exporter.connected
            text = caplog.text
            assert "MQTT export: connection to 127.0.0.1:" in text and "dropped" in text
            assert "unreachable" in text and "monitoring goes on" in text

            sub.latest.clear()
            await broker.start()  # no persistence: the retained messages are gone
            await until(lambda: exporter.connections == 2, 20, "the export reconnected")
            await until(lambda: sub.latest.get(avail) == "online", 20, "online again")
            await until(lambda: len(sub.discovery()) == EXPECTED_ENTITIES, 20, "discovery again")
            await until(
                lambda: abs(float(sub.latest.get(a1, "0")) - 9.0) < 0.3, 20, "the new A1 current"
            )
            events = [json.loads(p) for _, t, p in sub.log if t == f"smartpdu/{UNIT}/event"]
            assert any(e["data"].get("new") == "during the outage" for e in events), events
            # Nothing lost from the unit's own history: every second of the outage stored.
            history = await api(
                http, stack.url, "/history?series=sum.L1&range=hour&resolution=seconds"
            )
            seconds = {int(p[0]) for p in history["points"]}
            outage = range(int(outage_start) + 1, int(outage_start) + 4)
            assert set(outage) <= seconds, (sorted(seconds)[-10:], list(outage))
    finally:
        await stack.stop()
        await sub.stop()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_unreachable_broker_and_wrong_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="host.export.mqtt")
    broker = Mosquitto(tmp_path / "broker", free_port(), users={"pdu": "right-one"})
    await broker.start()
    (tmp_path / "wrong").write_text("wrong-one\n")
    (tmp_path / "right").write_text("right-one\n")
    stack = WebStack(tmp_path / "pdu")
    tasks: list[asyncio.Task[None]] = []
    try:
        await stack.start()
        await stack.set_channel("A", 3, 4.0)
        state = stack.parts.state
        nowhere = MqttExporter(state, MqttConfig(enabled=True, host="127.0.0.1", port=free_port()))
        wrong = MqttExporter(
            state,
            MqttConfig(
                enabled=True,
                host="127.0.0.1",
                port=broker.port,
                username="pdu",
                password_file=tmp_path / "wrong",
                client_id="wrong-password",
            ),
        )
        right = MqttExporter(
            state,
            MqttConfig(
                enabled=True,
                host="127.0.0.1",
                port=broker.port,
                username="pdu",
                password_file=tmp_path / "right",
                client_id="right-password",
            ),
        )
        tasks = [asyncio.create_task(e.run()) for e in (nowhere, wrong, right)]
        await until(lambda: right.connected and right.published > 50, 30, "the right login")
        before = state.version
        await asyncio.sleep(6)
        records = [r.getMessage() for r in caplog.records]
        refused = [m for m in records if "refused the login as pdu" in m]
        assert len(refused) == 1, records  # no fast retries: the next one after 60 s
        assert (
            "check export.mqtt.username and the password in export.mqtt.password_file"
            in (refused[0])
        )
        unreachable = [m for m in records if f"127.0.0.1:{nowhere.config.port} unreachable" in m]
        assert 1 <= len(unreachable) <= 4, unreachable  # 1, 2, 4 s back-off
        assert "Connection refused" in unreachable[0]
        assert not nowhere.connected and not wrong.connected and wrong.published == 0
        # The broker drops the connection mid-publish (another client takes the client id).
        async with aiomqtt.Client("127.0.0.1", broker.port, username="pdu",
                                  password="right-one", identifier="right-password"):  # fmt: skip
            await until(lambda: not right.connected, 10, "the broker dropped the export")
        await until(lambda: right.connections == 2, 20, "the export reconnected")
        records = [r.getMessage() for r in caplog.records]
        dropped = [m for m in records if "connection to 127.0.0.1:" in m and "dropped" in m]
        assert len(dropped) == 1 and "monitoring goes on" in dropped[0], records
        # Monitoring unaffected.
        assert state.version > before + 20
        assert abs((state.snapshot().channel("A3").current_a or 0) - 4.0) < 0.3
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await stack.stop()
        await broker.stop()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_last_will_offline_when_service_is_killed(tmp_path: Path, broker: Mosquitto) -> None:
    procs = Processes()
    sub = Subscriber(broker.port)
    sub.start()
    unit = "smartPDU0K1LL9"
    avail = f"smartpdu/{unit}/availability"
    try:
        sim = await start_sim(procs, tmp_path / "w", tmp_path / "sim.log")
        var = tmp_path / "var"
        var.mkdir()
        config = var / "smartpdu.toml"
        write_config(config, sim, free_port())
        with config.open("a", encoding="utf-8") as out:
            out.write(
                f'\n[export.mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n'
            )
        with (tmp_path / "serve.log").open("wb") as log:
            serve = await asyncio.create_subprocess_exec(
                *_smartpdu("serve", "--config", str(config)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.live.append(serve)
        await until(lambda: sub.latest.get(avail) == "online", 60, "the service online")
        await until(
            lambda: f"smartpdu/{unit}/mains/l1_voltage" in sub.latest, 30, "mains published"
        )
        killed = time.monotonic()
        assert await procs.stop(serve, signal.SIGKILL, 10) == -signal.SIGKILL
        await until(lambda: sub.latest.get(avail) == "offline", 10, "the last will")
        print(f"\nlast will 'offline' {time.monotonic() - killed:.2f} s after kill -9")
        # Retained: a client that connects now learns the unit is offline.
        late = Subscriber(broker.port)
        late.start()
        await until(lambda: late.latest.get(avail) == "offline", 10, "retained offline")
        await late.stop()
    finally:
        await sub.stop()
        strays = await procs.close()
    assert not strays


def make_certificates(folder: Path) -> None:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    folder.mkdir(parents=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
            "-out", "server.pem")  # fmt: skip


@pytest.mark.timeout(60)
async def test_tls_with_the_sites_ca(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from host.config import default_config
    from host.state import UnitState

    caplog.set_level(logging.INFO, logger="host.export.mqtt")
    certs = tmp_path / "certs"
    make_certificates(certs)
    broker = Mosquitto(tmp_path / "broker", free_port(), tls=certs)
    await broker.start()
    state = UnitState(default_config(unit={"id": "smartPDU0TLS01"}))
    good = MqttConfig(
        enabled=True, host="127.0.0.1", port=broker.port, tls=True, ca_file=certs / "ca.pem"
    )
    exporter = MqttExporter(state, good)
    # Without the site's CA the system's CAs do not trust the broker: refused, logged.
    untrusted = MqttExporter(state, dataclasses.replace(good, ca_file=None, client_id="no-ca"))
    tasks = [asyncio.create_task(e.run()) for e in (exporter, untrusted)]
    received: dict[str, str] = {}
    try:
        await until(lambda: exporter.connected, 20, "the TLS connection")
        tls = aiomqtt.TLSParameters(ca_certs=str(certs / "ca.pem"))
        async with aiomqtt.Client("127.0.0.1", broker.port, tls_params=tls) as client:
            await client.subscribe("smartpdu/smartPDU0TLS01/availability")
            async with asyncio.timeout(10):
                async for message in client.messages:
                    received[str(message.topic)] = bytes(message.payload).decode()  # type: ignore[arg-type]
                    break
        assert received == {"smartpdu/smartPDU0TLS01/availability": "online"}
        await until(
            lambda: any("TLS check of broker" in r.getMessage() for r in caplog.records),
            20,
            "the untrusted broker logged",
        )
        assert not untrusted.connected
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker.stop()
