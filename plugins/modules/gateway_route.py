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
    description: The director's internal address (DIP).
    type: str
    required: true
  networks:
    description: The destinations to route via O(gateway); V(default) is the default route.
    type: list
    elements: str
    default: [default]
  interface:
    description: The interface towards the director; the kernel picks it from O(gateway) when omitted.
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
    description: The systemd unit this module owns.
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


def normalise(module):
    p = module.params
    try:
        gateway = str(ipaddress.ip_address(p["gateway"]))
    except ValueError:
        module.fail_json(msg="gateway=%r is not an IP address" % p["gateway"])
    nets = []
    for net in p["networks"]:
        if net == "default":
            nets.append(net)
            continue
        try:
            nets.append(str(ipaddress.ip_network(net)))
        except ValueError as e:
            module.fail_json(msg="networks: %r is not a network (%s)" % (net, e))
    return gateway, nets


def current_routes(module, nets):
    """destination -> gateway of the main table's route, for the destinations asked about."""
    rc, out, err = module.run_command(["ip", "-j", "route", "show", "table", "main"], environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg="ip route show failed (rc=%d): %s" % (rc, err.strip()))
    have = dict((r.get("dst"), r.get("gateway")) for r in json.loads(out or "[]"))
    return dict((n, have.get(n)) for n in nets)


def route_argv(net, gateway, interface):
    return ["ip", "route", "replace", net, "via", gateway] + (["dev", interface] if interface else [])


def run(module):
    p = module.params
    gateway, nets = normalise(module)
    before = current_routes(module, nets) if p["runtime"] else {}
    wanted = dict((n, gateway) for n in nets)
    runtime_changed = p["runtime"] and before != wanted
    if runtime_changed and not module.check_mode:
        for net in nets:
            if before.get(net) != gateway:
                module.run_command(route_argv(net, gateway, p["interface"]), check_rc=True)
    unit_before = _persist.unit_state(p["unit_path"])
    unit_after = unit_before
    if p["persistent"]:
        command = " ; ".join(" ".join(route_argv(n, gateway, p["interface"])) for n in nets)
        text = _persist.unit_text("gateway_route", "lvs.nat routes via the LVS director %s" % gateway,
                                  "/bin/sh -c '%s'" % command, ["network-online.target"],
                                  before=["multi-user.target"], wants=["network-online.target"])
        unit_after = dict(unit=text, enabled=True)
    unit_changed = unit_after != unit_before
    if unit_changed and not module.check_mode:
        _persist.sync_unit(module, p["unit_path"], unit_after["unit"])
    after = current_routes(module, nets) if p["runtime"] and runtime_changed and not module.check_mode else wanted
    result = dict(changed=bool(runtime_changed or unit_changed), routes=after)
    if module._diff:
        result["diff"] = [dict(before=before, after=after),
                          dict(before_header=p["unit_path"], after_header=p["unit_path"],
                               before=unit_before["unit"] or "", after=unit_after["unit"] or "")]
    return result


def main():
    module = build_module()
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
