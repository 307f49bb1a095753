#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: sysctl_forwarding
short_description: IP forwarding and the kernel networking parameters an LVS director needs
version_added: 0.1.0
description:
  - Turns IPv4 and IPv6 forwarding on or off and sets further C(net.*) kernel parameters, such as per-interface
    C(send_redirects) and C(rp_filter), C(ip_local_port_range), C(tcp_tw_reuse), C(nf_conntrack_max) and the
    IPVS keys C(net.ipv4.vs.*).
  - The running kernel (O(runtime)) and the persistent configuration (O(persistent)) are separate choices.
    Persistence is a file this module owns under C(/etc/sysctl.d/), written atomically with exactly the keys of the
    task, forwarding first.
  - Forwarding is applied before the other keys, because changing C(net.ipv4.ip_forward) resets per-interface
    settings to their defaults.
  - C(net.ipv4.vs.*) keys exist only once C(ip_vs) is loaded, and C(net.netfilter.nf_conntrack_*) keys once
    C(nf_conntrack) is. The module loads them for the running kernel and, when persisting such keys, lists the
    kernel modules in a file it owns under C(/etc/modules-load.d/), which systemd loads before it applies
    C(/etc/sysctl.d/).
  - A key the kernel does not have fails before anything changes. If the kernel refuses a value, the keys already
    written in that run are set back.
  - With O(state=absent) or O(persistent=false) the module removes its files; the running kernel keeps the values it
    has, since the kernel has no "unset" for a parameter (set the value wanted with O(runtime) if it must change).
  - The module replaces O(path) and O(modules_load_path) only when they carry its C(Managed by lvs.nat) header; any
    other file there fails the task before anything changes, in check mode too (also where it would be removed).
  - Overlapping runs on one host take turns, through a lock in C(/run/lvs-nat/) held for the whole run (up to 60 s).
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Loads no kernel module; keys of a module that is not loaded count as changed.
  diff_mode:
    support: full
    details: Before and after show the running values and the owned files.
  platform:
    platforms: linux
options:
  state:
    description:
      - V(present) sets the values (O(runtime)) and writes the owned files (O(persistent)); V(absent) removes the owned
        files (O(path), O(modules_load_path)) and leaves the running values as they are.
    type: str
    choices: [present, absent]
    default: present
  ipv4_forwarding:
    description: IPv4 forwarding (C(net.ipv4.ip_forward)). Left as it is when omitted.
    type: bool
  ipv6_forwarding:
    description: IPv6 forwarding (C(net.ipv6.conf.all.forwarding)). Left as it is when omitted.
    type: bool
  settings:
    description:
      - Further C(net.*) kernel parameters, key to value. A value is a number, a boolean (written 1 or 0),
        or numbers separated by spaces (C(ip_local_port_range)).
      - An interface name containing dots is written with slashes, as in sysctl(8), for example
        C(net.ipv4.conf.eth0/100.rp_filter).
      - C(net.ipv4.tcp_tw_recycle) was removed in Linux 4.12 and is refused with a message saying so.
    type: dict
    default: {}
  runtime:
    description: Set the values in the running kernel.
    type: bool
    default: true
  persistent:
    description:
      - Write the values to O(path) so that they apply at boot. The file holds exactly this task's keys;
        with no keys it is removed.
      - V(false) removes the owned files that an earlier run with V(true) wrote (the values then apply until the
        next boot only).
    type: bool
    default: true
  path:
    description: The sysctl file this module owns.
    type: path
    default: /etc/sysctl.d/90-lvs-nat.conf
  modules_load_path:
    description:
      - The modules-load file this module owns; it lists the kernel modules that persisted keys need at boot
        (C(ip_vs), C(nf_conntrack)). Removed when no persisted key needs one.
      - Defaults to the file of the same name as O(path) in C(/etc/modules-load.d/), so that tasks with different
        O(path) never share it (for the default O(path), C(/etc/modules-load.d/90-lvs-nat.conf)).
    type: path
notes:
  - Give each task its own O(path), since the file holds one task's keys.
  - Release 0.1.0 defaulted O(modules_load_path) to C(/etc/modules-load.d/lvs-nat-sysctl.conf), shared by every
    task; a host configured by it keeps that file, which still loads the same kernel modules and can be removed.
seealso:
  - module: lvs.nat.ipvs_timeouts
"""

EXAMPLES = r"""
- name: Forwarding and the tuning a NAT director needs, now and at boot
  lvs.nat.sysctl_forwarding:
    ipv4_forwarding: true
    settings:
      net.ipv4.conf.all.send_redirects: 0
      net.ipv4.conf.default.send_redirects: 0
      net.ipv4.ip_local_port_range: "1024 65000"
      net.ipv4.tcp_tw_reuse: 1
      net.netfilter.nf_conntrack_max: 1000000
      net.ipv4.vs.conntrack: 1
      net.ipv4.vs.expire_nodest_conn: 1
      net.ipv4.vs.expire_quiescent_template: 1

