#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: gateway_route
short_description: Route a real server's replies through the LVS director, now and at boot
version_added: 0.1.0
description:
  - In LVS-NAT, real servers must send their replies back through the director. This module points the default
    route, or the routes to the client networks, at the director's internal address (DIP).
  - The running kernel (O(runtime)) and the boot configuration (O(persistent)) are separate choices. Persistence is a
    systemd unit this module owns (C(lvs-nat-route.service)), which works the same whatever manages the host's network.
    It runs C(ip route replace) once per route, without a shell.
  - With O(state=absent) it deletes the routes to O(networks) via O(gateway) (C(ip route del <network> via <gateway>)),
    and disables and removes its unit. A route to one of O(networks) via another gateway is left as it is.
  - The module replaces O(unit_path) only when it carries its C(Managed by lvs.nat) header; any other file there
    fails the task before anything changes, in check mode too.
  - Overlapping runs on one host take turns, through a lock in C(/run/lvs-nat/) held for the whole run (up to 60 s).
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Before and after of the routes and of the unit.
  platform:
    platforms: linux
options:
  state:
    description:
      - V(present) routes O(networks) via O(gateway) and writes the unit; V(absent) deletes those routes (only where
        they go via O(gateway), and O(interface) when given) and removes the unit.
    type: str
    choices: [present, absent]
    default: present
  gateway:
    description: The director's internal address (DIP), IPv4 or IPv6.
    type: str
    required: true
  networks:
    description:
      - The destinations to route via O(gateway), networks of the family of O(gateway); V(default) is the default
        route.
    type: list
    elements: str
    default: [default]
  interface:
    description:
      - The interface towards the director; the kernel picks it from O(gateway) when omitted.
      - A kernel interface name, 1 to 15 ASCII letters, digits and C(_ . + -) (not V(.) or V(..), not ending in C(+), which iptables reads as a wildcard).
    type: str
  runtime:
    description: Change the routes in the running kernel.
    type: bool
    default: true
  persistent:
    description:
      - Write and enable the unit that sets the routes at boot.
      - V(false) disables and removes the unit that an earlier run with V(true) wrote.
    type: bool
    default: true
  unit_path:
    description:
      - The systemd unit this module owns.
      - "An absolute path of letters, digits and C(_ . / + , @ = : -) only."
    type: path
    default: /etc/systemd/system/lvs-nat-route.service
"""

EXAMPLES = r"""
- name: Replies to clients leave through the director
  lvs.nat.gateway_route:
    gateway: 198.51.100.100

- name: No longer through the director - its default route and the boot unit removed
  lvs.nat.gateway_route:
    gateway: 198.51.100.100
    state: absent

- name: Only the client networks through the director, the default route stays
  lvs.nat.gateway_route:
    gateway: 198.51.100.100
    networks: [198.51.100.0/26]
"""

RETURN = r"""
routes:
  description:
    - The routes to O(networks) after the run (in check mode, as they would be), destination to gateway; the gateway
      is null where no route to that destination is left.
  returned: always
  type: dict
  sample: {"default": "198.51.100.100"}
"""

import ipaddress
import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _persist
from ansible_collections.lvs.nat.plugins.module_utils._addresses import interface_problem
from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.module_utils._module import run_command, run_module

IP_FALLBACK = "/sbin/ip"


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "absent"]),
            gateway=dict(type="str", required=True),
            networks=dict(type="list", elements="str", default=["default"]),
            interface=dict(type="str"),
            runtime=dict(type="bool", default=True),
            persistent=dict(type="bool", default=True),
            unit_path=dict(type="path", default="/etc/systemd/system/lvs-nat-route.service"),
        ),
        supports_check_mode=True,
    )


def _gateway(text):
    """(address, None) or (None, what is wrong). Text only: Python's ipaddress reads an integer as an address, the
    module's str option would not (the realserver role's preflight passes the inventory's value as it is)."""
    if not isinstance(text, str):
        return None, "gateway=%r is not an IP address" % (text,)
    try:
        gateway = ipaddress.ip_address(text)
    except ValueError:
        return None, "gateway=%r is not an IP address" % (text,)
    # Python takes "fe80::1%eth0"; ip(8) does not, and the scope would reach the unit's command line.
    if getattr(gateway, "scope_id", None) or gateway.is_unspecified or gateway.is_multicast or gateway.is_loopback:
        return None, "gateway=%r is not a unicast address without a scope" % (text,)
    return gateway, None


