# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real-server health checks, the pure part: the declaration of checked services (validated and normalised), the
file the director hands to lvs-nat-healthd, the rise/fall state machine, and the table the kernel must hold given the
declaration and health. Shared by lvs-nat-healthd (_healthd), lvs.nat.ipvs_health, ipvs_info and the role's filter.
Pure: no pyroute2, no socket, no ansible; the only I/O is read_state."""
from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re

from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import MAX_U16, describe_service
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import (
    InvalidInput,
    _show,
    complete_dest,
    desired_service,
    dest_order,
    parse_dest,
    precheck_table,
    whole_number,
)

CONFIG_PATH = "/etc/lvs-nat/director.json"
STATE_PATH = "/run/lvs-nat/health.json"
UNIT_NAME = "lvs-nat-healthd.service"
CODE_DIR = "/usr/lib/lvs-nat"
LAUNCHER = "/usr/lib/lvs-nat/lvs-nat-healthd"

VERSION = 1
# The config file carries the collection's managed mark in its first lines (_persist.Owned checks it); JSON has no
# comments, so it is a key, sorted first, that load_config ignores.
COMMENT = "Managed by lvs.nat.ipvs_health: edits here are overwritten; read by lvs-nat-healthd"

CHECK_TYPES = ("tcp", "http", "https", "exec")
ON_FAILURE = ("remove", "quiesce")
CHECK_DEFAULTS = dict(type=None, port=None, path="/", expect_status=[200], expect_body=None, host=None,
                      command=None, interval=2, timeout=1, rise=2, fall=3, on_failure="remove")
HTTP_KEYS = ("path", "expect_status", "expect_body", "host")
MAX_INTERVAL = 3600
MAX_COUNT = 1000  # rise and fall
BODY_LIMIT = 65536  # expect_body is searched in this much of the body
# The service's own options (ipvs_table's), the real servers, and what a checked service adds.
SERVICE_OPTIONS = ("family", "protocol", "address", "port", "fwmark", "scheduler", "scheduler_flags",
                   "persistence_timeout", "persistence_prefix", "one_packet")
HEALTH_KEYS = ("check", "sorry_server", "quorum")
SERVICE_KEYS = SERVICE_OPTIONS + ("real_servers",) + HEALTH_KEYS

# A request path: printable ASCII without spaces (it goes into the request line as one word).
_PATH = re.compile(r"/[!-~]{0,2047}", re.ASCII)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(r"{0}(?:\.{0})*\.?".format(_LABEL), re.ASCII)
_IPV6_TEXT = re.compile(r"[0-9A-Fa-f:.]{2,45}", re.ASCII)
_SORRY = re.compile(r"(?:\[([0-9A-Fa-f:.]{2,45})\]|([0-9.]{1,15}))(?::([0-9]{1,5}))?", re.ASCII)
_SECONDS = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?", re.ASCII)


# ---------------------------------------------------------------- the declaration

def _seconds(name, value, high):
    """A number of seconds > 0 and <= high: an int, a float or decimal text; an int where it is whole."""
    if isinstance(value, str) and _SECONDS.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        raise InvalidInput("%s=%s is not a number of seconds" % (name, _show(value)))
    if not 0 < value <= high:
        raise InvalidInput("%s=%s is out of range: it must be more than 0 and at most %d seconds" % (name, value, high))
    return int(value) if value == int(value) else float(value)


def _given(check, key):
    value = check.get(key)
    return CHECK_DEFAULTS[key] if value is None else value


def _check_timing(where, check):
    out = dict(interval=_seconds(where + "interval", _given(check, "interval"), MAX_INTERVAL),
               timeout=_seconds(where + "timeout", _given(check, "timeout"), MAX_INTERVAL),
               rise=whole_number(where + "rise", _given(check, "rise"), 1, MAX_COUNT),
               fall=whole_number(where + "fall", _given(check, "fall"), 1, MAX_COUNT))
    if out["timeout"] > out["interval"]:
        raise InvalidInput("%stimeout=%s exceeds %sinterval=%s: a check must end before the next one starts" % (
            where, out["timeout"], where, out["interval"]))
    on_failure = _given(check, "on_failure")
    if on_failure not in ON_FAILURE:
        raise InvalidInput("%son_failure=%s is not one of: %s" % (where, _show(on_failure), ", ".join(ON_FAILURE)))
    out["on_failure"] = on_failure
    return out


def _host(name, value):
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= 253 and _HOSTNAME.fullmatch(value):
        return value
    if isinstance(value, str) and _IPV6_TEXT.fullmatch(value):
        try:
            return str(ipaddress.IPv6Address(value))
        except ValueError:
            pass
    raise InvalidInput("%s=%s is neither a host name nor an IP address" % (name, _show(value)))


def _expect_status(name, value):
    if not isinstance(value, (list, tuple)):
        return [whole_number(name, value, 100, 599)]
    if not value:
        raise InvalidInput("%s=[] lists no status" % name)
    return sorted(set(whole_number("%s[%d]" % (name, j), v, 100, 599) for j, v in enumerate(value)))


def _check_http(where, check):
    path = _given(check, "path")
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise InvalidInput("%spath=%s must start with / and be printable ASCII without spaces" % (where, _show(path)))
    body = check.get("expect_body")
    if body is not None:
        if not isinstance(body, str) or len(body) > 4096:
            raise InvalidInput("%sexpect_body=%s is not a regular expression (text of at most 4096 characters)" % (
                where, _show(body)))
        try:
            re.compile(body)
        except re.error as e:
            raise InvalidInput("%sexpect_body=%s is not a valid regular expression: %s" % (where, _show(body), e)) from None
    return dict(path=path, expect_status=_expect_status(where + "expect_status", _given(check, "expect_status")),
                expect_body=body, host=_host(where + "host", check.get("host")))


def _check_command(where, value):
    if value is None:
        raise InvalidInput("%scommand is required with type=exec" % where)
    command = [value] if isinstance(value, str) else value
    if not isinstance(command, (list, tuple)) or not command or len(command) > 256:
        raise InvalidInput("%scommand=%s is not a command (a list of 1 to 256 strings)" % (where, _show(value)))
    for j, arg in enumerate(command):
        if not isinstance(arg, str) or "\0" in arg or len(arg) > 4096:
            raise InvalidInput("%scommand[%d]=%s is not a string (without NUL, at most 4096 characters)" % (
                where, j, _show(arg)))
    if not command[0].startswith("/"):
        raise InvalidInput("%scommand[0]=%s is not an absolute path" % (where, _show(command[0])))
    return list(command)


def _check_port(where, ctype, port, key, dests):
    if port is not None:
        return whole_number(where + "port", port, 1, MAX_U16)
    if ctype == "exec":
        return None
    if key["protocol"] != "tcp":
        raise InvalidInput("%sport is required: the service is %s and a %s check connects over TCP" % (
            where, key["protocol"].upper() if key["protocol"] else "a fwmark service", ctype))
    zero = [d for d in dests if d["port"] == 0]
    if zero:
        raise InvalidInput("%sport is required: real server %s has port 0" % (where, zero[0]["address"]))
    return None


def _irrelevant(where, check, ctype):
    """Options of another check type must be left out (or at their default)."""
    for k in HTTP_KEYS + ("command", "port"):
        wanted = ctype in ("http", "https") if k in HTTP_KEYS else ctype == "exec" if k == "command" else ctype != "exec"
        if not wanted and check.get(k) is not None and check.get(k) != CHECK_DEFAULTS[k]:
            raise InvalidInput("%s%s=%s does not apply to type=%s" % (where, k, _show(check[k]), ctype))


def _check(where, check, key, dests):
    """The check as the daemon runs it, every key present."""
    if not isinstance(check, dict):
        raise InvalidInput("%s=%s is not a mapping (type, interval, ...)" % (where[:-1], _show(check)))
    unknown = sorted(_show(k) for k in check if k not in CHECK_DEFAULTS)
    if unknown:
        raise InvalidInput("%s: unknown option(s) %s (a check takes %s)" % (
            where[:-1], ", ".join(unknown), ", ".join(CHECK_DEFAULTS)))
    ctype = check.get("type")
    if ctype not in CHECK_TYPES:
        raise InvalidInput("%stype=%s is not one of: %s" % (where, _show(ctype), ", ".join(CHECK_TYPES)))
    _irrelevant(where, check, ctype)
    out = dict(CHECK_DEFAULTS, type=ctype)
    out.update(_check_timing(where, check))
    if ctype in ("http", "https"):
        out.update(_check_http(where, check))
    if ctype == "exec":
        out["command"] = _check_command(where, check.get("command"))
    out["port"] = _check_port(where, ctype, check.get("port"), key, dests)
    return out


def _sorry_server(where, value, key, svc, dests):
    """{address, port} of the sorry server (masquerading, weight 1), or None."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) <= {"address", "port"}:
        address, port = value.get("address"), value.get("port")
    else:
        match = _SORRY.fullmatch(value) if isinstance(value, str) else None
        if not match:
            raise InvalidInput("%s=%s is not an address (ADDRESS or ADDRESS:PORT, an IPv6 address in brackets)" % (
                where, _show(value)))
        address, port = match.group(1) or match.group(2), match.group(3)
    if port is None:
        # The real servers' port when they share one (the role's real_server_port), else the service's.
        ports = set(d["port"] for d in dests)
        port = ports.pop() if len(ports) == 1 else key["port"] or 0
    parsed = parse_dest(dict(address=address, port=port), key, where)
    dest = complete_dest(parsed[:2] + ("masq", 1, 0, 0), None, svc, where)
    if any((d["address"], d["port"]) == parsed[:2] for d in dests):
        raise InvalidInput("%s=%s is also a real server of the service" % (where, _show(value)))
    return dict(address=dest["address"], port=dest["port"])


