#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_sync_daemon
short_description: Run the IPVS connection synchronization daemons, and start them at boot
version_added: 0.5.0
description:
  - Runs the kernel's IPVS connection synchronization daemons (C(ipvsadm --start-daemon)). A V(master) daemon sends
    the director's connections to a multicast group; a V(backup) daemon receives those of the other directors, so
    that a director taking over the virtual addresses keeps the connections already established.
  - Two directors that take over from each other run both daemons all the time, with the same O(daemons[].sync_id),
    group and port.
  - With O(state=present), exactly the daemons listed run. A running daemon that is not listed is stopped; one that
    runs with other settings is stopped and started again with those listed (the kernel cannot change a running
    daemon). A daemon that runs as listed is left alone.
  - Read back from the kernel (generic netlink, the same backend as the other IPVS modules).
  - With O(persistent=true), a systemd unit (C(lvs-nat-sync.service)) starts the same daemons at boot, after the
    network is online and before C(keepalived.service).
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lvs.nat.ipvs_options
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Before and after of the daemons, and of the boot unit.
  platform:
    platforms: linux
options:
  state:
    description:
      - V(present) makes the daemons of O(daemons) run, and only those; V(absent) stops every sync daemon and removes
        the boot unit.
    type: str
    choices: [present, absent]
    default: present
  daemons:
    description:
      - The daemons that run, at most one per O(daemons[].mode). Required with O(state=present); an empty list stops
        every daemon.
    type: list
    elements: dict
    suboptions:
      mode:
        description: V(master) sends this director's connections, V(backup) receives those of the others.
        type: str
        required: true
        choices: [master, backup]
      interface:
        description:
          - The interface the daemon sends or receives on, an existing interface of the host; 1 to 15 ASCII letters,
            digits and C(_ . + -), not ending in C(+) (iptables reads that as a wildcard).
          - Its address is the source of the master's packets; start the daemons after the interface has its address.
        type: str
        required: true
      sync_id:
        description:
          - The synchronization id, 0 to 255. A backup takes the messages of masters with its id only.
        type: int
        default: 0
      max_len:
        description:
          - The largest UDP payload of a sync message, in bytes (C(--sync-maxlen)). 1 to 65507 for a master, 1024 to
            65507 for a backup (65487 with an IPv6 group).
          - When left out, the kernel chooses 1472 for a master, and for a backup the interface's MTU (1500 at least)
            less 28 (48 with an IPv6 group) when it starts; a running daemon's value is then kept whatever it is.
        type: int
      group:
        description: The multicast group, an IPv4 or IPv6 multicast address; the kernel's default is 224.0.1.81.
        type: str
        default: 224.0.1.81
      port:
        description: The UDP port of the group, 1 to 65535.
        type: int
        default: 8848
      ttl:
        description: The multicast TTL (hop limit) of the master's packets, 1 to 255.
        type: int
        default: 1
  persistent:
    description:
      - Whether the boot unit C(/etc/systemd/system/lvs-nat-sync.service) starts the same daemons at boot. It is
        enabled for C(multi-user.target), and loads C(ip_vs) first. V(false) removes the unit; the running daemons
        stay as O(state) says.
    type: bool
    default: true
notes:
  - Accept the sync traffic (UDP to O(daemons[].port) of the group) on the interface, for example with
    M(lvs.nat.nat_rules).
  - The kernel refuses to start a sync daemon while a virtual service has real servers of the other address family.
  - The boot unit needs C(ipvsadm) on the host; restarting the unit while the daemons run fails (the kernel runs one
    daemon per mode); it never stops them.
seealso:
  - module: lvs.nat.ipvs_info
  - module: lvs.nat.nat_rules
"""

EXAMPLES = r"""
- name: Run both sync daemons on the private interface, at boot too
  lvs.nat.ipvs_sync_daemon:
    daemons:
      - mode: master
        interface: eth2
        sync_id: 51
      - mode: backup
        interface: eth2
        sync_id: 51

- name: Stop the sync daemons and remove their boot unit
  lvs.nat.ipvs_sync_daemon:
    state: absent
