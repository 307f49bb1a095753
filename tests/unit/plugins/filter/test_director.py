# SPDX-License-Identifier: GPL-3.0-or-later
"""lvs.nat.director_plan and lvs.nat.realserver_problems: the roles' variables become the modules' arguments as data,
and every bad value is refused on the controller with a message naming the variable, by the modules' validators."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.filter.director import (
    FilterModule,
    director_differences,
    director_plan,
    realserver_problems,
)
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import IPVS_TABLE_RELATIONS, IPVS_TABLE_SPEC
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import config_view, precheck_table

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "director" / "defaults" / "main.yml").read_text())
# playbooks/inventory.example.yml: the director's variables and the real servers' host variables.
EXAMPLE = yaml.safe_load((ROOT / "playbooks" / "inventory.example.yml").read_text())["all"]["children"]
GROUPS = {"director": ["lvs1"], "realservers": ["web1", "web2"]}
HOSTVARS = {"web1": {"ansible_host": "198.51.100.101", "realserver_weight": 3}, "web2": {"ansible_host": "198.51.100.102"}}
VIP = "198.51.100.10"


def role_vars(**overrides):
    out = dict(DEFAULTS, **EXAMPLE["director"]["vars"])
    out.update(overrides)
    return copy.deepcopy(out)


def plan(hostvars=None, groups=None, **overrides):
    return director_plan(role_vars(**overrides), GROUPS if groups is None else groups,
                         copy.deepcopy(HOSTVARS if hostvars is None else hostvars))


def rs(address, weight, port=80):
    return {"address": address, "port": port, "weight": weight, "forwarding": "masq"}


def svc(port, scheduler, real_servers):
    return {"protocol": "tcp", "address": VIP, "port": port, "scheduler": scheduler, "scheduler_flags": [],
            "persistence_timeout": 0, "one_packet": False, "real_servers": real_servers}


def role_rules(ports, network="198.51.100.64/26", iface="eth0"):
    return [{"type": "accept", "chain": "input", "destination": VIP, "protocol": "tcp", "port": p} for p in ports] + [
        {"type": "accept", "chain": "forward", "source": network},
        {"type": "accept", "chain": "forward", "destination": network},
        {"type": "masquerade", "source": network, "out_interface": iface}]


# What services.j2 and nat_rules.j2 (release 0.1.0) gave for these inventories, rendered by ansible-core 2.19.
EXAMPLE_SERVICES = [svc(80, "wrr", [rs("198.51.100.101", 3), rs("198.51.100.102", 1)]),
                    svc(8080, "rr", [rs("198.51.100.101", 3), rs("198.51.100.102", 1)])]
LAB_HOSTVARS = {"rs1": {"ansible_host": "198.51.100.194", "realserver_rip": "198.51.100.65", "realserver_weight": 3},
                "rs2": {"ansible_host": "198.51.100.195", "realserver_rip": "198.51.100.66", "realserver_weight": 1}}
LAB_SERVICES = [svc(80, "wrr", [rs("198.51.100.65", 3), rs("198.51.100.66", 1)]),
                svc(8080, "rr", [rs("198.51.100.65", 3), rs("198.51.100.66", 1)])]


def test_the_filter_is_registered():
    assert FilterModule().filters() == {"director_plan": director_plan, "director_differences": director_differences,
                                        "realserver_problems": realserver_problems}


def test_example_inventory_gives_what_the_templates_gave():
    out = plan()
    assert out["errors"] == []
    assert out["services"] == EXAMPLE_SERVICES
    assert out["nat_rules"] == role_rules([80, 8080])
    assert out["timeouts"] == {"tcp": 900, "tcp_fin": 120, "udp": 300}
    assert out["sysctl"] == DEFAULTS["director_sysctl"]


def test_lab_inventory_gives_what_the_templates_gave():
    out = plan(hostvars=LAB_HOSTVARS, groups={"realservers": ["rs1", "rs2"]},
               director_timeouts={"tcp": 600, "tcp_fin": 60, "udp": 120})
    assert out["errors"] == []
    assert out["services"] == LAB_SERVICES
    assert out["nat_rules"] == role_rules([80, 8080])


def test_the_services_are_what_ipvs_table_takes_in_one_run():
    """The role passes the plan's services to lvs.nat.ipvs_table as they are: its argument spec accepts them all."""
    out = plan(director_services=[{"fwmark": 7, "scheduler": "sh", "persistence_timeout": 300}, {"protocol": "udp", "port": 53},
                                  {"port": 80, "scheduler": "wrr"}])
    assert out["errors"] == [] and len(out["services"]) == 3
    params = dict(services=out["services"], owned=dict(addresses=[VIP]), purge_real_servers=True)
    result = ArgumentSpecValidator(IPVS_TABLE_SPEC, **IPVS_TABLE_RELATIONS).validate(params)
    assert result.error_messages == []
    assert precheck_table(result.validated_parameters["services"])[0].key["fwmark"] == 7


