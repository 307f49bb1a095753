# SPDX-License-Identifier: GPL-3.0-or-later
"""_keepalived: the lab's keepalived.conf as golden text, each option's refusal naming it, and a property: any string
given for a string option is refused naming the option, or reaches the rendered configuration as exactly one token in
its place (parsed back with keepalived's own rules: blocks in braces, '#' and '!' comments, whitespace-separated
words). keepalived 2.2.7 itself (`keepalived -t`) accepted the golden text and refused what the validator refuses here;
the module runs it before every write."""
from __future__ import annotations

import copy
import ipaddress
import json
import re

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.module_utils import _keepalived as K


def lab(**over):
    """The design's lab director1: VIP on eth1, DIP on eth2, director2's fixed addresses as peers."""
    params = dict(router_id="director1", startup_delay=5, instances=[
        dict(name="public", interface="eth1", vrid=51, address="198.51.100.10/26", source="198.51.100.11",
             peers=["198.51.100.12"], track_interfaces=["eth2"]),
        dict(name="private", interface="eth2", vrid=52, address="198.51.100.100/26", source="198.51.100.98",
             peers=["198.51.100.99"], track_interfaces=["eth1"]),
    ])
    params.update(over)
    return params


GOLDEN = """\
# Managed by lvs.nat.keepalived_vrrp: edits here are overwritten.
# keepalived runs VRRP only here (started with --vrrp): lvs.nat owns the IPVS table.

global_defs {
    router_id director1
    vrrp_startup_delay 5
}

vrrp_sync_group lvs_nat {
    group {
        public
        private
    }
}

vrrp_instance public {
    state BACKUP
    interface eth1
    virtual_router_id 51
    priority 100
    advert_int 1
    nopreempt
    unicast_src_ip 198.51.100.11
    unicast_peer {
        198.51.100.12
    }
    virtual_ipaddress {
        198.51.100.10/26 dev eth1
    }
    track_interface {
        eth2
    }
}

vrrp_instance private {
    state BACKUP
    interface eth2
    virtual_router_id 52
    priority 100
    advert_int 1
    nopreempt
    unicast_src_ip 198.51.100.98
    unicast_peer {
        198.51.100.99
    }
    virtual_ipaddress {
        198.51.100.100/26 dev eth2
    }
    track_interface {
        eth1
    }
}
"""


def parse(text):
    """keepalived.conf as keepalived reads it: comments ('#' or '!' to the end of the line) dropped, each line's words
    split on whitespace, '{' opening and '}' closing a block. -> [(words, children)], children None for a plain line.
    Quotes, '$' and '@' (which keepalived would interpret) must not appear at all."""
    root = []
    stack = [root]
    for line in text.split("\n"):
        for mark in "#!":
            line = line.split(mark, 1)[0]
        words = line.split()
        assert not any(c in line for c in "\"'$@\\"), line
        if not words:
            continue
        if words == ["}"]:
            stack.pop()
            assert stack, "unbalanced }"
            continue
        assert "{" not in words[:-1] and "}" not in words, line
        if words[-1] == "{":
            node = (words[:-1], [])
            stack[-1].append(node)
            stack.append(node[1])
        else:
            stack[-1].append((words, None))
    assert len(stack) == 1, "unclosed block"
    return root


def expected_tree(cfg):
    """The tree render() must produce for check()'s result, built independently from the data."""
    glob = [(["router_id", cfg["router_id"]], None)]
    if cfg["startup_delay"]:
        glob.append((["vrrp_startup_delay", K._seconds(cfg["startup_delay"])], None))
    tree = [(["global_defs"], glob)]
    if len(cfg["instances"]) > 1:
        tree.append((["vrrp_sync_group", cfg["sync_group"]],
                     [(["group"], [([i["name"]], None) for i in cfg["instances"]])]))
    for i in cfg["instances"]:
        body = [(["state", "BACKUP"], None), (["interface", i["interface"]], None),
                (["virtual_router_id", str(i["vrid"])], None), (["priority", str(cfg["priority"])], None),
                (["advert_int", K._seconds(cfg["advert_int"])], None), (["nopreempt"], None),
                (["unicast_src_ip", i["source"]], None), (["unicast_peer"], [([p], None) for p in i["peers"]]),
                (["virtual_ipaddress"], [([i["address"], "dev", i["interface"]], None)])]
        if i["track_interfaces"]:
            body.append((["track_interface"], [([t], None) for t in i["track_interfaces"]]))
        tree.append((["vrrp_instance", i["name"]], body))
    return tree


