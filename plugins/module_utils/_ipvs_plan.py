# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""IPVS validation, normalisation and planning. Pure: no kernel I/O, no socket, no pyroute2, no AnsibleModule.

One algorithm for every IPVS module: the user's options become a desired object in which
an option left out keeps the kernel's current value (or the creation default); desired and
current are compared field by field; the plan is a list of kernel operations; the predicted
result of the plan is the "after" of the diff in check mode.
"""
from __future__ import annotations

import functools
import ipaddress
import re

from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import (
    ALL_SCHED_FLAGS,
    CMD_DEL_DEST,
    CMD_DEL_SERVICE,
    CMD_NEW_DEST,
    CMD_NEW_SERVICE,
    CMD_SET_DEST,
    CMD_SET_SERVICE,
    DEST_DEFAULTS,
    DEST_FIELDS,
    FORWARDING_CHOICES,
    MAX_I32,
    MAX_PERSISTENCE,
    MAX_TIMEOUT,
    MAX_U16,
    MAX_U32,
    PROTOCOLS,
    SCHED_FLAGS,
    SCHEDULERS,
    SERVICE_DEFAULTS,
    SERVICE_FIELDS,
    TIMEOUT_NAMES,
    describe_dest,
    describe_service,
    dest_id,
    service_id,
)


class InvalidInput(LvsNatError, ValueError):
    """Bad input, found before anything changes; the message names the option."""


def _show(value):
    """A value as a message shows it: repr, cut short (a 10 kB string makes no better message)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Text a whole number may come as (an inventory's string): ASCII digits only ("٨٠" is digits to int()).
_DIGITS = re.compile(r"[0-9]{1,20}", re.ASCII)


def whole_number(where, value, low, high):
    """The one check of a whole number in low..high that the collection's inputs hold (health checks, nat_rules,
    keepalived_vrrp, director_ha): an int, not a bool (Python and Ansible's int type take True as 1), or text of ASCII
    digits. The int, or InvalidInput naming where; a caller with its own error class re-raises the message."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("%s=%s is not a whole number (ASCII digits)" % (where, _show(value)))
    if not low <= value <= high:
        raise InvalidInput("%s=%s is out of range: it must be between %d and %d" % (where, value, low, high))
    return value


def _int_range(name, value, low, high):
    if value is not None and not low <= value <= high:
        raise InvalidInput("%s=%s is out of range: it must be between %d and %d" % (name, value, low, high))


def _integer(name, value):
    """An integer option as AnsibleModule gives it; text of ASCII digits as the controller-side preflight may."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,20}", value, re.ASCII):
        return int(value)
    raise InvalidInput("%s=%s is not an integer" % (name, _show(value)))


def _choice(name, value, choices):
    if value is not None and (not isinstance(value, str) or value not in choices):
        raise InvalidInput("%s=%s is not one of: %s" % (name, _show(value), ", ".join(sorted(choices))))
    return value


# ansible's convert_bool.boolean(strict=True) accepts these; kept here so that lvs-nat-healthd, which runs this
# planner on a director without ansible, imports nothing from ansible.
_TRUE = frozenset(("y", "yes", "on", "1", "true", "t", 1))
_FALSE = frozenset(("n", "no", "off", "0", "false", "f", 0))


def _flag(name, value):
    if value is None or isinstance(value, bool):
        return value
    key = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    key = key.strip().lower() if isinstance(key, str) else key if isinstance(key, (int, float)) else None
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise InvalidInput("%s=%s is not a boolean" % (name, _show(value)))


# Address text: ASCII hex digits, dots and colons only (no zone, no space, no other digits).
_ADDRESS_TEXT = re.compile(r"[0-9A-Fa-f:.]{2,45}", re.ASCII)


