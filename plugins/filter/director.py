# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lvs.nat.director_plan: the director role's variables turned into the arguments its tasks pass to the modules,
built as data (no text is templated and parsed back) and checked on the controller by the modules' own validators,
so that a bad value anywhere stops the play before any host changes. Documented in director_plan.yml.
lvs.nat.director_differences: what the kernel holds otherwise than declared, for the role's verify phase
(director_differences.yml); lvs.nat.realserver_problems: the real server role's checks (realserver_problems.yml)."""
from __future__ import annotations

import ipaddress
import math
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.lvs.nat.plugins.module_utils import _health, _keepalived, _netfilter, _sysctl
from ansible_collections.lvs.nat.plugins.module_utils._addresses import interface_problem
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import (
    IPVS_SERVICE_SPEC,
    IPVS_TIMEOUTS_SPEC,
    REAL_SERVER_SPEC,
    SERVICE_KEY_RELATIONS,
    SERVICE_SPEC,
)
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import DEST_DEFAULTS, MAX_U16, SERVICE_DEFAULTS, service_id
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import (
    InvalidInput,
    _show,
    desired_dest,
    desired_dests,
    desired_service,
    desired_timeouts,
    service_key,
    whole_number,
)
from ansible_collections.lvs.nat.plugins.modules.gateway_route import problems as route_problems
from ansible_collections.lvs.nat.plugins.modules.ipvs_sync_daemon import desired_daemons
from ansible_collections.lvs.nat.plugins.modules.nat_rules import RULE_SPEC
from ansible_collections.lvs.nat.plugins.modules.sysctl_forwarding import wanted_values

# What a director_services entry takes: ipvs_service options, plus the role's real_server_port and real_servers.
ROLE_SERVICE_OPTIONS = ("protocol", "port", "fwmark", "scheduler", "scheduler_flags", "persistence_timeout",
                        "persistence_prefix", "one_packet")