# -- rendering

def test_the_lab_config_is_the_golden_text():
    cfg = K.check(lab())
    assert K.render(cfg) == GOLDEN
    assert parse(GOLDEN) == expected_tree(cfg)


def test_defaults_and_normalised_values():
    cfg = K.check(lab())
    assert (cfg["priority"], cfg["advert_int"], cfg["preempt"], cfg["preempt_delay"], cfg["sync_group"]) == (
        100, 1, False, 0, "lvs_nat")
    # None (what AnsibleModule gives for an option not set) is the default.
    assert K.check(lab(priority=None, advert_int=None, sync_group=None)) == cfg


def test_one_instance_has_no_sync_group():
    # keepalived 2.2.7 warns about a sync group of one instance, and `keepalived -t` fails on that warning.
    params = lab(startup_delay=0)
    params["instances"] = params["instances"][:1]
    params["instances"][0]["track_interfaces"] = []
    text = K.render(K.check(params))
    assert "vrrp_sync_group" not in text and "track_interface" not in text and "vrrp_startup_delay" not in text
    assert [words for words, _children in parse(text)] == [["global_defs"], ["vrrp_instance", "public"]]


@pytest.mark.parametrize("over, present, absent", [
    (dict(preempt=True), [], ["nopreempt", "preempt_delay"]),
    (dict(preempt=True, preempt_delay=30), ["    preempt_delay 30\n"], ["nopreempt"]),
    (dict(priority=254, advert_int=3.0), ["    priority 254\n", "    advert_int 3\n"], ["vrrp_version"]),
    # A fraction of a second needs VRRPv3 (VRRPv2 counts whole seconds: keepalived rounds, -t refuses).
    (dict(advert_int=0.5), ["    vrrp_version 3\n", "    advert_int 0.5\n"], []),
    (dict(startup_delay=2.75), ["    vrrp_startup_delay 2.75\n"], []),
    (dict(sync_group="ha-1"), ["vrrp_sync_group ha-1 {\n"], []),
])
def test_options_in_the_text(over, present, absent):
    text = K.render(K.check(lab(**over)))
    for line in present:
        assert line in text
    for word in absent:
        assert word not in text


def test_addresses_are_rendered_in_canonical_form():
    params = lab()
    params["instances"] = [dict(name="v6", interface="eth1", vrid=7, address="2001:DB8:0::10/64",
                                source="2001:db8::0011", peers=["2001:db8:0:0::12"])]
    cfg = K.check(params)
    assert cfg["instances"][0]["address"] == "2001:db8::10/64"
    assert cfg["instances"][0]["source"] == "2001:db8::11" and cfg["instances"][0]["peers"] == ["2001:db8::12"]
    assert "        2001:db8::10/64 dev eth1\n" in K.render(cfg)


# -- refusals, each naming the option

def edit(path, value):
    """A change to lab(): path as the option's path (instances[1].vrid)."""
    def apply(params):
        target, key = params, path
        parts = path.replace("]", "").replace("[", ".").split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        key = parts[-1]
        if value is DELETE:
            del target[int(key) if key.isdigit() else key]
        else:
            target[int(key) if key.isdigit() else key] = value
    return apply


DELETE = object()
TWO = lab()["instances"]