def _checked_service(i, entry, table_entry):
    where = "services[%d]" % i
    if table_entry.dests is None:
        raise InvalidInput("%s.real_servers is required: a checked service lists its real servers" % where)
    if not table_entry.dests:
        raise InvalidInput("%s.real_servers is empty: a checked service needs at least one real server" % where)
    params = dict((k, v) for k, v in entry.items() if k in SERVICE_OPTIONS)
    try:
        svc = desired_service(params, None, key=table_entry.key, given=table_entry.given)
        dests = [complete_dest(p, None, svc, j) for j, p in enumerate(table_entry.dests)]
    except InvalidInput as e:
        raise InvalidInput("%s: %s" % (where, e)) from None
    key = table_entry.key
    out = dict(family=key["family"])
    out.update((k, key[k]) for k in (("fwmark",) if key["fwmark"] else ("protocol", "address", "port")))
    out.update((k, v) for k, v in table_entry.given.items() if v is not None)
    out["real_servers"] = dests
    if entry.get("check") is None:
        raise InvalidInput("%s.check is required for a checked service" % where)
    out["check"] = _check(where + ".check.", entry["check"], key, dests)
    out["sorry_server"] = _sorry_server(where + ".sorry_server", entry.get("sorry_server"), key, svc, dests)
    quorum = entry.get("quorum")
    out["quorum"] = 1 if quorum is None else whole_number(where + ".quorum", quorum, 1, len(dests))
    return out