# check, sorry_server, quorum: a service checked by lvs-nat-healthd (lvs.nat.ipvs_health), which then writes it.
HEALTH_KEYS = ("check", "sorry_server", "quorum")
ROLE_SERVICE_KEYS = ROLE_SERVICE_OPTIONS + ("real_server_port", "real_servers") + HEALTH_KEYS
ROLE_REAL_SERVER_SPEC = dict((k, REAL_SERVER_SPEC[k]) for k in ("address", "port", "weight"))
BACKENDS = ("auto", "nftables", "iptables")
# pyroute2's source goes into a pip requirements file on the director: the same full matches as the install phase.
_PYROUTE2_PIN = re.compile(r"pyroute2==[0-9]+([.][0-9]+)*((a|b|rc)[0-9]+)?([.]post[0-9]+)?", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
# A wheel's file name as pip takes it (PEP 427): pyroute2-VERSION[-BUILD]-PYTHON-ABI-PLATFORM.whl.
_WHEEL_NAME = re.compile(r"pyroute2-[0-9][0-9A-Za-z_.+!]*(-[0-9][0-9A-Za-z_.]*)?(-[0-9A-Za-z_.]+){3}[.]whl", re.ASCII)


def _validate(spec, params, where, relations=None):
    """params checked as AnsibleModule checks a module's options: each field on its own (the error names it), then
    the whole with the relations. Returns (validated params or None, errors)."""
    if not isinstance(params, dict):
        return None, ["%s must be a mapping, not %s" % (where, _show(params))]
    unknown = sorted(k if isinstance(k, str) else repr(k) for k in params if k not in spec)
    if unknown:
        return None, ["%s: unknown option(s) %s (it takes %s)" % (where, ", ".join(map(_show, unknown)),
                                                                  ", ".join(spec))]
    errors = []
    for name, value in params.items():
        if value is not None:
            result = ArgumentSpecValidator({name: spec[name]}).validate({name: value})
            errors += ["%s.%s: %s" % (where, name, m) for m in result.error_messages]
    if errors:
        return None, errors
    result = ArgumentSpecValidator(spec, **(relations or {})).validate(params)
    if result.error_messages:
        return None, ["%s: %s" % (where, m) for m in result.error_messages]
    return result.validated_parameters, []


def _value(spec, value, name):
    """One role variable checked against one module option's spec; (converted value, errors)."""
    result = ArgumentSpecValidator({name: spec}).validate({name: value})
    return result.validated_parameters.get(name), list(result.error_messages)


class _Errors(list):
    """The errors found, each once, in the order found."""

    def add(self, messages):
        self.extend(m for m in messages if m not in self)


# ---------------------------------------------------------------- real servers from the inventory

def _hostvar(hostvars, host, name):
    """(defined, value) of a host's variable; templating errors count as a bad value."""
    host_vars = hostvars[host]
    if name not in host_vars:
        return False, None
    return True, host_vars[name]


def _inventory_real_server(host, role_vars, hostvars, errors):
    """host -> (entry, names): its address and weight as the role reads them, checked for type; None when bad."""
    addr_var = role_vars.get("director_realserver_address_var")
    weight_var = role_vars.get("director_realserver_weight_var")
    try:
        found, address = _hostvar(hostvars, host, addr_var)
        addr_name = addr_var
        if not found:
            found, address = _hostvar(hostvars, host, "ansible_host")
            addr_name = "ansible_host" if found else "inventory_hostname"
            address = address if found else host
        found, weight = _hostvar(hostvars, host, weight_var)
    except Exception as e:  # noqa: BLE001 - a host variable that cannot be templated is a bad value like any other
        errors.add(["host %s: its variables cannot be read: %s" % (host, e)])
        return None
    names = dict(address="host %s %s" % (host, addr_name), weight="host %s %s" % (host, weight_var))
    entry, bad = dict(address=address, weight=weight if found else DEST_DEFAULTS["weight"]), []
    for key in ("address", "weight"):
        entry[key], problems = _value(ROLE_REAL_SERVER_SPEC[key], entry[key], key)
        bad += ["%s: %s" % (names[key], m) for m in problems]
    errors.add(bad)
    return None if bad else (entry, names)


def _dest_message(where, msg, names):
    """A desired_dest message about `where`, naming the variable its field came from (names: field -> variable)."""
    rest = msg[len(where):].lstrip() if msg.startswith(where) else msg
    field = re.match(r"[a-z_]*", rest).group(0)
    return "%s: %s" % (names.get(field, where), rest)


# ---------------------------------------------------------------- services

def _service_params(entry, vip, purge):
    params = dict((k, entry[k]) for k in ROLE_SERVICE_OPTIONS if entry.get(k) is not None)
    if "fwmark" not in params:
        params.setdefault("protocol", "tcp")
        params["address"] = vip
    for k, v in SERVICE_DEFAULTS.items():
        params.setdefault(k, list(v) if isinstance(v, list) else v)
    params["purge_real_servers"] = purge
    return params


def _listed_real_servers(where, entry, errors):
    """The service's own real_servers, each checked for type: [(entry, origin, names)]."""
    listed = entry["real_servers"]
    if not isinstance(listed, list):
        errors.add(["%s.real_servers must be a list, not %s" % (where, _show(listed))])
        return []
    out = []
    for j, rs in enumerate(listed):
        origin = "%s.real_servers[%d]" % (where, j)
        checked, problems = _validate(ROLE_REAL_SERVER_SPEC, rs, origin)
        errors.add(problems)
        if checked is not None:
            names = dict((k, "%s.%s" % (origin, k)) for k in ("address", "weight"))
            if checked["port"] is not None:
                names["port"] = "%s.port" % origin
            out.append((dict(checked), origin, names))
    return out


def _real_servers(where, entry, ctx, errors):
    if entry.get("real_servers") is not None:
        return _listed_real_servers(where, entry, errors)
    if not ctx["inventory"] and not ctx["inventory_bad"]:
        errors.add(["%s: no real servers: it lists none and the inventory group %s has no hosts" % (
            where, _show(ctx["group"]))])
    return [(dict(rs), "host %s" % host, names) for host, (rs, names) in ctx["inventory"]]


def _dests(where, svc, rs_port, real_servers, errors):
    """The real servers as ipvs_service takes them, checked by desired_dest/desired_dests; None when bad."""
    entries, bad = [], []
    for rs, origin, names in real_servers:
        if rs.get("port") is not None:
            port = rs["port"]
        else:
            port = rs_port if rs_port != "service port" else svc["port"] or 0
        dest = dict(address=rs["address"], port=port,
                    weight=rs["weight"] if rs.get("weight") is not None else DEST_DEFAULTS["weight"],
                    forwarding=DEST_DEFAULTS["forwarding"])
        names = dict(dict(port="%s.real_server_port" % where), **names)
        try:
            desired_dest(dest, svc, {}, where=origin)
        except InvalidInput as e:
            bad.append(_dest_message(origin, str(e), names))
        entries.append(dest)
    errors.add(bad)
    if bad:
        return None
    try:
        desired_dests(entries, svc, None)
    except InvalidInput as e:
        m = re.match(r"real_servers\[(\d+)\]", str(e))
        origin = " (%s)" % real_servers[int(m.group(1))][1] if m and int(m.group(1)) < len(real_servers) else ""
        errors.add(["%s: %s%s" % (where, e, origin)])
        return None
    return entries


def _service_fields(where, entry, errors):
    """The role's own checks of an entry: a mapping of known keys, a port or a fwmark, real_server_port's type."""
    if not isinstance(entry, dict):
        errors.add(["%s must be a mapping, not %s" % (where, _show(entry))])
        return None
    unknown = sorted(k if isinstance(k, str) else repr(k) for k in entry if k not in ROLE_SERVICE_KEYS)
    if unknown:
        errors.add(["%s: unknown key(s) %s (a service takes %s)" % (
            where, ", ".join(map(_show, unknown)), ", ".join(ROLE_SERVICE_KEYS))])
        return None
    if entry.get("port") is None and entry.get("fwmark") is None:
        errors.add(["%s: every service needs a port or a fwmark" % where])
        return None
    # Without real_server_port the real servers take the service's port (0 for a fwmark service).
    rs_port, problems = _value(REAL_SERVER_SPEC["port"], entry.get("real_server_port"), "real_server_port")
    if not problems and rs_port is not None and not 0 <= rs_port <= MAX_U16:
        problems = ["real_server_port=%s is out of range: it must be between 0 and %d" % (rs_port, MAX_U16)]
    errors.add(["%s.real_server_port: %s" % (where, m) for m in problems])
    return None if problems else ("service port" if rs_port is None else rs_port)


def _service(i, entry, ctx, errors):
    """One director_services entry as an entry of lvs.nat.ipvs_table's services, or None when bad."""
    where = "director_services[%d]" % i
    rs_port = _service_fields(where, entry, errors)
    if rs_port is None:
        return None
    real_servers = _real_servers(where, entry, ctx, errors)
    params, problems = _validate(IPVS_SERVICE_SPEC, _service_params(entry, ctx["vip"], ctx["purge"]), where,
                                 SERVICE_KEY_RELATIONS)
    errors.add(problems)
    if params is None or (ctx["vip_bad"] and params["fwmark"] is None):
        return None
    try:
        svc = desired_service(params, None)
    except InvalidInput as e:
        errors.add(["%s: %s" % (where, e)])
        return None
    sid = service_id(service_key(params))
    if sid in ctx["seen"]:
        errors.add(["%s: the service is declared twice (also director_services[%d])" % (where, ctx["seen"][sid])])
        return None
    ctx["seen"][sid] = i
    dests = _dests(where, svc, rs_port, real_servers, errors)
    if dests is None:
        return None
    out = dict((k, v) for k, v in params.items() if v is not None and k not in ("state", "purge_real_servers"))
    out["real_servers"] = dests
    return _checked(where, entry, out, errors)


def _checked(where, entry, out, errors):
    """A service with check (or sorry_server, quorum: they need check) checked by lvs-nat-healthd's own validator
    (_health.check_services), its errors naming director_services[i]; the entry with those keys, or None when bad."""
    given = dict((k, entry[k]) for k in HEALTH_KEYS if entry.get(k) is not None)
    if not given:
        return out
    if "check" not in given:
        errors.add(["%s: %s need(s) check (they belong to a health-checked service)" % (where, ", ".join(sorted(given)))])
        return None
    # ipvs_health takes the sorry server as text (its option is a str): any other value would reach it as its repr.
    if not isinstance(given.get("sorry_server", ""), str):
        errors.add(["%s.sorry_server=%s is not an address (ADDRESS or ADDRESS:PORT, as text)" % (
            where, _show(given["sorry_server"]))])
        return None
    try:
        _health.check_services([dict(out, **given)])
    except InvalidInput as e:
        errors.add([re.sub(r"(?<!director_)services\[0\]", where, str(e))])
        return None
    return dict(out, **given)


def _vip(vip, declared, errors):
    """director_vip as ipvs_service's address option takes it, and as nat_rules takes the destination of the
    accept rule of each TCP or UDP service; bad: an error naming director_vip."""
    value, problems = _value(SERVICE_SPEC["address"], vip, "director_vip")
    if not problems:
        try:
            service_key(dict(address=value, port=0, protocol="tcp"))
        except InvalidInput as e:
            problems = [str(e)]
    errors.add(["director_vip: %s" % m for m in problems])
    accepted = [e for e in declared if isinstance(e, dict) and e.get("fwmark") is None
                and e.get("protocol", "tcp") in ("tcp", "udp")]
    if not problems and accepted:
        problems = _probe_rule(destination=value)
        errors.add(["director_vip: %s (in the role's accept rule)" % m.lstrip(".: ") for m in problems])
    return bool(problems)


def _services(role_vars, groups, hostvars, errors):
    declared = role_vars.get("director_services")
    if not isinstance(declared, list) or not declared:
        errors.add(["director_services must be a list of at least one service, not %s" % _show(declared)])
        return []
    purge, problems = _value(IPVS_SERVICE_SPEC["purge_real_servers"], role_vars.get("director_purge_real_servers"),
                             "director_purge_real_servers")
    errors.add(problems)
    group = role_vars.get("director_realservers_group")
    hosts = (groups or {}).get(group) or []
    inventory, inventory_bad = [], False
    for host in hosts:
        checked = _inventory_real_server(host, role_vars, hostvars, errors)
        inventory_bad = inventory_bad or checked is None
        if checked is not None:
            inventory.append((host, checked))
    ctx = dict(vip=role_vars.get("director_vip"), vip_bad=_vip(role_vars.get("director_vip"), declared, errors), purge=purge,
               group=group, inventory=inventory, inventory_bad=inventory_bad, seen={})
    services = [_service(i, entry, ctx, errors) for i, entry in enumerate(declared)]
    return [svc for svc in services if svc is not None]


# ---------------------------------------------------------------- netfilter rules, sysctl, timeouts

def _rule(rule, where, errors):
    """One rule checked by nat_rules' argument spec and its validator; the rule as given, or None when bad."""
    checked, problems = _validate(RULE_SPEC, rule, where)
    if checked is not None:
        try:
            _netfilter.normalise_rules([checked])
        except _netfilter.NetfilterError as e:
            problems = [re.sub(r"^rules\[0\]\.?", where + "." if where else "", str(e))]
    errors.add(problems)
    return None if problems else rule


def _nat_rules(role_vars, services, errors, ha_rules=()):
    """The role's own rules (with director_ha: VRRP and the sync daemons accepted, ha_rules), then
    director_nat_rules; each role rule's error names the variable it comes from."""
    vip, net = role_vars.get("director_vip"), role_vars.get("director_private_network")
    iface = role_vars.get("director_outbound_interface")
    # nat_rules matches TCP and UDP; an sctp service needs no accept where the input policy accepts.
    role_rules = [("director_vip", dict(type="accept", chain="input", destination=vip, protocol=svc["protocol"],
                                        port=svc["port"]))
                  for svc in services if "fwmark" not in svc and svc["protocol"] in ("tcp", "udp")]
    if net:
        role_rules += [("director_private_network", dict(type="accept", chain="forward", source=net)),
                       ("director_private_network", dict(type="accept", chain="forward", destination=net))]
        if iface:
            role_rules.append(("director_outbound_interface", dict(type="masquerade", source=net, out_interface=iface)))
    role_rules += [("director_ha", rule) for rule in ha_rules]
    rules = []
    for name, rule in role_rules:
        rules.append(rule)
        problem = _Errors()
        _rule(rule, "", problem)
        errors.add(["%s: %s (in the role's %s rule)" % (name, m.lstrip(".: "), rule["type"]) for m in problem])
    extra = role_vars.get("director_nat_rules")
    if not isinstance(extra, list):
        errors.add(["director_nat_rules must be a list of lvs.nat.nat_rules rules, not %s" % _show(extra)])
        return rules
    return rules + [r for k, r in enumerate(extra) if _rule(r, "director_nat_rules[%d]" % k, errors) is not None]


def _sysctl_settings(settings, errors):
    if not isinstance(settings, dict):
        errors.add(["director_sysctl must be a mapping of net.* keys to values, not %s" % _show(settings)])
        return {}
    for key, value in settings.items():
        try:
            if value is None:
                raise _sysctl.SysctlError("no value")
            wanted_values(dict(ipv4_forwarding=True, ipv6_forwarding=None, settings={key: value}))
        except _sysctl.SysctlError as e:
            errors.add(["director_sysctl[%s]: %s" % (_show(key), e)])
    return settings


def sysctl_paths(settings):
    """[key, its /proc/sys path, the kernel module it needs or None] of each key of director_sysctl (checked): what the
    preflight's probe (roles/director/tasks/probe.yml) looks for on the director before any host changes. A key of a
    module not loaded yet cannot be looked for there; sysctl_forwarding loads the module and checks it before it
    writes any key."""
    return [[key, _sysctl.proc_path(key), _sysctl.module_for(key)] for key in settings]


def _timeouts(timeouts, errors):
    checked, problems = _validate(IPVS_TIMEOUTS_SPEC, timeouts, "director_timeouts")
    errors.add(problems)
    wanted = dict((n, v) for n, v in (checked or {}).items() if v is not None)
    # ipvs_table's own check of its timeouts option, each name on its own (every bad one reported): Ansible's int
    # type above takes true for 1, the module does not.
    for name, value in wanted.items():
        try:
            desired_timeouts({name: value})
        except InvalidInput as e:
            errors.add(["director_timeouts.%s: %s" % (name, e)])
    return wanted


def _other_variables(role_vars, errors):
    """The role's remaining variables: names of inventory things, the netfilter backend, pyroute2's source."""
    for name in ("director_realservers_group", "director_realserver_address_var", "director_realserver_weight_var"):
        value = role_vars.get(name)
        if not isinstance(value, str) or not value:
            errors.add(["%s must be a name, not %s" % (name, _show(value))])
    if role_vars.get("director_nat_backend") not in BACKENDS:
        errors.add(["director_nat_backend must be one of: %s, not %s" % (
            ", ".join(BACKENDS), _show(role_vars.get("director_nat_backend")))])
    pyroute2 = role_vars.get("director_pyroute2")
    if not isinstance(pyroute2, str) or not _PYROUTE2_PIN.fullmatch(pyroute2):
        errors.add(["director_pyroute2 must be an exact pin, pyroute2==VERSION, not %s" % _show(pyroute2)])
    sha256 = role_vars.get("director_pyroute2_sha256")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        errors.add(["director_pyroute2_sha256 must be a sha256 in 64 lowercase hex digits, not %s" % _show(sha256)])
    wheel = role_vars.get("director_pyroute2_wheel")
    if not isinstance(wheel, str) or (wheel and not _WHEEL_NAME.fullmatch(wheel.rsplit("/", 1)[-1])):
        errors.add(["director_pyroute2_wheel must be empty or the path of a wheel file named as pip takes it, "
                    "pyroute2-VERSION-PYTHON-ABI-PLATFORM.whl (such as pyroute2-0.9.7-py3-none-any.whl), not %s"
                    % _show(wheel)])


# ---------------------------------------------------------------- two directors (director_ha)

# director_ha's keys: (low, high) for whole numbers, "number" for advert_int and startup_delay, "bool" for preempt.
HA_KEYS = dict(vrid=(1, 255), private_vrid=(1, 255), advert_int=(0, 255), preempt="bool", preempt_delay=(0, 1000),
               startup_delay=(0, 3600), sync_id=(0, 255), sync_port=(1, MAX_U16))
HA_DEFAULTS = dict(advert_int=1, preempt=False, preempt_delay=0, startup_delay=5, sync_port=8848)
# Each director's host variables with director_ha (their role defaults: "" for the four required, 100 for priority).
HA_HOST_VARS = ("director_public_interface", "director_private_interface", "director_public_address",
                "director_private_address")
# A fixed address with its prefix, or a floating address: IPv4 in ASCII digits (they reach keepalived.conf).
_IPV4 = re.compile(r"[0-9]{1,3}([.][0-9]{1,3}){3}", re.ASCII)
_IPV4_PREFIX = re.compile(r"[0-9]{1,3}([.][0-9]{1,3}){3}/[0-9]{1,2}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,10}([.][0-9]{1,6})?", re.ASCII)
_ROUTER_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]", re.ASCII)


