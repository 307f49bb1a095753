# SPDX-License-Identifier: GPL-3.0-or-later
"""gateway_route's run() against a fake module and a fake `ip`: validation before any change, one ExecStart= per
route without a shell, the managed-header guard and the lock. The netns target proves the kernel side."""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.module_utils import _persist
from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import _show
from ansible_collections.lvs.nat.plugins.modules import gateway_route

GW = "198.51.100.100"


class FakeModule(object):
    """What run() uses of AnsibleModule; `ip` keeps a main table of {dst, gateway, dev} like `ip -j route show`."""

    def __init__(self, unit_path, check_mode=False, routes=(), ip="/usr/sbin/ip", **params):
        self.params = dict(state="present", gateway=GW, networks=["default"], interface=None, runtime=True,
                           persistent=True, unit_path=unit_path)
        self.params.update(params)
        self.check_mode, self._diff, self.ip = check_mode, True, ip
        self.routes, self.changes = [dict(r) for r in routes], []

    def get_bin_path(self, name, opt_dirs=None):
        assert name in ("ip", "systemctl")
        return self.ip

    def atomic_move(self, src, dest):
        os.rename(src, dest)

    def run_command(self, argv, data=None, binary_data=False, environ_update=None, expand_user_and_vars=True):
        # What _module.run_command passes: the resolved path, LC_ALL=C, no expansion.
        assert argv[0] == self.ip and environ_update["LC_ALL"] == "C" and not expand_user_and_vars
        argv = ["ip"] + argv[1:]
        if argv[:2] == ["ip", "-j"]:
            assert argv[2] in ("-4", "-6")
            return 0, json.dumps([r for r in self.routes if (":" in r["gateway"]) == (argv[2] == "-6")]), ""
        if argv[:2] == ["ip", "route"] and argv[2] in ("replace", "del"):
            self.changes.append(argv)
            dst = "default" if argv[3] == "default" else str(ipaddress.ip_network(argv[3]))
            dst = dst[:-3] if dst.endswith("/32") else dst  # ip lists a host route without /32
            if argv[2] == "del":
                gone = [r for r in self.routes if r["dst"] == dst and r["gateway"] == argv[5]]
                if not gone:
                    return 2, "", "RTNETLINK answers: No such process\n"
                self.routes = [r for r in self.routes if r not in gone]
                return 0, "", ""
            self.routes = [r for r in self.routes if r["dst"] != dst] + [
                dict(dst=dst, gateway=argv[5], dev=argv[7] if len(argv) > 7 else "eth0")]
            return 0, "", ""
        raise AssertionError("unexpected command %r" % (argv,))


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(_persist, "LOCK_DIRS", (str(tmp_path),))


@pytest.fixture
def unit(tmp_path):
    return str(tmp_path / "system" / "lvs-nat-route.service")


def directives(text, key):
    return [line.split("=", 1)[1] for line in text.split("\n") if line.startswith(key + "=")]


def test_one_exec_start_per_route_without_a_shell(unit):
    m = FakeModule(unit, networks=["198.51.100.0/26", "198.51.100.64/26", "198.51.100.0/26"], interface="eth1")
    r = gateway_route.run(m)
    assert r["changed"] and r["routes"] == {"198.51.100.0/26": GW, "198.51.100.64/26": GW}
    text = open(unit).read()
    assert directives(text, "ExecStart") == [
        "/usr/sbin/ip route replace 198.51.100.0/26 via %s dev eth1" % GW,
        "/usr/sbin/ip route replace 198.51.100.64/26 via %s dev eth1" % GW]
    assert "sh -c" not in text and text.startswith("# Managed by lvs.nat.gateway_route")
    assert os.path.islink(_persist.unit_link(unit))
    assert m.changes == [["ip", "route", "replace", n, "via", GW, "dev", "eth1"]
                         for n in ("198.51.100.0/26", "198.51.100.64/26")]
    again = FakeModule(unit, routes=m.routes, networks=["198.51.100.0/26", "198.51.100.64/26"], interface="eth1")
    assert gateway_route.run(again)["changed"] is False and again.changes == []


def test_ip_not_found_falls_back_to_sbin_ip(unit):
    gateway_route.run(FakeModule(unit, ip=None, runtime=False))
    assert directives(open(unit).read(), "ExecStart") == ["/sbin/ip route replace default via %s" % GW]