def _ip(name, value):
    if isinstance(value, str) and "%" in value:
        raise InvalidInput("%s=%s is a scoped address: IPVS keeps no zone (it would take %s for it), so an "
                           "address with %%zone cannot be used" % (name, _show(value), _show(value.split("%", 1)[0])))
    try:
        if not isinstance(value, str) or not _ADDRESS_TEXT.fullmatch(value):
            raise ValueError(value)
        ip = _parse_ip(value)
    except ValueError:
        raise InvalidInput("%s=%s is not an IPv4 or IPv6 address" % (name, _show(value))) from None
    if ip.version == 4 and str(ip) != value:
        # 010.0.0.1: some Python versions read the leading zero as decimal, ipvsadm and inet_aton as octal.
        raise InvalidInput("%s=%s is not an IPv4 address in dotted decimal without leading zeros" % (name, _show(value)))
    return ip


@functools.lru_cache(maxsize=4096)
def _parse_ip(value):
    # A table names the same few real servers again and again: parse each address once per run.
    return ipaddress.ip_address(value)


def _unusable(ip):
    """Why an address can be neither a virtual service nor a real server, or None."""
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "the broadcast address"
    if ip.version == 6 and ip.is_link_local:
        return "an IPv6 link-local address, which needs a zone that IPVS does not keep"
    return None


def service_key(params, where=""):
    """The kernel's identity of a service: fwmark + family, or protocol + address + port."""
    p = where
    family = _choice(p + "family", params.get("family"), ("ipv4", "ipv6"))
    fwmark = _integer(p + "fwmark", params.get("fwmark"))
    if fwmark is not None:
        _int_range(p + "fwmark", fwmark, 1, MAX_U32)
        return dict(family=family or "ipv4", fwmark=fwmark, protocol=None, address=None, port=None)
    if params.get("address") is None:
        raise InvalidInput("%saddress or %sfwmark is required" % (p, p))
    ip = _ip(p + "address", params["address"])
    ip_family = "ipv6" if ip.version == 6 else "ipv4"
    if family and family != ip_family:
        raise InvalidInput("%sfamily=%s does not match %saddress=%s, an %s address" % (p, family, p, ip, ip_family))
    why = _unusable(ip)
    if why:
        raise InvalidInput("%saddress=%s cannot be a virtual service address: it is %s" % (p, ip, why))
    port = _integer(p + "port", params.get("port"))
    if port is None:
        raise InvalidInput("%sport is required with %saddress" % (p, p))
    _int_range(p + "port", port, 0, MAX_U16)
    protocol = _choice(p + "protocol", params.get("protocol"), PROTOCOLS)
    return dict(family=ip_family, fwmark=0, protocol=protocol or "tcp", address=str(ip), port=port)


def _service_options(params, max_prefix):
    """The service settings the user set, checked and converted; None for those left out."""
    given = dict(
        scheduler=_choice("scheduler", params.get("scheduler"), SCHEDULERS),
        scheduler_flags=params.get("scheduler_flags"),
        persistence_timeout=_integer("persistence_timeout", params.get("persistence_timeout")),
        persistence_prefix=_integer("persistence_prefix", params.get("persistence_prefix")),
        one_packet=_flag("one_packet", params.get("one_packet")),
    )
    flags = given["scheduler_flags"]
    if flags is not None:
        if not isinstance(flags, (list, tuple)):
            raise InvalidInput("scheduler_flags=%s is not a list" % _show(flags))
        for i, flag in enumerate(flags):
            _choice("scheduler_flags[%d]" % i, flag, ALL_SCHED_FLAGS)
        given["scheduler_flags"] = list(flags)
    _int_range("persistence_timeout", given["persistence_timeout"], 0, MAX_PERSISTENCE)
    _int_range("persistence_prefix", given["persistence_prefix"], 1, max_prefix)
    return given


def precheck_service(params, where=""):
    """The checks of desired_service and desired_dests that need no kernel: the key, each option and each real
    server on its own; the relations between fields wait for the kernel's values. The modules call it before opening
    the Session, so bad input costs no kernel access. Returns the service key."""
    key = service_key(params, where)
    _service_options(params, 128 if key["family"] == "ipv6" else 32)
    parse_dests(params.get("real_servers"), key)
    return key


class TableEntry(object):
    """One of ipvs_table's services as precheck_table checked it: its key and kernel identity, the options given
    (None where left out) and its real servers as parse_dest tuples (None: not listed, left alone)."""

    __slots__ = ("key", "sid", "given", "dests")

    def __init__(self, key, given, dests):
        self.key, self.sid, self.given, self.dests = key, service_id(key), given, dests