def check_services(services):
    """The checked services, validated and normalised: each the service as ipvs_table takes it (key, the options
    given, real_servers as full dicts), plus check (every key present), sorry_server ({address, port} or None) and
    quorum. Accepts its own output. InvalidInput names services[i]..., before anything changes."""
    if not isinstance(services, (list, tuple)):
        raise InvalidInput("services=%s is not a list" % _show(services))
    for i, entry in enumerate(services):
        if not isinstance(entry, dict):
            raise InvalidInput("services[%d]=%s is not a mapping" % (i, _show(entry)))
        unknown = sorted(_show(k) for k in entry if k not in SERVICE_KEYS)
        if unknown:
            raise InvalidInput("services[%d]: unknown option(s) %s (a checked service takes %s)" % (
                i, ", ".join(unknown), ", ".join(SERVICE_KEYS)))
    table = precheck_table([dict((k, v) for k, v in e.items() if k not in HEALTH_KEYS and v is not None)
                            for e in services])
    return [_checked_service(i, entry, t) for i, (entry, t) in enumerate(zip(services, table))]


# ---------------------------------------------------------------- the file the daemon reads

def generation(services):
    """First 16 hex digits of the sha256 of the services' canonical JSON: what names a config."""
    text = json.dumps(services, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_document(checked):
    return {"comment": COMMENT, "version": VERSION, "generation": generation(checked), "services": checked}


def render_config(doc):
    """The config file's text: the same document always gives the same text."""
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"


def load_config(text):
    """The document of a config file's text, validated again (InvalidInput on anything wrong)."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise InvalidInput("the health check config is not JSON: %s" % e) from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise InvalidInput("the health check config is not version %d of lvs-nat-healthd's config" % VERSION)
    unknown = sorted(_show(k) for k in doc if k not in ("comment", "version", "generation", "services"))
    if unknown:
        raise InvalidInput("the health check config has unknown key(s) %s" % ", ".join(unknown))
    out = config_document(check_services(doc.get("services")))
    if out["generation"] != doc.get("generation"):
        raise InvalidInput("the health check config's generation=%s does not match its services (%s): edited by hand?"
                           % (_show(doc.get("generation")), out["generation"]))
    return out


# ---------------------------------------------------------------- health

class Tracker(object):
    """One real server's health: healthy flips to False after `fall` failed checks in a row, back to True after
    `rise` successful ones in a row. since: when it last flipped (or was set)."""

    __slots__ = ("rise", "fall", "healthy", "since", "successes", "failures", "last", "reason", "checks")

    def __init__(self, rise, fall, healthy, since=None, checks=0):
        self.rise, self.fall, self.healthy, self.since = rise, fall, bool(healthy), since
        self.successes = self.failures = 0
        self.last, self.reason, self.checks = None, None, checks

    def observe(self, ok, reason, now):
        """Record a check's result; True when healthy flipped."""
        self.checks += 1
        self.last, self.reason = bool(ok), reason
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            flip = not self.healthy and self.successes >= self.rise
        else:
            self.successes, self.failures = 0, self.failures + 1
            flip = self.healthy and self.failures >= self.fall
        if flip:
            self.healthy, self.since = not self.healthy, now
        return flip


def service_name(svc):
    """A checked service's name in health.json and in logs: 'TCP 198.51.100.10:80', 'FWM 7 (ipv4)'."""
    return describe_service(dict(family=svc.get("family") or "ipv4", fwmark=svc.get("fwmark") or 0,
                                 protocol=svc.get("protocol") or "tcp", address=svc.get("address"),
                                 port=svc.get("port")))


def wanted_service(svc, health):
    """(the ipvs_table entry the kernel must hold for one checked service, whether the sorry server is in it).

    health: {(service_name, address, port): healthy}; a real server missing from it is unhealthy. Declared weight 0
    stays (drain wins over health); healthy with weight > 0 keeps its weight; unhealthy is left out (remove) or
    weighted 0 (quiesce). With fewer than quorum healthy weighted real servers and a sorry server, the sorry server
    (weight 1) takes their place: the healthy ones are then treated as unhealthy.
    """
    name, quiesce = service_name(svc), svc["check"]["on_failure"] == "quiesce"
    dests, live = [], []
    for d in svc["real_servers"]:
        if d["weight"] == 0:
            dests.append(dict(d))
        elif health.get((name, d["address"], d["port"])):
            live.append(dict(d))
        elif quiesce:
            dests.append(dict(d, weight=0))
    sorry = svc.get("sorry_server")
    active = bool(sorry) and len(live) < svc["quorum"]
    if active:
        live = [dict(d, weight=0) for d in live] if quiesce else []
        live.append(dict(address=sorry["address"], port=sorry["port"], forwarding="masq", weight=1,
                         upper_threshold=0, lower_threshold=0))
    entry = dict((k, svc[k]) for k in SERVICE_OPTIONS if k in svc)
    entry["real_servers"] = sorted(dests + live, key=dest_order)
    return entry, active


def wanted_services(doc, health):
    """The ipvs_table service entries the kernel must hold for the checked services of doc given health; for
    _ipvs_plan.plan_table(current, entries, purge_services=False, purge_real_servers=True)."""
    return [wanted_service(svc, health)[0] for svc in doc["services"]]


# ---------------------------------------------------------------- the daemon's state file

def read_state(path=STATE_PATH):
    """The state document lvs-nat-healthd wrote, or None when there is none. LvsNatError when unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    except (IOError, OSError, UnicodeDecodeError) as e:
        raise LvsNatError("Failed to read %s: %s" % (path, getattr(e, "strerror", None) or e)) from None
    try:
        state = json.loads(text)
    except ValueError as e:
        raise LvsNatError("Failed to read %s: not JSON (%s)" % (path, e)) from None
    if not isinstance(state, dict) or not isinstance(state.get("services"), list):
        raise LvsNatError("Failed to read %s: not a health state document" % path)
    return state


def state_health(state):
    """{(service name, address, port): healthy} from a state document (None: no state, {})."""
    out = {}
    for svc in (state or {}).get("services") or []:
        for rs in svc.get("real_servers") or []:
            out[(svc.get("service"), rs.get("address"), rs.get("port"))] = rs.get("healthy") is True
    return out
