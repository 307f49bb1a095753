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