def precheck_table(entries):
    """Every service of ipvs_table checked on its own before the kernel is read, in one pass: key, options, real
    servers (each listed once), each service listed once. A TableEntry each; an error names services[i]."""
    out, listed = [], {}
    for i, entry in enumerate(entries):
        try:
            key = service_key(entry)
            given = _service_options(entry, 128 if key["family"] == "ipv6" else 32)
            sid = service_id(key)
            if sid in listed:
                raise InvalidInput("%s is listed twice (also services[%d])" % (describe_service(key), listed[sid]))
            listed[sid] = i
            out.append(TableEntry(key, given, parse_dests(entry.get("real_servers"), key)))
        except InvalidInput as e:
            raise InvalidInput("services[%d]: %s" % (i, e)) from None
    return out


def owned_addresses(addresses, option):
    """The addresses of an ownership option (ipvs_save's addresses, ipvs_table's owned.addresses), each checked
    with a full match and named option[i] when bad; a set of ipaddress objects (so 2001:DB8::1 is 2001:db8::1)."""
    if not isinstance(addresses, (list, tuple)):
        raise InvalidInput("%s=%s is not a list of addresses" % (option, _show(addresses)))
    return set(_ip("%s[%d]" % (option, i), value) for i, value in enumerate(addresses))


def owned_keys(entries, option):
    """The service keys of an ownership option (ipvs_table's owned.skip, ipvs_save's skip), each checked by
    service_key and named option[i] when bad; {service id: index in entries}."""
    out = {}
    for i, entry in enumerate(entries or ()):
        try:
            out[service_id(service_key(entry))] = i
        except InvalidInput as e:
            raise InvalidInput("%s[%d]: %s" % (option, i, e)) from None
    return out


def owned_services(table, addresses, marks):
    """The services of table that an owner holds: on one of its addresses (ipaddress objects), or with one of its
    marks (any family: a mark is the owner's whatever the family of the service carrying it)."""
    return [svc for svc in table
            if (svc["fwmark"] in marks if svc["fwmark"] else _parse_ip(svc["address"]) in addresses)]


def desired_service(params, current, key=None, given=None):
    """The service the user asked for: set options win, the rest keeps current or defaults.

    Needs no kernel: current=None checks the options as for a service to be created. key and given: what
    service_key and _service_options made of params already (precheck_table), so nothing is checked twice.
    """
    svc = dict(key) if key is not None else service_key(params)
    max_prefix = 128 if svc["family"] == "ipv6" else 32
    given = given if given is not None else _service_options(params, max_prefix)
    base = dict(SERVICE_DEFAULTS, persistence_prefix=max_prefix)
    if current:
        base.update((k, current[k]) for k in SERVICE_FIELDS)
    for k in SERVICE_FIELDS:
        svc[k] = given[k] if given[k] is not None else base[k]
    # Flags and the persistence mask belong to a scheduler and to persistence: reset them
    # when those change and the user did not restate them.
    if given["scheduler_flags"] is None and current and svc["scheduler"] != current["scheduler"]:
        svc["scheduler_flags"] = []
    if given["persistence_prefix"] is None and not svc["persistence_timeout"]:
        svc["persistence_prefix"] = max_prefix
    svc["scheduler_flags"] = sorted(set(svc["scheduler_flags"]))
    _check_service(svc, given)
    return svc


def _check_service(svc, given):
    """Relations between a service's fields, once every field has its value."""
    if given["persistence_prefix"] is not None and not svc["persistence_timeout"]:
        raise InvalidInput("persistence_prefix=%s needs persistence_timeout: the mask groups clients of a persistent "
                           "service only" % given["persistence_prefix"])
    bad = [f for f in svc["scheduler_flags"] if f not in SCHED_FLAGS.get(svc["scheduler"], {})]
    if bad:
        raise InvalidInput("scheduler_flags=%s do not fit scheduler=%s (%s)" % (
            ",".join(bad), svc["scheduler"],
            "it takes %s" % " and ".join(sorted(SCHED_FLAGS[svc["scheduler"]])) if svc["scheduler"] in SCHED_FLAGS
            else "only sh and mh take flags"))
    if svc["one_packet"] and svc["protocol"] not in ("udp", None):
        raise InvalidInput("one_packet=true is for UDP services (one-packet scheduling); this service is %s"
                           % svc["protocol"].upper())
    if svc["port"] == 0 and not svc["persistence_timeout"]:
        raise InvalidInput("port=0 (all ports) needs persistence_timeout: the kernel accepts a port-0 service "
                           "only when it is persistent")