def _ha_whole(where, value, low, high):
    """A whole number (an int, or ASCII digits) in low..high; (value, errors)."""
    try:
        return whole_number(where, value, low, high), []
    except InvalidInput as e:
        return None, [str(e)]


def _ha_number(where, value, low, high):
    """A number above low (advert_int: above 0) or at least low (startup_delay: 0 allowed), at most high."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (
            isinstance(value, str) and not _DECIMAL.fullmatch(value)) or (
            isinstance(value, float) and math.isnan(value)):
        return None, ["%s=%s is not a number" % (where, _show(value))]
    number = float(value)
    above = where.endswith("advert_int")
    if (number <= low if above else number < low) or number > high:
        return None, ["%s=%s is out of range: it must be %s %d and at most %d" % (
            where, value, "above" if above else "at least", low, high)]
    return int(number) if number == int(number) else number, []


def _ha_settings(ha, errors):
    """director_ha's keys checked and defaulted; None when any is bad."""
    unknown = sorted(k if isinstance(k, str) else repr(k) for k in ha if k not in HA_KEYS)
    if unknown:
        errors.add(["director_ha: unknown key(s) %s (it takes %s)" % (", ".join(map(_show, unknown)), ", ".join(HA_KEYS))])
        return None
    if ha.get("vrid") is None:
        errors.add(["director_ha.vrid is required (the public instance's VRID, 1 to 255)"])
        return None
    given = dict((k, v) for k, v in ha.items() if v is not None)
    out, bad = dict(HA_DEFAULTS), []
    for key, kind in HA_KEYS.items():
        if key not in given:
            continue
        where = "director_ha.%s" % key
        if kind == "bool":
            value, problems = _value(dict(type="bool"), given[key], where)
            problems = ["%s: %s" % (where, m) for m in problems]
        elif key in ("advert_int", "startup_delay"):
            value, problems = _ha_number(where, given[key], *kind)
        else:
            value, problems = _ha_whole(where, given[key], *kind)
        bad += problems
        out[key] = value
    if not bad and "private_vrid" not in given:
        out["private_vrid"], bad = _ha_whole("director_ha.private_vrid (director_ha.vrid + 1, its default)",
                                             out["vrid"] + 1, 1, 255)
    if not bad and out["private_vrid"] == out["vrid"]:
        bad.append("director_ha.private_vrid=%d is director_ha.vrid too: a VRID used twice (the private instance "
                   "needs its own)" % out["vrid"])
    if not bad and out["preempt_delay"] and not out["preempt"]:
        bad.append("director_ha.preempt_delay=%s needs director_ha.preempt true" % out["preempt_delay"])
    out.setdefault("sync_id", out["vrid"])
    errors.add(bad)
    return None if bad else out