def test_role_defaults_fwmark_listed_real_servers_and_extra_rules():
    extra = [{"type": "mark", "destination": VIP, "protocol": "tcp", "port": 443, "mark": 7}]
    out = plan(director_private_network="", director_timeouts={}, director_nat_rules=extra, director_services=[
        {"fwmark": 7, "scheduler": "sh", "scheduler_flags": ["sh-port"], "persistence_timeout": 300,
         "persistence_prefix": 24, "real_servers": [{"address": "198.51.100.70", "weight": 2}]},
        {"protocol": "udp", "port": 53, "one_packet": "yes", "real_server_port": "5353"},
        {"protocol": "sctp", "port": 9}])
    assert out["errors"] == []
    assert out["services"][0] == {"fwmark": 7, "scheduler": "sh", "scheduler_flags": ["sh-port"],
                                  "persistence_timeout": 300, "persistence_prefix": 24, "one_packet": False,
                                  "real_servers": [rs("198.51.100.70", 2, port=0)]}
    assert out["services"][1]["one_packet"] is True and out["services"][1]["scheduler"] == "wlc"
    assert out["services"][1]["real_servers"] == [rs("198.51.100.101", 3, 5353), rs("198.51.100.102", 1, 5353)]
    # nat_rules matches TCP and UDP only: no accept for the fwmark or the sctp service; no network, no forward rules.
    assert out["nat_rules"] == [{"type": "accept", "chain": "input", "destination": VIP, "protocol": "udp",
                                 "port": 53}] + extra
    assert out["timeouts"] == {}


# ---------------------------------------------------------------- injection (issue 12, item 2)

def test_injected_real_server_through_a_host_variable_is_refused_not_added():
    hostvars = dict(HOSTVARS, web2=dict(HOSTVARS["web2"], realserver_rip='198.51.100.102"\n    - address: "198.51.100.166'))
    out = plan(hostvars=hostvars)
    assert any(e.startswith("host web2 realserver_rip: ") for e in out["errors"]), out["errors"]
    addresses = [r["address"] for s in out["services"] for r in s["real_servers"]]
    assert "198.51.100.166" not in addresses and len(addresses) <= 4


def test_injected_rule_through_the_outbound_interface_is_refused_not_added():
    out = plan(director_outbound_interface='eth0"}\n- {type: accept, chain: input, source: "0.0.0.0/0')
    assert [e for e in out["errors"] if e.startswith("director_outbound_interface: ")], out["errors"]
    assert len(out["nat_rules"]) == 5 and not [r for r in out["nat_rules"] if r.get("source") == "0.0.0.0/0"]


# ---------------------------------------------------------------- bad declarations (issue 12, item 11)

def with_host(name, **hv):
    return dict(HOSTVARS, **{name: dict(HOSTVARS[name], **hv)})


