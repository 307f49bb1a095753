# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""IPVS kernel backend: generic netlink, raw attributes, many requests per send.

pyroute2 opens the generic netlink socket and resolves the IPVS family. The IPVS
messages themselves are packed and parsed here with struct: pyroute2's IPVSService and
IPVSDest return library defaults instead of kernel values (forwarding method, flags,
netmask, timeout), map "update" to delete and cannot encode an IPv6 netmask, and its
per-message request machinery costs about 2 ms per message on a TCG guest. A batch of
changes asks for one ack, on its last request: the kernel answers a refused request with
its error whatever the flags, matched by sequence number, so a refusal names the exact
operation. Nothing here does I/O on import.

The modules use Session only (the one door to the kernel); IPVS is its socket. The only
module of the collection that imports pyroute2; the IPVS vocabulary is in _ipvs_names.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import importlib.util
import ipaddress
import operator
import select
import socket
import struct
import sys

from ansible_collections.lvs.nat.plugins.module_utils import _kmod
from ansible_collections.lvs.nat.plugins.module_utils._errors import KernelError
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import (
    CMD_DEL_DAEMON,
    CMD_DEL_DEST,
    CMD_DEL_SERVICE,
    CMD_GET_CONFIG,
    CMD_GET_DAEMON,
    CMD_GET_DEST,
    CMD_GET_INFO,
    CMD_GET_SERVICE,
    CMD_NEW_DAEMON,
    CMD_NEW_DEST,
    CMD_NEW_SERVICE,
    CMD_SET_CONFIG,
    DAEMON_MODES,
    DAEMON_ORDER,
    FORWARDING,
    KERNEL_TIMEOUTS,
    PROTOCOLS,
    SCHED_FLAGS,
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    TIMEOUT_NAMES,
    daemon_strerror,
    describe_daemon,
    describe_failure,
    describe_op,
    describe_service,
    family_of,
    inverse_ops,
    service_id,
    strerror,
)

# Whether pyroute2 is installed; Session() reports its absence with missing_required_lib's text. It is imported
# only when a socket is opened (_pyroute2), which a run refused on its input never needs.
HAS_PYROUTE2 = importlib.util.find_spec("pyroute2") is not None


def _pyroute2():
    """(GenericNetlinkSocket, genlmsg, NetlinkError) from pyroute2.

    pyroute2's package __init__ only re-exports: it imports every part of the library (IPRoute, NDB, IPDB,
    conntrack, nftables, asyncio, ...), about 0.25 s on a host and 2.4 s on an emulated director, of which the
    three names here need 16 modules (0.9 s there). So the package is entered without running its __init__ when
    nothing imported it yet; should a pyroute2 release need its __init__ for these names, the normal import is
    used instead.
    """
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is not None and spec.submodule_search_locations is not None:
            sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)
            try:
                return _pyroute2_names()
            except ImportError:
                for name in [m for m in sys.modules if m == "pyroute2" or m.startswith("pyroute2.")]:
                    del sys.modules[name]
    return _pyroute2_names()


def _pyroute2_names():
    from pyroute2.netlink import genlmsg
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.generic import GenericNetlinkSocket
    return GenericNetlinkSocket, genlmsg, NetlinkError


# include/uapi/linux/ip_vs.h: attribute numbers (the operations are in _ipvs_names)
CMD_ATTR_SERVICE, CMD_ATTR_DEST, CMD_ATTR_DAEMON = 1, 2, 3
CMD_ATTR_TIMEOUT_TCP, CMD_ATTR_TIMEOUT_TCP_FIN, CMD_ATTR_TIMEOUT_UDP = 4, 5, 6
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK, SVC_SCHED, SVC_FLAGS, SVC_TIMEOUT, SVC_NETMASK = range(1, 10)
SVC_STATS, SVC_PE_NAME, SVC_STATS64 = 10, 11, 12
DEST_ADDR, DEST_PORT, DEST_FWD, DEST_WEIGHT, DEST_U_THRESH, DEST_L_THRESH = range(1, 7)
DEST_ACTIVE, DEST_INACT, DEST_PERSIST, DEST_STATS, DEST_AF, DEST_STATS64 = range(7, 13)
INFO_VERSION, INFO_CONN_TAB_SIZE = 1, 2
# Inside IPVS_CMD_ATTR_DAEMON (IPVS_DAEMON_ATTR_*): u32 state, NUL-terminated interface name (15 bytes at most), u32
# sync id, u16 sync_maxlen, IPv4 group (4 bytes, network order) or IPv6 group (16 bytes), u16 port (host order), u8 TTL.
(DAEMON_STATE, DAEMON_MCAST_IFN, DAEMON_SYNC_ID, DAEMON_SYNC_MAXLEN, DAEMON_MCAST_GROUP, DAEMON_MCAST_GROUP6,
 DAEMON_MCAST_PORT, DAEMON_MCAST_TTL) = range(1, 9)

STAT_NAMES = ("conns", "inpkts", "outpkts", "inbytes", "outbytes", "cps", "inpps", "outpps", "inbps", "outbps")

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x200, 0x400, 0x300
_HDR = struct.Struct("=IHHIIBBH")  # nlmsghdr + genlmsghdr
_NLMSGHDR = struct.Struct("=IHHII")
_I32 = struct.Struct("=i")
_NLA = struct.Struct("=HH")
_U16, _U32, _U64, _BE16 = struct.Struct("=H"), struct.Struct("=I"), struct.Struct("=Q"), struct.Struct(">H")
_U8 = struct.Struct("=B")