def _floating(name, value, errors):
    """director_vip or director_dip as an IPv4 address; None when bad."""
    if not isinstance(value, str) or not _IPV4.fullmatch(value):
        errors.add(["%s=%s must be an IPv4 address with director_ha" % (name, _show(value))])
        return None
    try:
        return ipaddress.IPv4Address(value)
    except ValueError as e:
        errors.add(["%s=%s is not an IPv4 address: %s" % (name, _show(value), e)])
        return None


def _director_host(host, hostvars, errors):
    """A director's host variables with director_ha: dict(interfaces, fixed addresses as IPv4Interface, priority)
    or None when one is missing or bad (each error naming the host and the variable)."""
    try:
        found = dict((name, _hostvar(hostvars, host, name)) for name in HA_HOST_VARS + ("director_ha_priority",))
    except Exception as e:  # noqa: BLE001 - a host variable that cannot be templated is a bad value like any other
        errors.add(["host %s: its variables cannot be read: %s" % (host, e)])
        return None
    out, bad = {}, []
    for name in HA_HOST_VARS:
        defined, value = found[name]
        where = "host %s %s" % (host, name)
        if not defined or value in ("", None):
            bad.append("%s is required with director_ha" % where)
        elif name.endswith("_interface"):
            problem = interface_problem(value, where)
            if problem:
                bad.append(problem)
            out[name] = value
        elif not isinstance(value, str) or not _IPV4_PREFIX.fullmatch(value):
            bad.append("%s=%s must be the director's own IPv4 address with its prefix, such as 198.51.100.11/26" % (
                where, _show(value)))
        else:
            try:
                out[name] = ipaddress.IPv4Interface(value)
            except ValueError as e:
                bad.append("%s=%s is not an IPv4 address with a prefix: %s" % (where, _show(value), e))
    defined, priority = found["director_ha_priority"]
    out["priority"], problems = _ha_whole("host %s director_ha_priority" % host, priority if defined else 100, 1, 254)
    bad += problems
    if not bad and out["director_public_interface"] == out["director_private_interface"]:
        bad.append("host %s director_private_interface=%s is director_public_interface too: the VIP and the DIP "
                   "need a NIC each" % (host, out["director_private_interface"]))
    errors.add(bad)
    return None if bad else out


