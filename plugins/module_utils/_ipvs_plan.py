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

from ansible.module_utils.parsing.convert_bool import boolean

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


def _flag(name, value):
    if value is None:
        return None
    try:
        return boolean(value, strict=True)
    except TypeError:
        raise InvalidInput("%s=%s is not a boolean" % (name, _show(value))) from None


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
    server's address and options on their own; the relations between fields wait for the kernel's values. The
    modules call it before opening the Session, so bad input costs no kernel access. Returns the service key."""
    key = service_key(params, where)
    _service_options(params, 128 if key["family"] == "ipv6" else 32)
    entries = params.get("real_servers")
    if entries is not None:
        if not isinstance(entries, (list, tuple)):
            raise InvalidInput("real_servers=%s is not a list" % _show(entries))
        for i, entry in enumerate(entries):
            precheck_dest(entry, key, "real_servers[%d]" % i)
    return key


def precheck_table(entries):
    """precheck_service for each of ipvs_table's services, the error naming services[i]; their keys."""
    keys = []
    for i, entry in enumerate(entries):
        try:
            keys.append(precheck_service(entry))
        except InvalidInput as e:
            raise InvalidInput("services[%d]: %s" % (i, e)) from None
    return keys


def owned_addresses(addresses, option):
    """The addresses of an ownership option (ipvs_save's addresses, ipvs_table's owned.addresses), each checked
    with a full match and named option[i] when bad; a set of ipaddress objects (so 2001:DB8::1 is 2001:db8::1)."""
    if not isinstance(addresses, (list, tuple)):
        raise InvalidInput("%s=%s is not a list of addresses" % (option, _show(addresses)))
    return set(_ip("%s[%d]" % (option, i), value) for i, value in enumerate(addresses))


def owned_services(table, addresses, marks):
    """The services of table that an owner holds: on one of its addresses (ipaddress objects), or with one of its
    marks (any family: a mark is the owner's whatever the family of the service carrying it)."""
    return [svc for svc in table
            if (svc["fwmark"] in marks if svc["fwmark"] else _parse_ip(svc["address"]) in addresses)]


def precheck_dest(entry, key, where="real server"):
    """A real server's address and options on their own, checked and converted: (address, options given)."""
    if not isinstance(entry, dict):
        raise InvalidInput("%s=%s is not a dict with address, port, ..." % (where, _show(entry)))
    return _dest_address(entry, key, where), _dest_options(entry, where)


def desired_service(params, current):
    """The service the user asked for: set options win, the rest keeps current or defaults.

    Needs no kernel: current=None checks the options as for a service to be created.
    """
    svc = service_key(params)
    max_prefix = 128 if svc["family"] == "ipv6" else 32
    given = _service_options(params, max_prefix)
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


def _dest_address(entry, svc, where):
    ip = _ip("%s address" % where, entry.get("address"))
    why = _unusable(ip)
    if why:
        raise InvalidInput("%s address=%s cannot be a real server address: it is %s" % (where, ip, why))
    family = "ipv6" if ip.version == 6 else "ipv4"
    if family != svc["family"]:
        raise InvalidInput("%s address=%s is %s but the service %s is %s" % (
            where, ip, family, describe_service(svc), svc["family"]))
    return str(ip)


def desired_dest(entry, svc, have, where="real server"):
    """A real server as asked; unset options keep the kernel's values (have: id -> dest) or defaults."""
    address, given = precheck_dest(entry, svc, where)
    port = given["port"]
    if port is None:
        port = svc["port"] if not svc["fwmark"] else 0  # fwmark: 0 keeps each packet's port
    dest = dict(address=address, port=port)
    base = dict(DEST_DEFAULTS)
    current = have.get(dest_id(dest))
    if current:
        base.update((k, current[k]) for k in DEST_FIELDS)
    for k in DEST_FIELDS:
        dest[k] = given[k] if given[k] is not None else base[k]
    if dest["lower_threshold"] > dest["upper_threshold"]:
        raise InvalidInput("%s %s: lower_threshold=%s exceeds upper_threshold=%s (the kernel refuses it; with no "
                           "upper threshold, 0, there can be no lower one)" % (
                               where, describe_dest(dest), dest["lower_threshold"], dest["upper_threshold"]))
    if dest["forwarding"] != "masq" and not svc["fwmark"] and port not in (svc["port"], 0):
        raise InvalidInput("%s %s: port mapping (service port %s to %s) needs forwarding=masq; %s forwarding "
                           "keeps the service port" % (where, describe_dest(dest), svc["port"], port, dest["forwarding"]))
    return dest


def desired_dests(entries, svc, current_dests):
    """The listed real servers, normalised; a server listed twice is an error. Needs no kernel: current_dests=None."""
    if not isinstance(entries, (list, tuple)):
        raise InvalidInput("real_servers=%s is not a list" % _show(entries))
    have = dict((dest_id(d), d) for d in current_dests or [])
    out, seen = [], set()
    for i, entry in enumerate(entries):
        dest = desired_dest(entry, svc, have, where="real_servers[%d]" % i)
        if dest_id(dest) in seen:
            raise InvalidInput("real_servers[%d]: %s is listed twice" % (i, describe_dest(dest)))
        seen.add(dest_id(dest))
        out.append(dest)
    return out


def config_view(svc):
    """What the diff shows of a service: its settings and its real servers, no counters."""
    if svc is None:
        return {}
    out = dict((k, svc[k]) for k in ("family", "protocol", "address", "port", "fwmark") + SERVICE_FIELDS)
    if "real_servers" in svc:
        out["real_servers"] = [dict((k, d[k]) for k in ("address", "port") + DEST_FIELDS)
                               for d in sorted(svc["real_servers"], key=dest_order)]
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


def plan_table(current, entries, purge_services, purge_real_servers, owned=None):
    """Kernel operations turning the kernel's table into the listed services, each as ipvs_service with
    state=present would; services not listed are removed first: all of them with purge_services, those the owner
    holds with owned=(addresses, marks) (see owned_services; the marks listed now count as the owner's too).

    current: the kernel's services with their real servers. Returns (ops, after, removed), after in the order of
    entries (predicted, as plan_service predicts).
    """
    held = dict((service_id(svc), svc) for svc in current)
    ops, after, listed = [], [], {}
    for i, entry in enumerate(entries):
        try:
            key = service_key(entry)
            sid = service_id(key)
            if sid in listed:
                raise InvalidInput("%s is listed twice (also services[%d])" % (describe_service(key), listed[sid]))
            listed[sid] = i
            cur = held.get(sid)
            desired = desired_service(entry, cur)
            dests = None
            if entry.get("real_servers") is not None:
                dests = desired_dests(entry["real_servers"], desired, cur and cur["real_servers"])
        except InvalidInput as e:
            raise InvalidInput("services[%d]: %s" % (i, e)) from None
        svc_ops, svc_after = plan_service(cur, desired, dests, purge_real_servers)
        ops += svc_ops
        after.append(svc_after)
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
