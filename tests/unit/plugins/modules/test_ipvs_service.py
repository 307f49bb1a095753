# SPDX-License-Identifier: GPL-3.0-or-later
"""ipvs_service's run() against a fake kernel Session: check mode predicts and changes nothing, the diff shows the
service before and after, apply gets the planned operations, and a kernel failure's account reaches the result."""
from __future__ import annotations

import functools

import module_fakes
import pytest

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import IPVS_SERVICE_SPEC, SERVICE_KEY_RELATIONS
from ansible_collections.lvs.nat.plugins.modules import ipvs_service

FakeModule = functools.partial(module_fakes.FakeModule, IPVS_SERVICE_SPEC, **SERVICE_KEY_RELATIONS)
Exited = module_fakes.Exited

VIP = "198.51.100.10"


def rs(address, port=80, weight=1):
    return dict(address=address, port=port, forwarding="masq", weight=weight, upper_threshold=0, lower_threshold=0)


def held(**kw):
    svc = dict(family="ipv4", protocol="tcp", address=VIP, port=80, fwmark=0, scheduler="rr", scheduler_flags=[],
               persistence_timeout=0, persistence_prefix=32, one_packet=False, real_servers=[rs("198.51.100.101", weight=2)])
    svc.update(kw)
    return svc


FakeSession = module_fakes.TableSession


@pytest.fixture
def kernel(monkeypatch):
    fake = FakeSession([held()])
    monkeypatch.setattr(_ipvs, "Session", fake)
    return fake


NEW = {"address": VIP, "port": 8080, "scheduler": "wrr",
       "real_servers": [{"address": "198.51.100.101", "weight": 3}, {"address": "198.51.100.102"}]}


def test_check_mode_predicts_the_new_service_and_changes_nothing(kernel):
    result = ipvs_service.run(FakeModule(NEW, check_mode=True))
    assert kernel.applied == [] and kernel.held == [held()]
    assert result["changed"] and result["changes"] == [
        "add service TCP 198.51.100.10:8080", "add real server 198.51.100.101:8080 to TCP 198.51.100.10:8080",
        "add real server 198.51.100.102:8080 to TCP 198.51.100.10:8080"]
    expected = held(port=8080, scheduler="wrr", real_servers=[rs("198.51.100.101", 8080, 3), rs("198.51.100.102", 8080)])
    assert result["diff"] == dict(before={}, after=expected) and result["service"] == expected


def test_a_run_applies_the_planned_operations_and_reports_what_the_kernel_then_holds(kernel):
    predicted = ipvs_service.run(FakeModule(NEW, check_mode=True))
    result = ipvs_service.run(FakeModule(NEW))
    ((ops, before, schedulers),) = kernel.applied
    assert before == [] and schedulers == ["wrr"]  # a new service: nothing to roll back to; its scheduler loaded
    assert [op[0] for op in ops] == [1, 5, 5] and result["changes"] == predicted["changes"]
    assert result["diff"] == predicted["diff"]  # check mode predicted what the kernel then holds
    assert result["service"] == kernel.service(result["service"]) == predicted["service"]
    assert ipvs_service.run(FakeModule(NEW)) == dict(changed=False, service=result["service"], changes=[],
                                                     diff=dict(before=result["service"], after=result["service"]))


def test_an_edit_keeps_what_is_left_out_and_gives_the_rollback_the_service_as_it_was(kernel):
    result = ipvs_service.run(FakeModule({"address": VIP, "port": 80, "persistence_timeout": 300,
                                          "real_servers": [{"address": "198.51.100.102"}], "purge_real_servers": True}))
    ((ops, before, schedulers),) = kernel.applied
    assert before == [held()] and schedulers == ["rr"]
    assert result["changes"] == ["edit service TCP 198.51.100.10:80",
                                 "delete real server 198.51.100.101:80 from TCP 198.51.100.10:80",
                                 "add real server 198.51.100.102:80 to TCP 198.51.100.10:80"]
    assert result["diff"]["before"] == held()
    assert result["diff"]["after"] == held(persistence_timeout=300, real_servers=[rs("198.51.100.102")])


def test_absent_removes_the_service_and_an_absent_one_is_no_change(kernel):
    result = ipvs_service.run(FakeModule({"address": VIP, "port": 80, "state": "absent"}))
    assert result == dict(changed=True, service={}, changes=["delete service TCP 198.51.100.10:80"],
                          diff=dict(before=held(), after={}))
    assert kernel.applied[0][1:] == ([held()], []) and kernel.held == []
    assert ipvs_service.run(FakeModule({"address": VIP, "port": 80, "state": "absent"}))["changed"] is False


def test_where_ip_vs_is_not_loaded_the_service_is_created(monkeypatch):
    fake = FakeSession([], loaded=False)
    monkeypatch.setattr(_ipvs, "Session", fake)
    result = ipvs_service.run(FakeModule({"address": VIP, "port": 80}, check_mode=True))
    assert result["changed"] and result["service"]["scheduler"] == "wlc" and fake.applied == []


def test_a_kernel_refusal_reaches_the_failure_with_the_rollbacks_account(kernel, monkeypatch):
    kernel.error = _ipvs.IPVSError("Failed to add real server 198.51.100.127:8080 to TCP 198.51.100.10:8080: Invalid "
                                   "argument (errno 22). 1 operation rolled back ...", 22, applied=["add service TCP 198.51.100.10:8080"],
                                   rolled_back=["add service TCP 198.51.100.10:8080"], not_rolled_back=[], unanswered=[],
                                   changed=False)
    monkeypatch.setattr(ipvs_service, "build_module", lambda: FakeModule(NEW))
    with pytest.raises(Exited) as e:
        ipvs_service.main()
    assert e.value.args[0] == dict(failed=True, msg=str(kernel.error), errno=22, applied=["add service TCP 198.51.100.10:8080"],
                                   rolled_back=["add service TCP 198.51.100.10:8080"], not_rolled_back=[], unanswered=[],
                                   changed=False)


def test_main_exits_with_the_result(kernel, monkeypatch):
    monkeypatch.setattr(ipvs_service, "build_module", lambda: FakeModule({"address": VIP, "port": 80}, diff=False))
    with pytest.raises(Exited) as e:
        ipvs_service.main()
    assert e.value.args[0] == dict(changed=False, service=held(), changes=[])
