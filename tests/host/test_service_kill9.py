"""kill -9 of the real aggregator service while a user writes settings through the web API.

Issue #5: "kill -9 of the service during writes, then restart: every setting intact, database
passes PRAGMA integrity_check" and "nothing a user set is lost by kill -9 or a power cut;
history loses at most the last few seconds".

The topology of a Pi: ``smartpdu sim`` (the virtual PDU: boards running the real firmware on
MicroPython, the mains status node, the Modbus meter) runs for the whole test in its own
process; ``smartpdu serve --config FILE`` is the service, started again after every kill on
the same database and the same serial ports (the PDU does not notice the aggregator dying).
The admin password is set with ``smartpdu passwd``.

Each life of the service: start, log in through the HTTP API, check that what the previous
life acknowledged reads back exactly (through the API, and equal to the database), then four
clients write at full speed (unit name, labels of all 48 channels with hostile and unicode
text, supervision ranges with awkward floats, and requests that must be refused) while a
reader keeps fetching the event log and the history; SIGKILL hits at a random moment (one
life is killed while it is still starting). After each kill, on a copy of the crashed files:

* ``PRAGMA integrity_check`` is ``ok``;
* every setting is the last acknowledged value, or the value of the one request per key
  that was in flight (never anything else), and the restarted service shows the same;
* every event a client had read before the kill is still there, unchanged, and so is every
  second of history it had read; the newest 1 s sample is at most a few seconds older than
  the kill (measured and printed: about ``history.flush_s`` + 1 s);
* an acknowledged change misses its ``settings.changed`` event only if it was acknowledged
  in the last moment before the kill (the event log's batch being written);
* the next life records history and events again, and nothing the test started outlives it.

The second test kills ``smartpdu run`` (the virtual PDU and the service in one process): the
MicroPython board processes it owns must not survive it.

``SMARTPDU_KILL9_SEED`` replays a run (the seed is printed); ``pytest -s`` shows the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from host.domain import LABEL_MAX_CHARS, channel_ids, validate_label
from host.supervision import SupervisionSettings
from tests.procs import descendants, stat

ROOT = Path(__file__).resolve().parents[2]
UNIT = "smartPDU0K1LL9"
PASSWORD = "kill-minus-nine"
MODEL = 48  # the rehearsal scenario's smartPDU
CHANNELS = channel_ids(MODEL)
RATING_A = 16.0
DWELL_S = 10.0  # channels.supervision_dwell_s default
HYSTERESIS_A = 0.5
FLUSH_S = 2.0  # history.flush_s default: what a Pi runs with
KILLS_DURING_WRITES = 5  # and one while the service starts
HISTORY_LOSS_BOUND_S = 8.0  # generous: flush_s + 1 s sampling + a loaded 2-core box
# An acknowledged change whose settings.changed event is not in the log must have been
# acknowledged at most this long before the kill (the event log's batch being written).
EVENT_LAG_BOUND_S = 1.5  # before batching, the backlog reached 1.2-1.8 s in 5 s of writes
SERIES = "sum.L1"

# Labels a user could type or paste: markup, SQL, quotes, every script, emoji beyond the BMP,
# combining sequences that NFC composes, padding that is trimmed, the longest allowed.
HOSTILE = (
    "<img src=x onerror=alert(1)>",
    "'; DROP TABLE channel_labels;--",
    "Robert'); DELETE FROM settings;",
    '"quoted" \\back\\slash\\ /*x*/',
    "%s %d {0} ${HOME} `ls` $(id)",
    "Ünïcödé façade — ß ø å æ œ",
    "舞台 左 照明 · 音響",
    "مرحبا עברית mixed",
    "🎛️🔊 amp rack 💡",
    "e\u0301clairage cafe\u0301",  # NFD in, NFC stored
    "  padded both sides  ",
    "\u00a0nbsp\u00a0",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙",  # noqa: RUF001 (look-alike letters beyond the BMP, on purpose)
    "NULL",
    "null",
    "-1e308",
    "",
    "W" * LABEL_MAX_CHARS,
    "🔥" * LABEL_MAX_CHARS,
    "Ω" * (LABEL_MAX_CHARS - 1) + "\u0301",
)
# Refused with 400, and must change nothing.
REFUSED_LABELS = (
    "nul\x00byte",
    "tab\there",
    "line\nbreak",
    "bidi \u202e override",
    "zero\u200bwidth",
    "para\u2029sep",
    "x" * (LABEL_MAX_CHARS + 1),
)


# ----------------------------------------------------------------------------- processes


def _smartpdu(*args: str) -> list[str]:
    """The ``smartpdu`` command (the venv's script; else the same entry point by module)."""
    script = Path(sys.executable).parent / "smartpdu"
    if script.exists():
        return [sys.executable, str(script), *args]
    return [sys.executable, "-m", "tools.cli", *args]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _started(pid: int) -> str | None:
    """The process's start time: with the pid, it names the process (pids are reused)."""
    fields = stat(pid)
    return None if fields is None else fields[19]


def _alive(pid: int, started: str | None = None) -> bool:
    """Running (a zombie waiting for its parent counts as gone), and the same process."""
    fields = stat(pid)
    if fields is None or fields[0] == "Z":
        return False
    return started is None or fields[19] == started


async def _until_gone(pids: dict[int, str | None], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    alive = {p for p, started in pids.items() if _alive(p, started)}
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        alive = {p for p in alive if _alive(p, pids[p])}
    return alive


def _named(pids: set[int]) -> dict[int, str | None]:
    return {pid: _started(pid) for pid in pids}


class Processes:
    """Every process the test starts, and every process they start: all gone at the end."""

    def __init__(self) -> None:
        self.seen: dict[int, str | None] = {}  # pid -> start time
        self.live: list[asyncio.subprocess.Process] = []

    def note(self, proc: asyncio.subprocess.Process) -> None:
        for pid, started in _named({proc.pid, *descendants(proc.pid)}).items():
            if started is not None:
                self.seen.setdefault(pid, started)

    async def stop(self, proc: asyncio.subprocess.Process, sig: int, timeout: float) -> int:
        self.note(proc)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        with contextlib.suppress(ValueError):
            self.live.remove(proc)
        assert proc.returncode is not None
        return proc.returncode

    async def close(self) -> set[int]:
        """Stop what is still running (SIGTERM: the sim stops its boards), then SIGKILL
        anything left, by pid; returns the pids that had been left behind."""
        for proc in reversed(list(self.live)):  # the service before the PDU it serves
            await self.stop(proc, signal.SIGTERM, 20.0)
        strays = await _until_gone(self.seen, 5.0)
        for pid in strays:
            if _alive(pid, self.seen[pid]):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        return strays


@dataclass
class Sim:
    proc: asyncio.subprocess.Process
    info: dict[str, Any]


async def start_sim(procs: Processes, workdir: Path, log: Path) -> Sim:
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *_smartpdu("sim", "--scenario", "rehearsal", "--workdir", str(workdir), "-q"),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    procs.live.append(proc)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 90)
    except TimeoutError:
        line = b""
    assert line, f"smartpdu sim did not start: {log.read_text(errors='replace')[-2000:]}"
    info = json.loads(line)
    procs.note(proc)
    assert set(info["pids"].values()) <= procs.seen.keys()
    return Sim(proc, info)


def write_config(path: Path, sim: Sim, port: int) -> None:
    def s(value: object) -> str:
        return json.dumps(str(value))

    info = sim.info
    assert info["model"] == MODEL
    path.write_text(
        f"[unit]\nmodel = {MODEL}\nid = {s(UNIT)}\n\n"
        f"[bus]\nport = {s(info['master'])}\nbaud = {info['baud']}\n"
        # A starved board must not flap offline on a loaded 2-core machine.
        "offline_after_s = 2.0\nstale_after_s = 3.0\n\n"
        f"[meter]\nport = {s(info['meter'])}\nbaud = {info['meter_baud']}\n\n"
        f'[web]\nhost = "127.0.0.1"\nport = {port}\n'
        f"admin_password_file = {s(path.parent / 'admin-password')}\n\n"
        "[peers]\nenabled = false\n\n"
        f"[storage]\nvar_dir = {s(path.parent)}\ndatabase = {s(path.parent / 'smartpdu.db')}\n",
        encoding="utf-8",
    )


def set_password(config: Path) -> None:
    """``smartpdu passwd --config FILE``, as an installer would."""
    done = subprocess.run(
        _smartpdu("passwd", "--config", str(config), "--password-stdin"),
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------- what was set


@dataclass(frozen=True)
class Key:
    kind: str  # "name" | "label" | "supervision"
    channel: str | None = None


Value = str | tuple[bool, float, float, float, float]
DEFAULT_SUPERVISION: Value = (False, 0.0, RATING_A, DWELL_S, HYSTERESIS_A)


@dataclass
class Ack:
    key: Key
    value: Value
    at: float  # wall clock of the reply
    changed: bool  # the value differed from the one before (so a settings.changed event)


@dataclass
class Book:
    """What the clients know: the durable value of every key, what this life acknowledged,
    and the one request per key whose reply never came."""

    durable: dict[Key, Value]
    acked: dict[Key, Value] = field(default_factory=dict)
    maybe: dict[Key, Value] = field(default_factory=dict)
    acks: list[Ack] = field(default_factory=list)
    refused: int = 0
    stops: list[str] = field(default_factory=list)  # why each writer stopped

    def current(self, key: Key) -> Value:
        return self.acked.get(key, self.durable[key])

    def allowed(self, key: Key) -> list[Value]:
        return [self.current(key), *([self.maybe[key]] if key in self.maybe else [])]

    def settle(self, found: dict[Key, Value], seed: int) -> int:
        """After a kill: every key reads back as acknowledged (or the in-flight value).
        Returns how many in-flight writes made it."""
        landed = 0
        for key in self.durable:
            assert found[key] in self.allowed(key), (
                f"seed {seed}: {key} is {found[key]!r}, expected one of {self.allowed(key)!r}"
            )
            if key in self.maybe and found[key] == self.maybe[key] != self.current(key):
                landed += 1
        self.durable = dict(found)
        self.acked.clear()
        self.maybe.clear()
        self.acks.clear()
        self.stops.clear()
        return landed


def _supervision_value(data: dict[str, Any]) -> Value:
    return (
        bool(data["enabled"]),
        float(data["min_a"]),
        float(data["max_a"]),
        float(data["dwell_s"]),
        float(data["hysteresis_a"]),
    )


def read_database(db: Path, scratch: Path) -> tuple[str, dict[Key, Value], sqlite3.Connection]:
    """Integrity and the settings of a *copy* of the crashed files (the service opens the
    originals itself on restart); the copy's connection stays open for more queries."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    for suffix in ("", "-wal"):
        source = Path(f"{db}{suffix}")
        if source.exists():
            shutil.copyfile(source, scratch / f"{db.name}{suffix}")
    con = sqlite3.connect(scratch / db.name)
    integrity = "; ".join(r[0] for r in con.execute("PRAGMA integrity_check"))
    found: dict[Key, Value] = {Key("name"): ""}
    found |= {Key("label", c): "" for c in CHANNELS}
    found |= {Key("supervision", c): DEFAULT_SUPERVISION for c in CHANNELS}
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "settings" not in tables:  # killed before the first migration was committed
        assert not tables & {"channel_labels", "channel_supervision", "events"}, tables
        return integrity, found, con
    row = con.execute("SELECT value FROM settings WHERE key = 'unit_name'").fetchone()
    if row is not None:
        found[Key("name")] = json.loads(row[0])
    for channel, label in con.execute("SELECT channel, label FROM channel_labels"):
        found[Key("label", channel)] = label
    for channel, enabled, lo, hi, dwell, hysteresis in con.execute(
        "SELECT channel, enabled, min_a, max_a, dwell_s, hysteresis_a FROM channel_supervision"
    ):
        found[Key("supervision", channel)] = (bool(enabled), lo, hi, dwell, hysteresis)
    return integrity, found, con


# ----------------------------------------------------------------------------- the clients


class Client:
    def __init__(self, http: aiohttp.ClientSession, base: str, unit_id: str = UNIT) -> None:
        self.http = http
        self.base = base
        self.unit_id = unit_id
        self.csrf = ""

    def url(self, path: str) -> str:
        return f"{self.base}/api/v1{path}"

    def unit(self, path: str = "") -> str:
        return self.url(f"/units/{self.unit_id}{path}")

    async def get(self, url: str) -> Any:
        async with self.http.get(url) as response:
            assert response.status == 200, (url, response.status, await response.text())
            return await response.json()

    async def login(self) -> None:
        async with self.http.post(self.url("/login"), json={"password": PASSWORD}) as response:
            assert response.status == 200, await response.text()
            self.csrf = (await response.json())["csrf_token"]

    async def put(self, url: str, body: Any) -> tuple[int, Any]:
        """Status and body; raises aiohttp.ClientError / OSError if no reply came."""
        async with self.http.put(url, json=body, headers={"X-CSRF-Token": self.csrf}) as response:
            status = response.status
            try:
                return status, await response.json()
            except (aiohttp.ClientError, ValueError, OSError):
                return status, None  # the status line came: the handler had finished

    async def live_settings(self) -> dict[Key, Value]:
        found: dict[Key, Value] = {Key("name"): (await self.get(self.unit()))["name"]}
        for ch in await self.get(self.unit("/channels")):
            found[Key("label", ch["id"])] = ch["label"]
            found[Key("supervision", ch["id"])] = _supervision_value(ch["supervision"]["settings"])
        return found


NO_REPLY = (aiohttp.ClientError, OSError, TimeoutError)


async def writer(
    client: Client, book: Book, keys: list[Key], rng: random.Random, counter: list[int]
) -> None:
    """Writes to its own keys (no other writer touches them) until a request gets no reply."""
    while True:
        key = rng.choice(keys)
        counter[0] += 1
        n = counter[0]
        body: Any
        expect: Value | None  # None: must be refused
        if key.kind == "supervision":
            assert key.channel is not None
            url = client.unit(f"/channels/{key.channel}/supervision")
            body, expect = _supervision_request(rng)
        else:
            url = client.unit("/name" if key.kind == "name" else f"/channels/{key.channel}/label")
            field_name = "name" if key.kind == "name" else "label"
            text, expect = _label_request(rng, n)
            body = {field_name: text}
        try:
            status, reply = await client.put(url, body)
        except NO_REPLY as exc:
            if expect is not None:
                book.maybe[key] = expect
            book.stops.append(f"{key}: {exc!r}")
            return
        if expect is None:
            assert status == 400, (key, body, status, reply)
            book.refused += 1
            continue
        assert status == 200, (key, body, status, reply)
        if reply is not None:
            if key.kind == "name":
                shown: Value = reply["name"]
            elif key.kind == "label":
                shown = reply["label"]
            else:
                shown = _supervision_value(reply["supervision"]["settings"])
            assert shown == expect, (key, body, reply)
        book.acks.append(Ack(key, expect, time.time(), expect != book.current(key)))
        book.acked[key] = expect


def _label_request(rng: random.Random, n: int) -> tuple[Any, Value | None]:
    roll = rng.random()
    if roll < 0.06:
        return rng.choice(REFUSED_LABELS), None
    if roll < 0.08:
        return rng.choice([42, None, ["list"], {"a": 1}]), None
    text = rng.choice(HOSTILE)
    if roll < 0.6:  # numbered: most writes change the value
        text = f"{n} {text}"[:LABEL_MAX_CHARS]
    return text, validate_label(text)


def _supervision_request(rng: random.Random) -> tuple[Any, Value | None]:
    if rng.random() < 0.06:
        bad = rng.choice(
            [
                {"enabled": True, "min_a": 5.0, "max_a": 4.0},
                {"enabled": True, "min_a": 0.0, "max_a": 63.5},
                {"enabled": True, "min_a": -0.5, "max_a": 3.0},
                {"enabled": True, "min_a": 1.0, "max_a": 2.0, "dwell_s": 3601},
                {"enabled": True, "min_a": 1.0, "max_a": 2.0, "hysteresis_a": -1},
                {"enabled": True, "min_a": 3.0, "max_a": 3.2, "hysteresis_a": 0.5},
                {"enabled": "yes", "min_a": 1.0, "max_a": 2.0},
                {"enabled": True, "min_a": "1", "max_a": 2.0},
                {"enabled": True, "max_a": 2.0},
                {"enabled": True, "min_a": 1.0, "max_a": 2.0, "colour": "red"},
            ]
        )
        return bad, None
    lo = rng.choice([0.0, 0.1 + 0.2, round(rng.uniform(0, 20), 2), rng.uniform(0, 40)])
    hi = min(63.0, lo + rng.choice([0.0, 1e-9, rng.uniform(0, 63)]))
    settings = SupervisionSettings(
        enabled=rng.random() < 0.7,
        min_a=lo,
        max_a=hi,
        dwell_s=rng.choice([0.0, 1.5, 3600.0, rng.uniform(0, 3600)]),
        # An entered margin must fit the range (a wider one is a 400, in the bad list).
        hysteresis_a=min(rng.choice([0.0, 0.5, 10.0, rng.uniform(0, 10)]), hi - lo),
    ).validated_entry()
    body = {
        "enabled": settings.enabled,
        "min_a": settings.min_a,
        "max_a": settings.max_a,
        "dwell_s": settings.dwell_s,
        "hysteresis_a": settings.hysteresis_a,
    }
    return body, _supervision_value(body)


@dataclass
class Seen:
    """What a client read before the kill: it was committed, so it must survive."""

    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    history: set[int] = field(default_factory=set)  # seconds of SERIES
    stops: list[str] = field(default_factory=list)


async def reader(client: Client, seen: Seen) -> None:
    while True:
        try:
            events = await client.get(client.unit("/events?limit=200"))
            history = await client.get(
                client.unit(
                    f"/history?series={SERIES}&range=hour&resolution=seconds&max_points=5000"
                )
            )
        except NO_REPLY as exc:
            seen.stops.append(f"reader: {exc!r}")
            return
        for event in events["events"]:
            seen.events[event["id"]] = event
        seen.history.update(int(p[0]) for p in history["points"])
        await asyncio.sleep(0.25)


# ----------------------------------------------------------------------------- the service


class Service:
    """``smartpdu serve --config FILE``, or another command serving the web API on ``port``."""

    def __init__(
        self,
        procs: Processes,
        command: list[str],
        port: int,
        logs: Path,
        *,
        start_timeout: float = 40.0,
    ) -> None:
        self.procs = procs
        self.command = command
        self.base = f"http://127.0.0.1:{port}"
        self.logs = logs
        self.start_timeout = start_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.lives = 0

    @property
    def log(self) -> Path:
        return self.logs / f"service-{self.lives}.log"

    async def spawn(self) -> float:
        self.lives += 1
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.live.append(self.proc)
        return time.time()

    async def ready(self, http: aiohttp.ClientSession) -> str:
        """Waits for the web API; returns the unit's id."""
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            assert self.proc.returncode is None, self.log.read_text(errors="replace")[-3000:]
            with contextlib.suppress(*NO_REPLY):
                async with http.get(f"{self.base}/api/v1/health") as response:
                    if response.status == 200:
                        return str((await response.json())["unit"])
            assert time.monotonic() < deadline, "the service did not start"
            await asyncio.sleep(0.05)

    async def kill(self) -> float:
        """SIGKILL; returns the wall clock of the kill."""
        assert self.proc is not None
        children = _named(descendants(self.proc.pid))
        at = time.time()
        code = await self.procs.stop(self.proc, signal.SIGKILL, 10.0)
        assert code == -signal.SIGKILL, (code, self.log.read_text(errors="replace")[-3000:])
        assert not await _until_gone(children, 5.0), (
            f"the service's children outlived it: {children}"
        )
        self.proc = None
        return at

    async def terminate(self) -> int:
        assert self.proc is not None
        code = await self.procs.stop(self.proc, signal.SIGTERM, 20.0)
        self.proc = None
        return code


@contextlib.asynccontextmanager
async def logged_in(service: Service) -> AsyncIterator[Client]:
    # The session cookie is for 127.0.0.1: aiohttp keeps cookies of IP hosts only if unsafe.
    jar = aiohttp.CookieJar(unsafe=True)
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as http:
        client = Client(http, service.base, await service.ready(http))
        await client.login()
        yield client


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.2)


# ----------------------------------------------------------------------------- the test


def check_running(tasks: list[asyncio.Task[None]], book: Book, seen: Seen) -> None:
    """Before the kill every client is still at work (no request went unanswered)."""
    done = [t for t in tasks if t.done()]
    if done:
        failures = [t.exception() for t in done if not t.cancelled()]
        raise AssertionError(f"a client stopped: {failures}, {book.stops}, {seen.stops}")


def _event_key(setting: str, channel: str | None, new: Any) -> tuple[str, str | None, str]:
    if isinstance(new, dict):  # supervision settings, as the event log keeps them
        new = list(_supervision_value(new))
    return setting, channel, json.dumps(new)


def check_after_kill(
    con: sqlite3.Connection, seen: Seen, book: Book, started: float, killed_at: float, seed: int
) -> dict[str, float]:
    """Events and history a client read are there, unchanged; how much history was lost;
    how many acknowledged settings changes have their settings.changed event."""
    rows = {
        r[0]: r
        for r in con.execute(
            "SELECT id, t, kind, severity, grp, channel, message, data FROM events"
        )
    }
    for event_id, event in seen.events.items():
        assert event_id in rows, f"seed {seed}: event {event_id} read before the kill is gone"
        _, t, kind, severity, grp, channel, message, data = rows[event_id]
        assert (t, kind, severity, grp, channel, message, json.loads(data)) == (
            event["time"],
            event["kind"],
            event["severity"],
            event["group"],
            event["channel"],
            event["message"],
            event["data"],
        ), f"seed {seed}: event {event_id} changed"
    (sid,) = con.execute("SELECT id FROM series WHERE name = ?", (SERIES,)).fetchone()
    stored = dict(con.execute("SELECT t, value FROM samples WHERE series_id = ?", (sid,)))
    # (A second's value may be replaced by a later sample of the same second: only that
    # the second is there is checked.)
    lost = sorted(set(seen.history) - set(stored))
    assert not lost, f"seed {seed}: {SERIES} seconds read before the kill are gone: {lost}"
    newest = con.execute("SELECT MAX(t) FROM samples").fetchone()[0]
    logged = {
        _event_key(d["setting"], channel, d["new"])
        for channel, data in con.execute(
            "SELECT channel, data FROM events WHERE kind = 'settings.changed' AND t >= ?",
            (started,),
        )
        for d in [json.loads(data)]
    }
    changes = [a for a in book.acks if a.changed]
    unlogged = [
        killed_at - a.at
        for a in changes
        if _event_key(
            "unit_name" if a.key.kind == "name" else a.key.kind,
            a.key.channel,
            list(a.value) if isinstance(a.value, tuple) else a.value,
        )
        not in logged
    ]
    return {
        "history_lost_s": killed_at - newest,
        "changes": len(changes),
        "changes_without_event": len(unlogged),
        "oldest_unlogged_change_s": max(unlogged, default=0.0),
    }


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_kill_9_during_writes(tmp_path: Path) -> None:
    seed = int(os.environ.get("SMARTPDU_KILL9_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"\nkill -9 test: seed {seed} (SMARTPDU_KILL9_SEED replays it)")
    began = time.monotonic()
    procs = Processes()
    try:
        sim = await start_sim(procs, tmp_path / "w", tmp_path / "sim.log")
        var = tmp_path / "var"
        var.mkdir()
        config = var / "smartpdu.toml"
        port = _free_port()
        write_config(config, sim, port)
        set_password(config)
        db = var / "smartpdu.db"
        service = Service(procs, _smartpdu("serve", "--config", str(config)), port, tmp_path)

        keys = [Key("name"), *(Key("label", c) for c in CHANNELS)]
        keys += [Key("supervision", c) for c in CHANNELS]
        book = Book({k: "" if k.kind != "supervision" else DEFAULT_SUPERVISION for k in keys})
        labels = [k for k in keys if k.kind == "label"]
        shares = [
            [Key("name"), *labels[:12]],
            labels[12:30],
            labels[30:],
            [k for k in keys if k.kind == "supervision"],
        ]
        counter = [0]
        figures: list[dict[str, float]] = []
        events_total = 0
        history_first: int | None = None
        history_newest = 0

        # A kill while the service is still starting (opening the database, first contact
        # with the boards): nothing was set yet, and the database must still be sound.
        await service.spawn()
        deadline = time.monotonic() + 30
        while not db.exists():  # the interpreter is up and the database being created
            assert time.monotonic() < deadline, service.log.read_text(errors="replace")
            await asyncio.sleep(0.01)
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        await service.kill()
        integrity, found, con = read_database(db, tmp_path / "copy")
        (tables,) = con.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table'").fetchone()
        con.close()
        assert integrity == "ok", f"seed {seed}: killed while starting: {integrity}"
        book.settle(found, seed)
        print(f"kill 0: while starting, {tables} tables in the database")

        for life in range(KILLS_DURING_WRITES):
            started = await service.spawn()
            async with logged_in(service) as client:
                logged_in_after = time.time() - started
                # What the previous life left: the service shows exactly the database.
                assert await client.live_settings() == book.durable, f"seed {seed}, life {life}"
                seen = Seen()
                tasks = [
                    asyncio.create_task(writer(client, book, share, rng, counter))
                    for share in shares
                ]
                tasks.append(asyncio.create_task(reader(client, seen)))
                try:
                    # Once this life has flushed history (a reader saw it), at a moment
                    # nobody chose: in the middle of writes, history flushes, event batches.
                    deadline = time.monotonic() + 30
                    while not any(t > started for t in seen.history):
                        assert time.monotonic() < deadline, f"seed {seed}: no history, {life}"
                        check_running(tasks, book, seen)
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(rng.uniform(0.2, 2.5))
                    check_running(tasks, book, seen)
                    killed_at = await service.kill()
                    await asyncio.gather(*tasks)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
            integrity, found, con = read_database(db, tmp_path / "copy")
            try:
                assert integrity == "ok", f"seed {seed}, life {life}: {integrity}"
                figure = check_after_kill(con, seen, book, started, killed_at, seed)
                (events_now,) = con.execute("SELECT COUNT(*) FROM events").fetchone()
                (newest,) = con.execute("SELECT MAX(t) FROM samples").fetchone()
                (oldest,) = con.execute(
                    "SELECT MIN(t) FROM samples JOIN series ON series.id = series_id "
                    "WHERE name = ?",
                    (SERIES,),
                ).fetchone()
            finally:
                con.close()
            history_first = oldest if history_first is None else history_first
            assert oldest == history_first, f"seed {seed}: history before life {life} is gone"
            # This life recorded history and events of its own.
            assert newest > history_newest, f"seed {seed}, life {life}: no history of its own"
            history_newest = newest
            assert events_now > events_total, f"seed {seed}, life {life}: no new event"
            events_total = events_now
            figure["acks"] = len(book.acks)
            figure["in_flight"] = len(book.maybe)
            figure["landed"] = book.settle(found, seed)
            figure["life_s"] = killed_at - started
            figures.append(figure)
            print(
                f"kill {life + 1}: {figure['life_s']:.1f} s after start "
                f"(logged in after {logged_in_after:.1f} s), "
                f"{int(figure['acks'])} writes acknowledged, {int(figure['in_flight'])} in "
                f"flight ({int(figure['landed'])} landed), history lost "
                f"{figure['history_lost_s']:.2f} s, {int(figure['changes_without_event'])} of "
                f"{int(figure['changes'])} changes without their event "
                f"(oldest {figure['oldest_unlogged_change_s']:.3f} s before the kill)"
            )
            assert figure["history_lost_s"] <= HISTORY_LOSS_BOUND_S, f"seed {seed}: {figure}"
            assert figure["oldest_unlogged_change_s"] <= EVENT_LAG_BOUND_S, f"seed {seed}: {figure}"

        # A last life: the settings read back, history and the event log go on, and a clean
        # stop leaves a sound database too.
        restarted = await service.spawn()
        async with logged_in(service) as client:
            assert await client.live_settings() == book.durable, f"seed {seed}, last life"
            status, _ = await client.put(client.unit("/name"), {"name": "after the storm"})
            assert status == 200

            async def history_goes_on() -> bool:
                data = await client.get(
                    client.unit(f"/history?series={SERIES}&range=hour&resolution=seconds")
                )
                times = [p[0] for p in data["points"]]
                return bool(times) and times[0] <= history_first and times[-1] >= restarted

            async def rename_logged() -> bool:
                data = await client.get(client.unit("/events?kind=settings.changed&limit=1"))
                return data["events"][0]["data"]["new"] == "after the storm"

            await until(history_goes_on, 20, "history recorded after the last restart")
            await until(rename_logged, 10, "the rename in the event log")
        assert await service.terminate() == 0, service.log.read_text(errors="replace")[-3000:]
        con = sqlite3.connect(db)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            row = con.execute("SELECT value FROM settings WHERE key = 'unit_name'").fetchone()
            assert json.loads(row[0]) == "after the storm"
        finally:
            con.close()

        lost = [f["history_lost_s"] for f in figures]
        unlogged = sum(int(f["changes_without_event"]) for f in figures)
        print(
            f"kill -9 x{len(figures) + 1} (one while starting): "
            f"{sum(int(f['acks']) for f in figures)} acknowledged writes, none lost; "
            f"{sum(int(f['landed']) for f in figures)}/{sum(int(f['in_flight']) for f in figures)}"
            f" in-flight writes landed; history lost per kill {min(lost):.2f}-{max(lost):.2f} s "
            f"(mean {sum(lost) / len(lost):.2f} s, flush_s {FLUSH_S}); "
            f"{unlogged} acknowledged changes without their event; "
            f"test {time.monotonic() - began:.1f} s"
        )
    finally:
        strays = await procs.close()
    assert not strays, f"processes left behind: {strays}"


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_kill_9_of_smartpdu_run_leaves_no_board_behind(tmp_path: Path) -> None:
    """``smartpdu run`` owns the MicroPython board processes: after a SIGKILL (no clean-up
    of its own) its reaper kills them, and what was set is in a sound database."""
    var = tmp_path / "run"
    var.mkdir()
    port = _free_port()
    config = var / "smartpdu.toml"
    config.write_text(
        '[unit]\nid = "smartPDU0RUN09"\n\n'
        f'[web]\nhost = "127.0.0.1"\nport = {port}\n\n'
        "[peers]\nenabled = false\n\n"
        f"[storage]\nvar_dir = {json.dumps(str(var))}\n",
        encoding="utf-8",
    )
    set_password(config)
    procs = Processes()
    command = _smartpdu("run", "--config", str(config), "--scenario", "rehearsal")
    service = Service(procs, command, port, tmp_path, start_timeout=120.0)
    try:
        await service.spawn()
        async with logged_in(service) as client:
            assert service.proc is not None
            boards = descendants(service.proc.pid)
            assert len(boards) >= 6, boards  # 4 groups + the mains node + the reaper
            label = "🎚️ before the kill <b>"
            status, _ = await client.put(client.unit("/channels/A1/label"), {"label": label})
            assert status == 200
            await service.kill()  # asserts that every child is gone within 5 s
        integrity, found, con = read_database(var / "smartpdu.db", tmp_path / "copy")
        con.close()
        assert integrity == "ok"
        assert found[Key("label", "A1")] == label
    finally:
        strays = await procs.close()
    assert not strays, f"processes left behind: {strays}"