@pytest.mark.parametrize("change, option", [
    (edit("advert_int", 0), "advert_int"),
    (edit("advert_int", -1), "advert_int"),
    (edit("advert_int", 256), "advert_int"),
    (edit("advert_int", 0.005), "advert_int"),
    (edit("advert_int", 41.5), "advert_int"),
    (edit("advert_int", 1.234), "advert_int"),
    (edit("advert_int", float("nan")), "advert_int"),
    (edit("advert_int", "1"), "advert_int"),
    (edit("advert_int", True), "advert_int"),
    (edit("priority", 0), "priority"),
    (edit("priority", 255), "priority"),
    (edit("preempt_delay", 10), "preempt_delay"),  # without preempt: keepalived ignores it with nopreempt
    (edit("preempt_delay", 1001), "preempt_delay"),
    (edit("preempt", "yes"), "preempt"),
    (edit("startup_delay", 3601), "startup_delay"),
    (edit("startup_delay", -1), "startup_delay"),
    (edit("startup_delay", 0.0001), "startup_delay"),
    (edit("router_id", None), "router_id"),
    (edit("router_id", "director 1"), "router_id"),
    (edit("router_id", "d#1"), "router_id"),
    (edit("router_id", "x" * 65), "router_id"),
    (edit("sync_group", "a.b"), "sync_group"),
    (edit("sync_group", ""), "sync_group"),
    (edit("instances", []), "instances"),
    (edit("instances", TWO * 5), "instances"),
    (edit("instances", "public"), "instances"),
    (edit("instances[1]", "private"), "instances[1]"),
    (edit("instances[1].weight", 3), "instances[1].weight"),
    (edit("instances[0].vrid", 0), "instances[0].vrid"),
    (edit("instances[1].vrid", 256), "instances[1].vrid"),
    (edit("instances[1].vrid", 51), "instances[1].vrid"),
    (edit("instances[1].vrid", None), "instances[1].vrid"),
    (edit("instances[1].name", "public"), "instances[1].name"),
    (edit("instances[0].name", "pub lic"), "instances[0].name"),
    (edit("instances[0].name", "x" * 33), "instances[0].name"),
    (edit("instances[0].name", "pub\n"), "instances[0].name"),
    (edit("instances[0].name", "públic"), "instances[0].name"),
    (edit("instances[0].interface", "eth1\n"), "instances[0].interface"),
    (edit("instances[0].interface", "e" * 16), "instances[0].interface"),
    (edit("instances[0].interface", ".."), "instances[0].interface"),
    (edit("instances[0].interface", "eth@1"), "instances[0].interface"),
    (edit("instances[0].interface", "eth1:0"), "instances[0].interface"),
    (edit("instances[0].track_interfaces", ["eth1"]), "instances[0].track_interfaces[0]"),
    (edit("instances[0].track_interfaces", ["eth2", "eth2"]), "instances[0].track_interfaces[1]"),
    (edit("instances[0].track_interfaces", ["eth2", "{"]), "instances[0].track_interfaces[1]"),
    (edit("instances[0].track_interfaces", "eth2"), "instances[0].track_interfaces"),
    (edit("instances[0].address", "198.51.100.10"), "instances[0].address"),
    (edit("instances[0].address", "198.51.100.10/33"), "instances[0].address"),
    (edit("instances[0].address", "198.51.100.10/255.255.255.192"), "instances[0].address"),
    (edit("instances[0].address", "198.51.100.10/26 dev eth9"), "instances[0].address"),
    (edit("instances[1].address", "198.51.100.10/26"), "instances[1].address"),
    (edit("instances[1].address", "198.51.100.11/26"), "instances[1].address"),  # director1's fixed address
    (edit("instances[1].address", "198.51.100.12/26"), "instances[1].address"),  # director2's fixed address
    (edit("instances[0].source", "198.51.100.10"), "instances[0].source"),
    (edit("instances[0].source", "2001:db8::11"), "instances[0].source"),
    (edit("instances[0].source", "198.51.100.011"), "instances[0].source"),
    (edit("instances[0].source", None), "instances[0].source"),
    (edit("instances[0].peers", []), "instances[0].peers"),
    (edit("instances[0].peers", None), "instances[0].peers"),
    (edit("instances[0].peers", ["198.51.100.11"]), "instances[0].peers[0]"),
    (edit("instances[0].peers", ["198.51.100.12", "198.51.100.10"]), "instances[0].peers[1]"),
    (edit("instances[0].peers", ["198.51.100.12", "198.51.100.12"]), "instances[0].peers[1]"),
    (edit("instances[0].peers", ["2001:db8::12"]), "instances[0].peers[0]"),
    (edit("instances[0].peers", ["198.51.100.12 198.51.100.13"]), "instances[0].peers[0]"),
])
def test_refused_naming_the_option(change, option):
    params = copy.deepcopy(lab())
    change(params)
    with pytest.raises(K.KeepalivedError) as e:
        K.check(params)
    assert str(e.value).startswith(option + "="), str(e.value)
    assert e.value.details["option"] == option