def test_check_mode_changes_nothing_and_diffs(unit):
    m = FakeModule(unit, check_mode=True)
    r = gateway_route.run(m)
    assert r["changed"] and m.changes == [] and not os.path.exists(unit)
    assert r["diff"][0] == dict(before={"default": None}, after={"default": GW})
    assert directives(r["diff"][1]["after"], "ExecStart") == ["/usr/sbin/ip route replace default via %s" % GW]


def test_a_route_via_another_device_is_replaced_when_interface_is_given(unit):
    routes = [dict(dst="default", gateway=GW, dev="eth0")]
    m = FakeModule(unit, routes=routes, interface="eth1", persistent=False)
    assert gateway_route.run(m)["changed"] and m.changes == [["ip", "route", "replace", "default", "via", GW,
                                                              "dev", "eth1"]]
    m = FakeModule(unit, routes=routes, persistent=False)
    assert not gateway_route.run(m)["changed"]


def test_host_routes_and_the_whole_space_are_idempotent(unit):
    m = FakeModule(unit, networks=["198.51.100.7/32", "0.0.0.0/0"], persistent=False)
    assert gateway_route.run(m)["routes"] == {"198.51.100.7/32": GW, "default": GW}
    again = FakeModule(unit, routes=m.routes, networks=["198.51.100.7/32", "0.0.0.0/0"], persistent=False)
    assert not gateway_route.run(again)["changed"]


def test_ipv6_reads_the_ipv6_table(unit):
    m = FakeModule(unit, gateway="2001:db8::1", networks=["2001:db8:1::/64"], persistent=False)
    assert gateway_route.run(m)["changed"] and m.changes[0][3:6] == ["2001:db8:1::/64", "via", "2001:db8::1"]


BAD = [
    (dict(interface="eth0'\nExecStartPre=/bin/touch /tmp/x\n#"), "interface="),
    (dict(interface="eth0; touch /tmp/y"), "interface="),
    (dict(interface="eth0\n"), "interface="),
    (dict(interface="way-too-long-interface"), "interface="),
    (dict(interface=".."), "interface="),
    (dict(interface="eth/0"), "interface="),
    (dict(interface="eth\u0660"), "interface="),
    (dict(interface=""), "interface="),
    (dict(unit_path="/etc/systemd/system/x.service\nExecStartPre=/bin/touch /tmp/x"), "unit_path must be"),
    (dict(unit_path="/etc/systemd/system/%n.service"), "unit_path must be"),
    (dict(gateway="198.51.100.300"), "gateway="),
    (dict(gateway="fe80::1%eth0"), "gateway='fe80::1%eth0' is not a unicast address"),
    (dict(gateway="0.0.0.0"), "gateway="),
    (dict(networks=["default", "198.51.100.1/24"]), "networks[1]: "),
    (dict(networks=["2001:db8::/64"]), "networks[0]: 2001:db8::/64 is IPv6, gateway 198.51.100.100 is IPv4"),
    (dict(gateway="fe80::1", networks=["fe80::%eth0/64"]), "networks[0]: "),
    (dict(networks=["198.51.100.0/26\n"]), "networks[0]: "),
]


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("params, message", BAD)
def test_bad_input_is_refused_before_any_change(unit, params, message, check_mode):
    params = dict(params)
    m = FakeModule(params.pop("unit_path", unit), check_mode=check_mode, **params)
    with pytest.raises(LvsNatError) as e:
        gateway_route.run(m)
    assert str(e.value).startswith(message)
    assert m.changes == [] and not os.path.exists(os.path.dirname(unit))


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_foreign_unit_is_refused_before_any_change(unit, check_mode):
    os.makedirs(os.path.dirname(unit))
    with open(unit, "w") as fh:
        fh.write("[Service]\nExecStart=/usr/local/bin/mine\n")
    m = FakeModule(unit, check_mode=check_mode)
    with pytest.raises(LvsNatError) as e:
        gateway_route.run(m)
    assert str(e.value).startswith("unit_path: %s exists and is not managed by lvs.nat" % unit)
    assert m.changes == [] and open(unit).read() == "[Service]\nExecStart=/usr/local/bin/mine\n"
    assert not os.path.lexists(_persist.unit_link(unit))


