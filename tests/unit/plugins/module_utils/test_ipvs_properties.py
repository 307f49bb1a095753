# SPDX-License-Identifier: GPL-3.0-or-later
"""Properties of the IPVS validators: any value is refused with a message naming its option, or the
netlink message built from it decodes back to exactly the value accepted."""
from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs as I
from ansible_collections.lvs.nat.plugins.module_utils import _ipvs_names as N
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import SERVICE_SPEC
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import ALL_SCHED_FLAGS
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import InvalidInput, desired_dests, desired_service

# Text as users and templates produce it: arbitrary unicode, and the characters that break parsers.
NASTY = st.sampled_from(["\n", "\r", "'", '"', "{", "}", "#", ";", "%", " ", "\t", "\0", "\\", "１", "٣", ":", ".", "/", "%eth0"])
TEXT = st.one_of(st.text(max_size=10000), st.lists(st.one_of(NASTY, st.text(max_size=8)), max_size=12).map("".join))
ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses().map(lambda ip: ip.exploded.upper()),
    st.tuples(st.ip_addresses().map(str), NASTY).map("".join),
    st.tuples(NASTY, st.ip_addresses().map(str)).map("".join),
    TEXT,
)
INTEGERS = st.one_of(st.integers(), st.integers(-5, 70000), st.sampled_from([2678400, 2678401, 2 ** 31, 2 ** 32, 2 ** 64]),
                     st.integers(0, 99999).map(str), TEXT, st.booleans(), st.floats(allow_nan=False))


def params(**kw):
    p = dict.fromkeys(SERVICE_SPEC)
    p.update(kw)
    return p


def decoded_service(svc):
    return I.decode_service(I.parse_attrs(I.parse_attrs(I.encode_service(svc))[I.CMD_ATTR_SERVICE]))


def decoded_dest(dest):
    return I.decode_dest(I.parse_attrs(I.parse_attrs(I.encode_dest(dest))[I.CMD_ATTR_DEST]))


def service_or_refusal(field, **kw):
    """The service built from kw, or None when refused with a message that starts with field=."""
    try:
        svc = desired_service(params(**kw), None)
    except InvalidInput as e:
        assert str(e).startswith(field), (field, str(e))
        assert len(str(e)) < 600
        return None
    back = decoded_service(svc)
    back.pop("stats")
    assert back == svc
    return svc


@given(ADDRESSES)
def test_service_address(text):
    svc = service_or_refusal("address", address=text, port=80)
    if svc is not None:
        assert isinstance(text, str) and text.isascii() and "%" not in text
        assert ipaddress.ip_address(svc["address"]) == ipaddress.ip_address(text)
        assert svc["address"] == str(ipaddress.ip_address(text))


@given(ADDRESSES)
def test_real_server_address(text):
    svc = desired_service(params(address="2001:db8::10" if ":" in text else "198.51.100.10", port=80), None)
    try:
        (dest,) = desired_dests([dict(address=text)], svc, None)
    except InvalidInput as e:
        assert str(e).startswith("real_servers[0] address="), str(e)
        return
    assert "%" not in text and text.isascii()
    ip = ipaddress.ip_address(text)
    assert not (ip.is_multicast or ip.is_unspecified or (ip.version == 6 and ip.is_link_local))
    assert decoded_dest(dest)["address"] == dest["address"] == str(ip)


@given(st.sampled_from(["port", "fwmark", "persistence_timeout", "persistence_prefix"]), INTEGERS)
def test_service_integers(field, value):
    kw = dict(address="198.51.100.10", port=80)
    if field == "fwmark":
        kw = dict(fwmark=value)
    elif field == "persistence_prefix":
        kw["persistence_timeout"] = 60
    kw[field] = value
    svc = service_or_refusal(field, **kw)
    if svc is not None:
        assert svc[field] == int(value) and not isinstance(value, (bool, float))


