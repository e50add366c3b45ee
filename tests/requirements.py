"""Tools and builds the project's own ``make setup`` provides (chromium, playwright, mosquitto,
prometheus, tmux, picotool, the rp2 images in build/rp2/out, node with rp2040js, micropython-32,
the dev Python packages): a test that needs a missing one is skipped when pytest is run by
hand on a partial machine, and fails when ``SMARTPDU_REQUIRE_ALL=1`` (``make test`` sets it,
and CI runs ``make test``): there a missing one is a setup defect, not a reason to skip.

- :func:`require` inside a test or fixture (or at module level);
- :func:`requires` as a mark (``pytestmark`` or a decorator), checked when each test is set up
  (``tests/conftest.py`` calls :func:`check_marks` from ``pytest_runtest_setup``);
- :func:`require_module` for an import (in place of ``pytest.importorskip``).

Only for what ``make setup`` installs or builds: a capability of the machine that the
project cannot provide (network namespaces in a container) stays a plain skip.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, NoReturn

import pytest

REQUIRE_ALL_ENV = "SMARTPDU_REQUIRE_ALL"
MARK = "smartpdu_requires"

# What a probe gives: True or None when the thing is there, False or a reason when it is not.
Probe = bool | str | None


def require_all() -> bool:
    """True when a missing requirement fails the test (``SMARTPDU_REQUIRE_ALL=1``)."""
    return os.environ.get(REQUIRE_ALL_ENV, "") == "1"


def missing_reason(probe: Probe, reason: str = "") -> str | None:
    """None when ``probe`` says the thing is there; else why it is not."""
    if probe is True or probe is None:
        return None
    if probe is False:
        return reason or "a requirement is missing"
    return f"{reason}: {probe}" if reason else probe


def missing(reason: str) -> NoReturn:
    """Skip (by hand) or fail (``SMARTPDU_REQUIRE_ALL=1``) for a missing requirement."""
    if require_all():
        pytest.fail(
            f"{reason} ({REQUIRE_ALL_ENV}=1, as under `make test`: `make setup` installs or "
            "builds this, so its absence is a setup defect)",
            pytrace=False,
        )
    pytest.skip(reason, allow_module_level=True)


def require(probe: Probe, reason: str = "") -> None:
    """Go on when ``probe`` is True or None; else :func:`missing` with ``reason`` (and the
    probe's own text when it is a string)."""
    why = missing_reason(probe, reason)
    if why is not None:
        missing(why)


def requires(probe: Probe, reason: str = "") -> pytest.MarkDecorator:
    """A mark that makes :func:`require` of ``probe`` when each marked test is set up."""
    return getattr(pytest.mark, MARK)(missing_reason(probe, reason))


def check_marks(item: pytest.Item) -> None:
    """:func:`require` of every :func:`requires` mark on ``item`` (a setup hook calls this)."""
    for mark in item.iter_markers(name=MARK):
        why = mark.args[0] if mark.args else None
        if why is not None:
            missing(str(why))


def require_module(name: str, hint: str = "pip install -e '.[dev]'") -> Any:
    """The module ``name`` imported; :func:`missing` when it cannot be (``importorskip``)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        why = f"cannot import {name} ({hint}): {exc}"
    missing(why)