"""

RETURN = r"""
daemons:
  description:
    - The sync daemons the kernel runs after the run (in check mode, as it would), master first, each with every
      setting as the kernel holds it.
  returned: always
  type: list
  elements: dict
  sample:
    - {mode: master, interface: eth2, sync_id: 51, max_len: 1472, group: 224.0.1.81, port: 8848, ttl: 1}
    - {mode: backup, interface: eth2, sync_id: 51, max_len: 1472, group: 224.0.1.81, port: 8848, ttl: 1}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs, _persist
from ansible_collections.lvs.nat.plugins.module_utils._addresses import interface_problem
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import (
    DAEMON_DEFAULTS,
    DAEMON_FIELDS,
    DAEMON_MODES,
    DAEMON_ORDER,
    MAX_SYNC_ID,
    MAX_U16,
    default_max_len,
    max_len_range,
)
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import InvalidInput, _int_range, _integer, _ip, _show
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module

UNIT_PATH = "/etc/systemd/system/lvs-nat-sync.service"

DAEMON_SPEC = dict(
    mode=dict(type="str", required=True, choices=list(DAEMON_ORDER)),
    interface=dict(type="str", required=True),
    sync_id=dict(type="int", default=DAEMON_DEFAULTS["sync_id"]),
    max_len=dict(type="int"),
    group=dict(type="str", default=DAEMON_DEFAULTS["group"]),
    port=dict(type="int", default=DAEMON_DEFAULTS["port"]),
    ttl=dict(type="int", default=DAEMON_DEFAULTS["ttl"]),
)


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "absent"]),
            daemons=dict(type="list", elements="dict", options=DAEMON_SPEC),
            persistent=dict(type="bool", default=True),
        ),
        required_if=[("state", "present", ["daemons"])],
        supports_check_mode=True,
    )


# -- normalise (pure: the director role's preflight may call it too)

def _group(value, where):
    group = _ip(where, value)
    if not group.is_multicast:
        raise InvalidInput("%s=%s is not a multicast address (IPv4 224.0.0.0/4 or IPv6 ff00::/8)" % (where, _show(value)))
    return str(group)


def desired_daemon(entry, where):
    """One entry of the daemons option as the kernel would hold it (max_len None: the kernel's choice); InvalidInput
    naming where (daemons[i]) and the key. Every value that reaches the boot unit is checked with a full match."""
    if not isinstance(entry, dict):
        raise InvalidInput("%s=%s is not a dict" % (where, _show(entry)))
    mode, interface = entry.get("mode"), entry.get("interface")
    if mode not in DAEMON_MODES:
        raise InvalidInput("%s.mode=%s is not one of master, backup" % (where, _show(mode)))
    problem = interface_problem(interface, where + ".interface")
    if problem:
        raise InvalidInput(problem)
    daemon = dict(mode=mode, interface=interface)
    for key, low, high in (("sync_id", 0, MAX_SYNC_ID), ("port", 1, MAX_U16), ("ttl", 1, 255)):
        value = _integer("%s.%s" % (where, key), entry.get(key))
        daemon[key] = DAEMON_DEFAULTS[key] if value is None else value
        _int_range("%s.%s" % (where, key), daemon[key], low, high)
    group = entry.get("group")
    daemon["group"] = DAEMON_DEFAULTS["group"] if group is None else _group(group, where + ".group")
    daemon["max_len"] = _integer(where + ".max_len", entry.get("max_len"))
    # The kernel clamps a length outside this range: the daemon would then never run as asked.
    _int_range(where + ".max_len", daemon["max_len"], *max_len_range(mode, daemon["group"]))
    return dict((k, daemon[k]) for k in DAEMON_FIELDS)


def desired_daemons(entries, option="daemons"):
    """mode -> the daemon (desired_daemon), and mode -> its option name (daemons[i]); one daemon per mode."""
    wanted, where = {}, {}
    for i, entry in enumerate(entries or ()):
        name = "%s[%d]" % (option, i)
        daemon = desired_daemon(entry, name)
        if daemon["mode"] in wanted:
            raise InvalidInput("%s.mode=%s: %s is the %s daemon already; the kernel runs one daemon per mode" % (
                name, daemon["mode"], where[daemon["mode"]], daemon["mode"]))
        wanted[daemon["mode"]], where[daemon["mode"]] = daemon, name
    return wanted, where


# -- diff and plan

def differs(have, want):
    """Whether the running daemon have is not the daemon want; a max_len of None in want takes any value."""
    return any(want[k] is not None and have.get(k) != want[k] for k in DAEMON_FIELDS)