def test_the_run_holds_the_lock(unit, monkeypatch):
    monkeypatch.setattr(_persist, "LOCK_TIMEOUT", 0.2)
    m = FakeModule(unit)
    with _persist.lock("gateway_route"):
        with pytest.raises(_persist.PersistError) as e:
            gateway_route.run(m)
    assert "Another run of lvs.nat.gateway_route" in str(e.value)
    assert m.changes == [] and not os.path.exists(unit)


IFNAME_ALPHABET = list("abcXYZ019_.:@+-/ \t\n'\";%$#{}\\é١")


@given(st.one_of(st.text(max_size=10000), st.text(alphabet=st.sampled_from(IFNAME_ALPHABET), min_size=1, max_size=20)))
def test_interface_is_refused_naming_it_or_each_unit_line_is_one_route_via_it(tmp_path_factory, interface):
    unit = str(tmp_path_factory.mktemp("u") / "lvs-nat-route.service")
    m = FakeModule(unit, check_mode=True, interface=interface, networks=["default", "198.51.100.0/26"])
    try:
        r = gateway_route.run(m)
    except LvsNatError as e:
        assert str(e).startswith("interface=%s is not an interface name" % _show(interface))
        return
    assert re.fullmatch(r"[A-Za-z0-9_.+-]{1,15}", interface, re.ASCII) and interface not in (".", "..")
    text = r["diff"][1]["after"]
    assert [shlex.split(c) for c in directives(text, "ExecStart")] == [
        ["/usr/sbin/ip", "route", "replace", net, "via", GW, "dev", interface] for net in ("default", "198.51.100.0/26")]
    assert len(text.split("\n")) == 14  # no line added


# state: absent and persistent: false

OTHER = "198.51.100.99"


@pytest.mark.parametrize("check_mode", [False, True])
def test_absent_deletes_only_the_routes_via_the_gateway_and_removes_the_unit(unit, check_mode):
    nets = ["198.51.100.0/26", "198.51.100.64/26"]
    gateway_route.run(FakeModule(unit, networks=nets))
    m = FakeModule(unit, networks=nets)
    m.routes = [dict(dst="198.51.100.0/26", gateway=GW, dev="eth0"), dict(dst="198.51.100.64/26", gateway=OTHER, dev="eth0"),
                dict(dst="default", gateway=OTHER, dev="eth0")]
    kept = [dict(r) for r in m.routes[1:]]
    m.check_mode, m.params["state"] = check_mode, "absent"
    r = gateway_route.run(m)
    assert r["changed"]
    assert r["routes"] == {"198.51.100.0/26": None, "198.51.100.64/26": OTHER}
    assert r["diff"][1]["after"] == "" and r["diff"][1]["before"].startswith("# Managed by lvs.nat.gateway_route")
    if check_mode:
        assert m.changes == [] and os.path.exists(unit) and os.path.islink(_persist.unit_link(unit))
        return
    assert m.changes == [["ip", "route", "del", "198.51.100.0/26", "via", GW]] and m.routes == kept
    assert not os.path.lexists(unit) and not os.path.lexists(_persist.unit_link(unit))
    again = FakeModule(unit, routes=m.routes, networks=nets, state="absent")
    assert gateway_route.run(again)["changed"] is False and again.changes == []


def test_persistent_false_removes_the_unit_an_earlier_run_wrote(unit):
    gateway_route.run(FakeModule(unit))
    assert os.path.exists(unit)
    m = FakeModule(unit, persistent=False, runtime=False)
    assert gateway_route.run(m)["changed"]
    assert not os.path.lexists(unit) and not os.path.lexists(_persist.unit_link(unit))


def test_absent_refuses_a_foreign_file_at_unit_path_before_any_change(unit):
    os.makedirs(os.path.dirname(unit))
    with open(unit, "w") as fh:
        fh.write("[Service]\nExecStart=/usr/local/bin/mine\n")
    m = FakeModule(unit, state="absent", routes=[dict(dst="default", gateway=GW, dev="eth0")])
    with pytest.raises(_persist.PersistError):
        gateway_route.run(m)
    assert m.changes == [] and open(unit).read() == "[Service]\nExecStart=/usr/local/bin/mine\n"
