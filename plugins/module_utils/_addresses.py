# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host's network interfaces: the names the collection takes for them (interface_problem, the one check of an
interface name), the addresses they hold (host_addresses, one rtnetlink RTM_GETADDR dump: what the kernel holds, no
tool run) and, from those, the VRRP state of a set of floating addresses (vrrp_state). Nothing here does I/O on
import; the netlink codec is _ipvs's."""
from __future__ import annotations

import errno
import os
import re
import select
import socket
import struct

from ansible_collections.lvs.nat.plugins.module_utils._errors import KernelError
from ansible_collections.lvs.nat.plugins.module_utils._ipvs import (
    _NLMSGHDR,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    _Refused,
    parse_attrs,
    raise_refusal,
    unpack_addr,
)
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import _show

# ---------------------------------------------------------------- interface names

# What the kernel takes (dev_valid_name: 1 to 15 bytes, not "." or "..", no '/', ':' or whitespace), narrowed to what
# every program the collection writes a name for reads as one plain token: no '@' (keepalived reads a line starting
# with '@' as conditional configuration) and nothing outside ASCII letters, digits and _ . + -; never ending in '+',
# which iptables reads as a wildcard (eth+: every eth*) and nft, keepalived and ip as the name itself. Full match,
# ASCII only.
_IFNAME = re.compile(r"[A-Za-z0-9_.+-]{0,14}[A-Za-z0-9_.-]", re.ASCII)
IFNAME_RULE = "1 to 15 ASCII letters, digits and _ . + - (not . or .., no final +: a wildcard to iptables)"


def is_interface_name(value):
    """Whether value is an interface name the collection takes (nat_rules, gateway_route, ipvs_sync_daemon,
    keepalived_vrrp, the director role)."""
    return isinstance(value, str) and bool(_IFNAME.fullmatch(value)) and value not in (".", "..")


def interface_problem(value, option):
    """None when value is an interface name (is_interface_name), else the message naming the option."""
    if is_interface_name(value):
        return None
    return "%s=%s is not an interface name: %s" % (option, _show(value), IFNAME_RULE)


# ---------------------------------------------------------------- the addresses the host holds (rtnetlink)

RTM_NEWADDR, RTM_GETADDR = 20, 22
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFA_F_DADFAILED = 0x08
_IFADDRMSG = struct.Struct("=BBBBI")


def decode_addresses(data, seq):
    """[(address text, interface index)] of the RTM_NEWADDR messages answering request seq in one recv()'s data, and
    whether the dump ended there. IPv4's own address is IFA_LOCAL (IFA_ADDRESS is the peer's on a point-to-point
    link); IPv6 has IFA_ADDRESS only. An address that failed duplicate address detection is not held."""
    out, off = [], 0
    while off + 16 <= len(data):
        n, kind, _flags, rseq, _pid = _NLMSGHDR.unpack_from(data, off)
        if n < 16:
            break
        if rseq == seq:
            if kind == NLMSG_ERROR or kind == NLMSG_DONE:
                raise_refusal(data, off, n)
                return out, True
            if kind == RTM_NEWADDR and n >= 16 + _IFADDRMSG.size:
                family, _prefix, flags, _scope, index = _IFADDRMSG.unpack_from(data, off + 16)
                attrs = parse_attrs(data, off + 16 + _IFADDRMSG.size, off + n)
                raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
                if raw is not None and not flags & IFA_F_DADFAILED and family in (socket.AF_INET, socket.AF_INET6):
                    out.append((unpack_addr(raw, family), index))
        off += (n + 3) & ~3
    return out, False


def host_addresses(timeout=10):
    """address text -> interface name for every address this host holds (in its network namespace), read with one
    RTM_GETADDR dump: what the kernel holds, keepalived's floating addresses included. KernelError on failure."""
    seq = 1
    request = _NLMSGHDR.pack(16 + _IFADDRMSG.size, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + \
        _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    found = []
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:  # NETLINK_ROUTE
            sock.bind((0, 0))
            sock.send(request)
            done = False
            while not done:
                if not select.select([sock], [], [], timeout)[0]:
                    raise KernelError("Failed to read the host's addresses: no answer from the kernel within %d s"
                                      % timeout, errno.ETIMEDOUT)
                part, done = decode_addresses(sock.recv(1 << 20), seq)
                found += part
    except _Refused as e:
        raise KernelError("Failed to read the host's addresses: %s (errno %d)" % (os.strerror(e.code), e.code),
                          e.code) from None
    except OSError as e:
        raise KernelError("Failed to read the host's addresses: %s (errno %s)" % (e.strerror or e, e.errno),
                          e.errno) from e
    names, out = {}, {}
    for address, index in found:
        if index not in names:
            try:
                names[index] = socket.if_indextoname(index)
            except OSError:  # the interface went away since the dump
                names[index] = None
        out.setdefault(address, names[index])
    return out


def vrrp_state(floating, held):
    """floating (canonical address texts), held (host_addresses()): {addresses: {address: interface or None},
    state}: MASTER where the host holds every floating address, BACKUP where it holds none, else SPLIT. The one
    shape of lvs.nat.ipvs_info's and lvs.nat.keepalived_vrrp's vrrp."""
    addresses = dict((a, held.get(a)) for a in floating)
    count = sum(1 for v in addresses.values() if v is not None)
    state = "MASTER" if count == len(addresses) else "BACKUP" if count == 0 else "SPLIT"
    return dict(addresses=addresses, state=state)
