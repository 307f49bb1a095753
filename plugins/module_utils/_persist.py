# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Files the modules own: one helper (sync_owned) that checks they are ours, computes before/after/diff and
installs them durably with module.atomic_move; boot units enabled without needing a running systemd; a lock per
module; the one way to ask systemd (systemctl, active_state, unit_enabled). No I/O on import."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import tempfile
import time

from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.module_utils._module import SBIN, run_command

# Every file the collection owns carries this in one of its first lines; only such a file is replaced or removed.
MANAGED = "Managed by lvs.nat"
MANAGED_LINES = 5
# Where lock files live: the first of these that exists and is writable (a tmpfs, emptied at boot).
LOCK_DIRS = ("/run", "/tmp")
LOCK_TIMEOUT = 60.0
# Exists when systemd runs the host (sd_booted()); without it there is nothing to start, stop or reload.
SYSTEMD_RUNNING = "/run/systemd/system"
# The ActiveState words for which `systemctl is-active` exits 0.
ACTIVE = ("active", "reloading")

# An absolute path that systemd's ExecStart= and a shell take as one word, as written: no whitespace, control
# characters, quotes, backslash, `;`, `%` (systemd specifiers), `$` (variables) or non-ASCII. Full match, ASCII only.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./+,@=:-]*", re.ASCII)
_LOCK_NAME = re.compile(r"[a-z0-9_]{1,64}", re.ASCII)
_MODULE_NAME = re.compile(r"[a-z0-9_]{1,64}", re.ASCII)
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.@-]{1,255}", re.ASCII)
# A directive's value as systemd keeps it: printable ASCII without `%` (specifiers) or backslash (escapes),
# no leading or trailing blank (systemd strips them). ExecStart= also expands `$`, refused there.
_WORD_CHAR = r"[!-$&-\[\]-~]"  # ASCII 0x21-0x7e but for % and backslash
_DIRECTIVE = re.compile(r"{0}|{0}(?:{0}| )*{0}".format(_WORD_CHAR), re.ASCII)


class PersistError(LvsNatError):
    """An owned file that is not ours, or a lock not taken in time."""


def path_problem(path, option):
    """None when path may be written into a unit's command line as one word, else a message naming the option."""
    if not isinstance(path, str) or not _SAFE_PATH.fullmatch(path) or "/../" in path + "/" or len(path) > 4096:
        return ("%s must be an absolute path of letters, digits and _ . / + , @ = : - only (no whitespace, quotes, "
                "backslash, ';', '%%', '$' or '..'), not %r" % (option, path))
    return None


def read_file(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def managed(text, also=()):
    """Whether text (a file's content) carries the collection's managed header in its first lines, or one of the
    marks in `also` (for a file that an earlier release wrote without the header)."""
    return any(mark in line for line in text.split("\n", MANAGED_LINES)[:MANAGED_LINES] for mark in (MANAGED,) + tuple(also))


def foreign_problem(path, option, also=()):
    """None when the module may replace or remove path (absent, or carrying the managed header or a mark in `also`),
    else a message naming the option. Call it for every owned file before any change, in check mode too."""
    if not os.path.lexists(path):
        return None
    if os.path.isfile(path):
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096).decode("utf-8", "replace")
        except (IOError, OSError) as e:
            return "%s: cannot read %s to check it is managed by lvs.nat: %s" % (option, path, e.strerror or e)
        if managed(head, also):
            return None
    return ("%s: %s exists and is not managed by lvs.nat (no '%s' in its first %d lines); it is left as it is. "
            "Choose another %s, or move the file away if lvs.nat should own it" % (
                option, path, MANAGED, MANAGED_LINES, option))


def foreign_problems(files, also=()):
    """The messages of foreign_problem for each (option, path) pair, in order; empty when every file is ours."""
    return [m for m in (foreign_problem(path, option, also) for option, path in files) if m]