def _ha_addresses(vip, dip, directors, errors):
    """The floating addresses inside every director's networks, never a director's fixed address; the fixed
    addresses all different."""
    if vip is not None and vip == dip:
        errors.add(["director_dip=%s is director_vip too: the VIP and the DIP are two addresses" % dip])
    seen = {}
    for host, fixed in directors.items():
        for name, floating, side in (("director_vip", vip, "director_public_address"),
                                     ("director_dip", dip, "director_private_address")):
            if floating is not None and floating not in fixed[side].network:
                errors.add(["%s=%s is outside host %s's %s network %s" % (name, floating, host, side, fixed[side].network)])
        for side in ("director_public_address", "director_private_address"):
            address = fixed[side].ip
            for name, floating in (("director_vip", vip), ("director_dip", dip)):
                if address == floating:
                    errors.add(["%s=%s is host %s's fixed address (%s): a floating address is held by keepalived "
                                "only" % (name, floating, host, side)])
            if address in seen:
                errors.add(["host %s %s=%s is also host %s's %s: each director has its own fixed addresses" % (
                    host, side, address, seen[address][0], seen[address][1])])
            seen.setdefault(address, (host, side))


def _ha_gateways(dip, role_vars, groups, hostvars, errors):
    """Each real server that sets realserver_gateway routes through the floating DIP (the real server role checks
    the value's form; a value that is no address is its error)."""
    for host in (groups or {}).get(role_vars.get("director_realservers_group")) or []:
        try:
            found, gateway = _hostvar(hostvars, host, "realserver_gateway")
        except Exception:  # noqa: BLE001 - reported by the real server role's own preflight
            continue
        if not found or not isinstance(gateway, str) or not _IPV4.fullmatch(gateway):
            continue
        try:
            if ipaddress.IPv4Address(gateway) != dip:
                errors.add(["host %s realserver_gateway=%s is not director_dip %s: with director_ha the real servers' "
                            "replies go through the floating DIP" % (host, gateway, dip)])
        except ValueError:
            continue


