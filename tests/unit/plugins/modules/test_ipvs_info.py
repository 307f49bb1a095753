# SPDX-License-Identifier: GPL-3.0-or-later
"""ipvs_info's run() against a fake kernel Session: where ip_vs is not loaded it says so and loads nothing; else the
table, the timeouts and the version; a read error is a failure naming the read; health is lvs-nat-healthd's state,
None without one."""
from __future__ import annotations

import functools
import json

import module_fakes
import pytest

from ansible_collections.lvs.nat.plugins.module_utils import _health, _ipvs
from ansible_collections.lvs.nat.plugins.modules import ipvs_info

FakeModule = functools.partial(module_fakes.FakeModule, {}, {})  # ipvs_info takes no options
Exited = module_fakes.Exited

SERVICE = dict(family="ipv4", protocol="tcp", address="198.51.100.10", port=80, fwmark=0, scheduler="rr", scheduler_flags=[],
               persistence_timeout=0, persistence_prefix=32, one_packet=False, real_servers=[])
TIMEOUTS = {"tcp": 60, "tcp_fin": 10, "udp": 30}


class FakeSession(module_fakes.FakeSession):
    """_ipvs.Session reading a fixed kernel; loaded=False reads as the Session does where ip_vs is not loaded."""

    def __init__(self, loaded=True, error=None):
        self.loaded, self.error = loaded, error

    def table(self, counters=True):
        if self.error:
            raise self.error
        return [dict(SERVICE)] if self.loaded else []

    def timeouts(self):
        return dict(TIMEOUTS) if self.loaded else {"tcp": 900, "tcp_fin": 120, "udp": 300}

    def info(self):
        return {"version": "1.2.1", "conn_tab_size": 4096} if self.loaded else None

    def apply(self, *args, **kwargs):
        raise AssertionError("ipvs_info changes nothing")

    set_timeouts = apply


STATE = {"version": 1, "generation": "3f2a9c0d51e4b7a8", "round": 7, "pid": 812, "updated": 1733190240.2,
         "services": [{"service": "TCP 198.51.100.10:80", "sorry_server_active": False, "real_servers": [
             {"address": "198.51.100.101", "port": 8080, "healthy": False, "since": 1733190230.5, "last_result": "fail",
              "reason": "connection refused", "checks": 7}]}]}


@pytest.fixture(autouse=True)
def no_state(monkeypatch, tmp_path):
    """lvs-nat-healthd's state file in tmp_path (absent unless a test writes it)."""
    monkeypatch.setattr(_health, "STATE_PATH", str(tmp_path / "health.json"))
    return tmp_path / "health.json"


@pytest.mark.parametrize("check_mode", [False, True])
def test_where_ip_vs_is_not_loaded_the_module_says_so(monkeypatch, check_mode):
    monkeypatch.setattr(_ipvs, "Session", FakeSession(loaded=False))
    assert ipvs_info.run(FakeModule(check_mode)) == dict(changed=False, ipvs_loaded=False, services=[], health=None)


@pytest.mark.parametrize("check_mode", [False, True])
def test_the_table_timeouts_and_version(monkeypatch, check_mode):
    monkeypatch.setattr(_ipvs, "Session", FakeSession())
    assert ipvs_info.run(FakeModule(check_mode)) == dict(changed=False, ipvs_loaded=True, services=[SERVICE], timeouts=TIMEOUTS,
                                                         version="1.2.1", conn_tab_size=4096, health=None)


@pytest.mark.parametrize("loaded", [True, False])
def test_health_is_the_state_lvs_nat_healthd_wrote(monkeypatch, no_state, loaded):
    no_state.write_text(json.dumps(STATE))
    monkeypatch.setattr(_ipvs, "Session", FakeSession(loaded=loaded))
    r = ipvs_info.run(FakeModule())
    assert r["health"] == STATE and r["ipvs_loaded"] is loaded


def test_an_unreadable_state_is_a_failure_naming_the_file(monkeypatch, no_state):
    no_state.write_text("{not json")
    monkeypatch.setattr(_ipvs, "Session", FakeSession())
    monkeypatch.setattr(ipvs_info, "build_module", FakeModule)
    with pytest.raises(Exited) as e:
        ipvs_info.main()
    assert e.value.args[0]["failed"] and e.value.args[0]["msg"].startswith("Failed to read %s: not JSON" % no_state)


def test_a_read_error_is_a_failure_naming_the_read(monkeypatch):
    monkeypatch.setattr(_ipvs, "Session", FakeSession(error=_ipvs.IPVSError(
        "Failed to read the IPVS services: no answer from the kernel within 30 s", 110)))
    monkeypatch.setattr(ipvs_info, "build_module", FakeModule)
    with pytest.raises(Exited) as e:
        ipvs_info.main()
    assert e.value.args[0] == dict(failed=True, msg="Failed to read the IPVS services: no answer from the kernel within 30 s", errno=110)
