# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment(object):
    # What every IPVS module needs on the managed host.
    DOCUMENTATION = r"""
options: {}
requirements:
  - Linux with IPVS (the C(ip_vs) kernel module, loaded by the module when missing).
  - pyroute2 0.9.6 or newer on the managed host, from PyPI (Debian 12's C(python3-pyroute2) 0.7.2 has no IPVS);
    for example C(pip install pyroute2), or the C(lvs.nat.director) role.
notes:
  - The modules talk to the kernel over generic netlink and read back what the kernel holds.
    C(ipvsadm) is not needed.
  - Check mode loads no kernel module and changes nothing.
  - Where the kernel refuses an operation of a run that changes the IPVS table, the operations the run had already
    applied are undone (an add by a delete, an edit by editing the entry back, a delete by adding the entry as it was,
    with its real servers, though with zeroed counters). The failure's message names the refused operation, what was
    rolled back and what could not be; the result also lists them in C(applied), C(rolled_back) and C(not_rolled_back).
  - A kernel error while reading, or no answer from the kernel within 30 seconds, fails the task with a message
    naming the read.
"""

    # The identity of a virtual service, as top-level options.
    SERVICE_KEY = r"""
options:
  protocol:
    description:
      - Transport protocol of the service. Not used with O(fwmark).
      - Defaults to V(tcp) when O(address) is given.
    type: str
    choices: [sctp, tcp, udp]
  address:
    description:
      - Virtual IP address (VIP) of the service, IPv4 or IPv6, in plain notation (no C(%zone)).
      - Not the unspecified address (V(0.0.0.0), V(::)), a multicast address, V(255.255.255.255) or an IPv6
        link-local address.
      - One of O(address) (with O(port)) or O(fwmark) is required.
    type: str
  port:
    description:
      - Port of the service, 0 to 65535. V(0) means all ports and needs persistence.
    type: int
  fwmark:
    description:
      - Firewall mark (1 to 4294967295) identifying a fwmark service, instead of O(protocol), O(address) and O(port).
    type: int
  family:
    description:
      - Address family. Follows O(address) when given; for a O(fwmark) service it defaults to V(ipv4).
    type: str
    choices: [ipv4, ipv6]
"""

    # One real server's settings; used by ipvs_real_server and by ipvs_service's real_servers.
    REAL_SERVER = r"""
options:
  forwarding:
    description:
      - Forwarding method. V(masq) is NAT (masquerading, C(ipvsadm -m)), the one this collection is for;
        V(route) is direct routing (C(-g)), V(tunnel) is IP-in-IP (C(-i)).
      - Defaults to V(masq) when the real server is created; left as it is when omitted later.
    type: str
    choices: [masq, route, tunnel]
  weight:
    description:
      - Weight, 0 to 65535. V(0) drains the server (no new connections) without removing it.
      - Defaults to V(1) when the real server is created; left as it is when omitted later.
    type: int
  upper_threshold:
    description:
      - Upper connection threshold, 0 (no limit) to 2147483647.
      - Defaults to V(0) when the real server is created; left as it is when omitted later.
    type: int
  lower_threshold:
    description:
      - Lower connection threshold, 0 to 2147483647, at most O(upper_threshold).
      - Defaults to V(0) when the real server is created; left as it is when omitted later.
    type: int
"""
