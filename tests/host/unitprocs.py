"""Helpers for the tests that run two virtual units as ``smartpdu run --config`` builds them
(``tools.virtual.runvirtual.virtual_unit``) in this process on 127.0.0.1: their scenario and
config files, a short temporary folder, and polling until a condition holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

SCENARIO_HEAD = """\
[scenario]
description = "a smartPDU 36 with steady resistive loads"
model = 36
loop = false
seed = {seed}
"""

SCENARIO_LOAD = """
[[load]]
channels = "{channel}"
kind = "resistive"
amps = {amps}
"""

CONFIG = """\
[unit]
id = "{unit_id}"
name = "{name}"

[web]
host = "127.0.0.1"
port = {port}

[storage]
var_dir = "{var_dir}"

[peers]
site_key = "{key}"
mdns = false
static = {static}
"""


def write_unit(
    folder: Path,
    unit_id: str,
    name: str,
    port: int,
    loads: Mapping[str, float],
    *,
    key: str,
    seed: int,
    static: Sequence[str] = (),
    config_tail: str = "",
) -> tuple[Path, Path]:
    """``folder/show.toml`` (a steady resistive load per channel of ``loads``) and
    ``folder/smartpdu.toml`` (its storage in ``folder/var``, peers found through ``static``
    only, no mDNS); ``config_tail`` is appended as it is (more ``[peers]`` keys, or sections)."""
    folder.mkdir()
    scenario = folder / "show.toml"
    scenario.write_text(
        SCENARIO_HEAD.format(seed=seed)
        + "".join(SCENARIO_LOAD.format(channel=c, amps=a) for c, a in loads.items())
    )
    config = folder / "smartpdu.toml"
    config.write_text(
        CONFIG.format(
            unit_id=unit_id, name=name, port=port, var_dir=folder / "var", key=key,
            static=json.dumps(list(static)),
        )
        + config_tail
    )  # fmt: skip
    return scenario, config


@contextlib.contextmanager
def short_tempdir(prefix: str) -> Iterator[Path]:
    """A fresh folder under the system's temporary one, short enough for UNIX socket paths."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll the coroutine function ``check`` until it returns something truthy; fail the test
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(interval)