TCP80 = {"protocol": "tcp", "port": 80}
BAD = [
    ("unknown scheduler", {"director_services": [dict(TCP80, scheduler="fastest")]},
     "director_services[0].scheduler: value of scheduler must be one of"),
    ("service declared twice", {"director_services": [dict(TCP80, scheduler="wrr"), dict(TCP80, scheduler="rr")]},
     "director_services[1]: the service is declared twice (also director_services[0])"),
    ("VIP not an address", {"director_vip": "999.1.1.1"}, "director_vip: address='999.1.1.1' is not an IPv4"),
    ("VIP empty", {"director_vip": ""}, "director_vip: "),
    ("VIP with a newline", {"director_vip": VIP + "\n"}, "director_vip: "),
    ("IPv6 VIP while nat_rules is IPv4", {"director_vip": "2001:db8::10"}, "IPv6; nat_rules manages IPv4 rules"),
    ("VIP multicast", {"director_vip": "224.0.0.1"}, "director_vip: address=224.0.0.1 cannot be a virtual service"),
    ("weight not a number", {"hostvars": with_host("web1", realserver_weight="heavy")},
     "host web1 realserver_weight: "),
    ("weight out of range", {"hostvars": with_host("web1", realserver_weight=70000)},
     "host web1 realserver_weight: weight=70000 is out of range"),
    ("listed weight negative", {"director_services": [dict(TCP80, real_servers=[{"address": "198.51.100.70", "weight": -1}])]},
     "director_services[0].real_servers[0].weight: "),
    ("port out of range", {"director_services": [{"protocol": "tcp", "port": 70000}]},
     "director_services[0]: port=70000 is out of range"),
    ("port not a number", {"director_services": [{"protocol": "tcp", "port": "http"}]}, "director_services[0].port: "),
    ("flags without their scheduler", {"director_services": [dict(TCP80, scheduler="rr", scheduler_flags=["sh-port"])]},
     "director_services[0]: scheduler_flags=sh-port do not fit scheduler=rr"),
    ("unknown flag", {"director_services": [dict(TCP80, scheduler="sh", scheduler_flags=["sh-port\n"])]},
     "director_services[0].scheduler_flags: "),
    ("prefix without persistence", {"director_services": [dict(TCP80, persistence_prefix=24)]},
     "director_services[0]: persistence_prefix=24 needs persistence_timeout"),
    ("persistence beyond 31 days", {"director_services": [dict(TCP80, persistence_timeout=2678401)]},
     "director_services[0]: persistence_timeout=2678401 is out of range"),
    ("one_packet on TCP", {"director_services": [dict(TCP80, one_packet=True)]},
     "director_services[0]: one_packet=true is for UDP services"),
    ("protocol unknown", {"director_services": [{"protocol": "icmp", "port": 80}]}, "director_services[0].protocol: "),
    ("fwmark and port", {"director_services": [{"fwmark": 1, "port": 80}]},
     "director_services[0]: parameters are mutually exclusive: fwmark|port"),
    ("neither port nor fwmark", {"director_services": [{"protocol": "tcp"}]},
     "director_services[0]: every service needs a port or a fwmark"),
    ("misspelt key", {"director_services": [dict(TCP80, schedular="rr")]}, "director_services[0]: unknown key(s) 'schedular'"),
    ("no services", {"director_services": []}, "director_services must be a list of at least one service"),
    ("real_server_port out of range", {"director_services": [dict(TCP80, real_server_port=70000)]},
     "director_services[0].real_server_port: "),
    ("duplicate listed real server", {"director_services": [dict(TCP80, real_servers=[
        {"address": "198.51.100.70"}, {"address": "198.51.100.70"}])]},
     "director_services[0]: real_servers[1]: 198.51.100.70:80 is listed twice (director_services[0].real_servers[1])"),
    ("two hosts with one address", {"hostvars": with_host("web2", ansible_host="198.51.100.101")},
     "is listed twice (host web2)"),
    ("real server 0.0.0.0", {"director_services": [dict(TCP80, real_servers=[{"address": "0.0.0.0"}])]},
     "director_services[0].real_servers[0].address: address=0.0.0.0 cannot be a real server address"),
    ("multicast real server", {"hostvars": with_host("web1", realserver_rip="224.0.0.5")},
     "host web1 realserver_rip: address=224.0.0.5 cannot be a real server address"),
    ("IPv6 real server behind an IPv4 VIP", {"hostvars": with_host("web1", realserver_rip="2001:db8::5")},
     "host web1 realserver_rip: address=2001:db8::5 is ipv6 but the service"),
    ("real server from ansible_host", {"hostvars": with_host("web2", ansible_host="web-2.example")},
     "host web2 ansible_host: address='web-2.example' is not an IPv4 or IPv6 address"),
    ("no real servers", {"groups": {"realservers": []}},
     "director_services[0]: no real servers: it lists none and the inventory group 'realservers' has no hosts"),
    ("private network with host bits", {"director_private_network": "198.51.100.65/26"},
     "director_private_network: source='198.51.100.65/26' has host bits set"),
    ("private network with a newline", {"director_private_network": "198.51.100.64/26\n"}, "director_private_network: "),
    ("outbound interface with a newline", {"director_outbound_interface": "eth0\n"}, "director_outbound_interface: "),
    ("sysctl key outside net", {"director_sysctl": {"kernel.panic": 1}}, "director_sysctl['kernel.panic']: "),
    ("sysctl forwarding key", {"director_sysctl": {"net.ipv4.ip_forward": 1}}, "director_sysctl['net.ipv4.ip_forward']: "),
    ("sysctl key with a newline", {"director_sysctl": {"net.ipv4.ip_forward\n": 1}}, "director_sysctl['net.ipv4.ip_forward\\n']: "),
    ("sysctl value with a newline", {"director_sysctl": {"net.ipv4.tcp_tw_reuse": "1\nnet.ipv4.ip_forward = 0"}},
     "director_sysctl['net.ipv4.tcp_tw_reuse']: "),
    ("timeout zero", {"director_timeouts": {"tcp": 0}}, "director_timeouts.tcp: tcp=0 is out of range"),
    ("timeout too long", {"director_timeouts": {"udp": 2147484}}, "director_timeouts.udp: udp=2147484 is out of range"),
    ("timeout misspelt", {"director_timeouts": {"tcpfin": 60}}, "director_timeouts: unknown option(s) 'tcpfin'"),
    ("extra rule incomplete", {"director_nat_rules": [{"type": "snat"}]}, "director_nat_rules[0].to_source is required"),
    ("extra rule interface with a newline", {"director_nat_rules": [{"type": "masquerade", "out_interface": "eth0\n"}]},
     "director_nat_rules[0].out_interface="),
    # nft refused a rate of 0 on the director, after sysctl_forwarding had changed it.
    ("extra rule rate zero", {"director_nat_rules": [{"type": "rate_limit", "destination": "198.51.100.10",
                                                      "rate": "0/second"}]},
     "director_nat_rules[0].rate=0/second is out of range"),
    ("netfilter backend unknown", {"director_nat_backend": "pf"}, "director_nat_backend must be one of"),
    ("purge not a boolean", {"director_purge_real_servers": "sometimes"}, "director_purge_real_servers"),
    ("pyroute2 with pip options", {"director_pyroute2": "pyroute2==0.9.7 --index-url=http://x"}, "director_pyroute2 must be"),
    ("wheel name with a quote", {"director_pyroute2_wheel": "files/pyroute2-0.9.7'.whl"}, "director_pyroute2_wheel must be"),
    # Values the role's checks let through and a task refused later, after other tasks changed the host: the
    # preflight now runs the module's own check (timeouts), or a full match of what pip takes (a wheel's name).
    ("timeout a boolean", {"director_timeouts": {"tcp": True}}, "director_timeouts.tcp: tcp=True is not an integer"),
    ("wheel name pip refuses", {"director_pyroute2_wheel": "files/pyroute2-0.9.7.whl"}, "director_pyroute2_wheel must be"),
]


