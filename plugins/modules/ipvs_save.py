#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_save
short_description: Persist the IPVS services the collection owns, and the global timeouts, so that they come back at boot
version_added: 0.1.0
description:
  - Reads the IPVS services it owns (O(addresses), O(fwmarks)) and the global timeouts from the kernel and writes them
    to a file, one C(ipvsadm) command per line, with what C(ipvsadm -S) leaves out - real server thresholds (C(-x),
    C(-y)) and the timeouts (C(--set)). Services of other tools are not saved.
  - Writes and enables a systemd unit (C(lvs-nat-ipvs.service)) that applies the file at boot, each line on its own
    with C(ipvsadm). It never flushes the table (no C(ipvsadm -C), no C(ipvsadm-restore)), so services that other
    tools create at boot stay. A saved service or real server that already exists is edited (C(-E), C(-e)) instead
    of added, so restarting the unit on a running director succeeds.
  - A line that fails is logged (C(journalctl -u lvs-nat-ipvs.service)), the lines after it are still applied, and
    the unit then exits non-zero, so it shows in C(systemctl --failed).
  - Run it after the tasks that change IPVS. M(lvs.nat.ipvs_table) with O(lvs.nat.ipvs_table#module:save) writes the
    same file and unit in the run that reconciles the table; the role C(lvs.nat.director) saves that way, and runs
    this module (with its VIP and declared marks) only when that run did not happen or failed.
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lvs.nat.ipvs_options
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Before and after of the saved file.
  platform:
    platforms: linux
options:
  state:
    description:
      - V(present) saves the owned services and the timeouts; V(absent) disables and removes the unit and removes the
        file. The IPVS table is left as it is.
    type: str
    choices: [present, absent]
    default: present
  addresses:
    description:
      - Virtual IP addresses (IPv4 or IPv6) this module owns. Every service on one of them is saved, whatever its
        protocol and port.
      - When neither O(addresses) nor O(fwmarks) is set, every service the kernel holds is saved, those of other
        tools included, and the unit re-creates them at every boot. This is the behaviour of earlier versions,
        kept for compatibility only; set O(addresses) or O(fwmarks).
      - An empty list owns no address; with O(fwmarks) also empty (or not set) only the timeouts are saved.
    type: list
    elements: str
  fwmarks:
    description:
      - Firewall marks (1 to 4294967295) this module owns. Every fwmark service with one of them is saved, IPv4 and IPv6.
      - See O(addresses) for what happens when neither is set.
    type: list
    elements: int
  skip:
    description:
      - Services that are not saved although O(addresses) or O(fwmarks) owns them, by their key (O(skip[].protocol),
        O(skip[].address) and O(skip[].port), or O(skip[].fwmark)) - the services lvs-nat-healthd writes
        (M(lvs.nat.ipvs_health)), whose real servers come and go with their health. That service puts them back at boot,
        from its declaration.
    type: list
    elements: dict
    default: []
    version_added: 0.4.0
    suboptions:
      protocol:
        description: The service's protocol.
        type: str
        choices: [tcp, udp, sctp]
      address:
        description: The service's virtual address.
        type: str
      port:
        description: The service's port.
        type: int
      fwmark:
        description: The firewall mark of a fwmark service, instead of protocol, address and port.
        type: int
      family:
        description: The family of a fwmark service (default ipv4).
        type: str
        choices: [ipv4, ipv6]
  path:
    description:
      - The file this module owns.
      - An absolute path of ASCII letters, digits, C(_), C(.), C(/), C(+), C(,), C(@), C(=), C(:) and C(-) only, without
        C(..), since the unit passes it on its command line; any other path is refused before any change.
    type: path
    default: /etc/lvs-nat/ipvs.rules
  unit_path:
    description:
      - The systemd unit this module owns; it is enabled for C(multi-user.target). The same characters as O(path).
    type: path
    default: /etc/systemd/system/lvs-nat-ipvs.service
notes:
  - The unit needs C(ipvsadm) on the director at boot, found through systemd's C(PATH).
seealso:
  - module: lvs.nat.ipvs_service
"""

EXAMPLES = r"""
- name: Save the services on the VIP and those of mark 1, with thresholds and timeouts, for the next boot
  lvs.nat.ipvs_save:
    addresses: [198.51.100.10]
    fwmarks: [1]
"""

RETURN = r"""
rules:
  description: The saved lines (in check mode, the lines that would be saved).
  returned: always
  type: list
  elements: str
  sample: ["--set 900 120 300", "-A -t 198.51.100.10:80 -s wrr", "-a -t 198.51.100.10:80 -r 198.51.100.101:8080 -m -w 3 -x 0 -y 0"]
services:
  description:
    - The saved services as the kernel holds them, in the order of the file, each with its settings and real servers
      (the fields of RV(lvs.nat.ipvs_service#module:service), no counters); empty with O(state=absent).
    - What the run read anyway, so a play can check the kernel's table without another read (the lvs.nat.director
      role's verify phase does).
  returned: always
  type: list
  elements: dict
  version_added: 0.3.0
  sample:
    - family: ipv4
      protocol: tcp
      address: 198.51.100.10
      port: 80
      fwmark: 0
      scheduler: wrr
      scheduler_flags: []
      persistence_timeout: 0
      persistence_prefix: 32
      one_packet: false
      real_servers:
        - {address: 198.51.100.101, port: 8080, forwarding: masq, weight: 3, upper_threshold: 0, lower_threshold: 0}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs, _persist
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import SERVICE_KEY_RELATIONS, SERVICE_KEY_SPEC
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import MAX_U32, SAVED_PATH, SAVED_UNIT_PATH, service_id
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import (
    InvalidInput,
    _int_range,
    config_view,
    owned_addresses,
    owned_keys,
    owned_services,
)
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_save import (
    owned_files,
    path_problems,
    render,
    service_order,
)
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module


def selection(params):
    """The owned addresses and marks from the options, or None (neither set) for every service."""
    if params["addresses"] is None and params["fwmarks"] is None:
        return None
    addresses = owned_addresses(params["addresses"] or [], "addresses")
    for i, mark in enumerate(params["fwmarks"] or []):
        _int_range("fwmarks[%d]" % i, mark, 1, MAX_U32)
    return addresses, set(params["fwmarks"] or [])


def owned(table, selected):
    """The services of table that the selection owns: on an owned address, or with an owned mark."""
    return list(table) if selected is None else owned_services(table, *selected)


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "absent"]),
            addresses=dict(type="list", elements="str"),
            fwmarks=dict(type="list", elements="int"),
            skip=dict(type="list", elements="dict", default=[], options=SERVICE_KEY_SPEC, **SERVICE_KEY_RELATIONS),
            path=dict(type="path", default=SAVED_PATH),
            unit_path=dict(type="path", default=SAVED_UNIT_PATH),
        ),
        supports_check_mode=True,
    )


def check(params):
    """Every option checked before anything is read or changed (check mode too); the owned selection (skip is
    checked by owned_keys)."""
    problems = path_problems(params["path"], params["unit_path"])
    if problems:
        raise InvalidInput("; ".join(problems))
    return selection(params)


def saved_state(module, selected, skip=()):
    """The owned services as the kernel holds them (in the file's order), and the lines to save: those services
    (but skip's) and the timeouts."""
    with _ipvs.Session(module) as kernel:
        table, timeouts = kernel.table(counters=False), kernel.timeouts()
    services = sorted((svc for svc in owned(table, selected) if service_id(svc) not in skip), key=service_order)
    return services, render(services, timeouts)


def run(module):
    p = module.params
    selected, skip = check(p), owned_keys(p["skip"], "skip")
    present = p["state"] == "present"
    # One run at a time reads the kernel and replaces the file: two overlapping runs would save the older table last.
    with _persist.lock("ipvs_save"):
        services, lines = saved_state(module, selected, skip) if present else ([], [])
        files = owned_files(p["path"], p["unit_path"], lines if present else None).install(module)
    return dict(changed=files["changed"], rules=lines, services=[config_view(svc) for svc in services],
                diff=files["diff"])


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
