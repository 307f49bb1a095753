# SPDX-License-Identifier: GPL-3.0-or-later
"""lvs.nat.director_plan with director_ha (two directors, keepalived moving the VIP and the DIP, IPVS sync): the lab's
pair gives the tasks' arguments (golden data), and every refusal of the design names its variable. Without director_ha
the plan is the one-director plan (test_director.py, unchanged) with an empty ha."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.filter.director import director_plan
from ansible_collections.lvs.nat.plugins.module_utils import _netfilter

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "director" / "defaults" / "main.yml").read_text())
VIP, DIP = "198.51.100.10", "198.51.100.100"
# The lab's pair (issue 16's design): eth1 public, eth2 private; the fixed addresses; VRIDs 51 and 52.
DIRECTORS = {
    "director1": {"director_public_interface": "eth1", "director_private_interface": "eth2",
                  "director_public_address": "198.51.100.11/26", "director_private_address": "198.51.100.98/26"},
    "director2": {"director_public_interface": "eth1", "director_private_interface": "eth2",
                  "director_public_address": "198.51.100.12/26", "director_private_address": "198.51.100.99/26"},
}
REALSERVERS = {"rs1": {"ansible_host": "198.51.100.194", "realserver_rip": "198.51.100.65", "realserver_weight": 3,
                       "realserver_gateway": DIP},
               "rs2": {"ansible_host": "198.51.100.195", "realserver_rip": "198.51.100.66", "realserver_weight": 1,
                       "realserver_gateway": DIP}}
GROUPS = {"director": ["director1", "director2"], "realservers": ["rs1", "rs2"]}
HA = {"vrid": 51}


def role_vars(**overrides):
    out = dict(DEFAULTS, director_vip=VIP, director_dip=DIP, director_ha=HA, director_group="director",
               inventory_hostname="director1", director_private_network="198.51.100.64/26",
               director_outbound_interface="eth0",
               director_services=[{"protocol": "tcp", "port": 80, "scheduler": "wrr"},
                                  {"protocol": "tcp", "port": 8080, "scheduler": "rr", "real_server_port": 80}])
    out.update(overrides)
    return copy.deepcopy(out)


def hostvars(**hosts):
    """The lab's host variables, a host's updated by hosts[name] (a value None removes the variable)."""
    out = copy.deepcopy(dict(DIRECTORS, **REALSERVERS))
    for host, changes in hosts.items():
        out.setdefault(host, {}).update(changes)
        out[host] = dict((k, v) for k, v in out[host].items() if v is not None)
    return out


def plan(groups=None, hosts=None, **overrides):
    return director_plan(role_vars(**overrides), GROUPS if groups is None else groups, hostvars(**(hosts or {})))


def instance(name, iface, vrid, address, source, peer, track):
    return {"name": name, "interface": iface, "vrid": vrid, "address": address, "source": source, "peers": [peer],
            "track_interfaces": [track]}


VRRP_RULES = [{"type": "accept", "chain": "input", "in_interface": "eth1", "protocol": "vrrp"},
              {"type": "accept", "chain": "input", "in_interface": "eth2", "protocol": "vrrp"},
              {"type": "accept", "chain": "input", "in_interface": "eth2", "protocol": "udp", "port": 8848}]


def test_the_lab_pair_director1():
    out = plan()
    assert out["errors"] == []
    assert out["ha"] == {
        "directors": ["director1", "director2"],
        "floating": [VIP, DIP],
        "keepalived": {"router_id": "director1", "priority": 100, "advert_int": 1, "preempt": False, "startup_delay": 5,
                       "instances": [instance("public", "eth1", 51, "198.51.100.10/26", "198.51.100.11", "198.51.100.12", "eth2"),
                                     instance("private", "eth2", 52, "198.51.100.100/26", "198.51.100.98", "198.51.100.99",
                                              "eth1")]},
        "sync_daemons": [{"mode": "master", "interface": "eth2", "sync_id": 51, "port": 8848},
                         {"mode": "backup", "interface": "eth2", "sync_id": 51, "port": 8848}],
        "nat_rules": VRRP_RULES,
        # startup_delay + 4 advert_int + 5 s
        "wait": 14,
    }
    # The role's rules as with one director, then VRRP and the sync port accepted, then director_nat_rules.
    assert out["nat_rules"][:5] == plan(director_ha={})["nat_rules"] and out["nat_rules"][5:] == VRRP_RULES
    # Every rule is one nat_rules takes.
    assert len(_netfilter.normalise_rules(out["nat_rules"])) == 8


def test_the_lab_pair_director2_with_its_own_priority_and_every_setting():
    ha = {"vrid": 10, "private_vrid": 20, "advert_int": 0.5, "preempt": True, "preempt_delay": 30,
          "startup_delay": 0, "sync_id": 7, "sync_port": "9000"}
    out = plan(inventory_hostname="director2", director_ha=ha, hosts={"director2": {"director_ha_priority": 150}})
    assert out["errors"] == []
    keepalived = out["ha"]["keepalived"]
    assert keepalived == {"router_id": "director2", "priority": 150, "advert_int": 0.5, "preempt": True,
                          "preempt_delay": 30, "startup_delay": 0, "instances": [
                              instance("public", "eth1", 10, "198.51.100.10/26", "198.51.100.12", "198.51.100.11", "eth2"),
                              instance("private", "eth2", 20, "198.51.100.100/26", "198.51.100.99", "198.51.100.98", "eth1")]}
    assert out["ha"]["sync_daemons"][0] == {"mode": "master", "interface": "eth2", "sync_id": 7, "port": 9000}
    assert out["ha"]["nat_rules"][2]["port"] == 9000
    assert out["ha"]["wait"] == 7  # 0 + 4 * 0.5 + 5


def test_three_directors_peer_with_both_others():
    three = dict(GROUPS, director=["director1", "director2", "director3"])
    d3 = {"director_public_interface": "ens4", "director_private_interface": "ens5",
          "director_public_address": "198.51.100.13/26", "director_private_address": "198.51.100.97/26"}
    out = plan(groups=three, hosts={"director3": d3})
    assert out["errors"] == []
    peers = [i["peers"] for i in out["ha"]["keepalived"]["instances"]]
    assert peers == [["198.51.100.12", "198.51.100.13"], ["198.51.100.99", "198.51.100.97"]]


@pytest.mark.parametrize("ha", [{}, None])
def test_without_director_ha_nothing_changes(ha):
    out = plan(director_ha=ha, director_dip="", groups={"director": ["director1"], "realservers": ["rs1", "rs2"]},
               hosts={"rs1": {"realserver_gateway": "198.51.100.1"}})
    assert out["errors"] == [] and out["ha"] == {}
    assert not any(r.get("protocol") == "vrrp" for r in out["nat_rules"])


def test_a_non_ascii_or_odd_host_name_gives_a_router_id_keepalived_takes():
    groups = dict(GROUPS, director=["director1", "dïrector 2"])
    out = director_plan(role_vars(inventory_hostname="dïrector 2"), groups,
                        dict(hostvars(), **{"dïrector 2": DIRECTORS["director2"]}))
    assert out["errors"] == [] and out["ha"]["keepalived"]["router_id"] == "d_rector_2"


D1 = "director1"
D2 = "director2"
# (what is changed, the message naming the variable): role variables by name, host variables under "hosts".
REFUSED = [
    # The issue's list: the real servers' gateway, the networks, a VRID twice, a floating address fixed, one director.
    (dict(hosts={"rs2": {"realserver_gateway": "198.51.100.98"}}),
     "host rs2 realserver_gateway=198.51.100.98 is not director_dip 198.51.100.100"),
    (dict(director_vip="203.0.113.10"),
     "director_vip=203.0.113.10 is outside host director1's director_public_address network 198.51.100.0/26"),
    (dict(hosts={D2: {"director_public_address": "203.0.113.12/26"}}),
     "director_vip=198.51.100.10 is outside host director2's director_public_address network 203.0.113.0/26"),
    (dict(director_dip="198.51.100.130", hosts={"rs1": {"realserver_gateway": "198.51.100.130"},
                                                "rs2": {"realserver_gateway": "198.51.100.130"}}),
     "director_dip=198.51.100.130 is outside host director1's director_private_address network 198.51.100.64/26"),
    (dict(director_ha={"vrid": 51, "private_vrid": 51}), "director_ha.private_vrid=51 is director_ha.vrid too"),
    (dict(director_ha={"vrid": 255}), "director_ha.private_vrid (director_ha.vrid + 1, its default)=256 is out of range"),
    (dict(hosts={D1: {"director_public_address": "198.51.100.10/26"}}),
     "director_vip=198.51.100.10 is host director1's fixed address (director_public_address)"),
    (dict(director_dip="198.51.100.99", hosts={"rs1": {"realserver_gateway": "198.51.100.99"},
                                               "rs2": {"realserver_gateway": "198.51.100.99"}}),
     "director_dip=198.51.100.99 is host director2's fixed address (director_private_address)"),
    (dict(groups={"director": [D1], "realservers": ["rs1", "rs2"]}),
     "director_ha needs at least two directors: the group 'director' (director_group) has 1"),
    (dict(director_group="lb"), "director_ha needs at least two directors: the group 'lb' (director_group) has 0"),
    # The item 9: advert_int 0, vrid 256.
    (dict(director_ha={"vrid": 51, "advert_int": 0}),
     "director_ha.advert_int=0 is out of range: it must be above 0 and at most 255"),
    (dict(director_ha={"vrid": 256}), "director_ha.vrid=256 is out of range: it must be between 1 and 255"),
    (dict(director_ha={"vrid": 0}), "director_ha.vrid=0 is out of range"),
    (dict(director_ha={"vrid": 51, "private_vrid": 256}), "director_ha.private_vrid=256 is out of range"),
    # Missing or bad host variables, the other keys, the floating addresses.
    (dict(hosts={D2: {"director_private_address": None}}),
     "host director2 director_private_address is required with director_ha"),
    (dict(hosts={D2: {"director_public_interface": ""}}),
     "host director2 director_public_interface is required with director_ha"),
    (dict(hosts={D1: {"director_public_interface": "eth1\nvrrp_script x {"}}),
     "host director1 director_public_interface='eth1\\nvrrp_script x {' is not an interface name"),
    (dict(hosts={D1: {"director_private_interface": "eth1"}}),
     "host director1 director_private_interface=eth1 is director_public_interface too"),
    (dict(hosts={D1: {"director_public_address": "198.51.100.11"}}),
     "host director1 director_public_address='198.51.100.11' must be the director's own IPv4 address with its prefix"),
    (dict(hosts={D1: {"director_public_address": "198.51.100.11/26\n}"}}),
     "host director1 director_public_address='198.51.100.11/26\\n}' must be"),
    (dict(hosts={D1: {"director_public_address": "198.51.100.311/26"}}),
     "host director1 director_public_address='198.51.100.311/26' is not an IPv4 address with a prefix"),
    (dict(hosts={D2: {"director_public_address": "198.51.100.11/26"}}),
     "host director2 director_public_address=198.51.100.11 is also host director1's director_public_address"),
    (dict(hosts={D2: {"director_ha_priority": 255}}), "host director2 director_ha_priority=255 is out of range"),
    (dict(hosts={D2: {"director_ha_priority": True}}), "host director2 director_ha_priority=True is not a whole number"),
    (dict(director_ha={"vrid": 51, "advert_int": 256}), "director_ha.advert_int=256 is out of range"),
    (dict(director_ha={"vrid": 51, "advert_int": "1s"}), "director_ha.advert_int='1s' is not a number"),
    (dict(director_ha={"vrid": 51, "startup_delay": -1}), "director_ha.startup_delay=-1 is out of range"),
    # Values the preflight's ranges allow and keepalived_vrrp refuses: the preflight runs the module's own check on
    # the arguments the task will get, so that they stop the play before any host changes.
    (dict(director_ha={"vrid": 51, "advert_int": 50.5}),
     "director_ha.advert_int=50.5 must be a whole number of seconds above 40.95"),
    (dict(director_ha={"vrid": 51, "advert_int": "1.005"}), "director_ha.advert_int=1.005 must be a multiple of 0.01 s"),
    (dict(director_ha={"vrid": 51, "startup_delay": 1.0005}),
     "director_ha.startup_delay=1.0005 must be a multiple of 0.001 s"),
    (dict(director_ha={"vrid": 51, "preempt_delay": 10}), "director_ha.preempt_delay=10 needs director_ha.preempt true"),
    (dict(director_ha={"vrid": 51, "preempt": "sometimes"}), "director_ha.preempt: "),
    (dict(director_ha={"vrid": 51, "sync_id": 256}), "director_ha.sync_id=256 is out of range"),
    (dict(director_ha={"vrid": 51, "sync_port": 0}), "director_ha.sync_port=0 is out of range"),
    (dict(director_ha={"vrid": "٥١"}), "director_ha.vrid='٥١' is not a whole number (ASCII digits)"),
    (dict(director_ha={"vrid": 51, "vrids": 52}), "director_ha: unknown key(s) 'vrids'"),
    (dict(director_ha={"advert_int": 1}), "director_ha.vrid is required"),
    (dict(director_ha="yes"), "director_ha must be a mapping (empty for one director), not 'yes'"),
    (dict(director_dip=""), "director_dip='' must be an IPv4 address with director_ha"),
    (dict(director_dip="198.51.100.100\n"), "director_dip='198.51.100.100\\n' must be an IPv4 address"),
    (dict(director_dip=VIP), "director_dip=198.51.100.10 is director_vip too"),
    (dict(director_vip="2001:db8::10"), "director_vip='2001:db8::10' must be an IPv4 address with director_ha"),
    (dict(inventory_hostname="rs1"), "director_ha: host 'rs1' is not in the group 'director' (director_group)"),
]


@pytest.mark.parametrize("bad, message", REFUSED, ids=[m[:60] for _b, m in REFUSED])
def test_each_refusal_names_the_variable(bad, message):
    bad = dict(bad)
    groups, hosts = bad.pop("groups", None), bad.pop("hosts", None)
    out = plan(groups=groups, hosts=hosts, **bad)
    assert [e for e in out["errors"] if e.startswith(message)], out["errors"]
    assert out["ha"] == {}


def test_every_ha_error_at_once():
    out = plan(director_ha={"vrid": 256, "advert_int": 0}, groups={"director": [D1], "realservers": ["rs1"]},
               hosts={"rs1": {"realserver_gateway": "198.51.100.1"}, D1: {"director_public_address": "198.51.100.10/26"}})
    assert [e.split("=")[0].split(" is ")[0] for e in out["errors"]] == [
        "director_ha.vrid", "director_ha.advert_int", "director_ha needs at least two directors: the group 'director' (director_group) has 1",
        "director_vip", "host rs1 realserver_gateway"]


def test_a_host_variable_that_cannot_be_templated_is_refused():
    class Broken(dict):
        def __contains__(self, name):
            raise ValueError("'undefined_thing' is undefined")

    hv = hostvars()
    hv[D2] = Broken(hv[D2])
    out = director_plan(role_vars(), GROUPS, hv)
    assert "host director2: its variables cannot be read: 'undefined_thing' is undefined" in out["errors"]


@given(value=st.one_of(st.text(max_size=40), st.text(max_size=10000), st.integers(), st.floats(), st.booleans()))
def test_any_host_address_is_refused_naming_it_or_used_as_given(value):
    """A fixed address reaches keepalived.conf (unicast_src_ip, unicast_peer): refused, or exactly the given
    address in the instance."""
    out = plan(inventory_hostname=D2, hosts={D1: {"director_public_address": value}})
    if out["ha"]:
        assert re.fullmatch(r"[0-9.]+/[0-9]+", value, re.ASCII)
        assert out["ha"]["keepalived"]["instances"][0]["peers"] == [value.split("/")[0]]
    else:
        assert any(e.startswith(("host director1 director_public_address", "director_vip=")) for e in out["errors"])


@given(value=st.one_of(st.text(max_size=40), st.text(max_size=10000), st.integers(), st.booleans()))
def test_any_interface_is_refused_naming_it_or_used_as_given(value):
    out = plan(hosts={D1: {"director_private_interface": value}})
    if out["ha"]:
        assert out["ha"]["keepalived"]["instances"][1]["interface"] == value
        assert out["ha"]["sync_daemons"][0]["interface"] == value
    else:
        assert any(e.startswith("host director1 director_private_interface") for e in out["errors"]), out["errors"]


def test_the_commented_ha_example_of_the_example_inventory_is_valid():
    text = (ROOT / "playbooks" / "inventory.example.yml").read_text()
    block = text.split("(realserver_gateway stays the DIP, 198.51.100.100):\n", 1)[1]
    director = yaml.safe_load("\n".join(line[4:] for line in block.splitlines()))["director"]
    example = yaml.safe_load(text)["all"]["children"]["realservers"]
    hv = dict((h, dict(v, **director["vars"])) for h, v in director["hosts"].items())
    hv.update((h, dict(v, **example["vars"])) for h, v in example["hosts"].items())
    groups = {"director": list(director["hosts"]), "realservers": list(example["hosts"])}
    out = director_plan(dict(DEFAULTS, **director["vars"], director_group="director", inventory_hostname="lvs2"),
                        groups, hv)
    assert out["errors"] == []
    assert [i["peers"] for i in out["ha"]["keepalived"]["instances"]] == [["198.51.100.11"], ["198.51.100.98"]]