@pytest.mark.parametrize(("bad", "message"), [pytest.param(b, m, id=i) for i, b, m in BAD])
def test_bad_declaration_is_refused_naming_the_variable(bad, message):
    bad = dict(bad)
    out = plan(hostvars=bad.pop("hostvars", None), groups=bad.pop("groups", None), **bad)
    assert [e for e in out["errors"] if message in e], out["errors"]


def test_every_error_is_reported_at_once():
    out = plan(director_vip="999.1.1.1", director_timeouts={"tcp": 0}, director_sysctl={"kernel.panic": 1},
               hostvars=with_host("web1", realserver_weight="heavy"))
    assert [e.split(":")[0] for e in out["errors"]] == [
        "host web1 realserver_weight", "director_vip", "director_sysctl['kernel.panic']", "director_timeouts.tcp"]


# ---------------------------------------------------------------- any text: refused, or exactly that value

TEXT = st.text(max_size=200) | st.text(alphabet="0123456789abcdef.:/%\n\"'{}#;- ", max_size=40) | \
    st.sampled_from(["198.51.100.70", "198.51.100.70\n", "eth1", "10.0.0.0/8", "rr", "tcp", "1", "٣"]) | \
    st.text(min_size=1, max_size=5).map(lambda s: (s * 10000)[:10000])


