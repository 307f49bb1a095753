# SPDX-License-Identifier: GPL-3.0-or-later
"""Normalisation and planning: what is set wins, what is left out keeps the kernel's value."""
from __future__ import annotations

import pytest

from ansible_collections.lvs.nat.plugins.filter import director
from ansible_collections.lvs.nat.plugins.module_utils import _ipvs_names as N
from ansible_collections.lvs.nat.plugins.module_utils import _keepalived, _netfilter
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import SERVICE_SPEC
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import (
    InvalidInput,
    config_view,
    desired_dests,
    desired_service,
    plan_dest,
    plan_service,
    plan_table,
    service_key,
    whole_number,
)


def params(**kw):
    p = dict.fromkeys(SERVICE_SPEC)
    p.update(kw)
    return p


def kernel_service(**kw):
    s = dict(family="ipv4", protocol="tcp", address="198.51.100.10", port=80, fwmark=0, scheduler="sh",
             scheduler_flags=["sh-port"], persistence_timeout=300, persistence_prefix=24, one_packet=False,
             real_servers=[])
    s.update(kw)
    return s


def dest(addr, port=80, **kw):
    d = dict(address=addr, port=port, forwarding="masq", weight=1, upper_threshold=0, lower_threshold=0)
    d.update(kw)
    return d


def test_creation_defaults():
    s = desired_service(params(address="198.51.100.10", port=80), None)
    assert (s["protocol"], s["scheduler"], s["persistence_timeout"], s["persistence_prefix"]) == ("tcp", "wlc", 0, 32)
    s6 = desired_service(params(address="2001:DB8::0010", port=80), None)
    assert (s6["family"], s6["address"], s6["persistence_prefix"]) == ("ipv6", "2001:db8::10", 128)


def test_omitted_options_keep_the_kernel_values():
    cur = kernel_service()
    s = desired_service(params(address="198.51.100.10", port=80), cur)
    assert all(s[k] == cur[k] for k in ("scheduler", "scheduler_flags", "persistence_timeout", "persistence_prefix"))
    assert plan_service(cur, s, None, False)[0] == []


def test_scheduler_change_clears_flags_and_persistence_off_resets_mask():
    cur = kernel_service()
    s = desired_service(params(address="198.51.100.10", port=80, scheduler="rr", persistence_timeout=0), cur)
    assert s["scheduler_flags"] == [] and s["persistence_prefix"] == 32


def test_prefix_kept_from_a_persistent_kernel_service_is_valid():
    s = desired_service(params(address="198.51.100.10", port=80, persistence_prefix=16), kernel_service())
    assert s["persistence_prefix"] == 16 and s["persistence_timeout"] == 300


@pytest.mark.parametrize("kw, current, message", [
    (dict(address="198.51.100.10", port=80, scheduler_flags=["sh-port"]), None, "scheduler_flags=sh-port do not fit scheduler=wlc"),
    (dict(address="198.51.100.10", port=80, scheduler="rr", scheduler_flags=["sh-port"]), kernel_service(), "do not fit scheduler=rr"),
    (dict(address="198.51.100.10", port=0), None, "port=0 (all ports) needs persistence_timeout"),
    (dict(address="198.51.100.10", port=80, persistence_prefix=8), None, "persistence_prefix=8 needs persistence_timeout"),
    (dict(address="198.51.100.10", port=80, persistence_timeout=1, persistence_prefix=0), None, "persistence_prefix=0 is out of range"),
    (dict(address="198.51.100.10", port=80, one_packet=True), None, "one_packet=true is for UDP"),
    (dict(address="ff02::1", port=80), None, "address=ff02::1 cannot be a virtual service address"),
    (dict(address="0.0.0.0", port=80), None, "address=0.0.0.0 cannot be"),
    (dict(fwmark=2 ** 32), None, "fwmark=4294967296 is out of range"),
])
def test_invalid_service(kw, current, message):
    with pytest.raises(InvalidInput) as e:
        desired_service(params(**kw), current)
    assert message in str(e.value)


def test_udp_and_fwmark_may_use_one_packet():
    assert desired_service(params(protocol="udp", address="198.51.100.10", port=53, one_packet=True), None)["one_packet"]
    assert desired_service(params(fwmark=3, one_packet=True), None)["one_packet"]


def test_real_server_defaults_and_port_rules():
    s = desired_service(params(address="198.51.100.10", port=80), None)
    (d,) = desired_dests([dict(address="198.51.100.101")], s, [])
    assert d == dest("198.51.100.101")
    fw = desired_service(params(fwmark=1), None)
    assert desired_dests([dict(address="198.51.100.101")], fw, [])[0]["port"] == 0
    # port mapping only in NAT
    with pytest.raises(InvalidInput, match="needs forwarding=masq"):
        desired_dests([dict(address="198.51.100.101", port=8080, forwarding="tunnel")], s, [])
    assert desired_dests([dict(address="198.51.100.101", forwarding="route")], s, [])[0]["forwarding"] == "route"