- name: Forwarding in the running kernel only (lost at reboot)
  lvs.nat.sysctl_forwarding:
    ipv4_forwarding: true
    persistent: false

- name: Remove the owned sysctl and modules-load files (the running values stay)
  lvs.nat.sysctl_forwarding:
    state: absent
"""

RETURN = r"""
settings:
  description: The values after the run (in check mode, as they would be), forwarding first; empty with O(state=absent).
  returned: always
  type: dict
  sample:
    net.ipv4.ip_forward: "1"
    net.ipv4.ip_local_port_range: "1024 65000"
changed_keys:
  description: Keys written to the running kernel (in check mode, that would be written).
  returned: always
  type: list
  elements: str
  sample: ["net.ipv4.ip_forward"]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _persist, _sysctl
from ansible_collections.lvs.nat.plugins.module_utils._kmod import modprobe
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module

HEADER = "# Managed by lvs.nat.sysctl_forwarding: edits here are overwritten.\n"
MODULES_LOAD_DIR = "/etc/modules-load.d"


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "absent"]),
            ipv4_forwarding=dict(type="bool"),
            ipv6_forwarding=dict(type="bool"),
            settings=dict(type="dict", default={}),
            runtime=dict(type="bool", default=True),
            persistent=dict(type="bool", default=True),
            path=dict(type="path", default="/etc/sysctl.d/90-lvs-nat.conf"),
            modules_load_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )


def wanted_values(p):
    """key -> normalised value, forwarding first; raises SysctlError naming a bad key or value."""
    wanted = {}
    for key, flag in zip(_sysctl.FORWARDING_KEYS, (p["ipv4_forwarding"], p["ipv6_forwarding"])):
        if flag is not None:
            wanted[key] = "1" if flag else "0"
    for key, value in p["settings"].items():
        text = _sysctl.check_key(key, value)  # first: a key with a trailing newline is refused, not let past
        if key in _sysctl.FORWARDING_KEYS:
            raise _sysctl.SysctlError("%s: set it with ipv4_forwarding/ipv6_forwarding, which are applied first" % key)
        wanted[key] = text
    return wanted


def owned_paths(p):
    """option -> path of the files this task owns; modules_load_path defaults to path's name in modules-load.d."""
    return dict(path=p["path"], modules_load_path=p["modules_load_path"] or
                os.path.join(MODULES_LOAD_DIR, os.path.basename(p["path"])))


def file_texts(wanted, modules):
    sysctl = HEADER + "".join("%s = %s\n" % kv for kv in wanted.items()) if wanted else None
    load = "# Managed by lvs.nat.sysctl_forwarding: modules whose keys are set in the sysctl file.\n" + \
        "".join(m + "\n" for m in modules) if modules else None
    return sysctl, load


def run(module):
    p = module.params
    wanted = wanted_values(p)
    paths = owned_paths(p)
    with _persist.lock("sysctl_forwarding"):
        return apply(module, wanted, paths)


def apply_runtime(module, wanted):
    """Set the running kernel's values: (before, after, changed_keys)."""
    if not (module.params["runtime"] and wanted):
        return {}, dict(wanted), []
    needed = _sysctl.modules_for(wanted)
    if needed:
        modprobe(module, needed, dry_run=module.check_mode)
    before = dict((k, _sysctl.read(k)) for k in wanted)
    for key, value in before.items():
        if value is None and not (module.check_mode and _sysctl.module_for(key)):
            raise _sysctl.SysctlError("%s: the kernel has no such parameter (no %s)" % (key, _sysctl.proc_path(key)))
    changed_keys = [k for k in wanted if before[k] != wanted[k]]
    if changed_keys and not module.check_mode:
        _sysctl.apply_runtime(wanted)
        return before, dict((k, _sysctl.read(k)) for k in wanted), changed_keys
    return before, dict(wanted), changed_keys


def apply(module, wanted, paths):
    p = module.params
    # persistent false (or state absent) removes what an earlier persistent run wrote; the running values stay.
    keep = p["state"] == "present" and p["persistent"]
    sysctl, load = file_texts(wanted, _sysctl.modules_for(wanted)) if keep else (None, None)
    owned = _persist.Owned(files=[("path", paths["path"], sysctl, 0o644),
                                  ("modules_load_path", paths["modules_load_path"], load, 0o644)])
    before, after, changed_keys = apply_runtime(module, wanted) if p["state"] == "present" else ({}, {}, [])
    files = owned.install(module)
    return dict(changed=bool(changed_keys) or files["changed"], settings=after, changed_keys=changed_keys,
                diff=[dict(before=before, after=after)] + files["diff"])


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
