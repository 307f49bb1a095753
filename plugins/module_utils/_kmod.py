# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kernel modules: is one loaded, load it (or prove it could be loaded) with modprobe."""
from __future__ import annotations

import os

from ansible_collections.lvs.nat.plugins.module_utils._errors import CommandError, KernelError
from ansible_collections.lvs.nat.plugins.module_utils._module import run_command


def loaded(name):
    try:
        with open("/proc/modules") as fh:
            if any(line.split(" ", 1)[0] == name for line in fh):
                return True
    except (IOError, OSError):
        pass
    return os.path.isdir("/sys/module/%s" % name)  # built into the kernel


def modprobe(module, names, dry_run=False):
    """Load what is missing; with dry_run only prove it could be loaded. KernelError names the kernel module, with
    modprobe's rc, stdout and stderr in its details."""
    for name in names:
        if loaded(name):
            continue
        argv = ["modprobe"] + (["--dry-run"] if dry_run else []) + [name]
        try:
            run_command(module, argv)
        except CommandError as e:
            if "rc" not in e.details:  # not installed
                raise KernelError("Failed to load kernel module %s: %s; is kmod installed?" % (name, e), **e.details) from e
            raise KernelError("Failed to load kernel module %s (%s: rc=%d): %s" % (
                name, " ".join(argv), e.details["rc"], (e.details["stderr"] or e.details["stdout"]).strip()),
                **e.details) from e