# A real server as the planner handles it: (address, port, forwarding, weight, upper_threshold, lower_threshold),
# the address canonical, the port resolved, every other option None where the user left it out.
DEST_OPTIONS = ("address", "port") + DEST_FIELDS
_DEST_DEFAULT_FIELDS = tuple(DEST_DEFAULTS[k] for k in DEST_FIELDS)
# The compact form: ADDRESS, ADDRESS:PORT or ADDRESS:PORT:WEIGHT, an IPv6 address in brackets (full match, ASCII).
_COMPACT_DEST = re.compile(r"(?:\[([0-9A-Fa-f:.]{2,45})\]|([0-9.]{1,15}))(?::([0-9]{1,5})(?::([0-9]{1,5}))?)?", re.ASCII)


def _real_server_address(value, where):
    """(canonical text, family) of a real server's address, or InvalidInput naming `where address`."""
    ip = _ip("%s address" % where, value)
    why = _unusable(ip)
    if why:
        raise InvalidInput("%s address=%s cannot be a real server address: it is %s" % (where, ip, why))
    return str(ip), "ipv6" if ip.version == 6 else "ipv4"


@functools.lru_cache(maxsize=4096)
def _known_address(value):
    # A table names the same few real servers again and again: each good address is checked once per run.
    return _real_server_address(value, "")


def _address(value, where):
    try:
        return _known_address(value)
    except (InvalidInput, TypeError):  # checked again to name where it is (TypeError: not hashable, not text)
        return _real_server_address(value, _entry_name(where))


def _dest_options(entry, where):
    """A real server's settings the user set, checked and converted; None for those left out."""
    given = dict(
        port=_integer("%s port" % where, entry.get("port")),
        forwarding=_choice("%s forwarding" % where, entry.get("forwarding"), FORWARDING_CHOICES),
        weight=_integer("%s weight" % where, entry.get("weight")),
        upper_threshold=_integer("%s upper_threshold" % where, entry.get("upper_threshold")),
        lower_threshold=_integer("%s lower_threshold" % where, entry.get("lower_threshold")),
    )
    _int_range("%s port" % where, given["port"], 0, MAX_U16)
    _int_range("%s weight" % where, given["weight"], 0, MAX_U16)
    _int_range("%s upper_threshold" % where, given["upper_threshold"], 0, MAX_I32)
    _int_range("%s lower_threshold" % where, given["lower_threshold"], 0, MAX_I32)
    return given


def _entry_name(where):
    """The name of a real server in a message: where as given, or real_servers[where] for an index (a large table's
    entries get a name only when one is refused)."""
    return "real_servers[%d]" % where if isinstance(where, int) else where


def _compact_dest(text, where):
    match = _COMPACT_DEST.fullmatch(text)
    if not match:
        raise InvalidInput("%s=%s is neither ADDRESS, ADDRESS:PORT nor ADDRESS:PORT:WEIGHT (an IPv6 address in "
                           "brackets)" % (_entry_name(where), _show(text)))
    v6, v4, port, weight = match.groups()
    address, family = _address(v6 or v4, where)
    if v6 is not None and family != "ipv6":
        raise InvalidInput("%s=%s: only an IPv6 address goes in brackets" % (_entry_name(where), _show(text)))
    port = None if port is None else int(port)
    weight = None if weight is None else int(weight)
    # Only digits get here: a value out of range is too large. The message is made only then.
    if port is not None and port > MAX_U16:
        _int_range("%s port" % _entry_name(where), port, 0, MAX_U16)
    if weight is not None and weight > MAX_U16:
        _int_range("%s weight" % _entry_name(where), weight, 0, MAX_U16)
    return address, family, port, None, weight, None, None


