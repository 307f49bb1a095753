#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_info
short_description: Read the IPVS table, counters, rates and timeouts
version_added: 0.1.0
description:
  - Returns every IPVS virtual service with its settings, counters and rates, and its real servers with theirs
    (what C(ipvsadm -Ln --stats) and C(ipvsadm -Ln --rate) show), plus the global timeouts.
  - Read-only. Where the C(ip_vs) kernel module is not loaded, the kernel holds no table; the module then reports
    RV(ipvs_loaded=false) and loads nothing.
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lvs.nat.ipvs_options
attributes:
  check_mode:
    support: full
    details: The module changes nothing.
  diff_mode:
    support: none
  platform:
    platforms: linux
options: {}
notes:
  - The kernel sums its per-CPU counters into these totals and computes the rates every 2 seconds.
seealso:
  - module: lvs.nat.ipvs_service
"""

EXAMPLES = r"""
- name: Read the IPVS table
  lvs.nat.ipvs_info:
  register: ipvs

- name: Show connections per real server of the web service
  ansible.builtin.debug:
    msg: "{{ ipvs.services | selectattr('port', 'equalto', 80) | map(attribute='real_servers') | flatten
             | items2dict(key_name='address', value_name='active_conns') }}"
"""

RETURN = r"""
ipvs_loaded:
  description: Whether the C(ip_vs) kernel module is loaded.
  returned: always
  type: bool
  sample: true
version:
  description: IPVS version of the kernel.
  returned: when RV(ipvs_loaded)
  type: str
  sample: 1.2.1
conn_tab_size:
  description: Size of the connection hash table.
  returned: when RV(ipvs_loaded)
  type: int
  sample: 4096
timeouts:
  description: Global timeouts in seconds (C(ipvsadm -L --timeout)).
  returned: when RV(ipvs_loaded)
  type: dict
  sample: {tcp: 900, tcp_fin: 120, udp: 300}
services:
  description: Virtual services, each with its real servers.
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
      stats: {conns: 200, inpkts: 1000, outpkts: 1000, inbytes: 69000, outbytes: 91200,
              cps: 2, inpps: 10, outpps: 10, inbps: 690, outbps: 912}
      real_servers:
        - address: 198.51.100.101
          port: 8080
          forwarding: masq
          weight: 3
          upper_threshold: 0
          lower_threshold: 0
          active_conns: 0
          inactive_conns: 150
          persist_conns: 0
          stats: {conns: 150, inpkts: 750, outpkts: 750, inbytes: 51750, outbytes: 68400,
                  cps: 1, inpps: 7, outpps: 7, inbps: 517, outbps: 684}
  contains:
    stats:
      description:
        - Counters (V(conns), V(inpkts), V(outpkts), V(inbytes), V(outbytes)) and rates per second
          (V(cps), V(inpps), V(outpps), V(inbps), V(outbps)).
      type: dict
    real_servers:
      description:
        - Real servers with their settings, V(active_conns), V(inactive_conns), V(persist_conns) and V(stats).
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module


def build_module():
    return AnsibleModule(argument_spec={}, supports_check_mode=True)


def run(module):
    with _ipvs.Session(module) as kernel:
        info = kernel.info()
        if info is None:  # ip_vs not loaded: the kernel holds no table (reading loads nothing)
            return dict(changed=False, ipvs_loaded=False, services=[])
        result = dict(changed=False, ipvs_loaded=True, services=kernel.table(), timeouts=kernel.timeouts())
    result.update(info)
    return result


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