def _ha_plan(me, settings, vip, dip, directors):
    """What this director's tasks take: the accept rules, the sync daemons, keepalived_vrrp's arguments."""
    own = directors[me]
    public, private = own["director_public_interface"], own["director_private_interface"]
    others = [h for h in directors if h != me]
    instances = [
        dict(name="public", interface=public, vrid=settings["vrid"],
             address="%s/%d" % (vip, own["director_public_address"].network.prefixlen),
             source=str(own["director_public_address"].ip),
             peers=[str(directors[h]["director_public_address"].ip) for h in others], track_interfaces=[private]),
        dict(name="private", interface=private, vrid=settings["private_vrid"],
             address="%s/%d" % (dip, own["director_private_address"].network.prefixlen),
             source=str(own["director_private_address"].ip),
             peers=[str(directors[h]["director_private_address"].ip) for h in others], track_interfaces=[public])]
    keepalived = dict(router_id=_ROUTER_ID_BAD.sub("_", me)[:64], priority=own["priority"],
                      advert_int=settings["advert_int"], preempt=settings["preempt"],
                      startup_delay=settings["startup_delay"], instances=instances)
    if settings["preempt"]:
        keepalived["preempt_delay"] = settings["preempt_delay"]
    daemon = dict(interface=private, sync_id=settings["sync_id"], port=settings["sync_port"])
    rules = [dict(type="accept", chain="input", in_interface=public, protocol="vrrp"),
             dict(type="accept", chain="input", in_interface=private, protocol="vrrp"),
             dict(type="accept", chain="input", in_interface=private, protocol="udp", port=settings["sync_port"])]
    wait = settings["startup_delay"] + 4 * settings["advert_int"] + 5
    return dict(directors=list(directors), floating=[str(vip), str(dip)], keepalived=keepalived,
                sync_daemons=[dict(daemon, mode="master"), dict(daemon, mode="backup")], nat_rules=rules,
                wait=int(wait) + (wait != int(wait)))