def test_real_server_keeps_kernel_values_and_detects_duplicates():
    s = desired_service(params(address="198.51.100.10", port=80), None)
    have = [dest("198.51.100.101", weight=7, upper_threshold=9)]
    (d,) = desired_dests([dict(address="198.51.100.101", port=80)], s, have)
    assert (d["weight"], d["upper_threshold"]) == (7, 9)
    with pytest.raises(InvalidInput, match=r"real_servers\[1\]: 198.51.100.101:80 is listed twice"):
        desired_dests([dict(address="198.51.100.101"), dict(address="198.51.100.101", port=80)], s, have)


def test_lower_threshold_above_upper_is_refused_even_when_upper_comes_from_the_kernel():
    s = desired_service(params(address="198.51.100.10", port=80), None)
    with pytest.raises(InvalidInput, match="lower_threshold=5 exceeds upper_threshold=3"):
        desired_dests([dict(address="198.51.100.101", lower_threshold=5)], s, [dest("198.51.100.101", upper_threshold=3)])


def test_plan_create_edit_purge():
    s = desired_service(params(address="198.51.100.10", port=80, scheduler="rr"), None)
    wanted = desired_dests([dict(address="198.51.100.101"), dict(address="198.51.100.102", weight=2)], s, [])
    ops, after = plan_service(None, s, wanted, False)
    assert [op[0] for op in ops] == [N.CMD_NEW_SERVICE, N.CMD_NEW_DEST, N.CMD_NEW_DEST]
    assert [d["address"] for d in after["real_servers"]] == ["198.51.100.101", "198.51.100.102"]

    current = dict(after, real_servers=[dest("198.51.100.101"), dest("198.51.100.102", weight=2), dest("198.51.100.103")])
    wanted = desired_dests([dict(address="198.51.100.102", weight=0)], s, current["real_servers"])
    ops, after = plan_service(current, s, wanted, False)
    assert ops == [(N.CMD_SET_DEST, s, dest("198.51.100.102", weight=0))]
    assert len(after["real_servers"]) == 3  # nothing unnamed removed

    ops, after = plan_service(current, s, wanted, True)
    assert [(op[0], op[2]["address"]) for op in ops] == [
        (N.CMD_DEL_DEST, "198.51.100.101"), (N.CMD_DEL_DEST, "198.51.100.103"), (N.CMD_SET_DEST, "198.51.100.102")]
    assert [d["address"] for d in after["real_servers"]] == ["198.51.100.102"]


def test_plan_delete_and_nothing():
    cur = kernel_service()
    assert plan_service(cur, None, None, False) == ([(N.CMD_DEL_SERVICE, cur, None)], None)
    assert plan_service(None, None, None, False) == ([], None)
    assert config_view(None) == {}


def test_plan_dest():
    s = kernel_service()
    d = dest("198.51.100.101")
    assert plan_dest(s, None, d) == ([(N.CMD_NEW_DEST, s, d)], d)
    assert plan_dest(s, d, dict(d)) == ([], d)
    assert plan_dest(s, d, dict(d, weight=0))[0] == [(N.CMD_SET_DEST, s, dict(d, weight=0))]
    assert plan_dest(s, d, None) == ([(N.CMD_DEL_DEST, s, d)], None)
    assert plan_dest(s, None, None) == ([], None)


def table_entry(port, rips, **kw):
    e = params(address="198.51.100.10", port=port, **kw)
    e["real_servers"] = [dict(dict.fromkeys(("port", "forwarding", "weight", "upper_threshold", "lower_threshold")),
                              address=a) for a in rips]
    return e


def test_plan_table_touches_only_what_differs_and_keeps_the_order():
    held = [kernel_service(port=80, scheduler="rr", scheduler_flags=[], persistence_timeout=0, persistence_prefix=32,
                           real_servers=[dest("198.51.100.101"), dest("198.51.100.102", weight=5)]),
            kernel_service(port=443)]
    entries = [table_entry(8080, ["198.51.100.101"]), table_entry(80, ["198.51.100.101", "198.51.100.103"])]
    entries[1]["real_servers"][0]["weight"] = 2
    ops, after, removed = plan_table(held, entries, purge_services=False, purge_real_servers=True)
    assert [N.describe_op(op) for op in ops] == [
        "add service TCP 198.51.100.10:8080", "add real server 198.51.100.101:8080 to TCP 198.51.100.10:8080",
        "delete real server 198.51.100.102:80 from TCP 198.51.100.10:80",
        "edit real server 198.51.100.101:80 of TCP 198.51.100.10:80",
        "add real server 198.51.100.103:80 to TCP 198.51.100.10:80"]
    assert [s["port"] for s in after] == [8080, 80] and removed == []
    assert [(d["address"], d["weight"]) for d in after[1]["real_servers"]] == [("198.51.100.101", 2), ("198.51.100.103", 1)]