def found(out, prefix):
    return [e for e in out["errors"] if e.startswith(prefix)]


@given(TEXT)
def test_any_vip_is_refused_or_used_as_given(value):
    out = plan(director_vip=value)
    assert found(out, "director_vip") or (
        [s["address"] for s in out["services"]] == [value, value] and out["nat_rules"][0]["destination"] == value)


@given(TEXT)
def test_any_real_server_address_is_refused_or_used_as_given(value):
    out = plan(hostvars=with_host("web2", realserver_rip=value))
    if found(out, "host web2 realserver_rip: "):
        assert all(len(s["real_servers"]) == 1 for s in out["services"])
    else:
        assert out["errors"] == [] and [s["real_servers"][1]["address"] for s in out["services"]] == [value, value]


@given(TEXT)
def test_any_outbound_interface_is_refused_or_used_as_given(value):
    out = plan(director_outbound_interface=value)
    if not found(out, "director_outbound_interface: "):
        assert out["errors"] == []
        assert out["nat_rules"][2:] == role_rules([], iface=value)[:2] + ([role_rules([], iface=value)[2]] if value else [])


@given(TEXT)
def test_any_private_network_is_refused_or_used_as_given(value):
    out = plan(director_private_network=value)
    if not found(out, "director_private_network: "):
        assert out["errors"] == [] and (out["nat_rules"][2:] == role_rules([], network=value) if value else
                                        len(out["nat_rules"]) == 2)


@given(st.sampled_from(["scheduler", "protocol"]), TEXT)
def test_any_service_text_is_refused_or_used_as_given(field, value):
    out = plan(director_services=[dict(TCP80, **{field: value})])
    assert found(out, "director_services[0]") or out["services"][0][field] == value


@given(TEXT, TEXT)
def test_any_sysctl_key_or_value_is_refused_or_kept(key, value):
    out = plan(director_sysctl={key: value})
    assert found(out, "director_sysctl[") or out["sysctl"] == {key: value}


@given(st.sampled_from(["out_interface", "source", "comment"]), TEXT)
def test_any_extra_rule_text_is_refused_or_kept(field, value):
    rule = {"type": "masquerade", field: value}
    out = plan(director_nat_rules=[rule])
    assert found(out, "director_nat_rules[0]") or out["nat_rules"][-1] == rule


# ---------------------------------------------------------------- the real server role