def tool_path(module, name, fallback):
    """The absolute path of a tool for a unit's command line, which takes no search path: where get_bin_path finds
    it when path_problem accepts it as one plain word, else fallback."""
    found = module.get_bin_path(name, opt_dirs=SBIN)
    return found if found and not path_problem(found, name) else fallback


def systemd_running():
    return os.path.isdir(SYSTEMD_RUNNING)


def systemctl(module, *args, **kwargs):
    """systemctl with args, through run_command (kwargs: its ok and what)."""
    return run_command(module, ["systemctl"] + list(args), **kwargs)


def active_state(module, unit):
    """The unit's ActiveState word (active, reloading, activating, failed, inactive, ...); inactive where systemd does
    not run the host."""
    if not systemd_running():
        return "inactive"
    return systemctl(module, "is-active", unit, ok=None)[1].strip() or "inactive"


def unit_enabled(module, unit):
    """Whether the unit is enabled (systemctl reads that from the files, with or without a running systemd)."""
    return systemctl(module, "is-enabled", unit, ok=None)[1].strip() == "enabled"


def unit_link(unit_path):
    """Where `systemctl enable` would put the unit's link for multi-user.target."""
    return os.path.join(os.path.dirname(unit_path), "multi-user.target.wants", os.path.basename(unit_path))


class Owned(object):
    """The files and systemd units a module owns, and the text each should hold: the one way a module changes them.

    files: (option, path, text, mode) for each owned file; units: (option, path, text) for each owned systemd unit,
    enabled for multi-user.target (disabled, then removed, when its text is None; a running systemd is reloaded after
    a unit's text changed). A text of None means absent.

    Construction reads them and changes nothing. Every path is checked first, so call it before any change (in check
    mode too): an existing file without the managed header (or a mark in `also`) raises PersistError naming its
    option, whether it would be written or removed.
    """

    def __init__(self, files=(), units=(), also=()):
        self.plan, problems = [], []
        for option, path, text, mode, unit in [(o, p, t, m, False) for o, p, t, m in files] + \
                [(o, p, t, 0o644, True) for o, p, t in units]:
            problem = foreign_problem(path, option, also)
            if problem:
                problems.append(problem)
            before = read_file(path)
            enabled = unit and os.path.islink(unit_link(path))
            changed = before != text or (unit and enabled != (text is not None))
            self.plan.append(dict(path=path, text=text, mode=mode, unit=unit, before=before, changed=changed))
        if problems:
            raise PersistError("; ".join(problems))
        self.changed = any(e["changed"] for e in self.plan)

    def result(self):
        """dict(changed, before, after, diff): before and after map each path to its text (None when absent); diff
        holds one entry per path (before_header, after_header, before, after), files first, in the order given."""
        return dict(changed=self.changed,
                    before=dict((e["path"], e["before"]) for e in self.plan),
                    after=dict((e["path"], e["text"]) for e in self.plan),
                    diff=[dict(before_header=e["path"], after_header=e["path"], before=e["before"] or "",
                               after=e["text"] or "") for e in self.plan])

    def install(self, module):
        """Outside check mode, make every changed path what it should be: a file is written to a temporary file in
        its directory and fsynced, moved over the path with module.atomic_move (which keeps the SELinux context),
        given its mode, and its directory fsynced. Returns result()."""
        if not module.check_mode:
            for entry in self.plan:
                if entry["changed"]:
                    _apply(module, entry)
            if any(e["unit"] and e["before"] != e["text"] for e in self.plan) and systemd_running():
                systemctl(module, "daemon-reload")
        return self.result()


