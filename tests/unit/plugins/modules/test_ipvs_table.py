# SPDX-License-Identifier: GPL-3.0-or-later
"""The IPVS modules' run() against a fake kernel session: a kernel refusal, a modprobe failure and a read error are
failures with a message (never a traceback), the rollback's account reaches the result, bad input changes nothing."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.modules import ipvs_info, ipvs_real_server, ipvs_service, ipvs_table

VIP = "198.51.100.10"


def held(port=80):
    return {"family": "ipv4", "protocol": "tcp", "address": VIP, "port": port, "fwmark": 0, "scheduler": "rr",
            "scheduler_flags": [], "persistence_timeout": 0, "persistence_prefix": 32, "one_packet": False,
            "real_servers": [{"address": "198.51.100.101", "port": port, "forwarding": "masq", "weight": 2,
                              "upper_threshold": 0, "lower_threshold": 0}]}


class FakeIPVS:
    def __init__(self, table, refusal=None, read_error=None):
        self.held, self.refusal, self.read_error, self.applied = table, refusal, read_error, []

    def table(self):
        if self.read_error:
            raise self.read_error
        return [dict(s) for s in self.held]

    def service(self, key):
        return next((dict(s) for s in self.table() if _ipvs.service_id(s) == _ipvs.service_id(key)), None)

    def timeouts(self):
        return dict(_ipvs.KERNEL_TIMEOUTS)

    def info(self):
        return {"version": "1.2.1", "conn_tab_size": 4096}

    def apply(self, ops, before=()):
        self.applied.append((ops, list(before)))
        if self.refusal:
            raise self.refusal


@pytest.fixture
def kernel(monkeypatch):
    """The fake IPVS the modules' Session holds; set .ipvs, .session_error or .writer_error."""
    state = type("State", (), {"ipvs": FakeIPVS([held()]), "session_error": None, "writer_error": None, "writes": 0})()

    class Session:
        def __init__(self, kernel_modules):
            if state.session_error:
                raise state.session_error  # pylint: disable=raising-bad-type
            self.ipvs = state.ipvs

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def service(self, key):
            return self.ipvs.service(key)

        def writer(self, kernel_modules):
            state.writes += 1
            if state.writer_error:
                raise state.writer_error  # pylint: disable=raising-bad-type
            return self.ipvs

    monkeypatch.setattr(_ipvs, "Session", Session)
    return state


def run(module, args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_a_refusal_mid_batch_fails_with_what_was_rolled_back(kernel, capsys):
    kernel.ipvs.refusal = _ipvs.IPVSError("Failed to add real server 198.51.100.127:81 to TCP 198.51.100.10:81: Invalid argument "
                                          "(errno 22). 2 operations rolled back ...", 22, applied=["a", "b"], rolled_back=["b", "a"],
                                          not_rolled_back=[], unanswered=[])
    result = run(ipvs_table, {"services": [
        {"address": VIP, "port": 80, "scheduler": "wrr"},
        {"address": VIP, "port": 81, "real_servers": [{"address": "198.51.100.101"}, {"address": "198.51.100.127"}]}]}, capsys)
    assert result["failed"] and result["msg"].startswith("Failed to add real server 198.51.100.127:81")
    assert (result["errno"], result["rolled_back"], result["not_rolled_back"]) == (22, ["b", "a"], [])
    ((ops, before),) = kernel.ipvs.applied
    assert before == [held()]  # the rollback knows the entries as they were, to edit them back
    assert [_ipvs.describe_op(op) for op in ops][0] == "edit service TCP 198.51.100.10:80"


def test_ipvs_service_and_ipvs_real_server_give_the_rollback_the_service_as_it_was(kernel, capsys):
    run(ipvs_service, {"address": VIP, "port": 80, "scheduler": "wrr"}, capsys)
    run(ipvs_real_server, {"service": {"address": VIP, "port": 80}, "address": "198.51.100.101", "weight": 5}, capsys)
    assert [before for _ops, before in kernel.ipvs.applied] == [[held()], [held()]]


@pytest.mark.parametrize("where", ["session_error", "writer_error"])
def test_a_kernel_module_that_cannot_be_loaded_is_a_failure_not_a_traceback(kernel, capsys, where):
    error = _ipvs.KernelError("Failed to load kernel module ip_vs_twos (modprobe ip_vs_twos: rc=1): modprobe: FATAL: Module ip_vs_twos not found")
    setattr(kernel, where, error)
    result = run(ipvs_service, {"address": VIP, "port": 80, "scheduler": "twos"}, capsys)
    assert result["failed"] and result["msg"] == str(error)
    assert kernel.ipvs.applied == []


def test_a_read_error_is_a_failure_naming_the_read(kernel, capsys):
    kernel.ipvs.read_error = _ipvs.IPVSError("Failed to read the IPVS services: no answer from the kernel within 30 s", 110)
    for module, args in ((ipvs_info, {}), (ipvs_table, {"services": [{"address": VIP, "port": 80}]})):
        result = run(module, args, capsys)
        assert result["failed"] and result["msg"] == "Failed to read the IPVS services: no answer from the kernel within 30 s"


@pytest.mark.parametrize("module, args, message", [
    (ipvs_table, {"services": [{"address": VIP, "port": 80}, {"address": VIP, "port": 81, "persistence_timeout": 2678401}]},
     "services[1]: persistence_timeout=2678401 is out of range: it must be between 0 and 2678400"),
    (ipvs_service, {"address": VIP, "port": 80, "real_servers": [{"address": "fe80::1%eth0"}]},
     "real_servers[0] address='fe80::1%eth0' is a scoped address"),
    (ipvs_service, {"address": VIP, "port": 80, "real_servers": [{"address": "255.255.255.255"}]},
     "real_servers[0] address=255.255.255.255 cannot be a real server address: it is the broadcast address"),
    (ipvs_real_server, {"service": {"address": VIP, "port": 80}, "address": "0.0.0.0"},
     "real server address=0.0.0.0 cannot be a real server address: it is the unspecified address"),
    (ipvs_table, {"services": [{"address": "fe80::10", "port": 80}]},
     "services[0]: address=fe80::10 cannot be a virtual service address: it is an IPv6 link-local address"),
])
def test_bad_input_fails_before_any_change(kernel, capsys, module, args, message):
    result = run(module, args, capsys)
    assert result["failed"] and result["msg"].startswith(message), result["msg"]
    assert kernel.writes == 0 and kernel.ipvs.applied == []
