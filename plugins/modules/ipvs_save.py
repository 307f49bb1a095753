#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_save
short_description: Persist the kernel's whole IPVS state so that it comes back at boot
version_added: 0.1.0
description:
  - Reads the IPVS table and the global timeouts from the kernel and writes them to a file in C(ipvsadm-restore)
    form, with what C(ipvsadm -S) leaves out - real server thresholds (C(-x), C(-y)) and the timeouts (C(--set)).
  - Writes and enables a systemd unit (C(lvs-nat-ipvs.service)) that loads the file with C(ipvsadm-restore) at boot.
  - Run it after the tasks that change IPVS; the role C(lvs.nat.director) does.
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lvs.nat.ipvs
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
    description: V(present) saves the table; V(absent) removes the file and the unit.
    type: str
    choices: [present, absent]
    default: present
  path:
    description: The file this module owns.
    type: path
    default: /etc/lvs-nat/ipvs.rules
  unit_path:
    description: The systemd unit this module owns; it is enabled for C(multi-user.target).
    type: path
    default: /etc/systemd/system/lvs-nat-ipvs.service
notes:
  - The unit needs C(ipvsadm) on the director at boot.
seealso:
  - module: lvs.nat.ipvs_service
"""

EXAMPLES = r"""
- name: Save the IPVS table, thresholds and timeouts for the next boot
  lvs.nat.ipvs_save:
"""

RETURN = r"""
rules:
  description: The saved lines (in check mode, the lines that would be saved).
  returned: always
  type: list
  elements: str
  sample: ["--set 900 120 300", "-A -t 198.51.100.10:80 -s wrr", "-a -t 198.51.100.10:80 -r 198.51.100.101:8080 -m -w 3 -x 0 -y 0"]
"""

import ipaddress

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs, _persist
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import dest_order, run_module

HEADER = "# Managed by lvs.nat.ipvs_save: the kernel's IPVS state, for ipvsadm-restore at boot.\n"
FWD_FLAGS = {"masq": "-m", "route": "-g", "tunnel": "-i", "local": "-g"}


def _addr(address, port):
    return "%s:%d" % ("[%s]" % address if ":" in address else address, port)


def service_option(svc):
    if svc["fwmark"]:
        return "-f %d%s" % (svc["fwmark"], " -6" if svc["family"] == "ipv6" else "")
    flag = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}[svc["protocol"]]
    return "%s %s" % (flag, _addr(svc["address"], svc["port"]))


def _service_order(svc):
    return (svc["family"], svc["fwmark"], svc["protocol"] or "", ipaddress.ip_address(svc["address"] or "0.0.0.0"),
            svc["port"] or 0)


def render(table, timeouts):
    """ipvsadm-restore lines for the whole state, sorted: the kernel lists services and real servers in an order
    of its own (hash buckets, insertion), which changes when the saved file is restored at boot."""
    lines = ["--set %(tcp)d %(tcp_fin)d %(udp)d" % timeouts]
    for svc in sorted(table, key=_service_order):
        key = service_option(svc)
        line = "-A %s -s %s" % (key, svc["scheduler"])
        if svc["scheduler_flags"]:
            line += " -b " + ",".join(svc["scheduler_flags"])
        if svc["persistence_timeout"]:
            prefix = svc["persistence_prefix"]
            mask = str(prefix) if svc["family"] == "ipv6" else str(ipaddress.ip_network("0.0.0.0/%d" % prefix).netmask)
            line += " -p %d -M %s" % (svc["persistence_timeout"], mask)
        if svc["one_packet"]:
            line += " -o"
        lines.append(line)
        for d in sorted(svc["real_servers"], key=dest_order):
            lines.append("-a %s -r %s %s -w %d -x %d -y %d" % (
                key, _addr(d["address"], d["port"]), FWD_FLAGS[d["forwarding"]], d["weight"],
                d["upper_threshold"], d["lower_threshold"]))
    return lines


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "absent"]),
            path=dict(type="path", default="/etc/lvs-nat/ipvs.rules"),
            unit_path=dict(type="path", default="/etc/systemd/system/lvs-nat-ipvs.service"),
        ),
        supports_check_mode=True,
    )


def run(module):
    p = module.params
    before = dict(rules=_persist.read_file(p["path"]), **_persist.unit_state(p["unit_path"]))
    lines = []
    if p["state"] == "present":
        with _ipvs.Session(["ip_vs"]) as kernel:
            if kernel.ipvs is None:  # ip_vs not loaded: an empty table and the kernel's default timeouts
                table, timeouts = [], dict(_ipvs.KERNEL_TIMEOUTS)
            else:
                table, timeouts = kernel.ipvs.table(), kernel.ipvs.timeouts()
        lines = render(table, timeouts)
        after = dict(rules=HEADER + "\n".join(lines) + "\n", unit=_persist.unit_text(
            "ipvs_save", "lvs.nat IPVS table, thresholds and timeouts", "/bin/sh -c '/sbin/ipvsadm-restore < %s'" % p["path"],
            ["systemd-modules-load.service", "local-fs.target"]), enabled=True)
    else:
        after = dict(rules=None, unit=None, enabled=False)
    changed = after != before
    if changed and not module.check_mode:
        _persist.sync({p["path"]: (after["rules"], 0o600)})
        _persist.sync_unit(module, p["unit_path"], after["unit"])
    result = dict(changed=changed, rules=lines)
    if module._diff:
        result["diff"] = dict(before_header=p["path"], after_header=p["path"], before=before["rules"] or "",
                              after=after["rules"] or "")
    return result


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
