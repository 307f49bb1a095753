#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: nat_rules
short_description: The netfilter rules of an LVS-NAT director, owned, atomic and persistent
version_added: 0.1.0
description:
  - Declares the IPv4 netfilter rules this collection owns on a director, in the order given. SNAT, DNAT with port
    mapping, MASQUERADE, per-outgoing-interface SNAT (multi-WAN), filter accepts (for the VIP, a health-check subnet,
    forwarded traffic), packet marks for fwmark services, and a per-source limit on new connections for floods.
  - The rules live in a table (nftables, C(table inet lvs_nat)) or chains (iptables, C(LVS-NAT-*) jumped to from the
    top of the built-in chains) that only this module writes, so rules written by others survive. The module never
    flushes anything else.
  - The owned rules are replaced in one transaction after a dry run (C(nft -c), C(iptables-restore --test)); a rule the
    backend rejects fails with the backend's message and leaves the previous ruleset active, also in check mode.
  - Before and after are read from the kernel's own listing, rule by rule.
  - Persistence is a rules file and a systemd unit (C(lvs-nat-rules.service)) that loads it at boot, after
    the distribution's firewall loaders, which may flush everything.
  - Every value is checked before anything changes, in check mode too; a bad one fails the task with a message
    naming it, such as C(rules[2].out_interface).
  - Overlapping runs on one host take turns, through a lock in C(/run/lvs-nat/) held for the whole run (up to 60 s).
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The backend still validates the rules (dry run), so rejected rules fail in check mode too.
  diff_mode:
    support: full
    details: Rule-level before and after per owned chain, and the persisted files.
  platform:
    platforms: linux
options:
  rules:
    description:
      - The owned rules, in order. Each needs O(rules[].type); the other fields depend on it.
      - V(masquerade) takes O(rules[].source), O(rules[].destination), O(rules[].out_interface).
      - V(snat) adds O(rules[].to_source) (required); one per outgoing interface gives multi-WAN SNAT.
      - V(dnat) takes O(rules[].destination) and O(rules[].to_destination) (required), O(rules[].protocol),
        O(rules[].port), O(rules[].to_port) (port mapping) and O(rules[].in_interface).
      - V(accept) takes O(rules[].chain) (required) and matches on addresses, ports and interfaces.
      - V(mark) sets O(rules[].mark) on matching packets before routing, for IPVS fwmark services.
      - V(rate_limit) drops new connections to O(rules[].destination) from any one source above O(rules[].rate).
    type: list
    elements: dict
    default: []
    suboptions:
      type:
        description: What the rule does.
        type: str
        required: true
        choices: [masquerade, snat, dnat, accept, mark, rate_limit]
      source:
        description: Source IPv4 address or network.
        type: str
      destination:
        description: Destination IPv4 address or network (the VIP, for most rules).
        type: str
      protocol:
        description:
          - Transport protocol; needed with a port.
          - V(vrrp) (IP protocol 112, the VRRP adverts of keepalived) has no port and is for V(accept) rules only;
            it is written as the number, and the kernel's listing (by name or by number) reads back the same.
        type: str
        choices: [tcp, udp, vrrp]
      port:
        description: Destination port, 1 to 65535; an integer or a string of ASCII digits.
        type: raw
      in_interface:
        description:
          - Incoming interface, 1 to 15 ASCII letters, digits and C(_ . + -) (not V(.) or V(..)).
          - Not ending in C(+), which iptables reads as a wildcard.
        type: str
      out_interface:
        description:
          - Outgoing interface, 1 to 15 ASCII letters, digits and C(_ . + -) (not V(.) or V(..)).
          - Not ending in C(+), which iptables reads as a wildcard.
        type: str
      to_source:
        description: Source address to write (V(snat)).
        type: str
      to_destination:
        description: Destination address to write (V(dnat)).
        type: str
      to_port:
        description: Destination port to write (V(dnat)), for port mapping; 1 to 65535.
        type: raw
      chain:
        description: V(input) for traffic to the director, V(forward) for traffic through it (V(accept)).
        type: str
        choices: [input, forward]
      mark:
        description: Packet mark, 1 to 4294967295 (V(mark)); an integer or a string of ASCII digits.
        type: raw
      rate:
        description:
          - Allowed new connections per source, such as V(20/second) (V(rate_limit)).
          - ASCII digits, a slash, then V(second), V(minute), V(hour) or V(day).
          - At least 1 and at most 1,000,000 a second (V(60000000/minute), V(3600000000/hour)), what both backends
            take; nft refuses 0 and iptables' hashlimit a faster rate.
        type: str
      burst:
        description: Connections allowed above the rate in a burst (V(rate_limit)), 1 to 10000; 5 when omitted.
        type: raw
      comment:
        description: A comment kept with the rule in the kernel, up to 64 ASCII letters, digits, spaces and C(_.,:/=+-).
        type: str
  state:
    description:
      - V(present) makes the owned rules exactly O(rules); V(absent) removes the owned table or chains and the
        persisted files.
    type: str
    choices: [present, absent]
    default: present
  backend:
    description:
      - V(nftables) or V(iptables); V(auto) takes nftables where C(nft) is installed, else iptables.
    type: str
    choices: [auto, nftables, iptables]
    default: auto
  persistent:
    description:
      - Write the rules file and the systemd unit that restores the rules at boot.
      - V(false) removes the rules file and the unit that an earlier run with V(true) wrote.
    type: bool
    default: true
  path:
    description:
      - The rules file this module owns.
      - It goes into the unit's command line, so it must be an absolute path of ASCII letters, digits and
        C(_./+,@=:-) only; anything else is refused before any change.
    type: path
    default: /etc/lvs-nat/nat-rules
  unit_path:
    description:
      - The systemd unit this module owns; it is enabled for C(multi-user.target).
      - The same characters as O(path) only.
    type: path
    default: /etc/systemd/system/lvs-nat-rules.service
