# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""keepalived for VRRP only (lvs.nat.keepalived_vrrp): every option checked (check), keepalived.conf rendered from the
checked data (render). Pure: no I/O, on import or after (the VRRP state is _addresses.vrrp_state's)."""
from __future__ import annotations

import ipaddress
import math
import re

from ansible_collections.lvs.nat.plugins.module_utils._addresses import interface_problem
from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import InvalidInput, _ip, _show, whole_number

HEADER = "# Managed by lvs.nat.keepalived_vrrp: edits here are overwritten.\n"
DEFAULTS = dict(priority=100, advert_int=1, preempt=False, preempt_delay=0, startup_delay=0, sync_group="lvs_nat")
INSTANCE_KEYS = ("name", "interface", "vrid", "address", "source", "peers", "track_interfaces")
MAX_INSTANCES = 8
# VRRPv3 counts the advert interval in centiseconds on 12 bits: 0.01 to 40.95 s. VRRPv2 counts whole seconds, 1 to 255,
# and keepalived 2.2.7 rounds (and `keepalived -t` refuses) a fraction there.
V3_MAX_ADVERT = 40.95

# Full matches, ASCII only. Each value becomes one token of keepalived.conf: none of them can hold whitespace, a
# quote, a brace, '#' or '!' (comments), '$' (parameter substitution) or '@' (conditional configuration at the start
# of a line).
_ROUTER_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)
_PREFIXED = re.compile(r"([0-9A-Fa-f.:]{2,45})/([0-9]{1,3})", re.ASCII)


class KeepalivedError(LvsNatError):
    """A keepalived_vrrp option that is refused; the message starts with the option's path (instances[1].vrid)."""


def _fail(where, value, what):
    raise KeepalivedError("%s=%s %s" % (where, _show(value), what), option=where)


def _string(where, value, pattern, what):
    if not isinstance(value, str) or not pattern.fullmatch(value):
        _fail(where, value, what)
    return value


def _interface(where, value):
    # Interface names are _addresses' (none holds '@', which starts keepalived's conditional configuration).
    problem = interface_problem(value, where)
    if problem:
        raise KeepalivedError(problem, option=where)
    return value


def _int(where, value, low, high):
    try:
        return whole_number(where, value, low, high)
    except InvalidInput as e:
        raise KeepalivedError(str(e), option=where) from None