RS_GOOD = {"realserver_gateway": "198.51.100.100", "realserver_route_mode": "default", "realserver_client_networks": [],
           "realserver_interface": "", "realserver_web": "apache", "realserver_port": 80,
           "realserver_page": "lvs.nat real server web1\n", "realserver_firewall": True}


def test_realserver_good_variables():
    assert realserver_problems(RS_GOOD) == []
    assert realserver_problems(dict(RS_GOOD, realserver_route_mode="routes", realserver_client_networks=["203.0.113.0/24"],
                                    realserver_interface="eth1", realserver_web="nginx", realserver_port="8080")) == []


@pytest.mark.parametrize(("bad", "message"), [
    ({"realserver_gateway": "198.51.100.100\n"}, "realserver_gateway: gateway='198.51.100.100\\n' is not an IP address"),
    ({"realserver_gateway": "198.51.100.256"}, "realserver_gateway: gateway="),
    ({"realserver_gateway": "0.0.0.0"}, "realserver_gateway: gateway='0.0.0.0' is not a unicast address without a scope"),
    ({"realserver_gateway": "fe80::1%eth0"}, "realserver_gateway: gateway='fe80::1%eth0' is not a unicast address without a scope"),
    ({"realserver_route_mode": "all"}, "realserver_route_mode must be default or routes"),
    ({"realserver_route_mode": "routes"}, "realserver_route_mode routes needs realserver_client_networks"),
    ({"realserver_client_networks": ["203.0.113.1/24"]}, "realserver_client_networks[0]: '203.0.113.1/24' is not a network"),
    ({"realserver_client_networks": ["203.0.113.0/24\n"]}, "realserver_client_networks[0]: "),
    ({"realserver_client_networks": ["2001:db8::/32"]}, "realserver_client_networks[0]: 2001:db8::/32 is IPv6, gateway"),
    ({"realserver_client_networks": "203.0.113.0/24"}, "realserver_client_networks must be a list"),
    ({"realserver_interface": "eth0'\nExecStartPre=/bin/touch /tmp/x\n#"}, "realserver_interface: in_interface="),
    ({"realserver_interface": "eth0; touch /tmp/y"}, "realserver_interface: "),
    ({"realserver_port": 0}, "realserver_port: port=0 is out of range"),
    ({"realserver_port": "80\nInclude /etc/passwd"}, "realserver_port: port="),
    ({"realserver_web": "lighttpd"}, "realserver_web must be apache, nginx or none"),
    ({"realserver_page": ["x"]}, "realserver_page must be text"),
    ({"realserver_firewall": "maybe"}, "realserver_firewall"),
    # gateway_route takes text: an integer (which Python's ipaddress reads as an address) is refused there, late.
    ({"realserver_gateway": 3325256804}, "realserver_gateway: gateway=3325256804 is not an IP address"),
    ({"realserver_route_mode": "routes", "realserver_client_networks": [3405803776]},
     "realserver_client_networks[0]: 3405803776 is not a network"),
])
def test_realserver_bad_variable_is_refused_naming_it(bad, message):
    problems = realserver_problems(dict(RS_GOOD, **bad))
    assert [p for p in problems if message in p], problems


# ---------------------------------------------------------------- lvs.nat.director_differences (the verify phase)

def kernel(svc, fwmark=0, **changes):
    """A declared service as lvs.nat.ipvs_info returns it (with the fields the comparison does not read)."""
    out = dict(copy.deepcopy(svc), family="ipv4", fwmark=fwmark, persistence_prefix=32, stats={})
    if fwmark:
        out.update(protocol="tcp", address="0.0.0.0", port=0)
    for r in out["real_servers"]:
        r.update(upper_threshold=0, lower_threshold=0, active_conns=0, inactive_conns=0, persist_conns=0, stats={})
    out.update(changes)
    return out


MARKED = {"fwmark": 7, "scheduler": "rr", "scheduler_flags": [], "persistence_timeout": 0, "one_packet": False,
          "real_servers": [rs("198.51.100.101", 1, port=0)]}