class IPVSError(KernelError):
    """An IPVS failure: the message names the operation; code is the errno where the kernel gave one.

    details go into the module's result: applied, rolled_back, not_rolled_back, unanswered, changed.
    """


# ---------------------------------------------------------------- codec (pure, unit tested)

def _nla(kind, payload):
    n = 4 + len(payload)
    return _NLA.pack(n, kind) + payload + b"\0" * (-n % 4)


def parse_attrs(buf, start=0, end=None):
    """type -> payload bytes for one level of netlink attributes (nested flag masked)."""
    end = len(buf) if end is None else end
    out = {}
    while start + 4 <= end:
        n, kind = _NLA.unpack_from(buf, start)
        if n < 4:
            break
        out[kind & 0x3FFF] = buf[start + 4:start + n]
        start += (n + 3) & ~3
    return out


@functools.lru_cache(maxsize=4096)
def pack_addr(address):
    # A table names the same few real servers again and again: pack each address once per run.
    return ipaddress.ip_address(address).packed.ljust(16, b"\0")  # nf_inet_addr: 16 bytes


def unpack_addr(raw, af):
    return _addr_text(bytes(raw[:16] if af == socket.AF_INET6 else raw[:4]))


@functools.lru_cache(maxsize=4096)
def _addr_text(packed):
    # A table names the same few real servers again and again: parse each address once per run.
    return str(ipaddress.ip_address(packed))