def test_plan_table_purges_unlisted_services_first_and_is_empty_when_converged():
    held = [kernel_service(port=443), kernel_service(port=80, real_servers=[dest("198.51.100.101")])]
    entry = table_entry(80, ["198.51.100.101"])
    ops, after, removed = plan_table(held, [entry], purge_services=True, purge_real_servers=True)
    assert [N.describe_op(op) for op in ops] == ["delete service TCP 198.51.100.10:443"]
    assert [s["port"] for s in removed] == [443]
    assert plan_table(held[1:], [entry], True, True)[0] == []


@pytest.mark.parametrize("entries, message", [
    ([params(address="198.51.100.10", port=80), params(address="198.51.100.10", port=80, scheduler="rr")],
     "services[1]: TCP 198.51.100.10:80 is listed twice (also services[0])"),
    ([params(address="198.51.100.10", port=80), params(address="198.51.100.300", port=80)],
     "services[1]: address='198.51.100.300' is not an IPv4 or IPv6 address"),
    ([table_entry(80, ["198.51.100.101", "198.51.100.101"])],
     "services[0]: real_servers[1]: 198.51.100.101:80 is listed twice"),
])
def test_plan_table_names_the_bad_entry(entries, message):
    with pytest.raises(InvalidInput) as e:
        plan_table([], entries, False, False)
    assert str(e.value) == message


def test_persistence_timeout_is_limited_to_ipvsadms_31_days():
    # ipvsadm -p refuses more, so ipvsadm-restore would stop at that line of the saved table.
    assert desired_service(params(address="198.51.100.10", port=80, persistence_timeout=2678400), None)["persistence_timeout"] == 2678400
    for value in (2678401, 4294968, 2 ** 31 - 1):
        with pytest.raises(InvalidInput, match=r"^persistence_timeout=%d is out of range: it must be between 0 and 2678400$" % value):
            desired_service(params(address="198.51.100.10", port=80, persistence_timeout=value), None)
    with pytest.raises(InvalidInput, match=r"^services\[0\]: persistence_timeout=2678401 is out of range"):
        plan_table([], [params(address="198.51.100.10", port=80, persistence_timeout=2678401)], False, False)


