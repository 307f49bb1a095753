# SPDX-License-Identifier: GPL-3.0-or-later
"""_addresses: the one interface-name check (a property over any text, and every caller refusing what it refuses,
naming its option), the host's addresses decoded from RTM_NEWADDR messages and read from this host, and the VRRP
state of floating addresses."""
from __future__ import annotations

import re
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.filter.director import _director_host, _Errors
from ansible_collections.lvs.nat.plugins.module_utils import _addresses as A
from ansible_collections.lvs.nat.plugins.module_utils import _ipvs, _keepalived, _netfilter
from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.modules import gateway_route, ipvs_sync_daemon

# ---------------------------------------------------------------- interface names

NAME_ALPHABET = list("abcXYZ019_.:@+-/ \t\n'\";%$#{}!\\é١")


@given(st.one_of(st.text(max_size=10000), st.text(alphabet=st.sampled_from(NAME_ALPHABET), min_size=1, max_size=20)))
def test_an_interface_name_is_refused_naming_the_option_or_is_one_plain_token(value):
    problem = A.interface_problem(value, "rules[3].in_interface")
    if problem:
        assert problem.startswith("rules[3].in_interface=") and "is not an interface name" in problem
        assert not A.is_interface_name(value) and len(problem) < 250  # the value cut at 80 characters, the rule
        return
    assert A.is_interface_name(value)
    assert re.fullmatch(r"[A-Za-z0-9_.+-]{1,15}", value, re.ASCII) and value not in (".", "..")
    assert not value.endswith("+")  # iptables reads eth+ as every eth*; nft and keepalived as the name


def _keepalived_check(name):
    _keepalived.check(dict(router_id="d1", instances=[dict(name="public", interface=name, vrid=51,
                                                           address="198.51.100.10/26", source="198.51.100.11",
                                                           peers=["198.51.100.12"])]))


def _director_check(name):
    hostvars = dict(d1=dict(director_public_interface=name, director_private_interface="eth2",
                            director_public_address="198.51.100.11/26", director_private_address="198.51.100.98/26"))
    errors = _Errors()
    if _director_host("d1", hostvars, errors) is None:
        raise LvsNatError("; ".join(errors))


# Every place that takes an interface name, and the option its message names.
CALLERS = {
    "nat_rules": (lambda name: _netfilter.normalise_rules([dict(type="accept", chain="input", in_interface=name)]),
                  "rules[0].in_interface="),
    "gateway_route": (lambda name: _raise(gateway_route.problems("198.51.100.100", ["default"], name)[2]),
                      "interface="),
    "ipvs_sync_daemon": (lambda name: ipvs_sync_daemon.desired_daemon(dict(mode="master", interface=name), "daemons[0]"),
                         "daemons[0].interface="),
    "keepalived_vrrp": (_keepalived_check, "instances[0].interface="),
    "director role": (_director_check, "host d1 director_public_interface="),
}


def _raise(problems):
    if problems:
        raise LvsNatError("; ".join(problems))


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("name", [
    "eth0.10@eth0",  # as `ip link` shows a VLAN: the name is eth0.10; '@' starts keepalived's conditional config
    "eth0:1",  # an address label, never an interface name (the kernel refuses ':')
    "..", "eth0\n", "e" * 16, "eth 0", "ethé",
    "eth+",  # iptables: every interface whose name starts with eth; nft, keepalived and ip: the name eth+
])
def test_every_caller_refuses_what_the_one_check_refuses_naming_its_option(caller, name):
    check, option = CALLERS[caller]
    with pytest.raises(LvsNatError) as e:
        check(name)
    assert option + repr(name) in str(e.value) and "is not an interface name" in str(e.value)


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("name", ["eth1", "eth0.10", "br-lan_1", "wg+0", "e" * 15])
def test_every_caller_takes_an_interface_name(caller, name):
    CALLERS[caller][0](name)


# ---------------------------------------------------------------- the host's addresses

def newaddr(seq, family, index, raw, local=None, flags=0):
    """One RTM_NEWADDR message: ifaddrmsg, IFA_ADDRESS, IFA_LOCAL when given."""
    def attr(kind, payload):
        return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-(4 + len(payload)) % 4)
    attrs = attr(A.IFA_ADDRESS, raw) + (attr(A.IFA_LOCAL, local) if local else b"")
    body = struct.pack("=BBBBI", family, 24, flags, 0, index) + attrs
    return struct.pack("=IHHII", 16 + len(body), A.RTM_NEWADDR, 2, seq, 0) + body


def done(seq, code=0, kind=3):
    return struct.pack("=IHHIIi", 20, kind, 0, seq, 0, -code)


def test_the_host_addresses_are_read_from_rtm_newaddr_messages():
    data = (newaddr(7, socket.AF_INET, 3, bytes([198, 51, 100, 1]), local=bytes([198, 51, 100, 10]))  # point-to-point
            + newaddr(7, socket.AF_INET6, 4, bytes.fromhex("20010db8" + "00" * 11 + "01"))
            + newaddr(7, socket.AF_INET6, 4, bytes.fromhex("20010db8" + "00" * 11 + "02"), flags=A.IFA_F_DADFAILED)
            + newaddr(8, socket.AF_INET, 5, bytes([192, 0, 2, 1])))  # another request's
    assert A.decode_addresses(data, 7) == ([("198.51.100.10", 3), ("2001:db8::1", 4)], False)
    assert A.decode_addresses(done(7), 7) == ([], True)
    with pytest.raises(_ipvs._Refused) as e:  # the dump refused: its errno
        A.decode_addresses(newaddr(7, socket.AF_INET, 3, bytes([192, 0, 2, 1])) + done(7, code=16), 7)
    assert e.value.code == 16


def test_the_host_addresses_of_this_host_include_loopback():
    assert A.host_addresses()["127.0.0.1"] == "lo"


@pytest.mark.parametrize("held, state", [
    ({"198.51.100.10": "eth1", "198.51.100.100": "eth2"}, "MASTER"),
    ({"198.51.100.11": "eth1"}, "BACKUP"),
    ({"198.51.100.10": "eth1"}, "SPLIT"),
])
def test_vrrp_state(held, state):
    result = A.vrrp_state(["198.51.100.10", "198.51.100.100"], held)
    assert result["state"] == state
    assert result["addresses"] == {"198.51.100.10": held.get("198.51.100.10"), "198.51.100.100": held.get("198.51.100.100")}