def _dict_dest(entry, where):
    where = _entry_name(where)
    unknown = [k for k in entry if k not in DEST_OPTIONS]
    if unknown:
        raise InvalidInput("%s: %s is not an option of a real server (it takes %s)" % (
            where, ", ".join(sorted(_show(k) for k in unknown)), ", ".join(DEST_OPTIONS)))
    address, family = _address(entry.get("address"), where)
    given = _dest_options(entry, where)
    return (address, family, given["port"], given["forwarding"], given["weight"], given["upper_threshold"],
            given["lower_threshold"])


def parse_dest(entry, key, where="real server"):
    """A real server on its own, checked against its service's key: a dict (address and the options of
    DEST_OPTIONS) or the compact text ADDRESS[:PORT[:WEIGHT]]. The planner's tuple: (address, port, forwarding,
    weight, upper_threshold, lower_threshold), options left out None, the port the service's when left out (0 for a
    fwmark service: each packet keeps its port). where: the entry's name, or its index j for real_servers[j]."""
    if isinstance(entry, str):
        address, family, port, forwarding, weight, upper, lower = _compact_dest(entry, where)
    elif isinstance(entry, dict):
        address, family, port, forwarding, weight, upper, lower = _dict_dest(entry, where)
    else:
        raise InvalidInput("%s=%s is neither a dict with address, port, ... nor ADDRESS:PORT:WEIGHT text" % (
            _entry_name(where), _show(entry)))
    if family != key["family"]:
        raise InvalidInput("%s address=%s is %s but the service %s is %s" % (
            _entry_name(where), address, family, describe_service(key), key["family"]))
    if port is None:
        port = key["port"] if not key["fwmark"] else 0
    return address, port, forwarding, weight, upper, lower


def parse_dests(entries, key):
    """parse_dest for each of a service's real servers (errors name real_servers[j]), each listed once; None for
    None (real servers left alone)."""
    if entries is None:
        return None
    if not isinstance(entries, (list, tuple)):
        raise InvalidInput("real_servers=%s is not a list" % _show(entries))
    out, seen = [], set()
    for j, entry in enumerate(entries):
        dest = parse_dest(entry, key, j)
        if dest[:2] in seen:
            named = describe_dest(dict(address=dest[0], port=dest[1]))
            raise InvalidInput("real_servers[%d]: %s is listed twice" % (j, named))
        seen.add(dest[:2])
        out.append(dest)
    return out


def _dest_fields(parsed, current, svc, where):
    """The fields (forwarding, weight, upper_threshold, lower_threshold) of a parsed real server: those left out
    keep current's (the kernel's entry, or None) or the defaults; checked against each other and the service.
    where: the entry's name, or its index j for real_servers[j]."""
    base = _DEST_DEFAULT_FIELDS if current is None else (
        current["forwarding"], current["weight"], current["upper_threshold"], current["lower_threshold"])
    _address, port, forwarding, weight, upper, lower = parsed
    fields = (base[0] if forwarding is None else forwarding, base[1] if weight is None else weight,
              base[2] if upper is None else upper, base[3] if lower is None else lower)
    if fields[3] > fields[2] or (fields[0] != "masq" and not svc["fwmark"] and port not in (svc["port"], 0)):
        _refuse_dest(parsed, fields, svc, where)
    return fields, base


def _refuse_dest(parsed, fields, svc, where):
    where = _entry_name(where)
    forwarding, _weight, upper, lower = fields
    dest = describe_dest(dict(address=parsed[0], port=parsed[1]))
    if lower > upper:
        raise InvalidInput("%s %s: lower_threshold=%s exceeds upper_threshold=%s (the kernel refuses it; with no "
                           "upper threshold, 0, there can be no lower one)" % (where, dest, lower, upper))
    raise InvalidInput("%s %s: port mapping (service port %s to %s) needs forwarding=masq; %s forwarding "
                       "keeps the service port" % (where, dest, svc["port"], parsed[1], forwarding))