def _ha(role_vars, groups, hostvars, errors):
    """director_ha: {} (one director) or, with two directors or more, this director's part of the pair; every
    refusal names the variable (director_ha.KEY, director_vip, director_dip, host H VARIABLE)."""
    ha = role_vars.get("director_ha")
    if ha is None or ha == {}:
        return {}
    if not isinstance(ha, dict):
        errors.add(["director_ha must be a mapping (empty for one director), not %s" % _show(ha)])
        return {}
    found = len(errors)
    settings = _ha_settings(ha, errors)
    vip = _floating("director_vip", role_vars.get("director_vip"), errors)
    dip = _floating("director_dip", role_vars.get("director_dip"), errors)
    group, me = role_vars.get("director_group"), role_vars.get("inventory_hostname")
    hosts = list((groups or {}).get(group) or []) if isinstance(group, str) else []
    if len(hosts) < 2:
        errors.add(["director_ha needs at least two directors: the group %s (director_group) has %d" % (
            _show(group), len(hosts))])
    elif me not in hosts:
        errors.add(["director_ha: host %s is not in the group %s (director_group)" % (_show(me), _show(group))])
    directors = dict((h, _director_host(h, hostvars, errors)) for h in hosts)
    if None not in directors.values():
        _ha_addresses(vip, dip, directors, errors)
    if dip is not None:
        _ha_gateways(dip, role_vars, groups, hostvars, errors)
    if len(errors) > found or settings is None:
        return {}
    plan = _ha_plan(me, settings, vip, dip, directors)
    return plan if _ha_module_checks(me, plan, errors) else {}


# keepalived_vrrp's options that a role variable gives as it is: the module's refusals of them name the variable.
_KEEPALIVED_VARIABLES = dict(advert_int="director_ha.advert_int", startup_delay="director_ha.startup_delay",
                             preempt_delay="director_ha.preempt_delay", priority="host %s director_ha_priority")


def _ha_module_checks(me, plan, errors):
    """keepalived_vrrp's and ipvs_sync_daemon's own checks of the arguments their tasks will get (a value within the
    ranges above may still be one the module refuses, as advert_int 50.5 is): False, with the refusal, when one fails."""
    try:
        _keepalived.check(plan["keepalived"])
        desired_daemons(plan["sync_daemons"], "director_ha's sync daemons")
    except _keepalived.KeepalivedError as e:
        option = e.details.get("option") or ""
        name = _KEEPALIVED_VARIABLES.get(option)
        message = str(e)
        if name and message.startswith(option + "="):
            message = (name % me if "%s" in name else name) + message[len(option):]
        else:
            message = "director_ha: keepalived_vrrp refuses its arguments: %s" % message
        errors.add([message])
        return False
    except InvalidInput as e:
        errors.add(["director_ha: ipvs_sync_daemon refuses its arguments: %s" % e])
        return False
    return True


def director_plan(role_vars, groups=None, hostvars=None):
    """The director role's variables -> dict(services, table, checked, skip, nat_rules, sysctl, sysctl_paths, timeouts, ha,
    errors)."""
    errors = _Errors()
    if not isinstance(role_vars, dict):
        return dict(services=[], table=[], checked=[], skip=[], nat_rules=[], sysctl={}, sysctl_paths=[], timeouts={}, ha={},
                    errors=["director_plan takes a mapping of the role's variables, not %s" % _show(role_vars)])
    hostvars = hostvars if hostvars is not None else {}
    services = _services(role_vars, groups, hostvars, errors)
    ha = _ha(role_vars, groups, hostvars, errors)
    nat_rules = _nat_rules(role_vars, services, errors, ha.get("nat_rules", []))
    sysctl = _sysctl_settings(role_vars.get("director_sysctl"), errors)
    timeouts = _timeouts(role_vars.get("director_timeouts"), errors)
    _other_variables(role_vars, errors)
    # One writer per service: the checked ones go to lvs-nat-healthd (ipvs_health), the others to ipvs_table, which
    # leaves the checked ones alone (its owned.skip).
    table = [svc for svc in services if "check" not in svc]
    checked = [svc for svc in services if "check" in svc]
    skip = [dict((k, svc[k]) for k in ("protocol", "address", "port", "fwmark", "family") if svc.get(k) is not None)
            for svc in checked]
    return dict(services=services, table=table, checked=checked, skip=skip, nat_rules=nat_rules, sysctl=sysctl,
                sysctl_paths=sysctl_paths(sysctl) if not errors else [], timeouts=timeouts, ha=ha, errors=list(errors))


# ---------------------------------------------------------------- the role's verify phase (lvs.nat.director_differences)