def test_an_ipv6_instance_limits_advert_int_to_vrrpv3s():
    params = lab(advert_int=60)
    params["instances"] = [dict(name="v6", interface="eth1", vrid=7, address="2001:db8::10/64",
                                source="2001:db8::11", peers=["2001:db8::12"])]
    with pytest.raises(K.KeepalivedError, match=r"^advert_int=60 must be at most 40.95 with an IPv6 instance"):
        K.check(params)
    assert K.check(lab(advert_int=60))["advert_int"] == 60  # IPv4 runs VRRPv2: whole seconds up to 255


def test_a_long_value_is_shortened_in_the_message():
    with pytest.raises(K.KeepalivedError) as e:
        K.check(lab(router_id="x" * 10000))
    assert len(str(e.value)) < 200


# -- property: refused naming the option, or one token in its place

STRING_OPTIONS = ["router_id", "sync_group", "instances[0].name", "instances[1].interface", "instances[0].address",
                  "instances[1].source", "instances[0].peers[0]", "instances[1].track_interfaces[0]"]
TRICKY = st.sampled_from(list(" \t\n\r{}\"'#!;%$@\\/:.-_,") +
                         ["é", "\u2028", "\x00", "١", "eth1", "198.51.100.77", "/26", "2001:db8::7"])
ADDRESSES = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str).map(str.upper),
                      st.builds("{}/{}".format, st.ip_addresses(v=4), st.integers(0, 40)),
                      st.builds("{}/{}".format, st.ip_addresses(v=6), st.integers(0, 130)))
ANYTHING = st.one_of(st.text(max_size=40), st.text(max_size=10000), st.lists(TRICKY, max_size=12).map("".join),
                     ADDRESSES,
                     st.builds("{}{}{}".format, ADDRESSES, TRICKY, ADDRESSES))


def _canonical(option, value):
    """What the rendered token must be for an accepted value: the value itself, addresses in canonical form."""
    if option.endswith(".address"):
        iface = ipaddress.ip_interface(value)
        return "%s/%d" % (iface.ip, iface.network.prefixlen)
    if option.endswith(".source") or ".peers[" in option:
        return str(ipaddress.ip_address(value))
    return value


NAMES = st.from_regex(r"[A-Za-z0-9_.+-]{1,16}", fullmatch=True)


@given(data=st.data())
def test_any_string_is_refused_naming_its_option_or_rendered_as_one_token(data):
    option = data.draw(st.sampled_from(STRING_OPTIONS), label="option")
    likely = ADDRESSES if option.endswith((".address", ".source", "]")) and "track" not in option else NAMES
    value = data.draw(st.one_of(ANYTHING, likely, likely), label="value")
    params = copy.deepcopy(lab())
    edit(option, value)(params)
    try:
        cfg = K.check(params)
    except K.KeepalivedError as e:
        event("refused")
        msg = str(e)
        if not msg.startswith(option + "="):
            # A value of the option's own grammar, refused by a relation with another instance's option (a duplicate
            # name, an address used twice, a tracked interface that became the own one), which names its own path.
            assert option.startswith("instances[") and msg.startswith("instances["), msg
            assert re.fullmatch(r"[A-Za-z0-9_.:/+-]+", value, re.ASCII), (value, msg)
        return
    event("rendered: %s" % option)
    tree = parse(K.render(cfg))
    assert tree == expected_tree(cfg)
    token = _canonical(option, value)
    assert token and not any(c.isspace() for c in token)
    flat = json.dumps(tree)
    assert json.dumps(token) in flat
