#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: keepalived_vrrp
short_description: Run keepalived for VRRP only, moving floating addresses (a director's VIP and DIP) together
version_added: 0.5.0
description:
  - Configures Debian's C(keepalived) to run its VRRP subsystem only (C(--vrrp)), never IPVS, so that floating
    addresses (in NAT mode the public VIP and the private DIP, the real servers' gateway) move together from one director
    to another. The IPVS table stays with the collection's modules and C(lvs-nat-healthd).
  - "It owns two files, each carrying the header C(Managed by lvs.nat): C(/etc/keepalived/keepalived.conf), rendered from
    the options, and C(/etc/default/keepalived) with C(DAEMON_ARGS=\"--vrrp\") (Debian's C(keepalived.service) reads it
    as its C(EnvironmentFile)). The package's own C(/etc/default/keepalived), unchanged, is taken over; any other
    file without the header is left alone and the task fails naming it. O(state=absent) removes only files with the
    header (the package's C(/etc/default/keepalived) stays) and fails on a C(keepalived.conf) without it, which is
    someone else's configuration."
  - The rendered configuration has no scripts and no C(virtual_server); O(instances) start as C(BACKUP) with unicast
    peers; two or more instances form one C(vrrp_sync_group) O(sync_group), so that they are MASTER on the same host.
  - "The configuration is checked with C(keepalived -t) before it replaces the file: a refusal fails the task with
    keepalived's message, and nothing is changed. Every option is checked before that; an error names the option, as
    in C(instances[1].vrid=256 is out of range: it must be between 1 and 255)."
  - "systemd: the unit is enabled; started when it is not running; reloaded (C(SIGHUP)) when only C(keepalived.conf)
    changed, which keeps the VRRP state of unchanged instances; restarted when C(/etc/default/keepalived) changed or the
    unit failed; left alone when nothing changed, so a play that changes IPVS services causes no VRRP transition."
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the files, the unit's state and the host's addresses; checks the configuration with C(keepalived -t)
      when keepalived is installed; reports what would change.
  diff_mode:
    support: full
    details: Before and after of each owned file, and of the unit's enabled and running state.
  platform:
    platforms: linux
options:
  state:
    description:
      - V(present) configures, enables and runs keepalived; V(absent) stops and disables it and removes both owned files.
    type: str
    choices: [present, absent]
    default: present
  router_id:
    description:
      - keepalived's C(router_id), naming this host in its logs; required with O(state=present).
      - 1 to 64 ASCII letters, digits, C(_), C(.) and C(-).
    type: str
  priority:
    description:
      - The VRRP priority of every instance, 1 to 254; among directors, the highest wins an election (255, the address
        owner, is not allowed).
    type: int
    default: 100
  advert_int:
    description:
      - Seconds between two VRRP advertisements, above 0 and at most 255. A backup takes over after about three of them.
      - A whole number runs VRRPv2; a fraction (a multiple of 0.01, at most 40.95) runs VRRPv3 (C(vrrp_version 3)). All
        directors must use the same value.
    type: float
    default: 1
  preempt:
    description:
      - V(false) renders C(nopreempt) in every instance, so that a director coming back does not take the addresses from
        the one holding them; V(true) lets the highest priority take them, after O(preempt_delay).
    type: bool
    default: false
  preempt_delay:
    description:
      - Seconds, 0 to 1000, a director waits before it preempts a lower-priority master; only with O(preempt=true).
    type: int
    default: 0
  startup_delay:
    description:
      - Seconds, 0 to 3600 (a multiple of 0.001), keepalived waits after it starts before its instances run
        (C(vrrp_startup_delay)), so that a booting director hears the master before it could become one.
    type: float
    default: 0
  sync_group:
    description:
      - The name of the C(vrrp_sync_group) holding the instances when there are two or more; 1 to 32 ASCII letters,
        digits, C(_) and C(-).
    type: str
    default: lvs_nat
  instances:
    description:
      - The VRRP instances, 1 to 8; required with O(state=present). Each moves one floating address.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - The instance's name, unique; 1 to 32 ASCII letters, digits, C(_) and C(-).
        type: str
        required: true
      interface:
        description:
          - The interface the instance runs on and the floating address is added to; a kernel interface name, 1 to 15
            ASCII letters, digits and C(_ . + -), not ending in C(+) (iptables reads that as a wildcard).
        type: str
        required: true
      vrid:
        description:
          - The virtual router id, 1 to 255, unique among the instances; the same on every director.
        type: int
        required: true
      address:
        description:
          - The floating address with its prefix length, as V(198.51.100.10/26); IPv4 or IPv6. It must not be any
            host's fixed address (O(instances[].source) or O(instances[].peers)).
        type: str
        required: true
      source:
        description:
          - This host's fixed address on O(instances[].interface), the source of its advertisements
            (C(unicast_src_ip)); the same family as O(instances[].address).
        type: str
        required: true
      peers:
        description:
          - The other directors' fixed addresses on O(instances[].interface), at least one (C(unicast_peer)).
        type: list
        elements: str
        required: true
      track_interfaces:
        description:
          - Other interfaces whose failure puts the instance, and so the sync group, in the C(FAULT) state. Not the
            instance's own interface, which keepalived tracks already (keepalived 2.2.7 refuses it).
        type: list
        elements: str
        default: []
notes:
  - Needs Debian's C(keepalived) package (2.2.7 on Debian 12) and, outside check mode with O(state=present), a running
    systemd. In check mode without keepalived installed, the configuration is not checked (a warning says so).
  - VRRP (IP protocol 112) between the directors must be accepted, as M(lvs.nat.nat_rules) does with C(protocol=vrrp).
  - RV(vrrp) is read right after systemd was asked; keepalived waits O(startup_delay) and about three advertisements
    before a first master, so a task waiting for V(MASTER) retries.
seealso:
  - module: lvs.nat.nat_rules
  - module: lvs.nat.ipvs_info
"""

EXAMPLES = r"""
- name: Move the VIP and the DIP together between two directors (on director1)
  lvs.nat.keepalived_vrrp:
    router_id: director1
    priority: 100
    startup_delay: 5
    instances:
      - name: public
        interface: eth1
        vrid: 51
        address: 198.51.100.10/26
        source: 198.51.100.11
        peers: [198.51.100.12]
        track_interfaces: [eth2]
      - name: private
        interface: eth2
        vrid: 52
        address: 198.51.100.100/26
        source: 198.51.100.98
        peers: [198.51.100.99]
        track_interfaces: [eth1]
  register: vrrp

- name: Stop keepalived and remove its configuration
  lvs.nat.keepalived_vrrp:
    state: absent
"""

RETURN = r"""
action:
  description: What the module asked systemd to do (in check mode, would ask), or V(none).
  returned: always
  type: str
  choices: [none, start, reload, restart, stop]
  sample: reload
config:
  description: The rendered C(keepalived.conf); null with O(state=absent).
  returned: always
  type: str
  sample: "# Managed by lvs.nat.keepalived_vrrp: edits here are overwritten.\n..."
vrrp:
  description:
    - The floating addresses of O(instances) and which of them this host holds, read from the kernel's addresses of
      every interface after systemd was asked; the shape of RV(lvs.nat.ipvs_info#module:vrrp).
  returned: always
  type: dict
  contains:
    addresses:
      description:
        - Each floating address (in canonical form, without its prefix length) and the interface that holds it on
          this host, or null; empty with O(state=absent).
      type: dict
      sample: {"198.51.100.10": eth1, "198.51.100.100": eth2}
    state:
      description:
        - V(MASTER) when this host holds every floating address, V(BACKUP) when it holds none, V(SPLIT) when it holds
          some; null with O(state=absent).
      type: str
      sample: MASTER
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _addresses, _keepalived, _module, _persist
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module

# Module constants, so that the unit tests point them at a tmp dir.
CONFIG_PATH = "/etc/keepalived/keepalived.conf"
DEFAULT_PATH = "/etc/default/keepalived"
UNIT_NAME = "keepalived.service"
DEFAULT_TEXT = (_keepalived.HEADER +
                "# keepalived runs its VRRP subsystem only: lvs.nat owns the IPVS table.\n"
                "DAEMON_ARGS=\"--vrrp\"\n")
# Debian 12's /etc/default/keepalived as the package installs it: taken over when it is exactly this.
DEBIAN_DEFAULT = ("# Options to pass to keepalived\n\n"
                  "# DAEMON_ARGS are appended to the keepalived command-line\n"
                  "DAEMON_ARGS=\"\"\n")
RUNNING = ("active", "reloading", "activating")

INSTANCE_SPEC = dict(
    name=dict(type="str", required=True),
    interface=dict(type="str", required=True),
    vrid=dict(type="int", required=True),
    address=dict(type="str", required=True),
    source=dict(type="str", required=True),
    peers=dict(type="list", elements="str", required=True),
    track_interfaces=dict(type="list", elements="str", default=[]),
)
SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    router_id=dict(type="str"),
    priority=dict(type="int", default=100),
    advert_int=dict(type="float", default=1),
    preempt=dict(type="bool", default=False),
    preempt_delay=dict(type="int", default=0),
    startup_delay=dict(type="float", default=0),
    sync_group=dict(type="str", default="lvs_nat"),
    instances=dict(type="list", elements="dict", options=INSTANCE_SPEC),
)


def build_module():
    return AnsibleModule(argument_spec=SPEC, supports_check_mode=True,
                         required_if=[("state", "present", ["router_id", "instances"])])


class Files(object):
    """The two owned files, through _persist.Owned. /etc/default/keepalived apart: the package's own text, untouched,
    is taken over with state=present (it has no header to recognise), and absent removes only a file of ours there
    (the package's, or another, is left as it is)."""

    def __init__(self, config, default):
        current = _persist.read_file(DEFAULT_PATH)
        also = ("# Options to pass to keepalived",) if current == DEBIAN_DEFAULT and default is not None else ()
        parts = [([("config", CONFIG_PATH, config, 0o644)], ())]
        if default is not None or current is None or _persist.managed(current):
            parts.append(([("default", DEFAULT_PATH, default, 0o644)], also))
        problems, self.parts = [], []
        for files, marks in parts:
            try:
                self.parts.append(_persist.Owned(files=files, also=marks))
            except _persist.PersistError as e:
                problems.append(str(e))
        if problems:
            raise _persist.PersistError("; ".join(problems))
        self.changed = any(part.changed for part in self.parts)

    def changed_paths(self):
        return [e["path"] for part in self.parts for e in part.plan if e["changed"]]

    def install(self, module):
        for part in self.parts:
            part.install(module)

    def diff(self):
        return [d for part in self.parts for d in part.result()["diff"]]


def check_config(module, text):
    """`keepalived -t` on text, from a temporary file: KeepalivedError with keepalived's message when it refuses. In
    check mode without keepalived installed, a warning instead."""
    if module.check_mode and not module.get_bin_path("keepalived", opt_dirs=_module.SBIN):
        module.warn("keepalived is not installed: the rendered configuration was not checked with keepalived -t")
        return
    fd, path = tempfile.mkstemp(prefix="lvs-nat-keepalived.", suffix=".conf")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        rc, out, err = _module.run_command(module, ["keepalived", "-t", "-f", path], ok=None)
    finally:
        os.unlink(path)
    if rc != 0:
        said = "\n".join(s.strip() for s in (out, err) if s.strip()).replace(path, "keepalived.conf")
        raise _keepalived.KeepalivedError("keepalived -t refused the rendered configuration (rc=%d): %s" % (rc, said),
                                          rc=rc, stdout=out, stderr=err, config=text)


def plan(files, present, active, enabled):
    """(action, enable): what systemd has to do once the files are as they should be. action: start when not running,
    restart when /etc/default/keepalived changed (new arguments) or the unit failed, reload when only keepalived.conf
    changed; stop when absent and running; None: nothing. enable: True/False to enable/disable, None: as it is."""
    changed = files.changed_paths()
    if not present:
        return ("stop" if active in RUNNING else None), (False if enabled else None)
    enable = None if enabled else True
    if active == "failed" or (active in RUNNING and DEFAULT_PATH in changed):
        return "restart", enable
    if active not in RUNNING:
        return "start", enable
    return ("reload" if CONFIG_PATH in changed else None), enable


def unit_diff(active, enabled, enable, present):
    """The unit's state before and after, as text for the diff."""
    return dict(before_header=UNIT_NAME, after_header=UNIT_NAME,
                before="enabled: %s\nrunning: %s\n" % (enabled, active in RUNNING),
                after="enabled: %s\nrunning: %s\n" % (enabled if enable is None else enable, present))


def apply(module, files, todo, enable):
    """Outside check mode: absent stops the unit before its files go; present writes the files, then enables and
    starts, restarts or reloads it."""
    if module.check_mode:
        return
    if todo == "stop":
        _persist.systemctl(module, "stop", UNIT_NAME)
    if enable is False:
        _persist.systemctl(module, "disable", UNIT_NAME)
    files.install(module)
    if enable:
        _persist.systemctl(module, "enable", UNIT_NAME)
    if todo in ("start", "restart", "reload"):
        _persist.systemctl(module, todo, UNIT_NAME)


def read_vrrp(cfg):
    """Which floating addresses the host holds, as lvs.nat.ipvs_info's vrrp; no addresses and no state when absent."""
    if cfg is None:
        return dict(addresses={}, state=None)
    return _addresses.vrrp_state([_keepalived.floating_address(i) for i in cfg["instances"]],
                                 _addresses.host_addresses())


def run(module):
    p = module.params
    present = p["state"] == "present"
    # Every option checked before anything is read or written.
    cfg = _keepalived.check(p) if present else None
    config = _keepalived.render(cfg) if present else None
    with _persist.lock("keepalived_vrrp"):
        files = Files(config, DEFAULT_TEXT if present else None)
        if present and CONFIG_PATH in files.changed_paths():
            check_config(module, config)
        if present and not module.check_mode and not _persist.systemd_running():
            raise _keepalived.KeepalivedError("keepalived cannot run here: systemd does not run this host (no %s)" % (
                _persist.SYSTEMD_RUNNING))
        active, enabled = _persist.active_state(module, UNIT_NAME), _persist.unit_enabled(module, UNIT_NAME)
        todo, enable = plan(files, present, active, enabled)
        apply(module, files, todo, enable)
    diff = files.diff() + [unit_diff(active, enabled, enable, present)]
    return dict(changed=files.changed or todo is not None or enable is not None, action=todo or "none",
                config=config, vrrp=read_vrrp(cfg), diff=diff)


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