def _address(text):
    """An address in one canonical form, so that IPv6 written with upper case or zeros compares equal to the kernel's."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _service_line(svc):
    """(key, scheduler, sorted "address/port/weight/forwarding" of its real servers) of a declared or kernel service."""
    key = _key(svc)
    real_servers = sorted("%s/%d/%d/%s" % (_address(rs["address"]), int(rs["port"]), int(rs["weight"]), rs["forwarding"])
                          for rs in svc["real_servers"])
    return key, svc["scheduler"], real_servers


def _key(svc):
    if svc.get("fwmark"):
        return "fwmark %d" % int(svc["fwmark"])
    return "%s %s:%d" % (svc.get("protocol") or "tcp", _address(svc["address"]), int(svc["port"]))


def director_differences(declared_services, kernel_services, vip, purge_real_servers=False, skip=()):
    """What the kernel holds differently from the declared services (director_plan's table): each declared
    service missing or held otherwise, and each kernel service on the VIP or with a declared mark that is not
    declared; another tool's services elsewhere are not ours, nor are the services of skip (director_plan's skip:
    lvs-nat-healthd writes those). Empty when the kernel holds them as declared."""
    purge = boolean(purge_real_servers, strict=False)
    declared = [_service_line(s) for s in declared_services]
    marks = set(int(s["fwmark"]) for s in declared_services if s.get("fwmark") is not None)
    skipped = set(_key(s) for s in skip or ())
    vip = _address(vip)
    held = {}
    for svc in kernel_services:
        if _key(svc) in skipped:
            continue
        if (int(svc["fwmark"]) in marks) if svc.get("fwmark") else _address(svc["address"]) == vip:
            key, scheduler, real_servers = _service_line(svc)
            held[key] = (scheduler, real_servers)
    wrong = []
    for key, scheduler, want in declared:
        if key not in held:
            wrong.append("%s is missing" % key)
            continue
        held_scheduler, held_real_servers = held[key]
        if held_scheduler != scheduler or set(want) - set(held_real_servers) or (
                purge and set(held_real_servers) - set(want)):
            wrong.append("%s holds %s %s, declared %s %s" % (
                key, held_scheduler, " ".join(held_real_servers), scheduler, " ".join(want)))
    keys = [key for key, _scheduler, _want in declared]
    wrong += ["%s is not declared (a service removed from director_services was not removed)" % key
              for key in held if key not in keys]
    return wrong


# ---------------------------------------------------------------- the real server role (lvs.nat.realserver_problems)

def _route_problems(role_vars):
    """realserver_gateway, realserver_client_networks and realserver_interface checked by lvs.nat.gateway_route's own
    validation, each message naming the role variable."""
    networks = role_vars.get("realserver_client_networks")
    if not isinstance(networks, list):
        return ["realserver_client_networks must be a list of networks, not %s" % _show(networks)]
    iface = role_vars.get("realserver_interface") or None
    errors = route_problems(role_vars.get("realserver_gateway"), networks, iface)[2]
    renamed = (("gateway=", "realserver_gateway: gateway="), ("networks[", "realserver_client_networks["),
               ("interface=", "realserver_interface: interface="))
    return [next((new + m[len(old):] for old, new in renamed if m.startswith(old)), m) for m in errors]


def realserver_problems(role_vars):
    """The real server role's variables -> the list of what is wrong with them (empty when all is valid)."""
    if not isinstance(role_vars, dict):
        return ["realserver_problems takes a mapping of the role's variables, not %s" % _show(role_vars)]
    errors = _route_problems(role_vars)
    mode = role_vars.get("realserver_route_mode")
    if mode not in ("default", "routes"):
        errors.append("realserver_route_mode must be default or routes, not %s" % _show(mode))
    if mode == "routes" and not role_vars.get("realserver_client_networks"):
        errors.append("realserver_route_mode routes needs realserver_client_networks")
    # The interface and the port as the real server's nat_rules task and gateway_route take them.
    iface = role_vars.get("realserver_interface")
    if iface != "":
        errors += ["realserver_interface: %s" % m.lstrip(".: ") for m in _probe_rule(in_interface=iface)]
    errors += ["realserver_port: %s" % m.lstrip(".: ") for m in _probe_rule(protocol="tcp", port=role_vars.get(
        "realserver_port"))]
    if role_vars.get("realserver_web") not in ("apache", "nginx", "none"):
        errors.append("realserver_web must be apache, nginx or none, not %s" % _show(role_vars.get("realserver_web")))
    if not isinstance(role_vars.get("realserver_page"), str):
        errors.append("realserver_page must be text, not %s" % _show(role_vars.get("realserver_page")))
    return errors + _value(dict(type="bool"), role_vars.get("realserver_firewall"), "realserver_firewall")[1]


def _probe_rule(**fields):
    """Errors of an input accept rule with these fields, as nat_rules reports them."""
    found = _Errors()
    _rule(dict(type="accept", chain="input", **fields), "", found)
    return list(found)


class FilterModule(object):
    def filters(self):
        return {"director_plan": director_plan, "director_differences": director_differences,
                "realserver_problems": realserver_problems}
