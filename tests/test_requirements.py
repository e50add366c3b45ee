"""tests/requirements.py: a missing tool of ``make setup`` skips a test run by hand and fails it
under ``SMARTPDU_REQUIRE_ALL=1`` (``make test``), through every form the tests use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import requirements
from tests.requirements import REQUIRE_ALL_ENV, missing_reason, require, require_module, requires

ROOT = Path(__file__).resolve().parent.parent

# A test tree run by a pytest of its own, with the hooks of tests/conftest.py.
CONFTEST = "from tests.conftest import pytest_configure, pytest_runtest_setup  # noqa: F401\n"
TESTS = """\
from tests.requirements import require, require_module, requires

pytestmark = requires(True, "the module's requirement is there")


@requires(False, "no frobnicator installed")
def test_marked_missing():
    raise AssertionError("must not run")


@requires(None)
def test_marked_present():
    pass


def test_called_missing():
    require("the probe's own words", "no widget")
    raise AssertionError("must not run")


def test_import_missing():
    require_module("smartpdu_no_such_module")
    raise AssertionError("must not run")
"""
MODULE_LEVEL = """\
from tests.requirements import require_module

require_module("smartpdu_no_such_module")


def test_never_collected():
    raise AssertionError("must not run")
"""


def run_tree(tmp_path: Path, require_all: bool) -> tuple[int, str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_tree.py").write_text(TESTS)
    (tmp_path / "test_module_level.py").write_text(MODULE_LEVEL)
    env = {k: v for k, v in os.environ.items() if k not in (REQUIRE_ALL_ENV, "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(ROOT)
    if require_all:
        env[REQUIRE_ALL_ENV] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider",
         "--continue-on-collection-errors", "-o", "asyncio_default_fixture_loop_scope=function",
         str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def counts(output: str) -> dict[str, int]:
    summary = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}


def test_by_hand_a_missing_requirement_skips(tmp_path: Path) -> None:
    rc, output = run_tree(tmp_path, require_all=False)
    assert rc == 0, output
    assert counts(output) == {"passed": 1, "skipped": 4}, output
    assert "no frobnicator installed" in output
    assert "no widget: the probe's own words" in output
    assert "cannot import smartpdu_no_such_module" in output


def test_under_make_test_a_missing_requirement_fails(tmp_path: Path) -> None:
    rc, output = run_tree(tmp_path, require_all=True)
    assert rc == 1, output
    # The mark fails the setup (an error), a call the test (a failure); a module that cannot
    # import what it needs is a collection error. The one whose requirement is there passes.
    assert counts(output) == {"failed": 2, "passed": 1, "errors": 2}, output
    assert "skipped" not in output.strip().splitlines()[-1]
    for text in ("no frobnicator installed", "no widget: the probe's own words",
                 "cannot import smartpdu_no_such_module"):  # fmt: skip
        assert re.search(re.escape(text) + r".*SMARTPDU_REQUIRE_ALL=1", output), text
    assert "must not run" not in output


def test_require_in_this_process_in_both_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ALL_ENV, raising=False)
    require(True, "there")
    require(None)
    with pytest.raises(pytest.skip.Exception, match=r"^no picotool$"):
        require(False, "no picotool")
    monkeypatch.setenv(REQUIRE_ALL_ENV, "0")  # only "1" turns it on
    assert not requirements.require_all()
    with pytest.raises(pytest.skip.Exception):
        require_module("smartpdu_no_such_module")
    monkeypatch.setenv(REQUIRE_ALL_ENV, "1")
    assert requirements.require_all()
    require(True, "there")
    with pytest.raises(pytest.fail.Exception, match=r"^no picotool .*setup defect"):
        require(False, "no picotool")
    with pytest.raises(pytest.fail.Exception, match="smartpdu_no_such_module"):
        require_module("smartpdu_no_such_module")
    assert require_module("json").dumps([]) == "[]"


def test_probe_forms() -> None:
    assert missing_reason(True, "x") is None and missing_reason(None, "x") is None
    assert missing_reason(False, "no tmux") == "no tmux"
    assert missing_reason("node not installed") == "node not installed"
    assert missing_reason("exit 1", "picotool --version") == "picotool --version: exit 1"
    assert requires(False, "no tmux").mark.args == ("no tmux",)
    assert requires(True, "tmux").mark.args == (None,)
