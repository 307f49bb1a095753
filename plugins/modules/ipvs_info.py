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
  - Also returns the state of the health service that M(lvs.nat.ipvs_health) installs (RV(health)), when it runs.
  - Also returns the connection sync daemons the kernel runs (RV(sync_daemons), see M(lvs.nat.ipvs_sync_daemon)),
    and with O(floating) which of the floating addresses of a VRRP pair this host holds (RV(vrrp)).
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
options:
  floating:
    description:
      - Floating addresses (IPv4 or IPv6, without prefix) that a VRRP pair of directors moves between them, such as
        the VIP and the DIP. The module then reports which of them this host holds (RV(vrrp)), read from the
        kernel's addresses of every interface.
      - Each address is checked before anything is read; an empty list is refused.
    type: list
    elements: str
    version_added: 0.5.0
notes:
  - The kernel sums its per-CPU counters into these totals and computes the rates every 2 seconds.
seealso:
  - module: lvs.nat.ipvs_service
  - module: lvs.nat.ipvs_health
  - module: lvs.nat.ipvs_sync_daemon
"""

EXAMPLES = r"""
- name: Read the IPVS table
  lvs.nat.ipvs_info:
  register: ipvs

- name: Show connections per real server of the web service
  ansible.builtin.debug:
    msg: "{{ ipvs.services | selectattr('port', 'equalto', 80) | map(attribute='real_servers') | flatten
             | items2dict(key_name='address', value_name='active_conns') }}"

- name: Which director holds the VIP and the DIP
  lvs.nat.ipvs_info:
    floating: [198.51.100.10, 198.51.100.100]
  register: ha

- name: MASTER (holds both), BACKUP (neither) or SPLIT, and the sync daemons this director runs
  ansible.builtin.debug:
    msg: "{{ ha.vrrp.state }}; sync daemons: {{ ha.sync_daemons | map(attribute='mode') | join(', ') }}"
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
health:
  description:
    - The state of the health service C(lvs-nat-healthd) (M(lvs.nat.ipvs_health)) as it wrote it last, from
      C(/run/lvs-nat/health.json); null when there is no such file (the service never ran since boot, or is not
      installed).
    - Each real server's health, per checked service, and whether the service's sorry server is in use.
  returned: always
  type: dict
  version_added: 0.4.0
  sample:
    version: 1
    generation: 3f2a9c0d51e4b7a8
    round: 120
    pid: 812
    updated: 1733190240.2
    services:
      - service: TCP 198.51.100.10:80
        sorry_server_active: false
        real_servers:
          - {address: 198.51.100.101, port: 8080, healthy: true, since: 1733190000.5, last_result: ok, reason: ok,
             checks: 120}
  contains:
    generation:
      description: The generation of the declaration the service last reconciled the kernel with.
      type: str
    round:
      description: A counter that increases after each check round and reconcile.
      type: int
    updated:
      description: When the state was written, in seconds since the epoch.
      type: float
    services:
      description:
        - Per checked service (V(service), named as C(TCP 198.51.100.10:80)), V(sorry_server_active) and
          V(real_servers), each with V(address), V(port), V(healthy), V(since) (seconds since the epoch),
          V(last_result) (V(ok) or V(fail)), V(reason) (as C(connection refused), C(status 503)) and V(checks).
      type: list
      elements: dict
sync_daemons:
  description:
    - The connection sync daemons the kernel runs, master first, with the settings of
      M(lvs.nat.ipvs_sync_daemon)'s O(lvs.nat.ipvs_sync_daemon#module:daemons) as the kernel holds them (what
      C(ipvsadm -L --daemon) shows); empty where none runs or C(ip_vs) is not loaded.
  returned: always
  type: list
  elements: dict
  version_added: 0.5.0
  sample:
    - {mode: master, interface: eth2, sync_id: 51, max_len: 1472, group: 224.0.1.81, port: 8848, ttl: 1}
    - {mode: backup, interface: eth2, sync_id: 51, max_len: 1472, group: 224.0.1.81, port: 8848, ttl: 1}
vrrp:
  description:
    - Which of the O(floating) addresses this host holds.
    - V(addresses) maps each floating address (in canonical form) to the interface that holds it, or null.
    - V(state) is V(MASTER) where the host holds every floating address, V(BACKUP) where it holds none, V(SPLIT)
      where it holds some only (VIP and DIP apart, which breaks NAT replies).
  returned: when O(floating) is set
  type: dict
  version_added: 0.5.0
  sample:
    addresses: {198.51.100.10: eth1, 198.51.100.100: eth2}
    state: MASTER
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _addresses, _health, _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import InvalidInput, _ip
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module


def build_module():
    return AnsibleModule(argument_spec=dict(floating=dict(type="list", elements="str")), supports_check_mode=True)


def floating_addresses(values, option="floating"):
    """The floating addresses in canonical form, in order, without repeats; InvalidInput naming option[i]."""
    if not values:
        raise InvalidInput("%s must list at least one address" % option)
    out = []
    for i, value in enumerate(values):
        address = str(_ip("%s[%d]" % (option, i), value))
        if address not in out:
            out.append(address)
    return out


def run(module):
    floating = module.params["floating"]
    floating = None if floating is None else floating_addresses(floating)
    # The path read at each run (not read_state's default): the unit tests point it at a tmp file.
    result = dict(changed=False, health=_health.read_state(_health.STATE_PATH))
    if floating is not None:
        result["vrrp"] = _addresses.vrrp_state(floating, _addresses.host_addresses())
    with _ipvs.Session(module) as kernel:
        info = kernel.info()
        if info is None:  # ip_vs not loaded: the kernel holds no table (reading loads nothing)
            result.update(ipvs_loaded=False, services=[], sync_daemons=[])
            return result
        result.update(ipvs_loaded=True, services=kernel.table(), timeouts=kernel.timeouts(),
                      sync_daemons=kernel.daemons())
    result.update(info)
    return result


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
