"""The OpenAPI document is valid and complete, and a bounded fuzz run of the API with
schemathesis (generated valid and invalid requests, logged out and logged in) finds no
server error and no response that contradicts the document."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from host.config import default_config
from host.peers.directory import PeerDirectory
from host.peers.envelope import LocalStatus
from host.state import Event, EventKind, Severity, UnitState
from host.storage.store import Storage
from host.web import WebContext, create_app
from host.web.app import OPENAPI_FILE
from host.web.auth import PasswordFile, write_password_file
from tests.host.test_web_api import PASSWORD, UNIT, FakePanel, PanelState, make_state
from tests.host.webstack import free_port
from tests.requirements import require_module

MAX_EXAMPLES = 25  # per operation and mode: the run stays well under a minute
FUZZ_BUDGET_S = 150.0


def load_spec() -> dict[str, Any]:
    yaml = require_module("yaml")
    return yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))


def test_openapi_document_is_valid() -> None:
    validator = require_module("openapi_spec_validator")
    spec = load_spec()
    validator.validate(spec)
    assert spec["openapi"].startswith("3.")


def test_every_route_is_documented() -> None:
    state = make_state()
    # With a peer directory, as the service runs it: the peers routes are part of the API.
    peers = PeerDirectory(UNIT, web_port=8080, local=LocalStatus)  # type: ignore[arg-type]
    context = WebContext(config=default_config(), state=state, storage=None)  # type: ignore[arg-type]
    app = create_app(context, peers)
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method not in ("HEAD", "*")
    }
    documented = {
        (method, path)
        for path, item in load_spec()["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    assert routes == documented


# ----------------------------------------------------------------------------- a live server


@dataclass
class Server:
    url: str
    loop: asyncio.AbstractEventLoop
    state: UnitState


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app on a real socket, in a thread of its own (schemathesis calls are blocking)."""
    workdir = tmp_path_factory.mktemp("fuzz")
    password_file = workdir / "admin-password"
    write_password_file(password_file, PASSWORD)
    port = free_port()
    started: Future[Server] = Future()
    stop = threading.Event()

    async def serve() -> None:
        from aiohttp import web

        state = make_state()
        storage = await Storage.open(workdir / "db.sqlite")
        await storage.append_event(
            Event(time.time(), EventKind.BREAKER_TRIPPED, Severity.ALARM, UNIT, None, None, "t"),
            {"window_s": 30.0, "groups": {}, "meter": []},
        )
        ctx = WebContext(
            config=default_config(unit={"model": 36, "id": UNIT}),
            state=state,
            storage=storage,
            number=1,
            panels={"A": FakePanel(PanelState([(0, 160, 0)] * 12, " -A-"))},
            passwords=PasswordFile(Path(password_file)),
        )
        runner = web.AppRunner(create_app(ctx), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        started.set_result(Server(f"http://127.0.0.1:{port}", asyncio.get_running_loop(), state))
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await runner.cleanup()
        await storage.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    yield started.result(timeout=30)
    stop.set()
    thread.join(timeout=30)


def _login(server: Server) -> tuple[dict[str, str], dict[str, str]]:
    import requests

    response = requests.post(f"{server.url}/api/v1/login", json={"password": PASSWORD}, timeout=10)
    assert response.status_code == 200
    cookies = {name: value or "" for name, value in response.cookies.items()}
    return {"X-CSRF-Token": response.json()["csrf_token"]}, cookies


@pytest.mark.slow
def test_fuzz_finds_no_server_error(server: Server) -> None:
    schemathesis = require_module("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi import checks

    schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.yaml")
    headers, cookies = _login(server)
    # positive_data_acceptance is left out: some valid-looking input is refused on purpose
    # in ways a schema cannot say (a label with unassigned code points or bidi overrides,
    # start after end, a peer's unit id), always with a 400 or 404 and a message.
    excluded = [checks.positive_data_acceptance]
    deadline = time.monotonic() + FUZZ_BUDGET_S
    failures: list[str] = []
    calls = 0
    statuses: dict[int, int] = {}

    def fuzz(operation: Any, mode: Any, logged_in: bool) -> None:
        # This unit's id in the path (a random one is a 404 and would hide the rest).
        pinned = {"unit_id": UNIT} if "{unit_id}" in operation.path else None
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=pinned)

        @given(case=strategy)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
            ],
        )
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(
                headers=headers if logged_in else None,
                cookies=cookies if logged_in else None,
                timeout=10,
            )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            where = f"{case.method} {case.formatted_path} ({mode.value}, logged in: {logged_in})"
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(f"{where}: {response.status_code} {response.text[:200]}")
                return
            try:
                case.validate_response(response, excluded_checks=excluded)
            except Exception as exc:  # collect them all, report at the end
                failures.append(f"{where}: {type(exc).__name__}: {str(exc)[:600]}")

        with contextlib.suppress(Unsatisfiable):  # nothing to make invalid in it
            check()

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19
    for operation in operations:
        if operation.path == "/api/v1/ws":
            continue  # a WebSocket upgrade: covered by test_web_api
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for logged_in in (False, True):
                if time.monotonic() < deadline:
                    fuzz(operation, mode, logged_in)
    print(f"{calls} requests; statuses {sorted(statuses.items())}")
    assert calls > 200
    assert statuses.get(200, 0) > 50 and statuses.get(400, 0) > 20  # both sides exercised
    assert failures == [], "\n".join(failures[:20])