notes:
  - With nftables, an accept in this table does not override a drop in another table; the V(accept) rules matter
    where the owned chains are the ones deciding, as with the iptables backend, whose chains are jumped to first.
  - IPVS handles packets to a virtual service before the filter C(INPUT) rules of other tools see them; the
    V(rate_limit) and V(accept) rules here run at the filter priority, before IPVS.
seealso:
  - module: lvs.nat.sysctl_forwarding
"""

EXAMPLES = r"""
- name: The director's NAT and filter rules
  lvs.nat.nat_rules:
    rules:
      - type: accept
        chain: input
        destination: 198.51.100.10
        protocol: tcp
        port: 80
      - type: accept
        chain: input
        source: 198.51.100.64/26
        protocol: tcp
        port: 80
        comment: health checks
      - type: accept
        chain: forward
        source: 198.51.100.64/26
      - type: accept
        chain: forward
        destination: 198.51.100.64/26
      - type: masquerade
        source: 198.51.100.64/26
        out_interface: eth0
      - type: accept
        chain: input
        in_interface: eth1
        protocol: vrrp
        comment: keepalived adverts
      - type: mark
        destination: 198.51.100.10
        protocol: tcp
        port: 443
        mark: 1
      - type: rate_limit
        destination: 198.51.100.10
        protocol: tcp
        port: 80
        rate: 200/second
        burst: 50

- name: Multi-WAN SNAT and a DNAT with port mapping, with iptables
  lvs.nat.nat_rules:
    backend: iptables
    rules:
      - type: snat
        source: 198.51.100.64/26
        out_interface: eth1
        to_source: 198.51.100.10
      - type: snat
        source: 198.51.100.64/26
        out_interface: eth2
        to_source: 198.51.100.11
      - type: dnat
        destination: 198.51.100.10
        protocol: tcp
        port: 8080
        to_destination: 198.51.100.101
        to_port: 80
    persistent: false
