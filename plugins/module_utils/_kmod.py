# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kernel modules: is one loaded, load it (or prove it could be loaded) with modprobe."""
from __future__ import annotations

import os
import subprocess


class KernelError(Exception):
    """A kernel or environment failure, with the errno where the kernel gave one."""

    def __init__(self, msg, code=None):
        super(KernelError, self).__init__(msg)
        self.code = code


def loaded(name):
    try:
        with open("/proc/modules") as fh:
            if any(line.split(" ", 1)[0] == name for line in fh):
                return True
    except (IOError, OSError):
        pass
    return os.path.isdir("/sys/module/%s" % name)  # built into the kernel


def modprobe(names, dry_run=False, run=subprocess.run):
    """Load what is missing; with dry_run only prove it could be loaded. The error names the module."""
    for name in names:
        if loaded(name):
            continue
        argv = ["modprobe"] + (["--dry-run"] if dry_run else []) + [name]
        try:
            proc = run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, check=False)
        except OSError as e:
            raise KernelError("Failed to load kernel module %s: cannot run modprobe (%s); is kmod installed?" % (
                name, e.strerror or e)) from e
        if proc.returncode != 0:
            raise KernelError("Failed to load kernel module %s (%s: rc=%d): %s" % (
                name, " ".join(argv), proc.returncode, (proc.stderr or proc.stdout).strip()))
