#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_service
short_description: Manage an IPVS virtual service and, in the same call, its real servers
version_added: 0.1.0
description:
  - Creates, edits or removes one IPVS virtual service, keyed by O(protocol), O(address) and O(port), or by O(fwmark).
  - Optionally reconciles the service's real servers from O(real_servers) in the same call, so that a whole service
    costs one module run. Real servers default to masquerading (NAT).
  - Options left out keep what the kernel holds; on creation they take the documented defaults. The kernel replaces a
    whole service entry on every edit, so the module always sends the complete entry.
  - Nothing that the task does not name is removed, unless O(purge_real_servers=true).
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lvs.nat.ipvs_options
  - lvs.nat.ipvs_options.service_key
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Before and after show the service's settings and its real servers.
  platform:
    platforms: linux
options:
  state:
    description:
      - V(present) creates or edits the service; V(absent) removes it with its real servers.
    type: str
    choices: [present, absent]
    default: present
  scheduler:
    description:
      - Scheduling algorithm. The module loads the scheduler's kernel module (C(ip_vs_<name>)) and fails, changing
        nothing, where the kernel has none (V(twos) is not in Linux 6.1, for example).
      - Defaults to V(wlc) (as C(ipvsadm)) when the service is created; left as it is when omitted later.
    type: str
    choices: [rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf, twos]
  scheduler_flags:
    description:
      - Scheduler flags (C(ipvsadm -b)). V(sh-fallback) and V(sh-port) fit O(scheduler=sh),
        V(mh-fallback) and V(mh-port) fit O(scheduler=mh).
      - Defaults to none on creation. When O(scheduler) changes and this is omitted, the flags are cleared.
    type: list
    elements: str
    choices: [mh-fallback, mh-port, sh-fallback, sh-port]
  persistence_timeout:
    description:
      - Persistence timeout in seconds (C(ipvsadm -p)), V(0) to V(2678400) (31 days, the most C(ipvsadm) and so
        M(lvs.nat.ipvs_save)'s boot restore accept); V(0) makes the service not persistent.
      - Defaults to V(0) on creation; left as it is when omitted later.
    type: int
  persistence_prefix:
    description:
      - Prefix length that groups clients for persistence (C(ipvsadm -M)); 1 to 32 for IPv4, 1 to 128 for IPv6.
      - Needs persistence. Defaults to V(32) (IPv4) or V(128) (IPv6).
    type: int
  one_packet:
    description:
      - One-packet scheduling (C(ipvsadm -o)), for UDP and fwmark services.
      - Defaults to V(false) on creation; left as it is when omitted later.
    type: bool
  real_servers:
    description:
      - The service's real servers. Each listed one is created or edited; options left out keep what the kernel holds.
      - When omitted, real servers are not touched.
    type: list
    elements: dict
    suboptions:
      address:
        description:
          - Real server IP address (RIP), of the service's address family, in plain notation (no C(%zone)).
          - Not the unspecified address, a multicast address, V(255.255.255.255) or an IPv6 link-local address.
            The kernel also refuses a broadcast address of the director's own subnets; the run is then rolled back.
        type: str
        required: true
      port:
        description:
          - Real server port. Differs from the service port only with O(real_servers[].forwarding=masq) (port mapping).
          - Defaults to the service's port; for a fwmark service to V(0), which keeps each packet's port.
        type: int
      forwarding:
        description:
          - Forwarding method; V(masq) (NAT) on creation. See M(lvs.nat.ipvs_real_server).
        type: str
        choices: [masq, route, tunnel]
      weight:
        description:
          - Weight 0 to 65535; V(1) on creation. V(0) drains the server.
        type: int
      upper_threshold:
        description:
          - Upper connection threshold, V(0) (no limit) on creation.
        type: int
      lower_threshold:
        description:
          - Lower connection threshold, at most O(real_servers[].upper_threshold); V(0) on creation.
        type: int
  purge_real_servers:
    description:
      - Remove the service's real servers that O(real_servers) does not list.
    type: bool
    default: false
seealso:
  - module: lvs.nat.ipvs_real_server
  - module: lvs.nat.ipvs_info
  - module: lvs.nat.ipvs_timeouts
"""

EXAMPLES = r"""
- name: A round-robin web service on the VIP with two NAT real servers, port 80 mapped to 8080
  lvs.nat.ipvs_service:
    protocol: tcp
    address: 198.51.100.10
    port: 80
    scheduler: rr
    real_servers:
      - address: 198.51.100.101
        port: 8080
      - address: 198.51.100.102
        port: 8080

- name: Weighted round robin, 3:1, exactly these real servers (others are removed)
  lvs.nat.ipvs_service:
    address: 198.51.100.10
    port: 443
    scheduler: wrr
    real_servers:
      - address: 198.51.100.101
        weight: 3
      - address: 198.51.100.102
        weight: 1
    purge_real_servers: true

- name: A persistent service for all ports of the VIP, clients grouped by /24
  lvs.nat.ipvs_service:
    address: 198.51.100.10
    port: 0
    scheduler: sh
    scheduler_flags: [sh-port]
    persistence_timeout: 600
    persistence_prefix: 24

- name: A DNS service over UDP with one-packet scheduling
  lvs.nat.ipvs_service:
    protocol: udp
    address: 198.51.100.10
    port: 53
    scheduler: rr
    one_packet: true

- name: A fwmark service (packets marked 1 by a netfilter rule)
  lvs.nat.ipvs_service:
    fwmark: 1
    scheduler: wlc
    real_servers:
      - address: 198.51.100.101

- name: Remove a service and its real servers
  lvs.nat.ipvs_service:
    address: 198.51.100.10
    port: 8443
    state: absent
"""

RETURN = r"""
service:
  description:
    - The service as the kernel holds it after the run (in check mode, as it would), with its real servers.
      Empty when the service is absent.
  returned: always
  type: dict
  sample:
    family: ipv4
    protocol: tcp
    address: 198.51.100.10
    port: 80
    fwmark: 0
    scheduler: rr
    scheduler_flags: []
    persistence_timeout: 0
    persistence_prefix: 32
    one_packet: false
    real_servers:
      - address: 198.51.100.101
        port: 8080
        forwarding: masq
        weight: 1
        upper_threshold: 0
        lower_threshold: 0
  contains:
    family:
      description: Address family, V(ipv4) or V(ipv6).
      type: str
    protocol:
      description: V(tcp), V(udp) or V(sctp); null for a fwmark service.
      type: str
    address:
      description: Virtual IP address; null for a fwmark service.
      type: str
    port:
      description: Service port; null for a fwmark service.
      type: int
    fwmark:
      description: Firewall mark, 0 when the service is keyed by address.
      type: int
    scheduler:
      description: Scheduler name.
      type: str
    scheduler_flags:
      description: Scheduler flags.
      type: list
      elements: str
    persistence_timeout:
      description: Persistence timeout in seconds, 0 when not persistent.
      type: int
    persistence_prefix:
      description: Prefix length grouping clients for persistence.
      type: int
    one_packet:
      description: Whether one-packet scheduling is on.
      type: bool
    real_servers:
      description: Real servers with address, port, forwarding, weight, upper_threshold and lower_threshold.
      type: list
      elements: dict
changes:
  description: The kernel operations made (in check mode, that would be made), in order.
  returned: always
  type: list
  elements: str
  sample: ["add service TCP 198.51.100.10:80", "add real server 198.51.100.101:8080"]
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
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import IPVS_SERVICE_SPEC, SERVICE_KEY_RELATIONS
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import describe_op
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import (
    config_view,
    desired_dests,
    desired_service,
    plan_service,
    precheck_service,
    service_key,
)
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module


def build_module():
    return AnsibleModule(argument_spec=IPVS_SERVICE_SPEC, supports_check_mode=True, **SERVICE_KEY_RELATIONS)


def run(module):
    p = module.params
    key = precheck_service(p) if p["state"] == "present" else service_key(p)
    with _ipvs.Session(module) as kernel:
        current = kernel.service(key)
        desired = desired_service(p, current) if p["state"] == "present" else None
        dests = None
        if desired is not None and p["real_servers"] is not None:
            dests = desired_dests(p["real_servers"], desired, current and current["real_servers"])
        ops, after = plan_service(current, desired, dests, p["purge_real_servers"])
        if ops and not module.check_mode:
            # A refusal rolls back what was applied.
            kernel.apply(ops, before=[current] if current else [], schedulers=[desired["scheduler"]] if desired else [])
            after = kernel.service(key)
    return dict(changed=bool(ops), service=config_view(after), changes=[describe_op(op) for op in ops],
                diff=dict(before=config_view(current), after=config_view(after)))


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
