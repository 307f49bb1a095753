# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The saved IPVS state and its boot unit: the file lvs.nat.ipvs_save writes, and lvs.nat.ipvs_table with its save
option (one format, one unit, one writer of each at a time: the lock "ipvs_save")."""
from __future__ import annotations

import ipaddress

from ansible_collections.lvs.nat.plugins.module_utils import _persist
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import dest_order

HEADER = "# Managed by lvs.nat.ipvs_save: the owned IPVS services and the timeouts, one ipvsadm command a line.\n"
FWD_FLAGS = {"masq": "-m", "route": "-g", "tunnel": "-i", "local": "-g"}
# The boot restore, a POSIX sh script that gets the saved file as $0 (data, never pasted into the script), read on
# descriptor 3 (a missing file fails the unit). Each line on its own, words split with globbing off: --set as is; a
# service or real server is edited when it exists (a restart on a running director), else added; nothing is ever
# flushed or deleted, and any other line fails (only this module writes the file). A failed line is logged, the next
# ones are still applied, and the exit status is then 1, so systemd marks the unit failed.
RESTORE_SCRIPT = (
    'set -f; rc=0; exec 3< "$0" || exit 1; '
    'while IFS= read -r line <&3 || [ -n "$line" ]; do '
    'set -- $line; '
    'case "$1" in '
    '""|"#"*) continue;; '
    '--set) ipvsadm "$@";; '
    '-A) shift; ipvsadm -E "$@" 2>/dev/null || ipvsadm -A "$@";; '
    '-a) shift; ipvsadm -e "$@" 2>/dev/null || ipvsadm -a "$@";; '
    '*) echo "not an ipvs_save line" >&2; false;; '
    'esac || { echo "lvs-nat-ipvs: failed: $line" >&2; rc=1; }; '
    'done; exit "$rc"')


def restore_command(path):
    """ExecStart= of the unit: the script in single quotes ($ doubled, as systemd expands $NAME), then the file.

    The script holds no quote, backslash or %; path_problem() has refused whatever in path systemd or sh would read."""
    return "/bin/sh -c '%s' %s" % (RESTORE_SCRIPT.replace("$", "$$"), path)


def _addr(address, port):
    return "%s:%d" % ("[%s]" % address if ":" in address else address, port)


def service_option(svc):
    if svc["fwmark"]:
        return "-f %d%s" % (svc["fwmark"], " -6" if svc["family"] == "ipv6" else "")
    flag = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}[svc["protocol"]]
    return "%s %s" % (flag, _addr(svc["address"], svc["port"]))


def service_order(svc):
    return (svc["family"], svc["fwmark"], svc["protocol"] or "", ipaddress.ip_address(svc["address"] or "0.0.0.0"),
            svc["port"] or 0)


def render(table, timeouts):
    """ipvsadm-restore lines for the whole state, sorted: the kernel lists services and real servers in an order
    of its own (hash buckets, insertion), which changes when the saved file is restored at boot."""
    lines = ["--set %(tcp)d %(tcp_fin)d %(udp)d" % timeouts]
    for svc in sorted(table, key=service_order):
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


def path_problems(path, unit_path, options=("path", "unit_path")):
    """What is wrong with the saved file's path and its unit's (options name them): [] when systemd and sh take each
    as one word."""
    return [m for m in (_persist.path_problem(value, option) for option, value in zip(options, (path, unit_path))) if m]


def owned_files(path, unit_path, lines, options=("path", "unit_path")):
    """The saved file holding lines (None: absent) and its boot unit, as _persist.Owned (reads, changes nothing);
    options name path and unit_path in errors."""
    present = lines is not None
    unit = _persist.unit_text("ipvs_save", "lvs.nat IPVS services, thresholds and timeouts", restore_command(path),
                              ["systemd-modules-load.service", "local-fs.target"])
    return _persist.Owned(files=[(options[0], path, HEADER + "\n".join(lines) + "\n" if present else None, 0o600)],
                          units=[(options[1], unit_path, unit if present else None)])