def _apply(module, entry):
    path, text = entry["path"], entry["text"]
    link = unit_link(path)
    if text is None:
        if entry["unit"]:
            _remove(link)
        _remove(path)
        return
    if entry["before"] != text:
        _install(module, path, text, entry["mode"])
    if entry["unit"] and not os.path.islink(link):
        if not os.path.isdir(os.path.dirname(link)):
            os.makedirs(os.path.dirname(link), 0o755)
        os.symlink(path, link)
        _fsync_dir(os.path.dirname(link))


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(module, path, text, mode):
    """Replace path with text in one rename, durably: the data reaches the disk before the rename, and the rename
    before returning (without both fsyncs a power loss can leave an empty file)."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".lvs-nat.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        module.atomic_move(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    os.chmod(path, mode)  # atomic_move gives a new file the umask's mode
    _fsync_dir(directory)


def _remove(path):
    """Remove path (when present) and make the removal durable."""
    if os.path.lexists(path):
        os.unlink(path)
        _fsync_dir(os.path.dirname(path) or ".")


@contextlib.contextmanager
def lock(name, timeout=None, directory=None):
    """Hold the exclusive lock `name` (the module's name) for the duration of a change, so that two overlapping
    runs on one host take turns instead of the last writer winning. Raises PersistError after timeout seconds
    (LOCK_TIMEOUT by default). The lock file lives in /run/lvs-nat/ (/tmp/lvs-nat/ where /run is missing)."""
    if not isinstance(name, str) or not _LOCK_NAME.fullmatch(name):
        raise ValueError("lock name must be lowercase letters, digits and _, not %r" % (name,))
    if directory is None:
        base = next((d for d in LOCK_DIRS if os.path.isdir(d) and os.access(d, os.W_OK)), LOCK_DIRS[-1])
        directory = os.path.join(base, "lvs-nat")
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    path = os.path.join(directory, name + ".lock")
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise PersistError("Another run of lvs.nat.%s on this host holds %s; gave up waiting after %g s" % (
                    name, path, timeout))
            time.sleep(0.05)
        yield path
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def _directive(value, what):
    if not isinstance(value, str) or not _DIRECTIVE.fullmatch(value):
        raise ValueError("unit_text: %s must be printable ASCII without '%%' or backslash, with no leading or "
                         "trailing blank, not %r" % (what, value))
    return value


def _unit_names(names, what):
    for name in names:
        if not isinstance(name, str) or not _UNIT_NAME.fullmatch(name):
            raise ValueError("unit_text: %s must list unit names (letters, digits and : _ . @ -), not %r" % (what, name))
    return " ".join(names)


def unit_text(module_name, description, command, after, before=("network-pre.target",), wants=("network-pre.target",)):
    """A oneshot boot unit running command (one command line, or a list of them, each its own ExecStart=, run in
    order until one fails) after the units in `after` and before those in `before`.

    Units ordered before network-pre.target run early, without systemd's default dependencies. Raises ValueError
    for a value that systemd would not keep exactly as given (newline, `%` specifier, backslash escape, a `$`
    not written `$$`).
    """
    if not isinstance(module_name, str) or not _MODULE_NAME.fullmatch(module_name):
        raise ValueError("unit_text: module_name must be lowercase letters, digits and _, not %r" % (module_name,))
    commands = [command] if isinstance(command, str) else list(command)
    if not commands:
        raise ValueError("unit_text: command must hold at least one command line")
    for i, line in enumerate(commands):
        if "$" in _directive(line, "command[%d]" % i).replace("$$", ""):
            raise ValueError("unit_text: command[%d] must write '$' as '$$' (systemd expands $NAME), not %r" % (
                i, line))
    early = "network-pre.target" in before
    return ("# Managed by lvs.nat.%s: edits here are overwritten.\n[Unit]\nDescription=%s\n%s"
            "Before=%s\nWants=%s\nAfter=%s\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n%s"
            "[Install]\nWantedBy=multi-user.target\n") % (
        module_name, _directive(description, "description"), "DefaultDependencies=no\n" if early else "",
        _unit_names(before, "before"), _unit_names(wants, "wants"), _unit_names(after, "after"),
        "".join("ExecStart=%s\n" % line for line in commands))