def pack_netmask(family, prefix):
    # The kernel reads this attribute as raw be32: an IPv4 netmask in network order, but for
    # IPv6 it checks the plain value against 1..128, so the prefix goes in native order.
    if family == "ipv6":
        return _U32.pack(prefix)
    return struct.pack(">I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF)


def unpack_netmask(raw, af):
    if af == socket.AF_INET6:
        return _U32.unpack_from(raw)[0]
    return bin(struct.unpack_from(">I", raw)[0]).count("1")


def _af(family):
    return socket.AF_INET6 if family == "ipv6" else socket.AF_INET


def service_flags(svc):
    flags = SVC_F_PERSISTENT if svc["persistence_timeout"] else 0
    if svc["one_packet"]:
        flags |= SVC_F_ONEPACKET
    for name in svc["scheduler_flags"]:
        flags |= SCHED_FLAGS[svc["scheduler"]][name]
    return flags


def encode_service(svc, key_only=False):
    """IPVS_CMD_ATTR_SERVICE; complete unless key_only, since the kernel replaces the entry on set."""
    parts = [_nla(SVC_AF, _U16.pack(_af(svc["family"])))]
    if svc["fwmark"]:
        parts.append(_nla(SVC_FWMARK, _U32.pack(svc["fwmark"])))
    else:
        parts += [_nla(SVC_PROTOCOL, _U16.pack(PROTOCOLS[svc["protocol"]])),
                  _nla(SVC_ADDR, pack_addr(svc["address"])),
                  _nla(SVC_PORT, _BE16.pack(svc["port"]))]
    if not key_only:
        parts += [
            _nla(SVC_SCHED, svc["scheduler"].encode() + b"\0"),
            _nla(SVC_FLAGS, struct.pack("=II", service_flags(svc), 0xFFFFFFFF)),
            _nla(SVC_TIMEOUT, _U32.pack(svc["persistence_timeout"])),
            _nla(SVC_NETMASK, pack_netmask(svc["family"], svc["persistence_prefix"])),
        ]
    return _nla(CMD_ATTR_SERVICE, b"".join(parts))


def encode_dest(dest, key_only=False):
    return _encode_dest(dest["address"], dest["port"], None if key_only else (
        dest["forwarding"], dest["weight"], dest["upper_threshold"], dest["lower_threshold"]))


@functools.lru_cache(maxsize=65536)
def _encode_dest(address, port, settings):
    # A table names the same real servers in many services: each is encoded once per run.
    parts = [
        _nla(DEST_ADDR, pack_addr(address)),
        _nla(DEST_PORT, _BE16.pack(port)),
        _nla(DEST_AF, _U16.pack(_af(family_of(address)))),
    ]
    if settings is not None:
        forwarding, weight, upper, lower = settings
        parts += [
            _nla(DEST_FWD, _U32.pack(FORWARDING[forwarding])),
            _nla(DEST_WEIGHT, _U32.pack(weight)),
            _nla(DEST_U_THRESH, _U32.pack(upper)),
            _nla(DEST_L_THRESH, _U32.pack(lower)),
        ]
    return _nla(CMD_ATTR_DEST, b"".join(parts))


def _stats(raw):
    if raw is None:
        return dict.fromkeys(STAT_NAMES, 0)
    a = parse_attrs(raw)
    return dict((name, _U64.unpack(a[i])[0] if i in a else 0) for i, name in enumerate(STAT_NAMES, 1))


def decode_service(a):
    """A service as plain values from the raw IPVS_SVC_ATTR_* the kernel sent."""
    af = _U16.unpack(a[SVC_AF])[0]
    flags = struct.unpack_from("=I", a[SVC_FLAGS])[0]
    scheduler = bytes(a[SVC_SCHED]).rstrip(b"\0").decode()
    fwmark = _U32.unpack(a[SVC_FWMARK])[0] if SVC_FWMARK in a else 0
    svc = {
        "family": "ipv6" if af == socket.AF_INET6 else "ipv4",
        "protocol": None, "address": None, "port": None, "fwmark": fwmark,
        "scheduler": scheduler,
        "scheduler_flags": sorted(n for n, bit in SCHED_FLAGS.get(scheduler, {}).items() if flags & bit),
        "persistence_timeout": _U32.unpack(a[SVC_TIMEOUT])[0] if flags & SVC_F_PERSISTENT else 0,
        "persistence_prefix": unpack_netmask(a[SVC_NETMASK], af),
        "one_packet": bool(flags & SVC_F_ONEPACKET),
        "stats": _stats(a.get(SVC_STATS64)),
    }
    if not fwmark:
        proto = _U16.unpack(a[SVC_PROTOCOL])[0]
        svc["protocol"] = next((n for n, v in PROTOCOLS.items() if v == proto), str(proto))
        svc["address"] = unpack_addr(a[SVC_ADDR], af)
        svc["port"] = _BE16.unpack(a[SVC_PORT])[0]
    return svc


def _service_reply(message):
    """The service in a reply's IPVS_CMD_ATTR_SERVICE."""
    return decode_service(parse_attrs(message[CMD_ATTR_SERVICE]))


def _dest_reply(message):
    return decode_dest(parse_attrs(message[CMD_ATTR_DEST]))


def decode_dest_config(body):
    """A real server's settings, without counters, straight from a reply's body (genetlink header, then
    IPVS_CMD_ATTR_DEST): what a reconcile reads, the statistics skipped.

    A kernel fills every real-server reply alike (ip_vs_genl_fill_dest): the settings and the address family first,
    the counters after. The first reply is read attribute by attribute and teaches the layout of that first part;
    the others are read with one struct each, every attribute header in it checked against the layout (a reply
    laid out otherwise is read attribute by attribute)."""
    size, kind = _NLA.unpack_from(body, 4)
    if kind & 0x3FFF != CMD_ATTR_DEST:
        raise KeyError(CMD_ATTR_DEST)
    for layout in _DEST_LAYOUTS:
        dest = layout.read(body)
        if dest is not None:
            return dest
    dest, headers = _dest_attributes(body, 4 + size)
    if headers and len(_DEST_LAYOUTS) < 4:
        layout = _DestLayout.learn(headers)
        if layout is not None:
            _DEST_LAYOUTS.append(layout)
    return dest


def decode_dest_configs(bodies):
    """decode_dest_config for each body of a dump, the learned layout tried first in one loop."""
    out = []
    read = _DEST_LAYOUTS[0].read if _DEST_LAYOUTS else None
    for body in bodies:
        dest = read(body) if read else None
        if dest is None:
            dest = decode_dest_config(body)
            read = _DEST_LAYOUTS[0].read if _DEST_LAYOUTS else None
        out.append(dest)
    return out


def _dest_attributes(body, end):
    """decode_dest_config attribute by attribute: the real server, and the attribute headers (length, type) up to
    the last of _DestLayout.FIELDS (None when one is missing)."""
    start = 8
    raw_addr, port, af, fwd, weight, upper, lower = None, None, socket.AF_INET, None, 0, 0, 0
    headers, wanted = [], set(_DestLayout.FIELDS)
    while start + 4 <= end:
        n, kind = _NLA.unpack_from(body, start)
        if n < 4:
            break
        if wanted:
            headers.append((n, kind))
        kind &= 0x3FFF
        wanted.discard(kind)
        if kind == DEST_ADDR:
            raw_addr = body[start + 4:start + 20]
        elif kind == DEST_PORT:
            port = _BE16.unpack_from(body, start + 4)[0]
        elif kind == DEST_AF:
            af = _U16.unpack_from(body, start + 4)[0]
        elif kind == DEST_FWD:
            fwd = _U32.unpack_from(body, start + 4)[0] & 0x7
        elif kind == DEST_WEIGHT:
            weight = _U32.unpack_from(body, start + 4)[0]
        elif kind == DEST_U_THRESH:
            upper = _U32.unpack_from(body, start + 4)[0]
        elif kind == DEST_L_THRESH:
            lower = _U32.unpack_from(body, start + 4)[0]
        start += (n + 3) & ~3
    if raw_addr is None or port is None or fwd is None:
        raise KeyError("address, port or forwarding")
    dest = {"address": unpack_addr(raw_addr, af), "port": port, "forwarding": _FORWARDING_NAMES[fwd],
            "weight": weight, "upper_threshold": upper, "lower_threshold": lower}
    return dest, None if wanted else headers


class _DestLayout(object):
    """Where a kernel puts a real server's settings in its replies: one struct over the attributes from the first up
    to the last of FIELDS, their headers included (checked on every read), other attributes among them skipped."""

    FIELDS = (DEST_ADDR, DEST_PORT, DEST_FWD, DEST_WEIGHT, DEST_U_THRESH, DEST_L_THRESH, DEST_AF)
    PAYLOAD = {DEST_ADDR: ("16s", 16), DEST_PORT: ("2s", 2), DEST_FWD: ("I", 4), DEST_WEIGHT: ("I", 4),
               DEST_U_THRESH: ("I", 4), DEST_L_THRESH: ("I", 4), DEST_AF: ("H", 2)}

    def __init__(self, fmt, headers, header_at, value_at):
        self.struct, self.headers = struct.Struct(fmt), headers
        self.header_at, self.value_at = operator.itemgetter(*header_at), operator.itemgetter(*value_at)
        self.addresses = {}  # (raw address, family) -> text: a table names the same real servers again and again

    @classmethod
    def learn(cls, headers):
        """The layout of headers [(length, type), ...], or None where a field has a size this module does not know."""
        fmt, count, header_at, value_at = "=", 0, [], {}
        for n, kind in headers:
            fmt, header_at, count = fmt + "HH", header_at + [count, count + 1], count + 2
            size = (n + 3) & ~3
            payload = cls.PAYLOAD.get(kind & 0x3FFF)
            if payload is None:
                fmt += "%dx" % (size - 4) if size > 4 else ""
            elif n - 4 != payload[1]:
                return None
            else:
                value_at[kind & 0x3FFF], count = count, count + 1
                fmt += payload[0] + ("%dx" % (size - n) if size > n else "")
        return cls(fmt, tuple(v for pair in headers for v in pair), header_at, [value_at[k] for k in cls.FIELDS])

    def read(self, body):
        """The real server in body laid out as learned, or None."""
        try:
            values = self.struct.unpack_from(body, 8)
        except struct.error:
            return None
        if self.header_at(values) != self.headers:
            return None
        addr, port, fwd, weight, upper, lower, af = self.value_at(values)
        address = self.addresses.get((addr, af))
        if address is None:
            address = self.addresses[addr, af] = unpack_addr(addr, af)
        return {"address": address, "port": port[0] << 8 | port[1],
                "forwarding": _FORWARDING_NAMES[fwd & 0x7], "weight": weight, "upper_threshold": upper,
                "lower_threshold": lower}


_DEST_LAYOUTS = []  # what decode_dest_config learned of this kernel's replies


_FORWARDING_NAMES = dict((v, n) for n, v in FORWARDING.items())


def decode_dest(a):
    af = _U16.unpack(a[DEST_AF])[0] if DEST_AF in a else socket.AF_INET
    fwd = _U32.unpack(a[DEST_FWD])[0] & 0x7

    def u32(i):
        return _U32.unpack(a[i])[0] if i in a else 0

    return {
        "address": unpack_addr(a[DEST_ADDR], af),
        "port": _BE16.unpack(a[DEST_PORT])[0],
        "forwarding": next(n for n, v in FORWARDING.items() if v == fwd),
        "weight": u32(DEST_WEIGHT),
        "upper_threshold": u32(DEST_U_THRESH),
        "lower_threshold": u32(DEST_L_THRESH),
        "active_conns": u32(DEST_ACTIVE),
        "inactive_conns": u32(DEST_INACT),
        "persist_conns": u32(DEST_PERSIST),
        "stats": _stats(a.get(DEST_STATS64)),
    }


def encode_daemon(daemon, key_only=False):
    """IPVS_CMD_ATTR_DAEMON for NEW_DAEMON: the mode, interface and sync id, and each other setting that is not None
    (the kernel chooses what is left out); key_only: the mode only, all DEL_DAEMON reads."""
    parts = [_nla(DAEMON_STATE, _U32.pack(DAEMON_MODES[daemon["mode"]]))]
    if not key_only:
        parts += [_nla(DAEMON_MCAST_IFN, daemon["interface"].encode("ascii") + b"\0"),
                  _nla(DAEMON_SYNC_ID, _U32.pack(daemon["sync_id"]))]
        if daemon.get("max_len") is not None:
            parts.append(_nla(DAEMON_SYNC_MAXLEN, _U16.pack(daemon["max_len"])))
        if daemon.get("group") is not None:
            group = ipaddress.ip_address(daemon["group"])
            parts.append(_nla(DAEMON_MCAST_GROUP6 if group.version == 6 else DAEMON_MCAST_GROUP, group.packed))
        if daemon.get("port") is not None:
            parts.append(_nla(DAEMON_MCAST_PORT, _U16.pack(daemon["port"])))
        if daemon.get("ttl") is not None:
            parts.append(_nla(DAEMON_MCAST_TTL, _U8.pack(daemon["ttl"])))
    return _nla(CMD_ATTR_DAEMON, b"".join(parts))


def decode_daemon(a):
    """A sync daemon as plain values from the raw IPVS_DAEMON_ATTR_* of a GET_DAEMON reply. Kernels before 4.3 send
    the mode, interface and sync id only: the others are None there."""
    state = _U32.unpack(a[DAEMON_STATE])[0]
    if DAEMON_MCAST_GROUP6 in a:
        group = unpack_addr(a[DAEMON_MCAST_GROUP6], socket.AF_INET6)
    elif DAEMON_MCAST_GROUP in a:
        group = unpack_addr(a[DAEMON_MCAST_GROUP], socket.AF_INET)
    else:
        group = None

    def number(kind, codec):
        return codec.unpack_from(a[kind])[0] if kind in a else None

    return {
        "mode": next((m for m, v in DAEMON_MODES.items() if v == state), str(state)),
        "interface": bytes(a[DAEMON_MCAST_IFN]).split(b"\0", 1)[0].decode("utf-8", "replace"),
        "sync_id": _U32.unpack(a[DAEMON_SYNC_ID])[0],
        "max_len": number(DAEMON_SYNC_MAXLEN, _U16),
        "group": group,
        "port": number(DAEMON_MCAST_PORT, _U16),
        "ttl": number(DAEMON_MCAST_TTL, _U8),
    }


def _daemon_reply(message):
    return decode_daemon(parse_attrs(message[CMD_ATTR_DAEMON]))


def run_daemon_ops(ops, before, start, stop):
    """Apply sync-daemon operations in order: ("stop", daemon) stops the daemon of its mode, ("start", daemon) starts
    it, by the callables start(daemon) and stop(mode), which raise IPVSError. After a refusal, what the run did is
    undone, the last first (a stopped daemon is started again as `before`, the daemons the plan was made from, had
    it); the IPVSError names the refusal, what was rolled back and what could not be."""
    done = []
    for op in ops:
        try:
            _daemon_op(op, start, stop)
        except IPVSError as e:
            raise _daemon_failure(e, done, before, start, stop) from None
        done.append(op)


def _daemon_op(op, start, stop):
    verb, daemon = op
    if verb == "start":
        start(daemon)
    else:
        stop(daemon["mode"])


def _describe_daemon_op(op):
    return "%s the %s" % (op[0], describe_daemon(op[1]))


def _daemon_failure(error, done, before, start, stop):
    old = dict((d["mode"], d) for d in before)
    rolled, not_rolled = [], []
    for op in reversed(done):
        verb, daemon = op
        undo = ("stop", daemon) if verb == "start" else ("start", old.get(daemon["mode"], daemon))
        try:
            _daemon_op(undo, start, stop)
            rolled.append(_describe_daemon_op(op))
        except IPVSError as e:
            not_rolled.append((_describe_daemon_op(op), str(e)))
    details = dict(applied=[_describe_daemon_op(op) for op in done], rolled_back=rolled,
                   not_rolled_back=[what for what, _why in not_rolled], changed=bool(not_rolled))
    msg = str(error)
    if not done:
        msg += ". Nothing had been applied: the sync daemons are as the task found them."
    elif not_rolled:
        msg += ". %s; COULD NOT ROLL BACK, still applied: %s." % (
            _listing("rolled back", rolled), "; ".join("%s (%s)" % pair for pair in not_rolled))
    else:
        msg += ". %s: the sync daemons are as the task found them." % _listing("rolled back", rolled)
    return IPVSError(msg, error.code, **details)


_SIOCGIFMTU = 0x8921


def interface_mtu(name):
    """The MTU of the interface `name` in this network namespace (SIOCGIFMTU), or None where there is no such
    interface. name: a checked interface name (ASCII, 15 bytes at most)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            raw = fcntl.ioctl(sock.fileno(), _SIOCGIFMTU, struct.pack("=16si12x", name.encode("ascii"), 0))
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.ENXIO):
                return None
            raise IPVSError("Failed to read the MTU of interface %s: %s (errno %s)" % (name, e.strerror or e, e.errno),
                            e.errno) from e
    return struct.unpack_from("=i", raw, 16)[0]


# ---------------------------------------------------------------- the one door

def _missing_pyroute2():
    from ansible.module_utils.basic import missing_required_lib  # here: importing _ipvs needs no AnsibleModule
    return missing_required_lib("pyroute2 (0.9.6 or newer, from PyPI)")


class Session(object):
    """A module run's access to IPVS: the modules read and write the kernel through this only.

    Reading loads nothing, so a read and check mode change no kernel state; where ip_vs is not loaded
    the kernel holds no table and would start with KERNEL_TIMEOUTS. The writes load the kernel modules
    they need first. Construction fails early, with modprobe's message, where ip_vs could not be loaded,
    and without pyroute2 with missing_required_lib's. Every failure is an IPVSError (or modprobe's
    KernelError) whose message names the operation; every answer of the kernel is waited for IPVS.TIMEOUT
    seconds at most.
    """

    def __init__(self, module):
        if not HAS_PYROUTE2:
            raise IPVSError(_missing_pyroute2())
        self._module = module
        _kmod.modprobe(module, ["ip_vs"], dry_run=True)
        self.loaded = _kmod.loaded("ip_vs")
        self._ipvs = IPVS() if self.loaded else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._ipvs is not None:
            self._ipvs.close()
            self._ipvs = None

    # -- reads
    def table(self, counters=True):
        """Every service with its real servers, as the kernel holds them; [] where ip_vs is not loaded. Without
        counters, the real servers' settings only (what a reconcile compares), read faster."""
        return self._ipvs.table(counters) if self._ipvs else []

    def service(self, key, counters=True):
        """The service with key's identity, with its real servers, or None."""
        svc = self._ipvs.service(key) if self._ipvs else None
        if svc is not None:
            svc["real_servers"] = self._ipvs.dests(svc, counters)
        return svc

    def timeouts(self):
        """tcp, tcp_fin and udp in seconds; where ip_vs is not loaded, what loading it brings."""
        return self._ipvs.timeouts() if self._ipvs else dict(KERNEL_TIMEOUTS)

    def info(self):
        """version and conn_tab_size, or None where ip_vs is not loaded."""
        return self._ipvs.info() if self._ipvs else None

    def daemons(self):
        """The sync daemons the kernel runs, master first, each with the keys of _ipvs_names.DAEMON_FIELDS; [] where
        ip_vs is not loaded."""
        return self._ipvs.daemons() if self._ipvs else []

    def interface_mtu(self, name):
        """The MTU of interface name, None where there is no such interface (interface_mtu)."""
        return interface_mtu(name)

    # -- writes (never in check mode: there they change nothing)
    def _writer(self, kernel_modules):
        _kmod.modprobe(self._module, kernel_modules)
        if self._ipvs is None:
            self._ipvs = IPVS()
        return self._ipvs

    def apply(self, ops, before=(), schedulers=()):
        """Load ip_vs and the schedulers' modules (ip_vs_<name>), then apply ops as IPVS.apply does: a refusal
        rolls back what the run applied (before: the services as the plan found them, with real servers)."""
        if ops and not self._module.check_mode:
            self._writer(["ip_vs"] + ["ip_vs_%s" % name for name in schedulers]).apply(ops, before=before)

    def start_daemon(self, daemon):
        """ipvsadm --start-daemon, ip_vs loaded first: daemon has the keys of DAEMON_FIELDS (None: the kernel's
        choice)."""
        if not self._module.check_mode:
            self._writer(["ip_vs"]).start_daemon(daemon)

    def stop_daemon(self, mode):
        """ipvsadm --stop-daemon mode."""
        if not self._module.check_mode:
            self._writer(["ip_vs"]).stop_daemon(mode)

    def apply_daemons(self, ops, before=()):
        """Unless check mode, apply ("stop" | "start", daemon) operations in order, as run_daemon_ops does: a refusal
        undoes what the run did (before: the daemons the plan was made from)."""
        if ops and not self._module.check_mode:
            ipvs = self._writer(["ip_vs"])
            run_daemon_ops(ops, before, ipvs.start_daemon, ipvs.stop_daemon)

    def set_timeouts(self, tcp, tcp_fin, udp):
        """ipvsadm --set, ip_vs loaded first; 0 leaves a timeout as it is."""
        if not self._module.check_mode:
            self._writer(["ip_vs"]).set_timeouts(tcp, tcp_fin, udp)

    def reconcile_timeouts(self, wanted):
        """The one reconcile of the global timeouts (ipvs_timeouts, ipvs_table's timeouts): wanted (name -> seconds,
        _ipvs_plan.desired_timeouts) set where the kernel differs, unless check mode. (before, after); after as the
        kernel then holds them (in check mode, as it would)."""
        # Where ip_vs is not loaded yet, before is what loading it brings.
        before = self.timeouts()
        after = dict(before, **wanted)
        if after != before and not self._module.check_mode:
            self.set_timeouts(*[wanted.get(n, 0) for n in TIMEOUT_NAMES])  # 0 leaves a timeout as it is
            after = self.timeouts()
        return before, after


