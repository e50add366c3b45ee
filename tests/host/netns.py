"""Network namespaces for tests that need real multicast between processes.

:class:`Lan` builds a private Ethernet segment: one "hub" namespace holding a bridge, and one
namespace per host joined to it by a veth pair (``eth0`` inside the host, ``vN`` on the
bridge), addressed ``10.77.0.N/24``. Nothing is created in the caller's own namespace, so the
test cannot disturb the machine's network, and names carry the test's pid so concurrent runs
do not collide. ``Lan.close()`` kills the processes started through it (by pid) and deletes
every namespace, which destroys the links with them.

Run as ``python -m tests.host.netns forge --target URL`` (inside a namespace) it is the rogue
of the peer-exchange test: it posts forged, unsigned, replayed and malformed exchanges and
prints the HTTP status of each as one JSON line (``rogue`` also announces itself over mDNS
and answers polls with forgeries). ``watch --url URL ... --out FILE`` is an observer on the
LAN: it polls each unit's HTTP API as the web UI does and keeps what it saw in FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SUBNET = "10.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if sys.platform != "linux":
        return f"network namespaces need Linux (this is {sys.platform})"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    name = f"spdu{os.getpid()}probe"
    try:
        made = _ip("netns", "add", name, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run 'ip netns add': {exc}"
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip() or made.returncode}"
    try:
        link = _ip("-n", name, "link", "add", "pr0", "type", "bridge", check=False)
        if link.returncode != 0:
            return f"cannot create a bridge in a namespace: {link.stderr.strip()}"
    finally:
        _ip("netns", "del", name, check=False)
    return None


@dataclass
class Host:
    index: int
    netns: str
    address: str

    def url(self, port: int) -> str:
        return f"http://{self.address}:{port}/"


@dataclass
class Lan:
    """A bridge in its own namespace and hosts attached to it (see the module doc)."""

    tag: str = field(default_factory=lambda: f"spdu{os.getpid() % 100000}")
    hosts: dict[int, Host] = field(default_factory=lambda: {})
    processes: list[subprocess.Popen[bytes]] = field(default_factory=lambda: [])
    leftovers: list[int] = field(default_factory=lambda: [])  # pids close() had to kill
    _hub: str | None = None

    @property
    def hub(self) -> str:
        if self._hub is None:
            hub = f"{self.tag}hub"
            _ip("netns", "add", hub)
            self._hub = hub
            _ip("-n", hub, "link", "set", "lo", "up")
            _ip("-n", hub, "link", "add", "br0", "type", "bridge")
            # Multicast is flooded to every port, querier or not.
            _ip("-n", hub, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
            _ip("-n", hub, "link", "set", "br0", "up")
        return self._hub

    def add_host(self, index: int, *, plugged: bool = True) -> Host:
        """Namespace ``<tag>h<index>`` with eth0 = 10.77.0.<index>/24 on the bridge;
        ``plugged=False``: its cable is not plugged in yet (see :meth:`plug`)."""
        if not 1 <= index <= 254 or index in self.hosts:
            raise ValueError(f"host index {index} is taken or out of range")
        hub = self.hub
        netns = f"{self.tag}h{index}"
        _ip("netns", "add", netns)
        host = Host(index, netns, f"{SUBNET}.{index}")
        self.hosts[index] = host
        port = f"v{index}"
        _ip("-n", hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("-n", hub, "link", "set", port, "master", "br0")
        if plugged:
            _ip("-n", hub, "link", "set", port, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        return host

    def plug(self, host: Host) -> None:
        """Plug ``host``'s cable in: its eth0 gets a carrier."""
        _ip("-n", self.hub, "link", "set", f"v{host.index}", "up")

    def spawn(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``host``'s namespace (``ip netns exec`` execs it: the pid
        is the program's own)."""
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        full_env.update(env or {})
        out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, *argv],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if log is not None and not isinstance(out, int):
                out.close()
        self.processes.append(proc)
        return proc

    def run(self, host: Host, argv: Sequence[str], timeout: float = 20.0) -> str:
        """Run ``argv`` inside ``host``'s namespace to completion; its stdout."""
        done = subprocess.run(
            ["ip", "netns", "exec", host.netns, *argv],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[:3]} in {host.netns} failed: {done.stderr[-2000:]}")
        return done.stdout

    def pids(self, host: Host) -> list[int]:
        """Every process living in ``host``'s namespace (whoever started it)."""
        listed = _ip("netns", "pids", host.netns, check=False)
        return sorted(int(word) for word in listed.stdout.split() if word.isdigit())

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for proc in self.processes:
            try:
                proc.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        self.processes.clear()
        # What they left behind (children a killed process could not stop), by pid, after a
        # grace period for their own reapers; kept in ``leftovers`` for the test to check.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(self.pids(h) for h in self.hosts.values()):
            time.sleep(0.1)
        for host in self.hosts.values():
            for pid in self.pids(host):
                self.leftovers.append(pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        for host in self.hosts.values():
            _ip("netns", "del", host.netns, check=False)
        self.hosts.clear()
        if self._hub is not None:
            _ip("netns", "del", self._hub, check=False)
            self._hub = None

    def __enter__(self) -> Lan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_view(path: Path) -> dict[str, object] | None:
    """The view a peer process last wrote (``--view-file``), or None if there is none yet."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------------- the rogue


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return -1


def _canonical(obj: object) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def _unit(uid: str, l1: float) -> dict[str, object]:
    return {
        "id": uid, "name": "ROGUE", "model": 36, "urls": ["http://10.77.0.99:8080/"],
        "l1": l1, "l2": 0.0, "l3": 0.0, "n": 0.0, "source": "meter", "warning": False,
        "tripped": False, "online": True, "alarms": 0, "age_s": 0.0,
    }  # fmt: skip


def _signed(body: dict[str, object], key: str) -> bytes:
    """Signed exactly as host.peers signs, but with a key that is not the site's."""
    derived = hmac.new(key.encode(), b"smartPDU peer exchange v1", hashlib.sha256).digest()
    sig = hmac.new(derived, b"smartpdu-peers/1\n" + _canonical(body), hashlib.sha256)
    return _canonical({**body, "sig": sig.hexdigest()})


def forge(target: str, claim: str, victim: str, wrong_key: str) -> dict[str, int]:
    """Post every kind of forgery a host without the site key can make to ``target``.

    Mirrors the wire format of ``host.peers`` by hand (a rogue would not import it), so a
    change of format shows up here as statuses that are no longer refusals."""
    url = target.rstrip("/") + "/api/v1/peers/exchange"

    def envelope(sender: str, units: list[dict[str, object]]) -> dict[str, object]:
        return {
            "v": 1, "kind": "request", "from": sender, "ts": time.time(),
            "nonce": secrets.token_hex(16), "units": units,
        }  # fmt: skip

    unit, signed = _unit, _signed
    results: dict[str, int] = {}
    own = envelope(claim, [unit(claim, 99.0)])
    results["unsigned"] = _post(url, _canonical(own))
    results["zero_sig"] = _post(url, _canonical({**own, "sig": "0" * 64}))
    results["wrong_key_new_unit"] = _post(
        url, signed(envelope(claim, [unit(claim, 99.0)]), wrong_key)
    )
    results["wrong_key_victim"] = _post(
        url, signed(envelope(victim, [unit(victim, 77.0)]), wrong_key)
    )
    results["wrong_key_relay"] = _post(
        url, signed(envelope(claim, [unit(claim, 1.0), unit(victim, 77.0)]), wrong_key)
    )
    results["not_json"] = _post(url, b"\x00\xffnot json{{{")
    results["nan"] = _post(url, b'{"v":1,"ts":NaN}')
    results["array"] = _post(url, b"[1,2,3]")
    results["huge"] = _post(url, b'{"pad":"' + b"x" * 200_000 + b'"}')
    results["html_name"] = _post(
        url,
        signed(envelope(claim, [{**unit(claim, 1.0), "name": "<script>alert(1)</script>"}]),
               wrong_key),
    )  # fmt: skip
    return results


SERVICE_TYPE = "_smartpdu._tcp.local."
HTTP_TYPE = "_http._tcp.local."


async def _browse(types: list[str], wait_s: float) -> dict[str, dict[str, Any]]:
    """What mDNS shows on this host's LAN after ``wait_s``: every service of ``types`` with
    its TXT, port and addresses (as a LAN scanner or a browser's Bonjour list sees them)."""
    from zeroconf import IPVersion, ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    found: dict[str, dict[str, Any]] = {}
    azc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    tasks: set[asyncio.Task[None]] = set()

    async def resolve(zc: Zeroconf, type_: str, name: str) -> None:
        info = AsyncServiceInfo(type_, name)
        if await info.async_request(zc, 2000):
            found[name] = {
                "type": type_,
                "txt": info.decoded_properties,
                "port": info.port,
                "server": info.server,
                "addresses": info.parsed_addresses(IPVersion.V4Only),
            }

    def handler(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            task = asyncio.get_running_loop().create_task(resolve(zeroconf, service_type, name))
            tasks.add(task)

    browser = AsyncServiceBrowser(azc.zeroconf, types, handlers=[handler])
    await asyncio.sleep(wait_s)
    await browser.async_cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2.5)
    await azc.async_close()
    return found


async def probe(wait_s: float, hostnames: Sequence[str]) -> dict[str, Any]:
    """Services on the LAN and what ``<name>.local`` resolves to, over mDNS only."""
    from zeroconf import AddressResolverIPv4, IPVersion  # pyright: ignore[reportPrivateImportUsage]
    from zeroconf.asyncio import AsyncZeroconf

    services = await _browse([SERVICE_TYPE, HTTP_TYPE], wait_s)
    azc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    hosts: dict[str, list[str]] = {}
    for hostname in hostnames:
        resolver = AddressResolverIPv4(f"{hostname}.local.")
        if await resolver.async_request(azc.zeroconf, 2000):
            hosts[hostname] = resolver.parsed_addresses()
    await azc.async_close()
    return {"services": services, "hosts": hosts}


async def rogue(
    address: str, port: int, claim: str, victim: str, wrong_key: str, serve_s: float
) -> dict[str, Any]:
    """A host without the site key doing all it can: it copies the site's mDNS TXT (as a
    sniffer would) and announces itself with it, answers the units' exchanges with forged
    envelopes, and posts forged, unsigned and malformed exchanges to every unit it finds."""
    from aiohttp import web
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    seen = await _browse([SERVICE_TYPE], 1.5)
    legit = [v for v in seen.values() if v["txt"].get("id") != claim]
    legit.sort(key=lambda v: v["txt"].get("auth") != "1")  # a site with a key: copy its TXT
    txt = dict(legit[0]["txt"]) if legit else {"proto": "1"}
    targets = [f"http://{v['addresses'][0]}:{v['port']}/" for v in legit if v["addresses"]]
    polled_by: list[str] = []

    async def exchange(request: web.Request) -> web.Response:
        polled_by.append(request.remote or "?")
        try:
            nonce = json.loads(await request.read()).get("nonce", "0" * 32)
        except ValueError:
            nonce = "0" * 32
        body = {
            "v": 1, "kind": "response", "from": claim, "ts": time.time(),
            "nonce": secrets.token_hex(16), "echo": nonce,
            "units": [_unit(claim, 55.0), _unit(victim, 77.0)],
        }  # fmt: skip
        return web.Response(body=_signed(body, wrong_key), content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/v1/peers/exchange", exchange)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    azc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(
        SERVICE_TYPE,
        f"{claim}.{SERVICE_TYPE}",
        port=port,
        properties={**txt, "id": claim},
        server=f"{claim}.local.",
        parsed_addresses=[address],
    )
    await azc.async_register_service(info)
    loop = asyncio.get_running_loop()
    forged = {
        t: await loop.run_in_executor(None, forge, t, claim, victim, wrong_key) for t in targets
    }
    await asyncio.sleep(serve_s)
    await azc.async_close()
    await runner.cleanup()
    return {
        "targets": targets,
        "copied_site_tag": txt.get("site"),
        "forged": forged,
        "polled_by": sorted(set(polled_by)),
        "polls": len(polled_by),
    }


# ----------------------------------------------------------------------------- the observer


async def watch(urls: Sequence[str], out: Path, every: float, peers_every: float) -> None:
    """A browser's-eye view of units on the LAN: polls every unit's ``GET /api/v1/units``
    (pane A's list, as the web UI gets it) every ``every`` s, and ``GET /api/v1/peers`` and
    its home page now and then, and rewrites ``out`` (atomically) with, per unit URL: when
    it first answered (``up_at``), its newest list (``rows``, with ``t``, the time of that
    answer), every unit id it ever listed with when (``ever``), its peer status. Times are
    ``time.monotonic()``, one clock for every process of the machine. Runs until SIGTERM."""
    import aiohttp

    views: dict[str, dict[str, Any]] = {
        url: {"up_at": None, "t": None, "rows": None, "error": None, "ever": {},
              "peers": None, "home": None, "polls": 0}
        for url in urls
    }  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    timeout = aiohttp.ClientTimeout(total=1.0)

    async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
        async with session.get(url, timeout=timeout) as response:
            return response.status, response.content_type, await response.text()

    async def follow(session: aiohttp.ClientSession, url: str) -> None:
        view = views[url]
        next_peers = 0.0
        while not stop.is_set():
            began = time.monotonic()
            try:
                status, _, text = await get(session, url + "api/v1/units")
                now = time.monotonic()
                rows = json.loads(text) if status == 200 else None
                if not isinstance(rows, list):
                    raise ValueError(f"HTTP {status}: {text[:200]}")
                if view["up_at"] is None:
                    view["up_at"] = now
                view.update(t=now, rows=rows, error=None, polls=view["polls"] + 1)
                for row in rows:  # pyright: ignore[reportUnknownVariableType]
                    view["ever"].setdefault(str(row.get("id")), now)  # pyright: ignore[reportUnknownMemberType]
                if now >= next_peers:
                    next_peers = now + peers_every
                    status, _, text = await get(session, url + "api/v1/peers")
                    view["peers"] = json.loads(text) if status == 200 else None
                    if view["home"] is None:
                        status, kind, text = await get(session, url)
                        view["home"] = {"status": status, "type": kind, "html": "<html" in text}
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                view["error"] = f"{type(exc).__name__}: {exc}"[:300]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.01, began + every - time.monotonic()))

    def write() -> None:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps({"t": time.monotonic(), "pid": os.getpid(), "units": views}))
        tmp.replace(out)

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(follow(session, url)) for url in urls]
        while not stop.is_set():
            write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every / 2)
        await asyncio.gather(*tasks)
    write()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.host.netns")
    sub = parser.add_subparsers(dest="command", required=True)
    post = sub.add_parser("forge", help="post forged peer exchanges to units")
    post.add_argument("--target", action="append", required=True)
    for command in (post, sub.add_parser("rogue", help="announce, answer and post forgeries")):
        command.add_argument("--claim", default="smartPDUBAD001")
        command.add_argument("--victim", default="smartPDU0000A1")
        command.add_argument("--wrong-key", default="not-the-site-key-0123456789")
    rogue_cmd = sub.choices["rogue"]
    rogue_cmd.add_argument("--address", required=True)
    rogue_cmd.add_argument("--port", type=int, default=8080)
    rogue_cmd.add_argument("--serve-s", type=float, default=4.0)
    look = sub.add_parser("probe", help="list mDNS services and resolve host names")
    look.add_argument("--wait", type=float, default=1.5)
    look.add_argument("--host", action="append", default=[])
    observe = sub.add_parser("watch", help="poll units' pane A over HTTP into a file")
    observe.add_argument("--url", action="append", required=True)
    observe.add_argument("--out", type=Path, required=True)
    observe.add_argument("--every", type=float, default=0.2)
    observe.add_argument("--peers-every", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.command == "watch":
        asyncio.run(watch(args.url, args.out, args.every, args.peers_every))
        return 0
    if args.command == "forge":
        out: Any = {t: forge(t, args.claim, args.victim, args.wrong_key) for t in args.target}
    elif args.command == "rogue":
        out = asyncio.run(
            rogue(args.address, args.port, args.claim, args.victim, args.wrong_key, args.serve_s)
        )
    else:
        out = asyncio.run(probe(args.wait, args.host))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
