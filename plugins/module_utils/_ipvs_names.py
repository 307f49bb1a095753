# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The IPVS vocabulary that the kernel backend (_ipvs), the planner (_ipvs_plan), the argument specs (_ipvs_args),
the modules and the role's filter share: operations, names, flag bits, limits, defaults, and the pure helpers that
name and identify services and real servers. Pure: no socket, no pyroute2, no I/O."""
from __future__ import annotations

import errno
import ipaddress
import os

# include/uapi/linux/ip_vs.h: the operations (generic netlink commands) of the IPVS family.
CMD_NEW_SERVICE, CMD_SET_SERVICE, CMD_DEL_SERVICE, CMD_GET_SERVICE = 1, 2, 3, 4
CMD_NEW_DEST, CMD_SET_DEST, CMD_DEL_DEST, CMD_GET_DEST = 5, 6, 7, 8
CMD_NEW_DAEMON, CMD_DEL_DAEMON, CMD_GET_DAEMON = 9, 10, 11
CMD_SET_CONFIG, CMD_GET_CONFIG, CMD_GET_INFO = 12, 13, 15

# Service flag bits (IP_VS_SVC_F_*).
SVC_F_PERSISTENT, SVC_F_ONEPACKET, SVC_F_SCHED1, SVC_F_SCHED2 = 0x1, 0x4, 0x8, 0x10

# IP protocol numbers (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP).
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
FORWARDING = {"masq": 0, "local": 1, "tunnel": 2, "route": 3}
# The forwarding methods a user can ask for; "local" is the kernel's own choice for a local real server.
FORWARDING_CHOICES = ("masq", "route", "tunnel")
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos")
# ipvsadm's -b names; SCHED1/SCHED2 mean fallback/port, for sh and mh only.
SCHED_FLAGS = {
    "sh": {"sh-fallback": SVC_F_SCHED1, "sh-port": SVC_F_SCHED2},
    "mh": {"mh-fallback": SVC_F_SCHED1, "mh-port": SVC_F_SCHED2},
}
ALL_SCHED_FLAGS = sorted(f for flags in SCHED_FLAGS.values() for f in flags)

# What the kernel holds before anyone sets them, and after ip_vs is loaded (ipvsadm --set).
KERNEL_TIMEOUTS = {"tcp": 900, "tcp_fin": 120, "udp": 300}
TIMEOUT_NAMES = ("tcp", "tcp_fin", "udp")
# The saved state restored at boot and its unit (lvs.nat.ipvs_save; lvs.nat.ipvs_table with save).
SAVED_PATH = "/etc/lvs-nat/ipvs.rules"
SAVED_UNIT_PATH = "/etc/systemd/system/lvs-nat-ipvs.service"
# The kernel stores timeouts in jiffies and refuses values whose jiffies overflow an int.
MAX_TIMEOUT = 2147483

MAX_U16, MAX_I32, MAX_U32 = 65535, 2 ** 31 - 1, 2 ** 32 - 1
# ipvsadm refuses a persistence timeout above 31 days, so a saved table with a longer one stops
# ipvsadm-restore at that line; the kernel itself wraps values above about 4.29 million seconds.
MAX_PERSISTENCE = 31 * 86400

# What a service or real server gets on creation for each setting the user left out (as ipvsadm does);
# persistence_prefix defaults to the whole address (32 or 128), so it depends on the family.
SERVICE_DEFAULTS = dict(scheduler="wlc", scheduler_flags=[], persistence_timeout=0, one_packet=False)
DEST_DEFAULTS = dict(forwarding="masq", weight=1, upper_threshold=0, lower_threshold=0)
# The settings of a service and of a real server: what an edit compares and replaces.
SERVICE_FIELDS = ("scheduler", "scheduler_flags", "persistence_timeout", "persistence_prefix", "one_packet")
DEST_FIELDS = ("forwarding", "weight", "upper_threshold", "lower_threshold")


def family_of(address):
    return "ipv6" if ipaddress.ip_address(address).version == 6 else "ipv4"


def service_id(svc):
    """A service's identity, hashable: what the user's key gives and the kernel reports."""
    return (svc["family"], svc["fwmark"], svc["protocol"], svc["address"], svc["port"])


def dest_id(d):
    return (d["address"], d["port"])


def describe_service(svc):
    if svc["fwmark"]:
        return "FWM %s (%s)" % (svc["fwmark"], svc["family"])
    addr = svc["address"]
    return "%s %s:%s" % (svc["protocol"].upper(), "[%s]" % addr if ":" in addr else addr, svc["port"])


def describe_dest(dest):
    addr = dest["address"]
    return "%s:%s" % ("[%s]" % addr if ":" in addr else addr, dest["port"])


def strerror(code):
    # IPVS gives errno values its own meaning (ipvsadm's ipvs_strerror).
    special = {errno.ESRCH: "No such service", errno.ENOENT: "No such destination or scheduler",
               errno.EEXIST: "Already exists", errno.EINVAL: "Invalid argument", errno.ERANGE: "Out of range",
               errno.EAFNOSUPPORT: "Address family not supported by the service", errno.EBUSY: "Busy"}
    return special.get(code) or os.strerror(code)


VERBS = {CMD_NEW_SERVICE: "add", CMD_SET_SERVICE: "edit", CMD_DEL_SERVICE: "delete",
         CMD_NEW_DEST: "add", CMD_SET_DEST: "edit", CMD_DEL_DEST: "delete"}


def describe_op(op):
    """'add real server 198.51.100.101:8080 to TCP 198.51.100.10:80' and the like."""
    cmd, svc, dest = op
    verb = VERBS[cmd]
    if dest is None:
        return "%s service %s" % (verb, describe_service(svc))
    return "%s real server %s %s %s" % (
        verb, describe_dest(dest), {"add": "to", "delete": "from"}.get(verb, "of"), describe_service(svc))


def describe_failure(op, code):
    return "Failed to %s: %s (errno %d)" % (describe_op(op), strerror(code), code)


def inverse_ops(op, before):
    """The operations that undo op, given before (service id -> the service with its real servers as
    they were); None where the entry as it was is unknown."""
    cmd, svc, dest = op
    old_svc = before.get(service_id(svc))
    if cmd == CMD_NEW_SERVICE:
        return [(CMD_DEL_SERVICE, svc, None)]
    if cmd == CMD_DEL_SERVICE:
        old = old_svc or svc
        return [(CMD_NEW_SERVICE, old, None)] + [(CMD_NEW_DEST, old, d) for d in old.get("real_servers", [])]
    if cmd == CMD_SET_SERVICE:
        return [(CMD_SET_SERVICE, old_svc, None)] if old_svc else None
    if cmd == CMD_NEW_DEST:
        return [(CMD_DEL_DEST, svc, dest)]
    old_dests = dict((dest_id(d), d) for d in (old_svc or {}).get("real_servers", []))
    old = old_dests.get(dest_id(dest)) or (dest if cmd == CMD_DEL_DEST and "forwarding" in dest else None)
    if old is None:
        return None
    return [(CMD_NEW_DEST if cmd == CMD_DEL_DEST else CMD_SET_DEST, svc, old)]


# The connection-sync daemons (ipvsadm --start-daemon): IPVS_DAEMON_ATTR_STATE of each mode (IP_VS_STATE_MASTER,
# IP_VS_STATE_BACKUP), at most one daemon per mode; a daemon's settings, as lvs.nat.ipvs_sync_daemon takes them.
DAEMON_MODES = {"master": 1, "backup": 2}
DAEMON_ORDER = ("master", "backup")
DAEMON_FIELDS = ("mode", "interface", "sync_id", "max_len", "group", "port", "ttl")
# What the kernel's start_sync_thread gives a setting left out (IP_VS_SYNC_GROUP, IP_VS_SYNC_PORT, a TTL of 1); the
# sync id is the kernel's 0 when not sent, and sync messages carry it in one byte (ipvsadm takes 0 to 255).
DAEMON_DEFAULTS = dict(sync_id=0, group="224.0.1.81", port=8848, ttl=1)
MAX_SYNC_ID = 255


def sync_header_len(group):
    """The IP and UDP headers of a sync message to group (start_sync_thread's hlen)."""
    return 48 if ":" in group else 28


def max_len_range(mode, group):
    """The sync_maxlen values the kernel keeps as given: start_sync_thread clamps others to this range (a backup's
    receive buffer takes at least 1024 bytes)."""
    return (1024 if mode == "backup" else 1), 65535 - sync_header_len(group)


def default_max_len(mode, group, mtu):
    """The sync_maxlen the kernel chooses when none is sent: a master sends 1500-byte packets; a backup receives
    packets as large as its interface's MTU (1500 at least). None where the MTU is unknown."""
    if mode == "master":
        return 1500 - sync_header_len(group)
    return None if mtu is None else min(max(mtu, 1500), 65535) - sync_header_len(group)


def describe_daemon(daemon):
    """'master sync daemon (interface eth2, sync_id 51)'."""
    return "%s sync daemon (interface %s, sync_id %s)" % (daemon["mode"], daemon["interface"], daemon["sync_id"])


def daemon_strerror(code):
    # What the kernel's errno means for a sync daemon (start_sync_thread, stop_sync_thread, ip_vs_genl_new_daemon).
    special = {errno.EEXIST: "A daemon of that mode already runs", errno.ESRCH: "No daemon of that mode runs",
               errno.ENODEV: "No such interface",
               errno.EINVAL: "Invalid argument (the kernel refuses sync daemons while a service has real servers of "
                             "the other address family)"}
    return special.get(code) or os.strerror(code)