"""

RETURN = r"""
backend:
  description: The backend used.
  returned: always
  type: str
  sample: nftables
ruleset:
  description: The owned rules after the run (in check mode, as they would be), per chain, as the backend lists them.
  returned: always
  type: dict
  sample:
    postrouting: ['ip saddr 198.51.100.64/26 oifname "eth0" masquerade']
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _netfilter as nf
from ansible_collections.lvs.nat.plugins.module_utils import _persist
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module

RULE_SPEC = dict(
    type=dict(type="str", required=True, choices=list(nf.RULE_TYPES)),
    protocol=dict(type="str", choices=list(nf.RULE_FIELDS["protocol"])),
    chain=dict(type="str", choices=["input", "forward"]),
    # Ports, marks and bursts as given (int or text): nf.normalise_rules checks them with full matches.
    **dict((name, dict(type="raw")) for name in ("port", "to_port", "mark", "burst")),
    **dict((name, dict(type="str")) for name in (
        "source", "destination", "in_interface", "out_interface", "to_source", "to_destination", "rate", "comment"))
)


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            rules=dict(type="list", elements="dict", default=[], options=RULE_SPEC),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            backend=dict(type="str", default="auto", choices=["auto", "nftables", "iptables"]),
            persistent=dict(type="bool", default=True),
            path=dict(type="path", default="/etc/lvs-nat/nat-rules"),
            unit_path=dict(type="path", default="/etc/systemd/system/lvs-nat-rules.service"),
        ),
        supports_check_mode=True,
    )


def _keyed(chains):
    """JSON-friendly chain names: nftables chains as they are, iptables as table/chain."""
    return dict(("/".join(k) if isinstance(k, tuple) else k, v) for k, v in (chains or {}).items())


def run(module):
    p = module.params
    # Both paths are written into files the module owns (the unit's ExecStart=): refuse before any change.
    for option in ("path", "unit_path"):
        problem = _persist.path_problem(p[option], option)
        if problem:
            raise nf.NetfilterError(problem)
    rules = nf.normalise_rules(p["rules"])
    with _persist.lock("nat_rules"):
        return apply(module, rules)


def apply_runtime(module, b, rules):
    """The owned rules in the kernel: (before, after, changed), before and after as the kernel lists them."""
    current = b.current()
    if module.params["state"] == "absent":
        if current is not None and not module.check_mode:
            b.remove()
        return current, None, current is not None
    want = b.desired(rules)
    changed = current is None or any(current.get(k) != v for k, v in want.items()) or b.jumps_missing()
    if changed:
        b.replace(rules, check_only=module.check_mode)
    return current, b.current() if changed and not module.check_mode else want, changed


def apply(module, rules):
    """Read, plan and apply, under the lock: the kernel's rules and the owned files as one change."""
    p = module.params
    b = nf.backend(nf.detect(module, p["backend"]), module)
    keep = p["state"] == "present" and p["persistent"]
    # After the distribution's firewall loaders: they may flush everything, these rules included.
    unit = _persist.unit_text("nat_rules", "lvs.nat netfilter rules (%s)" % b.name, b.boot_command(p["path"]),
                              ["nftables.service", "netfilter-persistent.service", "iptables.service"])
    # Replace or remove only files that carry the collection's header (0.1.0 wrote the rules file without one):
    # checked first, so that a foreign file fails the task before the kernel's rules change.
    owned = _persist.Owned(files=[("path", p["path"], b.boot_text(rules) if keep else None, 0o600)],
                           units=[("unit_path", p["unit_path"], unit if keep else None)],
                           also=("table inet lvs_nat {}", "*nat"))
    before, after, runtime_changed = apply_runtime(module, b, rules)
    files = owned.install(module)
    return dict(changed=runtime_changed or files["changed"], backend=b.name, ruleset=_keyed(after),
                diff=[dict(before=_keyed(before), after=_keyed(after))] + files["diff"])


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
