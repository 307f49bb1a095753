#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_real_server
short_description: Manage one real server of an IPVS virtual service
version_added: 0.1.0
description:
  - Adds, edits or removes one real server (destination) of an existing IPVS service.
  - Forwarding defaults to masquerading (NAT). In NAT the real server's port may differ from the service's (port mapping).
  - O(weight=0) drains the server (no new connections, existing ones go on); O(state=absent) removes it.
  - To manage all real servers of a service in one run, use the O(lvs.nat.ipvs_service#module:real_servers)
    option of M(lvs.nat.ipvs_service).
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lvs.nat.ipvs_options
  - lvs.nat.ipvs_options.real_server
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Before and after show the real server's settings.
  platform:
    platforms: linux
options:
  service:
    description:
      - The virtual service the real server belongs to; it must exist.
      - Either O(service.address) with O(service.port) (and O(service.protocol)), or O(service.fwmark).
    type: dict
    required: true
    suboptions:
      protocol:
        description: Transport protocol; V(tcp) when omitted.
        type: str
        choices: [sctp, tcp, udp]
      address:
        description: Virtual IP address of the service.
        type: str
      port:
        description: Port of the service.
        type: int
      fwmark:
        description: Firewall mark of a fwmark service.
        type: int
      family:
        description: Address family; follows O(service.address), V(ipv4) for a fwmark service when omitted.
        type: str
        choices: [ipv4, ipv6]
  address:
    description:
      - The real server's IP address (RIP), of the service's address family, in plain notation (no C(%zone)).
      - Not the unspecified address, a multicast address, V(255.255.255.255) or an IPv6 link-local address.
    type: str
    required: true
  port:
    description:
      - The real server's port. It may differ from the service's only with O(forwarding=masq).
      - Defaults to the service's port; for a fwmark service to V(0), which keeps each packet's port.
    type: int
  state:
    description:
      - V(present) adds or edits the real server, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: lvs.nat.ipvs_service
  - module: lvs.nat.ipvs_info
"""

EXAMPLES = r"""
- name: Add a NAT real server to the web service, port 80 mapped to 8080
  lvs.nat.ipvs_real_server:
    service:
      protocol: tcp
      address: 198.51.100.10
      port: 80
    address: 198.51.100.101
    port: 8080
    weight: 3

- name: Drain a real server before maintenance (weight 0 keeps it in the table)
  lvs.nat.ipvs_real_server:
    service:
      address: 198.51.100.10
      port: 80
    address: 198.51.100.101
    port: 8080
    weight: 0

- name: Limit a real server to 500 active connections
  lvs.nat.ipvs_real_server:
    service:
      fwmark: 1
    address: 198.51.100.102
    upper_threshold: 500
    lower_threshold: 400

- name: Remove a real server
  lvs.nat.ipvs_real_server:
    service:
      address: 198.51.100.10
      port: 80
    address: 198.51.100.101
    port: 8080
    state: absent
"""

RETURN = r"""
real_server:
  description:
    - The real server as the kernel holds it after the run (in check mode, as it would); empty when absent.
  returned: always
  type: dict
  sample:
    address: 198.51.100.101
    port: 8080
    forwarding: masq
    weight: 3
    upper_threshold: 0
    lower_threshold: 0
  contains:
    address:
      description: Real server address.
      type: str
    port:
      description: Real server port.
      type: int
    forwarding:
      description: V(masq), V(route) or V(tunnel).
      type: str
    weight:
      description: Weight; 0 means drained.
      type: int
    upper_threshold:
      description: Upper connection threshold, 0 for none.
      type: int
    lower_threshold:
      description: Lower connection threshold.
      type: int
changes:
  description: The kernel operations made (in check mode, that would be made).
  returned: always
  type: list
  elements: str
  sample: ["edit real server 198.51.100.101:8080 of TCP 198.51.100.10:80"]
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

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import IPVS_REAL_SERVER_SPEC
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import DEST_FIELDS, describe_op, describe_service, dest_id
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import (
    DEST_OPTIONS,
    InvalidInput,
    complete_dest,
    parse_dest,
    plan_dest,
    service_key,
)
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module


def _view(dest):
    return dict((k, dest[k]) for k in ("address", "port") + DEST_FIELDS) if dest else {}


def build_module():
    return AnsibleModule(argument_spec=IPVS_REAL_SERVER_SPEC, supports_check_mode=True)


def run(module):
    p = module.params
    key = service_key(p["service"], where="service.")
    # Checked on its own before the kernel is read; completed with the kernel's entry below.
    parsed = parse_dest(dict((k, p[k]) for k in DEST_OPTIONS), key)
    with _ipvs.Session(module) as kernel:
        svc = kernel.service(key)
        if svc is None:
            if p["state"] == "absent":
                return dict(changed=False, real_server={}, changes=[])
            raise InvalidInput("service.%s: the service %s does not exist; create it first with lvs.nat.ipvs_service"
                               % ("fwmark" if key["fwmark"] else "address", describe_service(key)))
        have = dict((dest_id(d), d) for d in svc["real_servers"])
        current = have.get(parsed[:2])
        wanted = complete_dest(parsed, current, svc)
        ops, after = plan_dest(svc, current, wanted if p["state"] == "present" else None)
        if ops and not module.check_mode:
            kernel.apply(ops, before=[svc])
            after = dict((dest_id(d), d) for d in kernel.service(key)["real_servers"]).get(dest_id(wanted))
    return dict(changed=bool(ops), real_server=_view(after), changes=[describe_op(op) for op in ops],
                diff=dict(before=_view(current), after=_view(after)))


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
