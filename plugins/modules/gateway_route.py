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
      - "A kernel interface name, 1 to 15 of the characters C(A-Z a-z 0-9 _ . : @ + -) (not V(.) or V(..))."
    type: str
  runtime:
    description: Change the routes in the running kernel.
    type: bool
    default: true
  persistent:
    description: Write and enable the unit that sets the routes at boot.
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

- name: Only the client networks through the director, the default route stays
  lvs.nat.gateway_route:
    gateway: 198.51.100.100
    networks: [198.51.100.0/26]
"""

RETURN = r"""
routes:
  description: The routes via O(gateway) after the run (in check mode, as they would be).
  returned: always
  type: dict
  sample: {"default": "198.51.100.100"}
"""

import ipaddress
import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _persist
from ansible_collections.lvs.nat.plugins.module_utils._netfilter import is_interface_name

IP_FALLBACK = "/sbin/ip"


def build_module():
    return AnsibleModule(
        argument_spec=dict(
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
    """(address, None) or (None, what is wrong)."""
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
    # A kernel interface name as lvs.nat.nat_rules takes it: no newline, blank, quote or `;` reaches the unit.
    if interface is not None and not is_interface_name(interface):
        errors.append("interface=%r is not an interface name (1 to 15 of A-Z a-z 0-9 _ . : @ + -)" % (interface,))
    return address and str(address), nets, errors


def normalise(module):
    """gateway, networks (canonical, without repeats), interface; fails naming the option before any change."""
    p = module.params
    gateway, nets, errors = problems(p["gateway"], p["networks"], p["interface"])
    problem = _persist.path_problem(p["unit_path"], "unit_path")
    if errors or problem:
        module.fail_json(msg="; ".join(errors + ([problem] if problem else [])))
    return gateway, nets, p["interface"]


def current_routes(module, gateway, nets):
    """destination -> [gateway, device] of the main table's route, for the destinations asked about."""
    family = "-6" if ":" in gateway else "-4"
    rc, out, err = module.run_command(["ip", "-j", family, "route", "show", "table", "main"],
                                      environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg="ip route show failed (rc=%d): %s" % (rc, err.strip()))
    have = dict((_destination(r.get("dst")), [r.get("gateway"), r.get("dev")]) for r in json.loads(out or "[]"))
    return dict((n, have.get(n, [None, None])) for n in nets)


def _destination(dst):
    """ip's destination in the form normalise() gives: ip lists a host route without its /32 or /128."""
    try:
        return dst if dst == "default" else str(ipaddress.ip_network(dst))
    except (TypeError, ValueError):
        return dst


def route_argv(ip, net, gateway, interface):
    return [ip, "route", "replace", net, "via", gateway] + (["dev", interface] if interface else [])


def ip_path(module):
    """The ip binary's absolute path, for the unit's command lines (which take no search path)."""
    found = module.get_bin_path("ip")
    return found if found and not _persist.path_problem(found, "ip") else IP_FALLBACK


def wanted_unit(module, gateway, nets, interface):
    ip = ip_path(module)
    return _persist.unit_text("gateway_route", "lvs.nat routes via the LVS director %s" % gateway,
                              [" ".join(route_argv(ip, n, gateway, interface)) for n in nets],
                              ["network-online.target"], before=["multi-user.target"],
                              wants=["network-online.target"])


def apply_routes(module, gateway, nets, interface):
    """Replace the routes that differ in the running kernel; before and after as destination -> gateway."""
    have = current_routes(module, gateway, nets)
    stale = [n for n in nets if have[n][0] != gateway or (interface and have[n][1] != interface)]
    if stale and not module.check_mode:
        for net in stale:
            module.run_command(route_argv("ip", net, gateway, interface), check_rc=True,
                               environ_update={"LC_ALL": "C"})
        after = current_routes(module, gateway, nets)
    else:
        after = dict((n, [gateway, interface or have[n][1]]) for n in nets)
    return dict((n, v[0]) for n, v in have.items()), dict((n, v[0]) for n, v in after.items()), bool(stale)


def run(module):
    p = module.params
    gateway, nets, interface = normalise(module)
    with _persist.lock("gateway_route"):
        problem = _persist.foreign_problem(p["unit_path"], "unit_path")
        if problem:
            module.fail_json(msg=problem)
        before, after, runtime_changed = {}, dict((n, gateway) for n in nets), False
        if p["runtime"]:
            before, after, runtime_changed = apply_routes(module, gateway, nets, interface)
        unit_before = _persist.unit_state(p["unit_path"])
        unit_after = dict(unit=wanted_unit(module, gateway, nets, interface), enabled=True) if p["persistent"] \
            else unit_before
        unit_changed = unit_after != unit_before
        if unit_changed and not module.check_mode:
            _persist.sync_unit(module, p["unit_path"], unit_after["unit"])
    result = dict(changed=bool(runtime_changed or unit_changed), routes=after)
    if module._diff:
        result["diff"] = [dict(before=before, after=after),
                          dict(before_header=p["unit_path"], after_header=p["unit_path"],
                               before=unit_before["unit"] or "", after=unit_after["unit"] or "")]
    return result


def main():
    module = build_module()
    try:
        module.exit_json(**run(module))
    except _persist.PersistError as e:
        module.fail_json(msg=str(e))
    except (IOError, OSError) as e:
        module.fail_json(msg="Failed to write %s: %s" % (getattr(e, "filename", "") or "a file", e))


if __name__ == "__main__":
    main()
