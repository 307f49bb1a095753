# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared test wiring: one lab per test run, and no test may pass by being skipped."""
from __future__ import annotations

import os
import sys
from pathlib import Path

# tests/ and tests/lab are on sys.path by pytest.ini's pythonpath: the one way to import the harness and the lab.
import lab as labmod
import pytest
from hypothesis import HealthCheck, settings

# Property-based tests run with a fixed budget and a fixed seed in ./run test: the same examples every run.
settings.register_profile("lvsnat", max_examples=300, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("lvsnat")

ROOT = Path(__file__).resolve().parent.parent

# This checkout as the collection lvs.nat, for imports in unit tests and for ansible-* commands.
COLLECTIONS = Path(sys.prefix) / "collections"
_link = COLLECTIONS / "ansible_collections" / "lvs" / "nat"
if not _link.is_symlink() or _link.resolve() != ROOT:
    _link.parent.mkdir(parents=True, exist_ok=True)
    if _link.is_symlink():
        _link.unlink()
    _link.symlink_to(ROOT)
sys.path.insert(0, str(COLLECTIONS))
os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)


@pytest.fixture(scope="session")
def lab(request):
    """The lab, up for the whole run: reused when already up, else brought up and taken down at the end."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        was_up = labmod.status()["up"]
        labmod.up()
    yield labmod
    if not was_up and not os.environ.get("LVSNAT_LAB_KEEP"):
        with capman.global_and_fixture_disabled():
            labmod.down()  # raises when anything is left behind


@pytest.fixture(scope="session")
def ha_lab(request):
    """The lab with two directors (HA), for tests/ha: made anew when the lab runs with one, taken down at the end
    unless it was up with two before or LVSNAT_LAB_KEEP is set."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        was_up = labmod.status()["up"] and len(labmod.guests()) == 2
        labmod.up(directors=2)
    yield labmod
    if not was_up and not os.environ.get("LVSNAT_LAB_KEEP"):
        with capman.global_and_fixture_disabled():
            labmod.down()


LAB_FIXTURES = {"lab", "ha_lab"}


def pytest_addoption(parser):
    parser.addoption("--part", choices=("all", "lab", "host"), default="all",
                     help="only the tests that use the lab (lab), only those that do not (host), or all; ./run test "
                          "runs the two parts side by side")


def needs_lab(item):
    """A test of the lab part: it takes the lab (or the HA lab) as a fixture, or is marked lab (the lab's images)."""
    return bool(LAB_FIXTURES & set(getattr(item, "fixturenames", ()))) or item.get_closest_marker("lab") is not None


def pytest_collection_modifyitems(session, config, items):
    part = config.getoption("--part")
    if part != "all":
        # Not reported as deselected: the other part runs them (./run test prints both parts' summaries).
        items[:] = [item for item in items if needs_lab(item) == (part == "lab")]
    # The HA tests are the run's last phase: they remake the lab with two directors, after the one-director suite.
    ha = ROOT / "tests" / "ha"
    items.sort(key=lambda item: Path(str(item.fspath)).is_relative_to(ha))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # Tests that need the lab must run here: a skip or xfail counts as a failure.
    skipped = terminalreporter.stats.get("skipped", []) + terminalreporter.stats.get("xfailed", [])
    if skipped:
        terminalreporter.write_line(f"FAILED: {len(skipped)} test(s) skipped or xfailed; none may be", red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter and (reporter.stats.get("skipped") or reporter.stats.get("xfailed")) and session.exitstatus == 0:
        session.exitstatus = 1