@given(st.one_of(TEXT, st.sampled_from(N.SCHEDULERS)), st.lists(st.one_of(st.sampled_from(ALL_SCHED_FLAGS), TEXT), max_size=3))
def test_scheduler_and_flags(scheduler, flags):
    try:
        svc = desired_service(params(address="198.51.100.10", port=80, scheduler=scheduler, scheduler_flags=flags), None)
    except InvalidInput as e:
        assert str(e).startswith(("scheduler=", "scheduler_flags")), str(e)
        return
    assert svc["scheduler"] == scheduler and svc["scheduler_flags"] == sorted(set(flags))
    back = decoded_service(svc)
    assert (back["scheduler"], back["scheduler_flags"]) == (scheduler, sorted(set(flags)))


@given(st.one_of(st.booleans(), TEXT, st.integers()), st.sampled_from(["tcp", "udp", "sctp", None]))
def test_one_packet(value, protocol):
    svc = service_or_refusal("one_packet", address="198.51.100.10", port=53, protocol=protocol, one_packet=value)
    if svc is not None:
        assert svc["one_packet"] is decoded_service(svc)["one_packet"]


@pytest.mark.parametrize("field", ["port", "weight", "upper_threshold", "lower_threshold"])
@given(value=INTEGERS)
def test_real_server_integers(field, value):
    svc = desired_service(params(address="198.51.100.10", port=80), None)
    entry = dict(address="198.51.100.101", upper_threshold=2 ** 31 - 1 if field == "lower_threshold" else None)
    entry[field] = value
    try:
        (dest,) = desired_dests([entry], svc, None)
    except InvalidInput as e:
        assert str(e).startswith("real_servers[0] %s=" % field) or (field == "lower_threshold" and "lower_threshold" in str(e)), str(e)
        return
    back = decoded_dest(dest)
    assert back[field] == dest[field] == int(value) and not isinstance(value, (bool, float))


@given(st.one_of(TEXT, st.sampled_from(["masq", "route", "tunnel"])))
def test_forwarding(value):
    svc = desired_service(params(address="198.51.100.10", port=80), None)
    try:
        (dest,) = desired_dests([dict(address="198.51.100.101", forwarding=value)], svc, None)
    except InvalidInput as e:
        assert str(e).startswith("real_servers[0] forwarding="), str(e)
        return
    assert decoded_dest(dest)["forwarding"] == dest["forwarding"] == value


# The compact real server ADDRESS[:PORT[:WEIGHT]]: pieces that make it valid, nearly valid, or anything.
COMPACT = st.one_of(
    TEXT,
    st.tuples(
        st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda ip: "[%s]" % ip),
                  st.ip_addresses().map(str), st.ip_addresses(v=4).map(lambda ip: "[%s]" % ip), ADDRESSES),
        st.one_of(st.just(""), st.integers(-1, 70000).map(lambda n: ":%d" % n), st.tuples(st.just(":"), TEXT).map("".join)),
        st.one_of(st.just(""), st.integers(-1, 70000).map(lambda n: ":%d" % n), NASTY),
    ).map("".join),
)


@given(COMPACT)
def test_a_compact_real_server_is_refused_naming_its_entry_or_read_exactly(text):
    """Either refused with a message naming real_servers[0], or read as exactly the address (canonical), port and
    weight the text gives; its canonical text reads back to the same real server."""
    svc = desired_service(params(address="2001:db8::10" if text.startswith("[") else "198.51.100.10", port=80), None)
    try:
        (dest,) = desired_dests([text], svc, None)
    except InvalidInput as e:
        assert str(e).startswith("real_servers[0]"), str(e)
        return
    head, rest = text[1:].split("]", 1) if text.startswith("[") else (text.split(":", 1) + [""])[:2]
    parts = (rest[1:] if text.startswith("[") else rest).split(":") if rest else []
    assert dest["address"] == str(ipaddress.ip_address(head))
    assert dest["port"] == (int(parts[0]) if parts else 80)
    assert dest["weight"] == (int(parts[1]) if len(parts) > 1 else 1)
    canonical = "%s:%d:%d" % ("[%s]" % dest["address"] if ":" in dest["address"] else dest["address"], dest["port"],
                              dest["weight"])
    assert desired_dests([canonical], svc, None) == [dest]