@pytest.mark.parametrize("address, why", [
    ("0.0.0.0", "the unspecified address"),
    ("::", "the unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("255.255.255.255", "the broadcast address"),
    ("fe80::1", "an IPv6 link-local address"),
])
def test_unusable_real_server_and_service_addresses_are_refused(address, why):
    six = ":" in address
    s = desired_service(params(address="2001:db8::10" if six else "198.51.100.10", port=80), None)
    with pytest.raises(InvalidInput) as e:
        desired_dests([dict(address="2001:db8::101" if six else "198.51.100.101"), dict(address=address)], s, None)
    assert str(e.value).startswith("real_servers[1] address=%s cannot be a real server address: it is %s" % (address, why))
    with pytest.raises(InvalidInput) as e:
        desired_service(params(address=address, port=80), None)
    assert str(e.value).startswith("address=%s cannot be a virtual service address: it is %s" % (address, why))


@pytest.mark.parametrize("address", ["fe80::1%eth0", "2001:db8::1%1", "198.51.100.101%eth0"])
def test_scoped_addresses_are_refused(address):
    # fe80::1%eth0 used to pack as fe80::1 while the plan kept "fe80::1%eth0": the next run crashed.
    s = desired_service(params(address="2001:db8::10", port=80), None)
    with pytest.raises(InvalidInput, match=r"^real_servers\[0\] address='%s' is a scoped address: IPVS keeps no zone" % address):
        desired_dests([dict(address=address)], s, None)
    with pytest.raises(InvalidInput, match=r"^service\.address='%s' is a scoped address" % address):
        service_key(dict(address=address, port=80), where="service.")


@pytest.mark.parametrize("address", ["010.0.0.1", "198.51.100.1\n", " 198.51.100.1", "१९८.51.100.1", "", "198.51.100.1/32"])
def test_address_text_is_ascii_and_plain(address):
    with pytest.raises(InvalidInput, match=r"^address=.* is not an IPv4"):
        desired_service(params(address=address, port=80), None)


def test_family_mismatch_between_service_and_real_server_is_refused():
    fw6 = desired_service(params(fwmark=5, family="ipv6"), None)
    with pytest.raises(InvalidInput, match=r"^real_servers\[0\] address=198.51.100.101 is ipv4 but the service FWM 5 \(ipv6\) is ipv6$"):
        desired_dests([dict(address="198.51.100.101")], fw6, None)


@pytest.mark.parametrize("kw, message", [
    # What the controller-side preflight passes without AnsibleModule's type and choice checks.
    (dict(scheduler="fifo"), "scheduler='fifo' is not one of: "),
    (dict(protocol="icmp"), "protocol='icmp' is not one of: sctp, tcp, udp"),
    (dict(family="inet"), "family='inet' is not one of: ipv4, ipv6"),
    (dict(scheduler="sh", scheduler_flags="sh-port"), "scheduler_flags='sh-port' is not a list"),
    (dict(scheduler="sh", scheduler_flags=["sh-typo"]), "scheduler_flags[0]='sh-typo' is not one of"),
    (dict(persistence_timeout="10m"), "persistence_timeout='10m' is not an integer"),
    (dict(persistence_timeout=True), "persistence_timeout=True is not an integer"),
    (dict(port="８０"), "port='８０' is not an integer"),
    (dict(one_packet="maybe"), "one_packet='maybe' is not a boolean"),
    (dict(address=None), "address or fwmark is required"),
    (dict(port=None), "port is required with address"),
])
def test_raw_values_are_checked_without_ansible(kw, message):
    p = params(address="198.51.100.10", port=80)
    p.update(kw)
    with pytest.raises(InvalidInput) as e:
        desired_service(p, None)
    assert str(e.value).startswith(message)


def test_raw_values_ansible_would_convert_are_accepted():
    s = desired_service(dict(address="198.51.100.10", port="80", protocol="udp", one_packet="yes", persistence_timeout="60"), None)
    assert (s["port"], s["one_packet"], s["persistence_timeout"]) == (80, True, 60)
    (d,) = desired_dests([dict(address="198.51.100.101", weight="3")], s, None)
    assert d["weight"] == 3
    with pytest.raises(InvalidInput, match=r"^real_servers\[0\] forwarding='dr' is not one of: masq, route, tunnel$"):
        desired_dests([dict(address="198.51.100.101", forwarding="dr")], s, None)
    with pytest.raises(InvalidInput, match=r"^real_servers\[0\]=42 is neither a dict with address, port, ... nor "):
        desired_dests([42], s, None)


def test_the_planner_imports_and_plans_without_pyroute2_or_a_socket():
    """_ipvs_plan is pure: importable where pyroute2 is not (the controller's filter), without the backend."""
    import os
    import subprocess
    import sys

    code = "\n".join([
        "import sys",
        "sys.modules['pyroute2'] = None",  # any import of pyroute2 now fails
        "from ansible_collections.lvs.nat.plugins.module_utils import _ipvs_plan",
        "ops, after, removed = _ipvs_plan.plan_table([], [dict(address='198.51.100.10', port=80,",
        "    real_servers=[dict(address='198.51.100.101')])], False, False)",
        "assert [op[0] for op in ops] == [1, 5] and after[0]['real_servers'][0]['weight'] == 1, ops",
        "banned = [m for m in ('pyroute2', 'socket', 'ansible.module_utils.basic',",
        "          'ansible_collections.lvs.nat.plugins.module_utils._ipvs') if sys.modules.get(m) is not None]",
        "assert not banned, banned",
    ])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # the collection as pytest found it
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("value, problem", [
    (True, "=True is not a whole number (ASCII digits)"),
    (80.0, "=80.0 is not a whole number (ASCII digits)"),
    ("٨٠", "='٨٠' is not a whole number (ASCII digits)"),
    ("80 ", "='80 ' is not a whole number (ASCII digits)"),
    ("-1", "='-1' is not a whole number (ASCII digits)"),
    (None, "=None is not a whole number (ASCII digits)"),
    (0, "=0 is out of range: it must be between 1 and 255"),
    ("256", "=256 is out of range: it must be between 1 and 255"),
])
def test_every_whole_number_is_checked_one_way(value, problem):
    """health checks, keepalived_vrrp, nat_rules and director_ha take a whole number alike and say the same of a bad
    one, each with its own error class."""
    messages = []
    for call, error in ((lambda: whole_number("x", value, 1, 255), InvalidInput),
                        (lambda: _keepalived._int("x", value, 1, 255), _keepalived.KeepalivedError),
                        (lambda: _netfilter._integer("x", value, 1, 255), _netfilter.NetfilterError)):
        with pytest.raises(error) as e:
            call()
        messages.append(str(e.value))
    assert director._ha_whole("x", value, 1, 255) == (None, messages[:1])
    assert messages == ["x" + problem] * 3


@pytest.mark.parametrize("value", [1, 255, "1", "0255", 80])
def test_a_whole_number_in_range_is_the_int(value):
    assert whole_number("x", value, 1, 255) == int(value) == _keepalived._int("x", value, 1, 255)
    assert _netfilter._integer("x", value, 1, 255) == int(value) and director._ha_whole("x", value, 1, 255) == (int(value), [])