def _number(where, value, low, high, step):
    """A number of seconds in [low, high] (low excluded when it is 0 and step says so), a multiple of step."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        _fail(where, value, "must be a number from %g to %g" % (low, high))
    if abs(value / step - round(value / step)) > 1e-6:
        _fail(where, value, "must be a multiple of %g s" % step)
    return value


def _address(where, value):
    """An address as every module checks it (_ipvs_plan._ip: full match, no zone, no leading zeros)."""
    try:
        return _ip(where, value)
    except InvalidInput as e:
        raise KeepalivedError(str(e), option=where) from None


def _prefixed(where, value):
    match = _PREFIXED.fullmatch(value) if isinstance(value, str) else None
    if not match:
        _fail(where, value, "must be an address with its prefix length, as 198.51.100.10/26")
    try:
        return ipaddress.ip_interface(value)
    except ValueError:
        _fail(where, value, "must be an address with its prefix length, as 198.51.100.10/26")


def _list(where, value, minimum=0):
    if value is None:
        value = []
    if not isinstance(value, (list, tuple)) or len(value) < minimum:
        _fail(where, value, "must be a list of at least %d item(s)" % minimum if minimum else "must be a list")
    return list(value)


def _advert_int(value):
    """advert_int as a number of seconds: a whole number up to 255 (VRRPv2), or a multiple of 0.01 up to 40.95 (VRRPv3)."""
    value = _number("advert_int", value, 0, 255, 0.01)
    if value <= 0:
        _fail("advert_int", value, "must be above 0")
    if value != int(value) and value > V3_MAX_ADVERT:
        _fail("advert_int", value, "must be a whole number of seconds above %g (VRRPv3's limit for fractions)" % (
            V3_MAX_ADVERT))
    return value


def _peers(where, value, source, floating):
    peers = []
    for j, peer in enumerate(_list(where, value, 1)):
        at = "%s[%d]" % (where, j)
        address = _address(at, peer)
        if address.version != floating.version:
            _fail(at, peer, "must be an IPv%d address, as the instance's address" % floating.version)
        if address == source:
            _fail(at, peer, "is the instance's own source address")
        if address == floating.ip:
            _fail(at, peer, "is the instance's floating address")
        if str(address) in peers:
            _fail(at, peer, "is listed twice")
        peers.append(str(address))
    return peers


def _tracked(where, value, interface):
    tracked = []
    for j, name in enumerate(_list(where, value)):
        at = "%s[%d]" % (where, j)
        name = _interface(at, name)
        # keepalived 2.2.7 ignores a tracked interface that is the instance's own (it tracks that one anyway), with a
        # warning that makes `keepalived -t` fail.
        if name == interface:
            _fail(at, name, "is the instance's own interface, which keepalived tracks already; list only the others")
        if name in tracked:
            _fail(at, name, "is listed twice")
        tracked.append(name)
    return tracked


def _instance(i, entry, advert_int):
    where = "instances[%d]" % i
    if not isinstance(entry, dict):
        _fail(where, entry, "must be a dict")
    unknown = sorted(set(entry) - set(INSTANCE_KEYS))
    if unknown:
        _fail("%s.%s" % (where, unknown[0]), entry[unknown[0]], "is not an option of an instance")
    name = _string(where + ".name", entry.get("name"), _NAME, "must be 1 to 32 ASCII letters, digits, _ and -")
    interface = _interface(where + ".interface", entry.get("interface"))
    vrid = _int(where + ".vrid", entry.get("vrid"), 1, 255)
    floating = _prefixed(where + ".address", entry.get("address"))
    source = _address(where + ".source", entry.get("source"))
    if source.version != floating.version:
        _fail(where + ".source", entry.get("source"), "must be an IPv%d address, as the instance's address" % (
            floating.version))
    if source == floating.ip:
        _fail(where + ".source", entry.get("source"), "is the floating address; give this host's fixed address")
    if floating.version == 6 and advert_int > V3_MAX_ADVERT:
        _fail("advert_int", advert_int, "must be at most %g with an IPv6 instance (%s, VRRPv3)" % (
            V3_MAX_ADVERT, where))
    return dict(name=name, interface=interface, vrid=vrid,
                address="%s/%d" % (floating.ip, floating.network.prefixlen), source=str(source),
                peers=_peers(where + ".peers", entry.get("peers"), source, floating),
                track_interfaces=_tracked(where + ".track_interfaces", entry.get("track_interfaces"), interface))


def _unique(instances):
    """Names, VRIDs and floating addresses each used once; a floating address is nobody's fixed address."""
    seen = dict(name={}, vrid={}, address={})
    fixed = set()
    for inst in instances:
        fixed.add(inst["source"])
        fixed.update(inst["peers"])
    for i, inst in enumerate(instances):
        for key in ("name", "vrid", "address"):
            value = inst[key] if key != "address" else floating_address(inst)
            if value in seen[key]:
                _fail("instances[%d].%s" % (i, key), inst[key], "is also instances[%d]'s" % seen[key][value])
            seen[key][value] = i
        if floating_address(inst) in fixed:
            _fail("instances[%d].address" % i, inst["address"], "is a fixed address (a source or peer) of an instance")


