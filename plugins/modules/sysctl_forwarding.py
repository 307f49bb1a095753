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
  - The module replaces or removes O(path) and O(modules_load_path) only when they carry its C(Managed by lvs.nat)
    header; any other file there fails the task before anything changes, in check mode too.
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
"""

RETURN = r"""
settings:
  description: The values after the run (in check mode, as they would be), forwarding first.
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
from ansible_collections.lvs.nat.plugins.module_utils._kmod import KernelError, modprobe

HEADER = "# Managed by lvs.nat.sysctl_forwarding: edits here are overwritten.\n"
MODULES_LOAD_DIR = "/etc/modules-load.d"


def build_module():
    return AnsibleModule(
        argument_spec=dict(
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
        if p["persistent"]:
            problems = _persist.foreign_problems(paths.items())
            if problems:
                raise _sysctl.SysctlError(problems[0])
        return apply(module, wanted, paths)


def apply(module, wanted, paths):
    p = module.params
    needed = _sysctl.modules_for(wanted)
    before, after, changed_keys = {}, {}, []
    if p["runtime"] and wanted:
        if needed:
            modprobe(needed, dry_run=module.check_mode)
        before = dict((k, _sysctl.read(k)) for k in wanted)
        for key, value in before.items():
            if value is None and not (module.check_mode and _sysctl.module_for(key)):
                raise _sysctl.SysctlError("%s: the kernel has no such parameter (no %s)" % (key, _sysctl.proc_path(key)))
        changed_keys = [k for k in wanted if before[k] != wanted[k]]
        if changed_keys and not module.check_mode:
            _sysctl.apply_runtime(wanted)
            after = dict((k, _sysctl.read(k)) for k in wanted)
        else:
            after = dict(wanted)
    files_before = dict(sysctl=_persist.read_file(paths["path"]),
                        modules_load=_persist.read_file(paths["modules_load_path"]))
    files_after = dict(files_before)
    if p["persistent"]:
        files_after["sysctl"], files_after["modules_load"] = file_texts(wanted, needed)
        if not module.check_mode:
            _persist.sync({paths["path"]: (files_after["sysctl"], 0o644),
                           paths["modules_load_path"]: (files_after["modules_load"], 0o644)})
    changed = bool(changed_keys) or files_after != files_before
    result = dict(changed=changed, settings=after or dict(wanted), changed_keys=changed_keys)
    if module._diff:
        result["diff"] = [
            dict(before=before, after=after or dict(wanted)),
            dict(before_header=paths["path"], after_header=paths["path"], before=files_before["sysctl"] or "",
                 after=files_after["sysctl"] or ""),
            dict(before_header=paths["modules_load_path"], after_header=paths["modules_load_path"],
                 before=files_before["modules_load"] or "", after=files_after["modules_load"] or ""),
        ]
    return result


def main():
    module = build_module()
    try:
        module.exit_json(**run(module))
    except (_sysctl.SysctlError, KernelError, _persist.PersistError) as e:
        module.fail_json(msg=str(e))
    except (IOError, OSError) as e:
        module.fail_json(msg="Failed to write %s: %s" % (getattr(e, "filename", "") or "a file", e))


if __name__ == "__main__":
    main()
