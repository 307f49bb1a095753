# SPDX-License-Identifier: GPL-3.0-or-later
"""ipvs_real_server's run() against a fake kernel Session: check mode predicts and changes nothing, the diff shows
the real server before and after, apply gets the planned operation, a missing service is named."""
from __future__ import annotations

import functools

import module_fakes
import pytest

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import IPVS_REAL_SERVER_SPEC
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import CMD_SET_DEST
from ansible_collections.lvs.nat.plugins.modules import ipvs_real_server

FakeModule = functools.partial(module_fakes.FakeModule, IPVS_REAL_SERVER_SPEC)
Exited = module_fakes.Exited

VIP = "198.51.100.10"
SERVICE = {"address": VIP, "port": 80}


def rs(address, port=80, **kw):
    return dict(dict(address=address, port=port, forwarding="masq", weight=1, upper_threshold=0, lower_threshold=0), **kw)


def held():
    return dict(family="ipv4", protocol="tcp", address=VIP, port=80, fwmark=0, scheduler="rr", scheduler_flags=[],
                persistence_timeout=0, persistence_prefix=32, one_packet=False, real_servers=[rs("198.51.100.101", weight=2)])


FakeSession = module_fakes.TableSession


@pytest.fixture
def kernel(monkeypatch):
    fake = FakeSession([held()])
    monkeypatch.setattr(_ipvs, "Session", fake)
    return fake


def test_check_mode_predicts_the_edit_and_changes_nothing(kernel):
    args = {"service": SERVICE, "address": "198.51.100.101", "upper_threshold": 100}
    result = ipvs_real_server.run(FakeModule(args, check_mode=True))
    assert kernel.applied == [] and kernel.held == [held()]
    assert result == dict(changed=True, real_server=rs("198.51.100.101", weight=2, upper_threshold=100),
                          changes=["edit real server 198.51.100.101:80 of TCP 198.51.100.10:80"],
                          diff=dict(before=rs("198.51.100.101", weight=2), after=rs("198.51.100.101", weight=2, upper_threshold=100)))
    assert ipvs_real_server.run(FakeModule(args)) == result  # the kernel then holds what check mode predicted
    ((ops, before, schedulers),) = kernel.applied
    assert before == [held()] and schedulers == [] and ops == [(CMD_SET_DEST, held(), rs("198.51.100.101", weight=2, upper_threshold=100))]


def test_a_new_real_server_is_added_and_an_absent_one_removed(kernel):
    result = ipvs_real_server.run(FakeModule({"service": SERVICE, "address": "198.51.100.102", "port": 8080}))
    assert result["changes"] == ["add real server 198.51.100.102:8080 to TCP 198.51.100.10:80"]
    assert result["diff"] == dict(before={}, after=rs("198.51.100.102", 8080))
    result = ipvs_real_server.run(FakeModule({"service": SERVICE, "address": "198.51.100.101", "state": "absent"}))
    assert result["diff"] == dict(before=rs("198.51.100.101", weight=2), after={}) and result["real_server"] == {}
    assert kernel.held[0]["real_servers"] == [rs("198.51.100.102", 8080)]
    unchanged = ipvs_real_server.run(FakeModule({"service": SERVICE, "address": "198.51.100.101", "state": "absent"}))
    assert unchanged["changed"] is False and len(kernel.applied) == 2


def test_a_missing_service_fails_naming_it_and_absent_is_no_change(monkeypatch):
    fake = FakeSession([])  # also what the Session gives where ip_vs is not loaded
    monkeypatch.setattr(_ipvs, "Session", fake)
    assert ipvs_real_server.run(FakeModule({"service": SERVICE, "address": "198.51.100.101", "state": "absent"})) == dict(
        changed=False, real_server={}, changes=[])
    monkeypatch.setattr(ipvs_real_server, "build_module", lambda: FakeModule({"service": SERVICE, "address": "198.51.100.101"}))
    with pytest.raises(Exited) as e:
        ipvs_real_server.main()
    assert e.value.args[0] == dict(failed=True, msg="service.address: the service TCP 198.51.100.10:80 does not exist; "
                                                    "create it first with lvs.nat.ipvs_service")
    assert fake.applied == []


def test_a_kernel_refusal_reaches_the_failure(kernel, monkeypatch):
    kernel.error = _ipvs.IPVSError("Failed to add real server 198.51.100.255:80 to TCP 198.51.100.10:80: Invalid argument "
                                   "(errno 22). Nothing had been applied: the table is as the task found it.", 22, applied=[],
                                   rolled_back=[], not_rolled_back=[], unanswered=[])
    monkeypatch.setattr(ipvs_real_server, "build_module", lambda: FakeModule({"service": SERVICE, "address": "198.51.100.255"}))
    with pytest.raises(Exited) as e:
        ipvs_real_server.main()
    assert e.value.args[0] == dict(failed=True, msg=str(kernel.error), errno=22, applied=[], rolled_back=[], not_rolled_back=[],
                                   unanswered=[])