# ---------------------------------------------------------------- the socket

# Bytes read per datagram. The kernel fills a dump's datagrams up to 32 KiB at most (netlink_recvmsg caps
# max_recvmsg_len there) and an ack or a refusal echoes one request; a larger buffer only costs an mmap per read.
RECV_SIZE = 1 << 16


class IPVS(object):
    """The IPVS generic netlink family on one socket."""

    BATCH = 512  # requests per send
    TIMEOUT = 30  # seconds to wait for each answer of the kernel
    silence = "no answer from the kernel"  # why the last batch's answers are missing

    def __init__(self):
        socket_class, genlmsg, netlink_error = _pyroute2()
        try:
            self._genl = socket_class()
        except OSError as e:
            raise IPVSError("Failed to open a generic netlink socket: %s (errno %s)" % (e.strerror or e, e.errno), e.errno) from e
        try:
            self._genl.bind("IPVS", genlmsg)
        except OSError as e:  # pyroute2's NetlinkError is an OSError too: the kernel answered, it has no such family
            self._genl.close()
            if isinstance(e, netlink_error):
                raise IPVSError("The kernel has no IPVS netlink family (ip_vs not loaded or not built): %s" % e,
                                e.code) from e
            raise IPVSError("Failed to resolve the IPVS netlink family: %s (errno %s)" % (e.strerror or e, e.errno),
                            e.errno) from e
        self.family = self._genl.prid
        self._sock = self._genl.asyncore.socket
        self._seq = 1 << 20  # clear of the sequence numbers pyroute2 used to bind
        self._keys = {}  # service id -> its encoded key (_op_frame)

    def close(self):
        self._genl.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _frame(self, cmd, payload, flags):
        self._seq += 1
        return self._seq, _HDR.pack(_HDR.size + len(payload), self.family, flags, self._seq, 0, cmd, 1, 0) + payload

    def _receive(self):
        """What the kernel sends next (one datagram). The kernel answers a request while it is sent, and fills a
        dump's next part while the previous one is read, so the read is tried at once and select waits only when
        nothing is there yet. Raises _NoAnswer when nothing arrives within TIMEOUT seconds (a blocking read would wait
        forever), OSError EMSGSIZE for a datagram longer than RECV_SIZE."""
        try:
            data, _anc, flags, _addr = self._sock.recvmsg(RECV_SIZE, 0, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if not select.select([self._sock], [], [], self.TIMEOUT)[0]:
                raise _NoAnswer() from None
            data, _anc, flags, _addr = self._sock.recvmsg(RECV_SIZE, 0, socket.MSG_DONTWAIT)
        if flags & socket.MSG_TRUNC:
            raise OSError(errno.EMSGSIZE, "an answer of the kernel longer than %d bytes" % RECV_SIZE)
        return data

    def _replies(self):
        """Yield (seq, type, flags, body) for every netlink message the kernel sends back (_receive's _NoAnswer)."""
        while True:
            data = self._receive()
            off, size = 0, len(data)
            while off + 16 <= size:
                n, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
                yield seq, kind, flags, data[off + 16:off + n]
                off += max((n + 3) & ~3, 16)

    def _request(self, what, cmd, payload=b"", dump=False, raw=False, errors=strerror):
        """One request; the parsed attribute dicts of its replies (several for a dump), or their bodies with raw.

        Every failure, a refusal (its errno explained by errors), a socket error or no answer, is an IPVSError
        "Failed to <what>: ...".
        """
        seq, frame = self._frame(cmd, payload, NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK))
        try:
            self._sock.send(frame)
            return self._answer(seq, dump, raw)
        except _NoAnswer:
            raise IPVSError("Failed to %s: no answer from the kernel within %d s" % (what, self.TIMEOUT), errno.ETIMEDOUT) from None
        except _Refused as e:
            raise IPVSError("Failed to %s: %s (errno %d)" % (what, errors(e.code), e.code), e.code) from None
        except OSError as e:
            raise IPVSError("Failed to %s: %s (errno %s)" % (what, e.strerror or e, e.errno), e.errno) from e

    def _answer(self, seq, dump, raw):
        """The replies to request seq as _request returns them: one loop over what recv() brings (a dump of 10,000
        real servers is 10,000 messages; the per-message generator of _replies cost a third of reading them)."""
        out = []
        while True:
            data = self._receive()
            off, size = 0, len(data)
            while off + 16 <= size:
                n, kind, _flags, rseq, _pid = _NLMSGHDR.unpack_from(data, off)
                if rseq == seq:
                    if kind == NLMSG_ERROR or kind == NLMSG_DONE:
                        raise_refusal(data, off, n)
                        return out
                    body = data[off + 16:off + n]
                    out.append(body if raw else parse_attrs(body, 4))
                    if not dump:
                        return out
                off += max((n + 3) & ~3, 16)

    def _read(self, what, cmd, payload=b"", dump=False, decode=lambda a: a, raw=False, decode_all=None):
        """A read request, its replies decoded (their attribute dicts, or their bodies with raw) each by decode, or
        all by decode_all; a reply the decoder cannot read is an IPVSError too."""
        replies = self._request(what, cmd, payload, dump, raw)
        try:
            return decode_all(replies) if decode_all else [decode(m) for m in replies]
        except (KeyError, IndexError, ValueError, struct.error) as e:
            raise IPVSError("Failed to %s: the kernel's answer lacks or garbles an attribute (%r)" % (what, e)) from e

    # -- reads
    def services(self):
        return self._read("read the IPVS services", CMD_GET_SERVICE, dump=True, decode=_service_reply)

    def service(self, svc):
        """The kernel's entry for svc's key, or None."""
        try:
            replies = self._read("read service %s" % describe_service(svc), CMD_GET_SERVICE,
                                 encode_service(svc, key_only=True), decode=_service_reply)
        except IPVSError as e:
            if e.code in (errno.ESRCH, errno.ENOENT):
                return None
            raise
        return replies[0] if replies else None

    def dests(self, svc, counters=True):
        """svc's real servers; without counters, their settings only (decode_dest_config)."""
        if not counters:
            return self._read("read the real servers of %s" % describe_service(svc), CMD_GET_DEST,
                              encode_service(svc, key_only=True), dump=True, raw=True, decode_all=decode_dest_configs)
        return self._read("read the real servers of %s" % describe_service(svc), CMD_GET_DEST,
                          encode_service(svc, key_only=True), dump=True, decode=_dest_reply)

    def table(self, counters=True):
        """Every service with its real servers, as the kernel holds them; without counters, the real servers'
        settings only (a dump can hold no more than one service's real servers: one dump each)."""
        out = []
        for svc in self.services():
            svc["real_servers"] = self.dests(svc, counters)
            out.append(svc)
        return out

    def timeouts(self):
        return self._read("read the IPVS timeouts", CMD_GET_CONFIG, decode=lambda a: {
            "tcp": _U32.unpack(a[CMD_ATTR_TIMEOUT_TCP])[0], "tcp_fin": _U32.unpack(a[CMD_ATTR_TIMEOUT_TCP_FIN])[0],
            "udp": _U32.unpack(a[CMD_ATTR_TIMEOUT_UDP])[0]})[0]

    def info(self):
        def decode(a):
            v = _U32.unpack(a[INFO_VERSION])[0]
            return {"version": "%d.%d.%d" % (v >> 16, (v >> 8) & 0xFF, v & 0xFF),
                    "conn_tab_size": _U32.unpack(a[INFO_CONN_TAB_SIZE])[0]}
        return self._read("read the IPVS version", CMD_GET_INFO, decode=decode)[0]

    def daemons(self):
        """The sync daemons the kernel runs (GET_DAEMON answers a dump only), master first."""
        found = self._read("read the IPVS sync daemons", CMD_GET_DAEMON, dump=True, decode=_daemon_reply)
        return sorted(found, key=lambda d: DAEMON_ORDER.index(d["mode"]) if d["mode"] in DAEMON_ORDER else 2)

    # -- writes
    def start_daemon(self, daemon):
        """ipvsadm --start-daemon; EEXIST where a daemon of that mode runs, ENODEV where there is no such interface."""
        self._request("start the %s" % describe_daemon(daemon), CMD_NEW_DAEMON, encode_daemon(daemon),
                      errors=daemon_strerror)

    def stop_daemon(self, mode):
        """ipvsadm --stop-daemon; ESRCH where no daemon of that mode runs."""
        self._request("stop the %s sync daemon" % mode, CMD_DEL_DAEMON, encode_daemon({"mode": mode}, key_only=True),
                      errors=daemon_strerror)

    def set_timeouts(self, tcp, tcp_fin, udp):
        """ipvsadm --set; pyroute2 has no call for it. 0 leaves a timeout as it is."""
        payload = (_nla(CMD_ATTR_TIMEOUT_TCP, _U32.pack(tcp)) + _nla(CMD_ATTR_TIMEOUT_TCP_FIN, _U32.pack(tcp_fin))
                   + _nla(CMD_ATTR_TIMEOUT_UDP, _U32.pack(udp)))
        self._request("set the IPVS timeouts", CMD_SET_CONFIG, payload)

    def _exchange(self, ops):
        """Send ops, many per send; [(op, code)] in order: 0 applied, errno refused, None unanswered.

        The kernel handles every request of a send, also those after a refusal.
        """
        codes = [None] * len(ops)
        for start in range(0, len(ops), self.BATCH):
            frames, pending = [], {}
            stop = min(start + self.BATCH, len(ops))
            for i in range(start, stop):
                seq, frame = self._op_frame(ops[i], ack=i == stop - 1)
                frames.append(frame)
                pending[seq] = i
            try:
                self._sock.send(b"".join(frames))
            except OSError as e:  # nothing of this batch reached the kernel: each request failed
                for i in pending.values():
                    codes[i] = e.errno or errno.EIO
                break
            if not self._acks(pending, codes):
                break
        return list(zip(ops, codes))

    def _op_frame(self, op, ack):
        cmd, svc, dest = op
        if dest is not None:
            # A table's real servers come many per service: its key is encoded once.
            sid = service_id(svc)
            key = self._keys.get(sid)
            if key is None:
                key = self._keys[sid] = encode_service(svc, key_only=True)
            payload = key + encode_dest(dest, key_only=cmd == CMD_DEL_DEST)
        else:
            payload = encode_service(svc, key_only=cmd == CMD_DEL_SERVICE)
        flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0) | (
            NLM_F_CREATE | NLM_F_EXCL if cmd in (CMD_NEW_SERVICE, CMD_NEW_DEST) else 0)
        return self._frame(cmd, payload, flags)

    def _acks(self, pending, codes):
        """Read the answers of a batch (pending: seq -> index, in the order sent) into codes; False when the batch's
        last ack never came (self.silence says why).

        Only the last request asks for an ack; the kernel handles the requests in order and answers each refused one
        with its error, so once the last one is answered, a request without an error was applied.
        """
        last = max(pending)
        try:
            for seq, kind, _flags, body in self._replies():
                if kind == NLMSG_ERROR and seq in pending:
                    codes[pending.pop(seq)] = -_I32.unpack_from(body)[0]
                    if seq == last:
                        for i in pending.values():
                            codes[i] = 0
                        return True
        except _NoAnswer:
            self.silence = "no answer from the kernel within %d s" % self.TIMEOUT
        except OSError as e:  # the kernel got the batch: what it did with the unanswered requests is unknown
            self.silence = "the answers were lost (%s, errno %s)" % (e.strerror or e, e.errno)
        return False

    def apply(self, ops, before=()):
        """Apply (cmd, service, dest-or-None) operations in order, many per send.

        A batch stops being sent after the first refusal. Then every operation the kernel applied is
        undone by its inverse (before: the services, with their real servers, the plan was made from),
        and the IPVSError names the refusal, what was rolled back and what could not be.
        """
        applied = []
        for start in range(0, len(ops), self.BATCH):
            results = self._exchange(ops[start:start + self.BATCH])
            applied += [op for op, code in results if code == 0]
            failed = [(op, code) for op, code in results if code != 0]
            if failed:
                raise self._failure(failed, applied, dict((service_id(s), s) for s in before))

    def _failure(self, failed, applied, before):
        op, code = failed[0]
        unanswered = [describe_op(o) for o, c in failed if c is None]
        details = dict(applied=[describe_op(o) for o in applied], unanswered=unanswered, rolled_back=[], not_rolled_back=[])
        if code is None:
            # Nothing answers: undoing would wait for the same silence. Say what is known.
            msg = "Failed to %s: %s; %s" % (describe_op(op), self.silence, _listing("applied and not rolled back", details["applied"]))
            details.update(not_rolled_back=details["applied"], changed=bool(applied))
            return IPVSError(msg + "; unknown whether applied: %s." % "; ".join(unanswered), errno.ETIMEDOUT, **details)
        rolled, not_rolled = self.roll_back(applied, before)
        # changed: the kernel holds something this run did, which a rollback could not undo.
        details.update(rolled_back=rolled, not_rolled_back=[what for what, _why in not_rolled], changed=bool(not_rolled))
        msg = describe_failure(op, code)
        if not applied:
            return IPVSError(msg + ". Nothing had been applied: the table is as the task found it.", code, **details)
        msg += ". %s" % _listing("rolled back (the kernel had applied them)", rolled)
        if not_rolled:
            msg += "; COULD NOT ROLL BACK, still applied: %s" % "; ".join("%s (%s)" % pair for pair in not_rolled)
        else:
            msg += ": the table is as the task found it"
        return IPVSError(msg + ".", code, **details)

    def roll_back(self, applied, before):
        """Undo applied operations, the last first. ([undone op], [(op not undone, why)]) as text."""
        undo = [(op, inverse_ops(op, before)) for op in reversed(applied)]
        flat = [(n, inv) for n, (_op, invs) in enumerate(undo) for inv in invs or []]
        results = self._exchange([inv for _n, inv in flat])
        why = dict((n, "its entry as it was is unknown") for n, (_op, invs) in enumerate(undo) if invs is None)
        for (n, inv), (_inv, code) in zip(flat, results):
            if code and n not in why:
                why[n] = "%s: %s" % (describe_op(inv), "no answer" if code is None else "%s (errno %d)" % (strerror(code), code))
        rolled = [describe_op(op) for n, (op, _invs) in enumerate(undo) if n not in why]
        return rolled, [(describe_op(op), why[n]) for n, (op, _invs) in enumerate(undo) if n in why]


class _NoAnswer(Exception):
    """The kernel did not answer within IPVS.TIMEOUT."""


class _Refused(Exception):
    def __init__(self, code):
        super(_Refused, self).__init__(code)
        self.code = code


def raise_refusal(data, off, n):
    """For the message of length n at off that ends a request (NLMSG_ERROR or NLMSG_DONE): _Refused when it carries
    an errno. An ack or a refusal carries -errno (0: done); a dump ends with NLMSG_DONE carrying 0 or -errno."""
    code = -_I32.unpack_from(data, off + 16)[0] if n >= 20 else 0
    if code > 0:
        raise _Refused(code)


def _listing(what, items):
    return "%d operation%s %s: %s" % (len(items), "" if len(items) == 1 else "s", what, "; ".join(items) or "none")
