# SPDX-License-Identifier: GPL-3.0-or-later
"""The IPVS netlink codec: what we send is what the kernel would read back to us."""
from __future__ import annotations

import socket
import struct

import pytest

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs as I
from ansible_collections.lvs.nat.plugins.module_utils import _kmod as K


def svc(**kw):
    base = dict(family="ipv4", protocol="tcp", address="198.51.100.10", port=80, fwmark=0, scheduler="wrr",
                scheduler_flags=[], persistence_timeout=0, persistence_prefix=32, one_packet=False)
    base.update(kw)
    return base


def roundtrip_service(s):
    """Encode as a request, then decode the payload the way a kernel dump reply is decoded."""
    outer = I.parse_attrs(I.encode_service(s))
    attrs = I.parse_attrs(outer[I.CMD_ATTR_SERVICE])
    return I.decode_service(attrs)


@pytest.mark.parametrize("s", [
    svc(),
    svc(scheduler="sh", scheduler_flags=["sh-fallback", "sh-port"], persistence_timeout=300, persistence_prefix=24),
    svc(protocol="udp", port=53, one_packet=True, scheduler="rr"),
    svc(family="ipv6", address="2001:db8::10", persistence_timeout=60, persistence_prefix=64),
    svc(protocol=None, address=None, port=None, fwmark=4294967295, scheduler="mh", scheduler_flags=["mh-port"]),
    svc(protocol="sctp", port=0, persistence_timeout=1),
])
def test_service_roundtrip(s):
    back = roundtrip_service(s)
    assert back.pop("stats") == dict.fromkeys(I.STAT_NAMES, 0)
    assert back == s


def test_key_only_service_carries_no_settings():
    attrs = I.parse_attrs(I.parse_attrs(I.encode_service(svc(), key_only=True))[I.CMD_ATTR_SERVICE])
    assert set(attrs) == {I.SVC_AF, I.SVC_PROTOCOL, I.SVC_ADDR, I.SVC_PORT}


def test_dest_roundtrip_and_masq_is_zero():
    d = dict(address="198.51.100.101", port=8080, forwarding="masq", weight=0, upper_threshold=100, lower_threshold=10)
    attrs = I.parse_attrs(I.parse_attrs(I.encode_dest(d))[I.CMD_ATTR_DEST])
    assert struct.unpack("=I", attrs[I.DEST_FWD])[0] == 0  # pyroute2's IPVSDest defaults to 3 (direct routing)
    back = I.decode_dest(attrs)
    for k in d:
        assert back[k] == d[k]


def test_wire_formats_the_kernel_expects():
    # Port is big-endian; the address is a 16-byte nf_inet_addr; IPv4 netmask in network order,
    # IPv6 "netmask" is the prefix length as a native integer.
    attrs = I.parse_attrs(I.parse_attrs(I.encode_service(svc(persistence_timeout=5, persistence_prefix=24)))[1])
    assert attrs[I.SVC_PORT] == b"\x00\x50"
    assert attrs[I.SVC_ADDR] == socket.inet_aton("198.51.100.10") + b"\0" * 12
    assert attrs[I.SVC_NETMASK] == b"\xff\xff\xff\x00"
    assert struct.unpack("=II", attrs[I.SVC_FLAGS]) == (I.SVC_F_PERSISTENT, 0xFFFFFFFF)
    assert I.pack_netmask("ipv6", 64) == struct.pack("=I", 64)
    assert I.unpack_netmask(I.pack_netmask("ipv4", 0 + 1), socket.AF_INET) == 1


def test_attributes_are_padded_to_four_bytes():
    blob = I._nla(6, b"wrr\0") + I._nla(6, b"lblcr\0") + I._nla(2, b"\x06\x00")
    assert len(blob) % 4 == 0
    assert I.parse_attrs(blob)[6] == b"lblcr\0"


def test_descriptions_name_the_object():
    s = svc()
    d = dict(address="198.51.100.101", port=8080)
    assert I.describe_op((I.CMD_NEW_DEST, s, d)) == "add real server 198.51.100.101:8080 to TCP 198.51.100.10:80"
    assert I.describe_op((I.CMD_DEL_DEST, s, d)) == "delete real server 198.51.100.101:8080 from TCP 198.51.100.10:80"
    assert I.describe_op((I.CMD_SET_SERVICE, svc(family="ipv6", address="2001:db8::1"), None)) == \
        "edit service TCP [2001:db8::1]:80"
    assert I.describe_failure((I.CMD_NEW_DEST, s, d), 3) == \
        "Failed to add real server 198.51.100.101:8080 to TCP 198.51.100.10:80: No such service (errno 3)"
    assert "FWM 7 (ipv4)" in I.describe_op((I.CMD_DEL_SERVICE, svc(fwmark=7), None))


def test_modprobe_reports_the_tool_failure(monkeypatch):
    class Proc:
        returncode, stdout, stderr = 1, "", "modprobe: FATAL: Module ip_vs_twos not found"

    monkeypatch.setattr(K, "loaded", lambda name: False)
    expected = r"Failed to load kernel module ip_vs_twos \(modprobe --dry-run ip_vs_twos: rc=1\): modprobe: FATAL: Module ip_vs_twos not found"
    with pytest.raises(K.KernelError, match=expected):
        K.modprobe(["ip_vs_twos"], dry_run=True, run=lambda *a, **kw: Proc())
