# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Files the modules own: atomic writes, and boot units enabled without needing a running systemd."""
from __future__ import annotations

import os
import tempfile


def read_file(path):
    try:
        with open(path) as fh:
            return fh.read()
    except (IOError, OSError):
        return None


def atomic_write(path, text, mode=0o644):
    """Replace path with text in one rename."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".lvs-nat.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sync(files):
    """Make each path hold its text (0o600 where asked), or be gone where the text is None."""
    for path, (text, mode) in files.items():
        if text is None:
            if os.path.lexists(path):
                os.unlink(path)
        elif read_file(path) != text:
            atomic_write(path, text, mode)


def unit_link(unit_path):
    """Where `systemctl enable` would put the unit's link for multi-user.target."""
    return os.path.join(os.path.dirname(unit_path), "multi-user.target.wants", os.path.basename(unit_path))


def unit_state(unit_path):
    return dict(unit=read_file(unit_path), enabled=os.path.islink(unit_link(unit_path)))


def sync_unit(module, unit_path, text):
    """Write and enable the unit (text), or disable and remove it (None); reload a running systemd."""
    before = read_file(unit_path)
    link = unit_link(unit_path)
    if text is None:
        if os.path.lexists(link):
            os.unlink(link)
    sync({unit_path: (text, 0o644)})
    if text is not None and not os.path.islink(link):
        if not os.path.isdir(os.path.dirname(link)):
            os.makedirs(os.path.dirname(link), 0o755)
        os.symlink(unit_path, link)
    if before != text and os.path.isdir("/run/systemd/system"):
        module.run_command(["systemctl", "daemon-reload"], check_rc=True)


def unit_text(module_name, description, command, after, before=("network-pre.target",), wants=("network-pre.target",)):
    """A oneshot boot unit running command after the units in `after` and before those in `before`.

    Units ordered before network-pre.target run early, without systemd's default dependencies.
    """
    early = "network-pre.target" in before
    return ("# Managed by lvs.nat.%s: edits here are overwritten.\n[Unit]\nDescription=%s\n%s"
            "Before=%s\nWants=%s\nAfter=%s\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=%s\n"
            "[Install]\nWantedBy=multi-user.target\n") % (
        module_name, description, "DefaultDependencies=no\n" if early else "", " ".join(before), " ".join(wants),
        " ".join(after), command)