def check(params):
    """The options (a dict as module.params, None meaning the default) checked and normalised: KeepalivedError naming
    the first bad option, before anything is read or changed. Addresses come back in their canonical form."""
    p = dict((k, v) for k, v in params.items() if v is not None)
    out = dict((k, p.get(k, v)) for k, v in DEFAULTS.items())
    out["router_id"] = _string("router_id", p.get("router_id"), _ROUTER_ID,
                               "must be 1 to 64 ASCII letters, digits, _ . and -")
    out["priority"] = _int("priority", out["priority"], 1, 254)
    out["advert_int"] = _advert_int(out["advert_int"])
    if not isinstance(out["preempt"], bool):
        _fail("preempt", out["preempt"], "must be true or false")
    out["preempt_delay"] = _int("preempt_delay", out["preempt_delay"], 0, 1000)
    if out["preempt_delay"] and not out["preempt"]:
        _fail("preempt_delay", out["preempt_delay"], "needs preempt=true (keepalived ignores it with nopreempt)")
    out["startup_delay"] = _number("startup_delay", out["startup_delay"], 0, 3600, 0.001)
    out["sync_group"] = _string("sync_group", out["sync_group"], _NAME, "must be 1 to 32 ASCII letters, digits, _ and -")
    instances = p.get("instances")
    if not isinstance(instances, (list, tuple)) or not 1 <= len(instances) <= MAX_INSTANCES:
        _fail("instances", instances, "must be a list of 1 to %d instances" % MAX_INSTANCES)
    out["instances"] = [_instance(i, entry, out["advert_int"]) for i, entry in enumerate(instances)]
    _unique(out["instances"])
    return out


def floating_address(instance):
    """An instance's floating address without its prefix length."""
    return instance["address"].split("/", 1)[0]


def _seconds(value):
    """A number as keepalived reads it: 1, 0.5, 2.75."""
    if float(value) == int(value):
        return "%d" % value
    return ("%.3f" % value).rstrip("0").rstrip(".")


def _block(lines, indent, head, body):
    lines.append("%s%s {" % (" " * indent, head))
    lines.extend("%s%s" % (" " * (indent + 4), line) for line in body)
    lines.append("%s}" % (" " * indent))


def _render_instance(lines, cfg, inst):
    body = ["state BACKUP", "interface %s" % inst["interface"], "virtual_router_id %d" % inst["vrid"],
            "priority %d" % cfg["priority"], "advert_int %s" % _seconds(cfg["advert_int"])]
    if not cfg["preempt"]:
        body.append("nopreempt")
    elif cfg["preempt_delay"]:
        body.append("preempt_delay %d" % cfg["preempt_delay"])
    body.append("unicast_src_ip %s" % inst["source"])
    sub = []
    _block(sub, 0, "unicast_peer", inst["peers"])
    _block(sub, 0, "virtual_ipaddress", ["%s dev %s" % (inst["address"], inst["interface"])])
    if inst["track_interfaces"]:
        _block(sub, 0, "track_interface", inst["track_interfaces"])
    lines.append("")
    _block(lines, 0, "vrrp_instance %s" % inst["name"], body + sub)


def render(cfg):
    """keepalived.conf for check()'s result: VRRP only (no virtual_server, no scripts). Every instance starts as
    BACKUP (nopreempt needs it). Two or more instances form one vrrp_sync_group, so that they move together; a single
    instance has none (keepalived 2.2.7 warns about a group of one, and `keepalived -t` fails on warnings)."""
    glob = ["router_id %s" % cfg["router_id"]]
    if cfg["startup_delay"]:
        glob.append("vrrp_startup_delay %s" % _seconds(cfg["startup_delay"]))
    if cfg["advert_int"] != int(cfg["advert_int"]):
        glob.append("vrrp_version 3")  # VRRPv2 has whole seconds only
    lines = [HEADER.rstrip("\n"), "# keepalived runs VRRP only here (started with --vrrp): lvs.nat owns the IPVS table.",
             ""]
    _block(lines, 0, "global_defs", glob)
    if len(cfg["instances"]) > 1:
        lines.append("")
        group = []
        _block(group, 0, "group", [inst["name"] for inst in cfg["instances"]])
        _block(lines, 0, "vrrp_sync_group %s" % cfg["sync_group"], group)
    for inst in cfg["instances"]:
        _render_instance(lines, cfg, inst)
    return "\n".join(lines) + "\n"
