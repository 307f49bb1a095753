# SPDX-License-Identifier: GPL-3.0-or-later
"""ipvs_info's run() against a fake kernel Session: where ip_vs is not loaded it says so and loads nothing; else the
table, the timeouts and the version; a read error is a failure naming the read; health is lvs-nat-healthd's state,
None without one; sync_daemons are the daemons the kernel runs; with floating, vrrp says which of those addresses
the host holds."""
from __future__ import annotations

import json

import module_fakes
import pytest

from ansible_collections.lvs.nat.plugins.module_utils import _addresses, _health, _ipvs
from ansible_collections.lvs.nat.plugins.modules import ipvs_info

Exited = module_fakes.Exited
SPEC = dict(floating=dict(type="list", elements="str"))  # ipvs_info's argument spec


def FakeModule(check_mode=False, **args):  # noqa: N802 (a stand-in for the class)
    return module_fakes.FakeModule(SPEC, args, check_mode)


SERVICE = dict(family="ipv4", protocol="tcp", address="198.51.100.10", port=80, fwmark=0, scheduler="rr", scheduler_flags=[],
               persistence_timeout=0, persistence_prefix=32, one_packet=False, real_servers=[])
TIMEOUTS = {"tcp": 60, "tcp_fin": 10, "udp": 30}
DAEMONS = [dict(mode="master", interface="eth2", sync_id=51, max_len=1472, group="224.0.1.81", port=8848, ttl=1),
           dict(mode="backup", interface="eth2", sync_id=51, max_len=1472, group="224.0.1.81", port=8848, ttl=1)]


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

    def daemons(self):
        return [dict(d) for d in DAEMONS] if self.loaded else []

    def apply(self, *args, **kwargs):
        raise AssertionError("ipvs_info changes nothing")

    set_timeouts = start_daemon = stop_daemon = apply_daemons = apply


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
    assert ipvs_info.run(FakeModule(check_mode)) == dict(changed=False, ipvs_loaded=False, services=[], health=None,
                                                         sync_daemons=[])


@pytest.mark.parametrize("check_mode", [False, True])
def test_the_table_timeouts_and_version(monkeypatch, check_mode):
    monkeypatch.setattr(_ipvs, "Session", FakeSession())
    assert ipvs_info.run(FakeModule(check_mode)) == dict(changed=False, ipvs_loaded=True, services=[SERVICE], timeouts=TIMEOUTS,
                                                         version="1.2.1", conn_tab_size=4096, health=None,
                                                         sync_daemons=DAEMONS)


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


HELD = {"127.0.0.1": "lo", "198.51.100.10": "eth1", "198.51.100.100": "eth2", "2001:db8::10": "eth1"}


@pytest.mark.parametrize("floating, addresses, state", [
    (["198.51.100.10", "198.51.100.100"], {"198.51.100.10": "eth1", "198.51.100.100": "eth2"}, "MASTER"),
    (["198.51.100.10", "198.51.100.99"], {"198.51.100.10": "eth1", "198.51.100.99": None}, "SPLIT"),
    (["198.51.100.98", "198.51.100.99"], {"198.51.100.98": None, "198.51.100.99": None}, "BACKUP"),
    (["2001:DB8::10", "2001:db8:0::10"], {"2001:db8::10": "eth1"}, "MASTER"),  # canonical form, once
])
@pytest.mark.parametrize("loaded", [True, False])
def test_vrrp_says_which_floating_addresses_the_host_holds(monkeypatch, floating, addresses, state, loaded):
    monkeypatch.setattr(_ipvs, "Session", FakeSession(loaded=loaded))
    monkeypatch.setattr(_addresses, "host_addresses", lambda: dict(HELD))
    result = ipvs_info.run(FakeModule(floating=floating))
    assert result["vrrp"] == dict(addresses=addresses, state=state)
    assert result["sync_daemons"] == (DAEMONS if loaded else [])


def test_without_floating_there_is_no_vrrp_and_the_addresses_are_not_read(monkeypatch):
    monkeypatch.setattr(_ipvs, "Session", FakeSession())
    monkeypatch.setattr(_addresses, "host_addresses", lambda: pytest.fail("read without floating"))
    assert "vrrp" not in ipvs_info.run(FakeModule())


@pytest.mark.parametrize("floating, message", [
    ([], "floating must list at least one address"),
    (["198.51.100.10", "198.51.100.1000"], "floating[1]='198.51.100.1000' is not an IPv4 or IPv6 address"),
    (["198.51.100.10/26"], "floating[0]='198.51.100.10/26' is not an IPv4 or IPv6 address"),
    (["fe80::1%eth1"], "floating[0]='fe80::1%eth1' is a scoped address"),
])
def test_a_bad_floating_address_fails_naming_it_before_anything_is_read(monkeypatch, floating, message):
    session = FakeSession()
    monkeypatch.setattr(_ipvs, "Session", session)
    monkeypatch.setattr(_addresses, "host_addresses", lambda: pytest.fail("read with bad input"))
    monkeypatch.setattr(ipvs_info, "build_module", lambda: FakeModule(floating=floating))
    with pytest.raises(Exited) as e:
        ipvs_info.main()
    assert e.value.args[0]["failed"] and e.value.args[0]["msg"].startswith(message), e.value.args[0]["msg"]
    assert session.opened == 0