def plan(current, wanted):
    """[("stop" | "start", daemon)], mode by mode: a daemon not wanted is stopped, one that differs is stopped and
    started again, a missing one is started."""
    have = dict((d["mode"], d) for d in current)
    ops = []
    for mode in DAEMON_ORDER:
        old, new = have.get(mode), wanted.get(mode)
        if old is not None and (new is None or differs(old, new)):
            ops.append(("stop", old))
        if new is not None and (old is None or differs(old, new)):
            ops.append(("start", new))
    return ops


def predicted(current, ops, mtu):
    """The daemons after ops, as the kernel would hold them (mtu: interface -> MTU, for the max_len it chooses)."""
    after = dict((d["mode"], d) for d in current)
    for verb, daemon in ops:
        if verb == "stop":
            after.pop(daemon["mode"], None)
        else:
            d = dict(daemon)
            if d["max_len"] is None:
                d["max_len"] = default_max_len(d["mode"], d["group"], mtu.get(d["interface"]))
            after[d["mode"]] = d
    return [after[m] for m in DAEMON_ORDER if m in after]


# -- the boot unit

def start_command(ipvsadm, daemon):
    """The unit's ipvsadm line for daemon (checked by desired_daemon: no value holds a blank, quote, '%' or '$');
    each value joined to its option with '=', so that no value is read as an option."""
    argv = [ipvsadm, "--start-daemon", daemon["mode"], "--mcast-interface=%s" % daemon["interface"],
            "--syncid=%d" % daemon["sync_id"]]
    if daemon["max_len"] is not None:
        argv.append("--sync-maxlen=%d" % daemon["max_len"])
    argv += ["--mcast-group=%s" % daemon["group"], "--mcast-port=%d" % daemon["port"], "--mcast-ttl=%d" % daemon["ttl"]]
    return " ".join(argv)


def unit_text(module, wanted):
    """The boot unit starting the wanted daemons (mode -> daemon), or None for no daemon: ip_vs loaded first (a
    unit with its own ExecStart= line, so that a failure names it), then one ipvsadm line per daemon."""
    if not wanted:
        return None
    ipvsadm = _persist.tool_path(module, "ipvsadm", "/sbin/ipvsadm")
    modprobe = _persist.tool_path(module, "modprobe", "/sbin/modprobe")
    lines = ["%s ip_vs" % modprobe] + [start_command(ipvsadm, wanted[m]) for m in DAEMON_ORDER if m in wanted]
    # After network-online.target: the master sends from its interface's address, which must exist by then.
    return _persist.unit_text("ipvs_sync_daemon", "lvs.nat IPVS connection sync daemons", lines,
                              ["systemd-modules-load.service", "network-online.target"],
                              before=["keepalived.service"], wants=["network-online.target"])


# -- run

def check_interfaces(kernel, ops, where):
    """mode's interface -> MTU for each daemon to start; InvalidInput naming the option where an interface is
    missing, before any change (the kernel would refuse it with ENODEV after the daemon it replaces was stopped)."""
    mtu = {}
    for verb, daemon in ops:
        if verb == "start":
            mtu[daemon["interface"]] = kernel.interface_mtu(daemon["interface"])
            if mtu[daemon["interface"]] is None:
                raise InvalidInput("%s.interface=%s: this host has no such interface" % (
                    where[daemon["mode"]], daemon["interface"]))
    return mtu


def run(module):
    p = module.params
    present = p["state"] == "present"
    wanted, where = desired_daemons(p["daemons"]) if present else ({}, {})
    with _persist.lock("ipvs_sync_daemon"):
        unit = _persist.Owned(units=[("persistent", UNIT_PATH,
                                      unit_text(module, wanted) if present and p["persistent"] else None)])
        with _ipvs.Session(module) as kernel:
            before = kernel.daemons()
            ops = plan(before, wanted)
            mtu = check_interfaces(kernel, ops, where)
            kernel.apply_daemons(ops, before)
            after = kernel.daemons() if ops and not module.check_mode else predicted(before, ops, mtu)
        files = unit.install(module)
    return dict(changed=bool(ops) or files["changed"], daemons=after,
                diff=[dict(before=before, after=after)] + files["diff"])


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