DECLARED = LAB_SERVICES + [MARKED]
HELD_80 = "198.51.100.65/80/3/masq 198.51.100.66/80/1/masq"


def differences(held, declared=None, vip=VIP, purge=False):
    return director_differences(copy.deepcopy(DECLARED if declared is None else declared), held, vip, purge)


def held(**changes):
    """The kernel holding DECLARED, with changes: index -> the kernel's service (None: absent)."""
    out = [kernel(LAB_SERVICES[0]), kernel(LAB_SERVICES[1]), kernel(MARKED, fwmark=7)]
    for i, svc in changes.items():
        out[int(i[1:])] = svc
    return [s for s in out if s is not None]


def test_differences_none_when_the_kernel_holds_the_declared_services():
    assert differences(held()) == []
    assert differences(held(), purge=True) == []


def test_differences_a_missing_service():
    assert differences(held(s1=None)) == ["tcp 198.51.100.10:8080 is missing"]
    assert differences(held(s2=None)) == ["fwmark 7 is missing"]


def test_differences_a_wrong_scheduler():
    assert differences(held(s0=kernel(LAB_SERVICES[0], scheduler="rr"))) == [
        "tcp 198.51.100.10:80 holds rr %s, declared wrr %s" % (HELD_80, HELD_80)]


def test_differences_a_wrong_weight():
    wrong = kernel(LAB_SERVICES[0])
    wrong["real_servers"][1]["weight"] = 5
    assert differences(held(s0=wrong)) == ["tcp 198.51.100.10:80 holds wrr 198.51.100.65/80/3/masq "
                                           "198.51.100.66/80/5/masq, declared wrr %s" % HELD_80]


def test_differences_a_missing_real_server():
    wrong = kernel(LAB_SERVICES[0])
    del wrong["real_servers"][0]
    assert differences(held(s0=wrong), purge=True) == [
        "tcp 198.51.100.10:80 holds wrr 198.51.100.66/80/1/masq, declared wrr %s" % HELD_80]


@pytest.mark.parametrize("purge, expected", [
    (False, []),
    ("no", []),
    (True, ["tcp 198.51.100.10:80 holds wrr %s 198.51.100.67/80/1/masq, declared wrr %s" % (HELD_80, HELD_80)]),
    ("yes", ["tcp 198.51.100.10:80 holds wrr %s 198.51.100.67/80/1/masq, declared wrr %s" % (HELD_80, HELD_80)]),
])
def test_differences_an_extra_real_server_is_wrong_only_with_purge(purge, expected):
    extra = kernel(LAB_SERVICES[0])
    extra["real_servers"].append(kernel(svc(80, "wrr", [rs("198.51.100.67", 1)]))["real_servers"][0])
    assert differences(held(s0=extra), purge=purge) == expected


def test_differences_an_undeclared_service_on_the_vip():
    assert differences(held(), declared=DECLARED[:1] + DECLARED[2:]) == [
        "tcp 198.51.100.10:8080 is not declared (a service removed from director_services was not removed)"]
    udp = kernel(LAB_SERVICES[1], protocol="udp")
    assert differences(held() + [udp]) == [
        "udp 198.51.100.10:8080 is not declared (a service removed from director_services was not removed)"]


def test_differences_ignore_another_tools_service_elsewhere_and_an_undeclared_mark():
    other = kernel(svc(80, "sh", [rs("192.0.2.5", 1)]), address="198.51.100.11")
    other_mark = kernel(MARKED, fwmark=8, scheduler="sh")
    assert differences(held() + [other, other_mark]) == []
    assert differences(held() + [other, other_mark], purge=True) == []


