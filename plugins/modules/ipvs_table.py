#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_table
short_description: Reconcile many IPVS virtual services and their real servers in one run
version_added: 0.2.0
description:
  - Declares a list of IPVS virtual services, each with its real servers, and makes the kernel hold them in one module
    run. The whole table is read once and compared with the declaration entry by entry; only what differs is sent,
    many operations per netlink batch.
  - Each entry of O(services) means what the same options mean to M(lvs.nat.ipvs_service) with O(lvs.nat.ipvs_service#module:state=present);
    options left out keep what the kernel holds, or take the creation defaults. Use M(lvs.nat.ipvs_service) for one
    service, this module for a table that is large or owned as a whole.
  - Nothing that the task does not name is removed, unless O(purge_real_servers=true) (real servers of a listed service)
    or O(purge_services=true) (services not listed).
  - Every entry is checked before anything is sent. Where the kernel still refuses an operation (a real server on a
    broadcast address of the director's own subnet, for example), everything the run applied is rolled back, so the
    failed task leaves the table as it found it.
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lvs.nat.ipvs_options
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Before and after show the services that the run adds, edits or removes, with their real servers.
  platform:
    platforms: linux
options:
  services:
    description:
      - The virtual services, keyed as in M(lvs.nat.ipvs_service) by O(services[].protocol), O(services[].address) and
        O(services[].port), or by O(services[].fwmark). A service listed twice is an error.
    type: list
    elements: dict
    required: true
    suboptions:
      protocol:
        description:
          - V(tcp) (the default with O(services[].address)), V(udp) or V(sctp). Not used with O(services[].fwmark).
        type: str
        choices: [sctp, tcp, udp]
      address:
        description:
          - Virtual IP address, IPv4 or IPv6. One of O(services[].address) (with O(services[].port)) or
            O(services[].fwmark) is required.
          - Not the unspecified address, a multicast address, V(255.255.255.255), an IPv6 link-local address or an
            address with C(%zone).
        type: str
      port:
        description:
          - Service port, 0 to 65535; V(0) means all ports and needs persistence.
        type: int
      fwmark:
        description:
          - Firewall mark of a fwmark service, instead of protocol, address and port.
        type: int
      family:
        description:
          - Address family; follows O(services[].address), V(ipv4) by default for a fwmark service.
        type: str
        choices: [ipv4, ipv6]
      scheduler:
        description:
          - Scheduling algorithm, as O(lvs.nat.ipvs_service#module:scheduler); V(wlc) on creation.
        type: str
        choices: [rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf, twos]
      scheduler_flags:
        description:
          - Scheduler flags, as O(lvs.nat.ipvs_service#module:scheduler_flags).
        type: list
        elements: str
        choices: [mh-fallback, mh-port, sh-fallback, sh-port]
      persistence_timeout:
        description:
          - Persistence timeout in seconds, V(0) (the creation default) for none, at most V(2678400) (31 days, the most
            C(ipvsadm) accepts).
        type: int
      persistence_prefix:
        description:
          - Prefix length grouping clients for persistence, as O(lvs.nat.ipvs_service#module:persistence_prefix).
        type: int
      one_packet:
        description:
          - One-packet scheduling, for UDP and fwmark services; V(false) on creation.
        type: bool
      real_servers:
        description:
          - The service's real servers, as O(lvs.nat.ipvs_service#module:real_servers). When omitted, the service's real
            servers are not touched.
        type: list
        elements: dict
        suboptions:
          address:
            description:
              - Real server IP address (RIP), of the service's address family. Not the unspecified address, a multicast
                address, V(255.255.255.255), an IPv6 link-local address or an address with C(%zone).
            type: str
            required: true
          port:
            description:
              - Real server port; the service's port by default (V(0) for a fwmark service). Another port needs
                masquerading (port mapping).
            type: int
          forwarding:
            description:
              - Forwarding method; V(masq) (NAT) on creation.
            type: str
            choices: [masq, route, tunnel]
          weight:
            description:
              - Weight 0 to 65535; V(1) on creation. V(0) drains the server.
            type: int
          upper_threshold:
            description:
              - Upper connection threshold; V(0) (no limit) on creation.
            type: int
          lower_threshold:
            description:
              - Lower connection threshold, at most the upper one; V(0) on creation.
            type: int
  purge_real_servers:
    description:
      - Remove the real servers of each service with O(services[].real_servers) that its list does not name.
    type: bool
    default: false
  purge_services:
    description:
      - Remove the services the kernel holds that O(services) does not list, with their real servers.
    type: bool
    default: false
seealso:
  - module: lvs.nat.ipvs_service
  - module: lvs.nat.ipvs_info
  - module: lvs.nat.ipvs_save
"""

EXAMPLES = r"""
- name: Two services on the VIP with their real servers, in one run
  lvs.nat.ipvs_table:
    services:
      - address: 198.51.100.10
        port: 80
        scheduler: wrr
        real_servers:
          - {address: 198.51.100.101, weight: 3}
          - {address: 198.51.100.102}
      - address: 198.51.100.10
        port: 8080
        scheduler: rr
        real_servers:
          - {address: 198.51.100.101, port: 80}
          - {address: 198.51.100.102, port: 80}

- name: Exactly this table (other services and real servers are removed)
  lvs.nat.ipvs_table:
    services:
      - address: 198.51.100.10
        port: 80
        scheduler: wrr
        real_servers:
          - {address: 198.51.100.101, weight: 3}
          - {address: 198.51.100.102}
    purge_services: true
    purge_real_servers: true
"""

RETURN = r"""
services:
  description:
    - The listed services that the run added or edited (in check mode, would add or edit), as the kernel holds them
      after the run, in the order of O(services), each with its real servers; the same fields as
      RV(lvs.nat.ipvs_service#module:service). Services left as they were are not repeated here (M(lvs.nat.ipvs_info)
      reads the whole table); empty when nothing changed.
  returned: always
  type: list
  elements: dict
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
        - {address: 198.51.100.101, port: 80, forwarding: masq, weight: 3, upper_threshold: 0, lower_threshold: 0}
removed:
  description: The services removed (in check mode, that would be removed) by O(purge_services), as they were.
  returned: always
  type: list
  elements: dict
  sample: []
changes:
  description: The kernel operations made (in check mode, that would be made), in order.
  returned: always
  type: list
  elements: str
  sample: ["add service TCP 198.51.100.10:80", "add real server 198.51.100.101:80"]
applied:
  description: When the kernel refused an operation, the operations of the run it had applied, in order.
  returned: on a kernel refusal
  type: list
  elements: str
  sample: ["add service TCP 198.51.100.10:81"]
rolled_back:
  description: When the kernel refused an operation, the applied operations that were undone, the last first.
  returned: on a kernel refusal
  type: list
  elements: str
  sample: ["add service TCP 198.51.100.10:81"]
not_rolled_back:
  description: When the kernel refused an operation, the applied operations that could not be undone (still in the kernel).
  returned: on a kernel refusal
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs, _ipvs_args, _ipvs_names, _ipvs_plan
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module


def build_module():
    return AnsibleModule(argument_spec=_ipvs_args.IPVS_TABLE_SPEC, supports_check_mode=True)


def run(module):
    p = module.params
    _ipvs_plan.precheck_table(p["services"])
    with _ipvs.Session(module) as kernel:
        current = kernel.table()
        ops, after, removed = _ipvs_plan.plan_table(current, p["services"], p["purge_services"], p["purge_real_servers"])
        if ops and not module.check_mode:
            schedulers = sorted(set(svc["scheduler"] for svc in after))
            # A refusal rolls back what the run applied, so a failed task leaves the table as it found it.
            kernel.apply(ops, before=current, schedulers=schedulers)
            held = dict((_ipvs_names.service_id(svc), svc) for svc in kernel.table())
            after = [held.get(_ipvs_names.service_id(svc)) for svc in after]
    # Only what the run touched: a large table's unchanged services would make every result (and its processing by
    # ansible-core) as large as the table. lvs.nat.ipvs_info reads the whole table.
    touched = set(_ipvs_names.service_id(op[1]) for op in ops)
    result = dict(changed=bool(ops), services=[_ipvs_plan.config_view(svc) for svc in after if _ipvs_names.service_id(svc) in touched],
                  removed=[_ipvs_plan.config_view(svc) for svc in removed], changes=[_ipvs_names.describe_op(op) for op in ops])
    result["diff"] = dict(before=[_ipvs_plan.config_view(svc) for svc in current if _ipvs_names.service_id(svc) in touched],
                          after=result["services"])
    return result


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