def _dest_dict(parsed, fields):
    return dict(zip(DEST_OPTIONS, parsed[:2] + fields))


def complete_dest(parsed, current, svc, where="real server"):
    """The full real server (a dict) a parse_dest tuple asks for: options left out keep current's (the kernel's
    entry, or None) or the defaults."""
    return _dest_dict(parsed, _dest_fields(parsed, current, svc, where)[0])


def desired_dest(entry, svc, have, where="real server"):
    """A real server as asked; unset options keep the kernel's values (have: id -> dest) or defaults."""
    parsed = parse_dest(entry, svc, where)
    return complete_dest(parsed, have.get(parsed[:2]), svc, where)


def desired_dests(entries, svc, current_dests):
    """The listed real servers, normalised; a server listed twice is an error. Needs no kernel: current_dests=None."""
    have = dict((dest_id(d), d) for d in current_dests or [])
    return [complete_dest(parsed, have.get(parsed[:2]), svc, "real_servers[%d]" % j)
            for j, parsed in enumerate(parse_dests(entries, svc))]


def config_view(svc):
    """What the diff shows of a service: its settings and its real servers, no counters."""
    if svc is None:
        return {}
    out = dict((k, svc[k]) for k in ("family", "protocol", "address", "port", "fwmark") + SERVICE_FIELDS)
    if "real_servers" in svc:
        out["real_servers"] = [dict((k, d[k]) for k in DEST_OPTIONS) for d in sorted(svc["real_servers"], key=dest_order)]
    return out


def dest_order(d):
    """Real servers in address order, then port (the order of diffs, results and saved files)."""
    ip = _parse_ip(d["address"])
    return (ip.version, int(ip), d["port"])


def plan_service(current, desired, dests_wanted, purge):
    """Kernel operations turning current into desired, and the predicted result.

    current: kernel service with "real_servers", or None. desired: a full service or None
    (absent). dests_wanted: list of full real servers, or None to leave them alone.
    """
    ops = []
    if desired is None:
        if current is not None:
            ops.append((CMD_DEL_SERVICE, current, None))
        return ops, None
    have = dict((dest_id(d), d) for d in (current or {}).get("real_servers", []))
    if current is None:
        ops.append((CMD_NEW_SERVICE, desired, None))
    elif any(current[k] != desired[k] for k in SERVICE_FIELDS):
        ops.append((CMD_SET_SERVICE, desired, None))
    after_dests = dict(have)
    if dests_wanted is not None:
        ops += _plan_dests(desired, have, dests_wanted, purge, after_dests)
    after = dict(desired, real_servers=sorted(after_dests.values(), key=dest_order))
    return ops, after


def _plan_dests(svc, have, dests_wanted, purge, after_dests):
    """Operations on svc's real servers (have: id -> kernel's); after_dests (id -> dest) updated to the result."""
    ops = []
    want = dict((dest_id(d), d) for d in dests_wanted)
    if purge:
        for key in sorted(set(have) - set(want)):
            ops.append((CMD_DEL_DEST, svc, have[key]))
            del after_dests[key]
    for d in dests_wanted:
        old = have.get(dest_id(d))
        if old is None:
            ops.append((CMD_NEW_DEST, svc, d))
        elif any(old[k] != d[k] for k in DEST_FIELDS):
            ops.append((CMD_SET_DEST, svc, d))
        after_dests[dest_id(d)] = dict(old or {}, **d)
    return ops


def _plan_parsed_dests(svc, current, parsed, purge):
    """Operations on svc's real servers from parse_dest tuples, compared as tuples: a dict is made only for an
    operation. current: the kernel's real servers of the service."""
    have = {(d["address"], d["port"]): d for d in current}
    ops = []
    if purge:
        wanted = set(p[:2] for p in parsed)
        ops += [(CMD_DEL_DEST, svc, have[did]) for did in sorted(set(have) - wanted)]
    for j, dest in enumerate(parsed):
        old = have.get(dest[:2])
        if old is not None and dest[2] is None and dest[4] is None and dest[5] is None and (
                dest[3] is None or dest[3] == old["weight"]) and old["forwarding"] == "masq" and (
                old["lower_threshold"] <= old["upper_threshold"]):
            continue  # at most the weight given, as the kernel holds it (masquerading, valid thresholds): no change
        fields, base = _dest_fields(dest, old, svc, j)
        if old is None:
            ops.append((CMD_NEW_DEST, svc, _dest_dict(dest, fields)))
        elif fields != base:
            ops.append((CMD_SET_DEST, svc, _dest_dict(dest, fields)))
    return ops