def _network(option, text, gateway):
    """(the network in ip's form, `default` for the whole address space, None) or (None, what is wrong)."""
    if text == "default":
        return text, None
    if not isinstance(text, str):
        return None, "%s: %r is not a network (it must be text)" % (option, text)
    try:
        parsed = ipaddress.ip_network(text)
    except ValueError as e:
        return None, "%s: %r is not a network (%s)" % (option, text, e)
    if getattr(parsed.network_address, "scope_id", None):
        return None, "%s: %r is not a network without a scope" % (option, text)
    if gateway is not None and parsed.version != gateway.version:
        return None, "%s: %s is IPv%d, gateway %s is IPv%d" % (option, parsed, parsed.version, gateway, gateway.version)
    return "default" if parsed.prefixlen == 0 else str(parsed), None


def problems(gateway, networks, interface):
    """gateway, networks (canonical, without repeats), interface as the module takes them, and every problem, each
    naming its option. Pure: the realserver role's preflight (filter lvs.nat.realserver_problems) calls it too."""
    address, problem = _gateway(gateway)
    errors = [problem] if problem else []
    nets = []
    for i, net in enumerate(networks):
        net, problem = _network("networks[%d]" % i, net, address)
        if problem:
            errors.append(problem)
        elif net not in nets:
            nets.append(net)
    # An interface name as every module takes it: no newline, blank, quote or `;` reaches the unit.
    problem = None if interface is None else interface_problem(interface, "interface")
    if problem:
        errors.append(problem)
    return address and str(address), nets, errors


def normalise(module):
    """gateway, networks (canonical, without repeats), interface; LvsNatError naming the option before any change."""
    p = module.params
    gateway, nets, errors = problems(p["gateway"], p["networks"], p["interface"])
    problem = _persist.path_problem(p["unit_path"], "unit_path")
    if errors or problem:
        raise LvsNatError("; ".join(errors + ([problem] if problem else [])))
    return gateway, nets, p["interface"]


def current_routes(module, gateway, nets):
    """destination -> [gateway, device] of the main table's route, for the destinations asked about."""
    family = "-6" if ":" in gateway else "-4"
    out = run_command(module, ["ip", "-j", family, "route", "show", "table", "main"], what="ip route show")[1]
    have = dict((_destination(r.get("dst")), [r.get("gateway"), r.get("dev")]) for r in json.loads(out or "[]"))
    return dict((n, have.get(n, [None, None])) for n in nets)


def _destination(dst):
    """ip's destination in the form normalise() gives: ip lists a host route without its /32 or /128."""
    try:
        return dst if dst == "default" else str(ipaddress.ip_network(dst))
    except (TypeError, ValueError):
        return dst


def route_argv(ip, verb, net, gateway, interface):
    return [ip, "route", verb, net, "via", gateway] + (["dev", interface] if interface else [])


def wanted_unit(module, gateway, nets, interface):
    ip = _persist.tool_path(module, "ip", IP_FALLBACK)
    return _persist.unit_text("gateway_route", "lvs.nat routes via the LVS director %s" % gateway,
                              [" ".join(route_argv(ip, "replace", n, gateway, interface)) for n in nets],
                              ["network-online.target"], before=["multi-user.target"],
                              wants=["network-online.target"])


def apply_routes(module, gateway, nets, interface):
    """Replace the routes that differ in the running kernel (state present), or delete those via gateway (absent);
    before and after as destination -> gateway. A route to a destination via another gateway is never deleted."""
    have = current_routes(module, gateway, nets)
    ours = [n for n in nets if have[n][0] == gateway and (not interface or have[n][1] == interface)]
    present = module.params["state"] == "present"
    stale = [n for n in nets if n not in ours] if present else ours
    verb = "replace" if present else "del"
    if stale and not module.check_mode:
        for net in stale:
            run_command(module, route_argv("ip", verb, net, gateway, interface))
        after = current_routes(module, gateway, nets)
    elif present:
        after = dict((n, [gateway, interface or have[n][1]]) for n in nets)
    else:
        after = dict((n, [None, None] if n in stale else have[n]) for n in nets)
    return dict((n, v[0]) for n, v in have.items()), dict((n, v[0]) for n, v in after.items()), bool(stale)


def run(module):
    p = module.params
    gateway, nets, interface = normalise(module)
    keep = p["state"] == "present" and p["persistent"]
    with _persist.lock("gateway_route"):
        owned = _persist.Owned(units=[("unit_path", p["unit_path"],
                                       wanted_unit(module, gateway, nets, interface) if keep else None)])
        before, after, runtime_changed = {}, dict((n, gateway if p["state"] == "present" else None) for n in nets), False
        if p["runtime"]:
            before, after, runtime_changed = apply_routes(module, gateway, nets, interface)
        unit = owned.install(module)
    return dict(changed=bool(runtime_changed or unit["changed"]), routes=after,
                diff=[dict(before=before, after=after)] + unit["diff"])


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