@pytest.mark.parametrize("vip, declared_rs", [("2001:DB8::10", "2001:DB8:0::65"), ("2001:db8:0:0::010", "2001:db8::65")])
def test_differences_an_ipv6_vip_written_otherwise_matches_the_kernels(vip, declared_rs):
    declared = [dict(svc(80, "wrr", [rs(declared_rs, 3)]), address=vip)]
    held_svc = kernel(dict(svc(80, "wrr", [rs("2001:db8::65", 3)]), address="2001:db8::10"), family="ipv6")
    assert differences([held_svc], declared=declared, vip=vip) == []
    stray = kernel(dict(svc(8080, "rr", [rs("2001:db8::65", 3)]), address="2001:db8::10"), family="ipv6")
    assert differences([held_svc, stray], declared=declared, vip=vip) == [
        "tcp 2001:db8::10:8080 is not declared (a service removed from director_services was not removed)"]


def test_differences_read_ipvs_saves_services_as_well():
    """The verify phase passes what lvs.nat.ipvs_save returns (config_view: no counters, fwmark services without
    protocol, address and port); the comparison reads them as it reads ipvs_info's."""
    saved = []
    for svc in held():
        view = config_view(dict(svc, protocol=None, address=None, port=None) if svc["fwmark"] else svc)
        assert "stats" not in view and all("active_conns" not in r for r in view["real_servers"])
        saved.append(view)
    assert differences(saved) == []
    saved[0]["real_servers"][1]["weight"] = 5
    assert differences(saved) == ["tcp 198.51.100.10:80 holds wrr 198.51.100.65/80/3/masq 198.51.100.66/80/5/masq, "
                                  "declared wrr %s" % HELD_80]


# -- health checks: a service with check goes to lvs-nat-healthd (checked), the others to ipvs_table (table)

def test_a_checked_service_goes_to_the_health_service_and_is_skipped_by_the_table():
    check = {"type": "http", "interval": 1, "timeout": 1, "rise": 2, "fall": 2}
    out = plan(director_services=[{"protocol": "tcp", "port": 80, "scheduler": "wrr", "check": check,
                                   "sorry_server": "198.51.100.200:8080"},
                                  {"protocol": "tcp", "port": 8080, "scheduler": "rr"}])
    assert out["errors"] == []
    assert [s["port"] for s in out["table"]] == [8080] and [s["port"] for s in out["checked"]] == [80]
    assert out["checked"][0]["check"] == check and out["checked"][0]["sorry_server"] == "198.51.100.200:8080"
    assert out["skip"] == [{"protocol": "tcp", "address": VIP, "port": 80}]
    assert [s["port"] for s in out["services"]] == [80, 8080]  # both get the role's accept rule
    # The verify compares the table's services only: the checked one on the VIP is not "undeclared".
    kernel = [dict(s, family="ipv4", fwmark=0, scheduler_flags=[], real_servers=[
        dict(r, forwarding="masq") for r in s["real_servers"]]) for s in out["services"]]
    assert director_differences(out["table"], kernel, VIP, True, out["skip"]) == []
    assert director_differences(out["table"], kernel, VIP, True) == [
        "tcp 198.51.100.10:80 is not declared (a service removed from director_services was not removed)"]


@pytest.mark.parametrize("fields, message", [
    ({"check": {"type": "http", "interval": 1, "timeout": 3}},
     "director_services[0].check.timeout=3 exceeds director_services[0].check.interval=1"),
    ({"check": {"type": "tcp"}, "sorry_server": "nope"}, "director_services[0].sorry_server='nope' is not an address"),
    ({"sorry_server": "198.51.100.200"}, "director_services[0]: sorry_server need(s) check"),
    # ipvs_health takes the sorry server as text (ADDRESS:PORT): a mapping became its repr there, refused late.
    ({"check": {"type": "tcp"}, "sorry_server": {"address": "198.51.100.200", "port": 80}},
     "director_services[0].sorry_server={'address': '198.51.100.200', 'port': 80} is not an address"),
])
def test_bad_health_declarations_name_the_field(fields, message):
    errors = plan(director_services=[dict({"protocol": "tcp", "port": 80}, **fields)])["errors"]
    assert [e for e in errors if e.startswith(message)], errors