def _predicted(current, desired, ops):
    """The service as the kernel will hold it once ops (its own operations) are applied."""
    dests = dict((dest_id(d), d) for d in (current or {}).get("real_servers", []))
    for cmd, _svc, dest in ops:
        if dest is None:
            continue
        if cmd == CMD_DEL_DEST:
            dests.pop(dest_id(dest), None)
        else:
            dests[dest_id(dest)] = dict(dests.get(dest_id(dest)) or {}, **dest)
    return dict(desired, real_servers=sorted(dests.values(), key=dest_order))


def plan_table(current, entries, purge_services, purge_real_servers, owned=None, parsed=None, predict=True):
    """Kernel operations turning the kernel's table into the listed services, each as ipvs_service with
    state=present would; services not listed are removed first: all of them with purge_services, those the owner
    holds with owned=(addresses, marks) (see owned_services; the marks listed now count as the owner's too).

    current: the kernel's services with their real servers; parsed: precheck_table(entries), made here when None.
    Returns (ops, after, removed): after holds the services the operations touch, predicted with their real servers
    (with predict=False, their settings only), in the order of entries.
    """
    parsed = precheck_table(entries) if parsed is None else parsed
    held = dict((service_id(svc), svc) for svc in current)
    ops, after = [], []
    for i, (entry, checked) in enumerate(zip(entries, parsed)):
        cur = held.get(checked.sid)
        try:
            desired = desired_service(entry, cur, key=checked.key, given=checked.given)
            svc_ops = []
            if cur is None:
                svc_ops.append((CMD_NEW_SERVICE, desired, None))
            elif any(cur[k] != desired[k] for k in SERVICE_FIELDS):
                svc_ops.append((CMD_SET_SERVICE, desired, None))
            if checked.dests is not None:
                svc_ops += _plan_parsed_dests(desired, cur["real_servers"] if cur else (), checked.dests,
                                              purge_real_servers)
        except InvalidInput as e:
            raise InvalidInput("services[%d]: %s" % (i, e)) from None
        if svc_ops:
            ops += svc_ops
            after.append(_predicted(cur, desired, svc_ops) if predict else desired)
    listed = set(checked.sid for checked in parsed)
    unlisted = [svc for key, svc in sorted(held.items(), key=lambda kv: str(kv[0])) if key not in listed]
    if purge_services:
        removed = unlisted
    elif owned is not None:
        marks = set(owned[1]) | set(sid[1] for sid in listed if sid[1])
        removed = owned_services(unlisted, owned[0], marks)
    else:
        removed = []
    return [(CMD_DEL_SERVICE, svc, None) for svc in removed] + ops, after, removed


def plan_dest(svc, current, desired):
    """Operations for one real server of an existing service: add, edit, delete or nothing."""
    if desired is None:
        return ([(CMD_DEL_DEST, svc, current)] if current else []), None
    if current is None:
        return [(CMD_NEW_DEST, svc, desired)], desired
    if any(current[k] != desired[k] for k in DEST_FIELDS):
        return [(CMD_SET_DEST, svc, desired)], dict(current, **desired)
    return [], current


def desired_timeouts(params):
    """The connection timeouts the user set (tcp, tcp_fin, udp -> seconds), each within what the kernel takes."""
    wanted = {}
    for name in TIMEOUT_NAMES:
        value = _integer(name, params.get(name))
        if value is not None and not 1 <= value <= MAX_TIMEOUT:
            raise InvalidInput("%s=%s is out of range: it must be between 1 and %d seconds" % (name, value, MAX_TIMEOUT))
        if value is not None:
            wanted[name] = value
    return wanted
