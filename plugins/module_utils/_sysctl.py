# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kernel parameters (/proc/sys) and the files that persist them. No I/O on import."""
from __future__ import annotations

import os
import re

from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError

PROC_SYS = "/proc/sys"
FORWARDING_KEYS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
REMOVED = {
    "net.ipv4.tcp_tw_recycle": "was removed in Linux 4.12 (it broke clients behind NAT); leave it out, "
                               "net.ipv4.tcp_tw_reuse is the knob that remains",
}
# Keys that exist only once a kernel module is loaded, and that module.
KEY_MODULES = (("net.ipv4.vs.", "ip_vs"), ("net.netfilter.nf_conntrack_", "nf_conntrack"))
# Full matches, ASCII only: a trailing newline or a non-ASCII digit is refused, not written to /proc or a file.
# A value is words separated by blanks (spaces or tabs, as the kernel lists ip_local_port_range).
_VALUE = re.compile(r"[ \t]*[A-Za-z0-9_.:-]+(?:[ \t]+[A-Za-z0-9_.:-]+)*[ \t]*", re.ASCII)
_KEY = re.compile(r"net(?:\.[A-Za-z0-9_:-]+(?:/[A-Za-z0-9_:-]+)*)+", re.ASCII)


class SysctlError(LvsNatError):
    """A kernel parameter or value refused, by the module or by the kernel."""


def proc_path(key, root=PROC_SYS):
    # sysctl(8) writes an interface name containing dots with slashes (net.ipv4.conf.eth0/100.rp_filter).
    return os.path.join(root, *[part.replace("/", ".") for part in key.split(".")])


def normalise_value(value):
    """One canonical text for a value: booleans as 0/1, runs of ASCII whitespace as one space."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return " ".join(re.split(r"[ \t\n\r\f\v]+", str(value).strip(" \t\n\r\f\v")))


def _shown(key):
    """The key as a message shows it: as written when it is printable ASCII, else quoted with its escapes."""
    return key if isinstance(key, str) and re.fullmatch(r"[ -~]+", key, re.ASCII) else repr(key)


def check_key(key, value):
    """Reject what can be rejected without the kernel; the message names the key. Returns the normalised value."""
    if key in REMOVED:
        raise SysctlError("%s %s" % (key, REMOVED[key]))
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise SysctlError("%s: not a net.* kernel parameter (this module manages networking keys only; use "
                          "ansible.posix.sysctl for others)" % _shown(key))
    text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if isinstance(text, bool):
        return normalise_value(text)
    if not isinstance(text, str) or not _VALUE.fullmatch(text):
        raise SysctlError("%s: value %r is not a number, a word or numbers separated by spaces" % (key, value))
    return normalise_value(text)


def module_for(key):
    for prefix, module in KEY_MODULES:
        if key.startswith(prefix):
            return module
    return None


def modules_for(keys):
    """The kernel modules that the keys need loaded, sorted."""
    return sorted(set(m for m in map(module_for, keys) if m))


def read(key, root=PROC_SYS):
    """The kernel's value, normalised; None where the key does not exist."""
    try:
        with open(proc_path(key, root)) as fh:
            return normalise_value(fh.read())
    except (IOError, OSError):
        return None


def write(key, value, root=PROC_SYS):
    try:
        with open(proc_path(key, root), "w") as fh:
            fh.write(value + "\n")
    except (IOError, OSError) as e:
        raise SysctlError("Failed to set %s = %s: %s" % (key, value, e.strerror or e)) from e


def apply_runtime(wanted, root=PROC_SYS):
    """Write the keys whose value differs, forwarding first; undo every write if one fails.

    Turning net.ipv4.ip_forward on or off resets per-interface settings (accept_redirects,
    forwarding) to defaults, so the other keys are compared again after it.
    """
    done = []
    try:
        for key in [k for k in FORWARDING_KEYS if k in wanted] + [k for k in wanted if k not in FORWARDING_KEYS]:
            old = read(key, root)
            if old != wanted[key]:
                write(key, wanted[key], root)
                done.append((key, old))
    except SysctlError:
        for key, old in reversed(done):
            try:
                write(key, old, root)
            except SysctlError:
                pass
        raise
    return [k for k, _old in done]
