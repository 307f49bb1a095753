# SPDX-License-Identifier: GPL-3.0-or-later
"""_persist: durable writes, the managed-header guard, the per-module lock, and unit text systemd keeps as given."""
from __future__ import annotations

import os
import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.module_utils import _persist

# Text that tries every trick: newlines, quotes, braces, '#', ';', '%', '$', backslash, unicode, up to 10 kB.
NASTY = st.one_of(
    st.text(max_size=10000),
    st.text(alphabet=st.sampled_from(list("abc019/._-:@+= \t\n\r'\"{}#;%$\\\x00é١")), max_size=80),
    st.sampled_from(["/etc/x\nExecStartPre=/bin/touch /tmp/x", "/etc/x;reboot", "/etc/%n", "/etc/$HOME", "/etc/a b",
                     "/etc/../x", "relative", "/etc/x\n", "/etc/x'y", "/etc/é"]),
)
SAFE_WORD = st.text(alphabet=st.sampled_from(list("abcXYZ019/._-:@+=,")), min_size=1, max_size=40)


def parse_unit(text):
    """(section, key, value) for each directive, as systemd reads a unit: one directive a line, split at '='."""
    section, out = None, []
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _sep, value = line.partition("=")
        out.append((section, key, value))
    return out


# path_problem


@given(NASTY)
def test_path_problem_refuses_naming_the_option_or_the_path_is_one_plain_word(path):
    problem = _persist.path_problem(path, "unit_path")
    if problem is not None:
        assert problem.startswith("unit_path must be an absolute path")
        return
    # Accepted: a shell and systemd take it as exactly one word, with nothing to expand.
    assert shlex.split("ExecStart=/bin/true %s" % path)[1:] == [path]
    assert path.startswith("/") and path.isascii() and path.isprintable()
    assert not set(path) & set(" \t\n\r'\"\\;%$`")
    assert "/../" not in path + "/"


@pytest.mark.parametrize("path", ["/etc/x\n", "/etc/x\nExecStartPre=/bin/touch /tmp/x", "/etc/%n", "/etc/a b",
                                  "/etc/x;reboot", "/etc/../x", "etc/x", "/etc/é", "/etc/١"])
def test_path_problem_examples(path):
    assert "unit_path must be" in _persist.path_problem(path, "unit_path")


# unit_text


@given(description=NASTY, commands=st.lists(NASTY, max_size=4))
def test_unit_text_refuses_naming_the_argument_or_every_directive_is_exactly_as_given(description, commands):
    try:
        text = _persist.unit_text("gateway_route", description, commands, ["network-online.target"],
                                  before=["multi-user.target"], wants=["network-online.target"])
    except ValueError as e:
        assert str(e).startswith(("unit_text: description", "unit_text: command"))
        return
    assert parse_unit(text) == [
        ("Unit", "Description", description), ("Unit", "Before", "multi-user.target"),
        ("Unit", "Wants", "network-online.target"), ("Unit", "After", "network-online.target"),
        ("Service", "Type", "oneshot"), ("Service", "RemainAfterExit", "yes")] + [
        ("Service", "ExecStart", c) for c in commands] + [("Install", "WantedBy", "multi-user.target")]
    # Nothing systemd would expand or strip.
    assert not any(set(v) & set("%\\") or v != v.strip() for _s, _k, v in parse_unit(text))
    assert not any("$" in c.replace("$$", "") for c in commands)


@given(st.lists(st.lists(SAFE_WORD, min_size=1, max_size=6).map(" ".join), min_size=1, max_size=5))
def test_unit_text_keeps_plain_command_lines_one_exec_start_each(commands):
    text = _persist.unit_text("gateway_route", "d", commands, ["a.target"])
    assert [v for _s, k, v in parse_unit(text) if k == "ExecStart"] == commands


def test_unit_text_one_command_as_before():
    # nat_rules and ipvs_save pass one command line as a string: the text is what release 0.1.0 wrote.
    text = _persist.unit_text("nat_rules", "lvs.nat netfilter rules (nftables)", "/usr/sbin/nft -f /etc/x",
                              ["nftables.service"])
    assert text == (
        "# Managed by lvs.nat.nat_rules: edits here are overwritten.\n[Unit]\nDescription=lvs.nat netfilter rules "
        "(nftables)\nDefaultDependencies=no\nBefore=network-pre.target\nWants=network-pre.target\n"
        "After=nftables.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/sbin/nft -f /etc/x\n"
        "[Install]\nWantedBy=multi-user.target\n")
    assert text == _persist.unit_text("nat_rules", "lvs.nat netfilter rules (nftables)", ["/usr/sbin/nft -f /etc/x"],
                                      ["nftables.service"])
    # ipvs_save's shell lines keep working: release 0.1.0's, and a script with "$$" for a literal "$".
    _persist.unit_text("ipvs_save", "d", "/bin/sh -c '/sbin/ipvsadm-restore < /etc/lvs-nat/ipvs.rules'", ["a.target"])
    text = _persist.unit_text("ipvs_save", "d", "/bin/sh -c 'exec 3< \"$$0\"' /x", ["a.target"])
    assert "\nExecStart=/bin/sh -c 'exec 3< \"$$0\"' /x\n" in text


@pytest.mark.parametrize("kwargs, message", [
    (dict(command=[]), "command must hold at least one"),
    (dict(command="a\nExecStartPre=/bin/touch /tmp/x"), "command[0]"),
    (dict(command=["/bin/true", "echo $HOME"]), "command[1] must write '$' as '$$'"),
    (dict(command="echo $$$HOME"), "command[0] must write '$' as '$$'"),
    (dict(command="echo 100%"), "command[0]"),
    (dict(description="a\nExecStartPre=/x"), "description"),
    (dict(after=["a.target\nExecStartPre=/x"]), "after must list unit names"),
    (dict(module_name="x\n"), "module_name"),
])
def test_unit_text_refuses(kwargs, message):
    args = dict(module_name="m", description="d", command="/bin/true", after=["a.target"])
    args.update(kwargs)
    with pytest.raises(ValueError) as e:
        _persist.unit_text(**args)
    assert message in str(e.value)


# durable writes


@pytest.fixture
def fsyncs(monkeypatch):
    """What each fsync call synced: 'dir:<path>' for a directory, 'file:<path>' for a file."""
    calls, real = [], os.fsync

    def fsync(fd):
        path = os.readlink("/proc/self/fd/%d" % fd)
        calls.append(("dir:" if os.path.isdir(path) else "file:") + path)
        real(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    return calls


class FakeModule(object):
    """What Owned uses of AnsibleModule; atomic_move records its calls."""

    def __init__(self, check_mode=False):
        self.check_mode, self.moves, self.commands = check_mode, [], []

    def atomic_move(self, src, dest):
        self.moves.append(dest)
        os.rename(src, dest)

    def get_bin_path(self, name, opt_dirs=None):
        return "/usr/bin/" + name

    def run_command(self, argv, **kwargs):
        self.commands.append(argv)
        return 0, "", ""


def test_install_syncs_the_data_moves_with_atomic_move_and_syncs_the_directory(tmp_path, fsyncs):
    target = tmp_path / "owned.conf"
    module = FakeModule()
    r = _persist.Owned(files=[("path", str(target), "# Managed by lvs.nat.x\nkey = 1\n", 0o600)]).install(module)
    assert r["changed"] and module.moves == [str(target)]
    assert target.read_text() == "# Managed by lvs.nat.x\nkey = 1\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    # The temporary file's data before the rename, then the directory holding the rename.
    assert [c.split(":")[0] for c in fsyncs] == ["file", "dir"]
    assert fsyncs[0].startswith("file:%s/.lvs-nat." % tmp_path)
    assert fsyncs[1] == "dir:%s" % tmp_path
    assert [p.name for p in tmp_path.iterdir()] == ["owned.conf"]
    assert r["diff"] == [dict(before_header=str(target), after_header=str(target), before="",
                              after="# Managed by lvs.nat.x\nkey = 1\n")]
    again = _persist.Owned(files=[("path", str(target), "# Managed by lvs.nat.x\nkey = 1\n", 0o600)])
    assert not again.changed and again.install(module)["changed"] is False and module.moves == [str(target)]


def test_the_mode_is_enforced_on_an_unchanged_text_s_replacement(tmp_path):
    target = tmp_path / "owned.conf"
    target.write_text("# Managed by lvs.nat.x\nold\n")
    target.chmod(0o644)
    _persist.Owned(files=[("path", str(target), "# Managed by lvs.nat.x\nnew\n", 0o600)]).install(FakeModule())
    assert oct(target.stat().st_mode & 0o777) == "0o600"


def test_removal_syncs_the_directory(tmp_path, fsyncs):
    target = tmp_path / "owned.conf"
    target.write_text("# Managed by lvs.nat.x\n")
    r = _persist.Owned(files=[("path", str(target), None, 0o644)]).install(FakeModule())
    assert r["changed"] and not target.exists()
    assert fsyncs == ["dir:%s" % tmp_path]
    assert r["diff"][0]["before"] == "# Managed by lvs.nat.x\n" and r["diff"][0]["after"] == ""


def test_check_mode_writes_nothing_and_diffs(tmp_path):
    target, unit = tmp_path / "owned.conf", tmp_path / "system" / "x.service"
    target.write_text("# Managed by lvs.nat.x\n")
    module = FakeModule(check_mode=True)
    r = _persist.Owned(files=[("path", str(target), None, 0o644)],
                       units=[("unit_path", str(unit), "# Managed by lvs.nat.x\n[Unit]\n")]).install(module)
    assert r["changed"] and target.exists() and not unit.exists() and module.moves == []
    assert [d["after"] for d in r["diff"]] == ["", "# Managed by lvs.nat.x\n[Unit]\n"]


def test_a_unit_is_enabled_then_disabled_and_removed(tmp_path):
    unit = str(tmp_path / "system" / "x.service")
    text = "# Managed by lvs.nat.x\n[Unit]\n"
    module = FakeModule()
    assert _persist.Owned(units=[("unit_path", unit, text)]).install(module)["changed"]
    assert os.path.islink(_persist.unit_link(unit)) and os.readlink(_persist.unit_link(unit)) == unit
    os.unlink(_persist.unit_link(unit))  # disabled by hand: the next run enables it again
    assert _persist.Owned(units=[("unit_path", unit, text)]).install(module)["changed"]
    assert os.path.islink(_persist.unit_link(unit))
    r = _persist.Owned(units=[("unit_path", unit, None)]).install(module)
    assert r["changed"] and not os.path.lexists(unit) and not os.path.lexists(_persist.unit_link(unit))
    assert not _persist.Owned(units=[("unit_path", unit, None)]).changed


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_foreign_file_is_refused_before_any_change_where_it_would_be_written(tmp_path, check_mode):
    mine, foreign = tmp_path / "mine.conf", tmp_path / "foreign.conf"
    mine.write_text("# Managed by lvs.nat.x\n")
    foreign.write_text("someone else's\n")
    with pytest.raises(_persist.PersistError) as e:
        _persist.Owned(files=[("path", str(mine), None, 0o644), ("other", str(foreign), "# Managed by lvs.nat.x\n", 0o644)])
    assert str(e.value).startswith("other: %s exists and is not managed by lvs.nat" % foreign)
    assert mine.exists() and foreign.read_text() == "someone else's\n"


def test_a_foreign_file_where_ours_would_be_removed_is_refused_too(tmp_path):
    foreign = tmp_path / "foreign.conf"
    foreign.write_text("someone else's\n")
    with pytest.raises(_persist.PersistError, match="^path: %s exists and is not managed" % foreign):
        _persist.Owned(files=[("path", str(foreign), None, 0o644)])
    assert foreign.read_text() == "someone else's\n"


def test_tool_path_for_a_unit_line(tmp_path):
    module = FakeModule()
    assert _persist.tool_path(module, "ip", "/sbin/ip") == "/usr/bin/ip"
    module.get_bin_path = lambda name, opt_dirs=None: None
    assert _persist.tool_path(module, "ip", "/sbin/ip") == "/sbin/ip"
    module.get_bin_path = lambda name, opt_dirs=None: "/opt/my tools/ip"
    assert _persist.tool_path(module, "ip", "/sbin/ip") == "/sbin/ip"


# the managed header


def headers_written_by_the_collection():
    from ansible_collections.lvs.nat.plugins.module_utils import _ipvs_save
    from ansible_collections.lvs.nat.plugins.modules import sysctl_forwarding
    sysctl, load = sysctl_forwarding.file_texts({"net.ipv4.ip_forward": "1"}, ["ip_vs"])
    return [_ipvs_save.HEADER + "--set 900 120 300\n", sysctl, load,
            _persist.unit_text("gateway_route", "d", ["/sbin/ip route replace default via 192.0.2.1"], ["a.target"])]


@pytest.mark.parametrize("text", headers_written_by_the_collection())
def test_files_the_collection_writes_are_managed(tmp_path, text):
    target = tmp_path / "f"
    target.write_text(text)
    assert _persist.managed(text)
    assert _persist.foreign_problem(str(target), "path") is None


def test_absent_file_is_free(tmp_path):
    assert _persist.foreign_problem(str(tmp_path / "none"), "path") is None


@pytest.mark.parametrize("text", ["net.ipv4.tcp_syncookies = 0\n", "", "\n" * 5 + "# Managed by lvs.nat.x\n",
                                  "# Managed by someone else\n", b"\xff\xfe# binary"])
def test_foreign_file_is_refused_naming_option_and_path(tmp_path, text):
    target = tmp_path / "foreign.conf"
    (target.write_bytes if isinstance(text, bytes) else target.write_text)(text)
    problem = _persist.foreign_problem(str(target), "modules_load_path")
    assert problem.startswith("modules_load_path: %s exists and is not managed by lvs.nat" % target)
    assert _persist.foreign_problems([("path", str(tmp_path / "none")), ("modules_load_path", str(target))]) == \
        [problem]


def test_header_on_a_later_first_line_counts(tmp_path):
    target = tmp_path / "f"
    target.write_text("#!/bin/sh\n# Managed by lvs.nat.x: edits here are overwritten.\n")
    assert _persist.foreign_problem(str(target), "path") is None


def test_a_mark_of_an_earlier_release_counts_where_given(tmp_path):
    target = tmp_path / "nat-rules"
    target.write_text("table inet lvs_nat {}\ndelete table inet lvs_nat\n")
    assert "exists and is not managed" in _persist.foreign_problem(str(target), "path")
    assert _persist.foreign_problem(str(target), "path", also=("table inet lvs_nat {}",)) is None
    assert _persist.foreign_problems([("path", str(target))], also=("table inet lvs_nat {}",)) == []


def test_a_directory_or_a_dangling_link_is_foreign(tmp_path):
    (tmp_path / "d").mkdir()
    os.symlink(str(tmp_path / "nowhere"), str(tmp_path / "l"))
    assert "path: %s/d exists and is not managed" % tmp_path in _persist.foreign_problem(str(tmp_path / "d"), "path")
    assert "exists and is not managed" in _persist.foreign_problem(str(tmp_path / "l"), "path")


# the lock


def test_lock_is_exclusive_and_times_out_with_a_clear_message(tmp_path):
    with _persist.lock("gateway_route", directory=str(tmp_path)) as path:
        assert path == str(tmp_path / "gateway_route.lock")
        with pytest.raises(_persist.PersistError) as e:
            with _persist.lock("gateway_route", timeout=0.2, directory=str(tmp_path)):
                pass  # pragma: no cover
        assert str(e.value) == ("Another run of lvs.nat.gateway_route on this host holds %s; gave up waiting after "
                                "0.2 s" % path)
        with _persist.lock("sysctl_forwarding", timeout=0.2, directory=str(tmp_path)):
            pass  # another module's lock is another file
    with _persist.lock("gateway_route", timeout=0.2, directory=str(tmp_path)):
        pass  # released on leaving


def test_lock_is_released_when_the_body_fails(tmp_path):
    with pytest.raises(SystemExit):
        with _persist.lock("x", directory=str(tmp_path)):
            raise SystemExit(1)  # what fail_json does
    with _persist.lock("x", timeout=0.1, directory=str(tmp_path)):
        pass


def test_lock_is_held_across_processes(tmp_path):
    import subprocess
    import sys
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(%r, os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
        "print('held', flush=True); sys.stdin.read()") % str(tmp_path / "sysctl_forwarding.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(_persist.PersistError):
            with _persist.lock("sysctl_forwarding", timeout=0.2, directory=str(tmp_path)):
                pass  # pragma: no cover
    finally:
        holder.stdin.close()
        holder.wait(10)
    with _persist.lock("sysctl_forwarding", timeout=5, directory=str(tmp_path)):
        pass


def test_lock_lives_in_run_else_tmp(tmp_path, monkeypatch):
    run, tmp = tmp_path / "run", tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(_persist, "LOCK_DIRS", (str(run), str(tmp)))
    with _persist.lock("x") as path:
        assert path == str(tmp / "lvs-nat" / "x.lock")
    run.mkdir()
    with _persist.lock("x") as path:
        assert path == str(run / "lvs-nat" / "x.lock")


@pytest.mark.parametrize("name", ["", "../x", "a/b", "x\n", "X"])
def test_lock_name_is_checked(tmp_path, name):
    with pytest.raises(ValueError):
        with _persist.lock(name, directory=str(tmp_path)):
            pass  # pragma: no cover


# -- asking systemd: the one systemctl of every module

class Systemctl(object):
    """A module whose run_command answers systemctl is-active / is-enabled with the given words."""

    def __init__(self, active="active", enabled="enabled"):
        self.words, self.calls, self.check_mode = dict(active=active, enabled=enabled), [], False

    def get_bin_path(self, name, *args, **kwargs):
        return "/usr/bin/" + name

    def run_command(self, argv, **kwargs):
        self.calls.append(argv[1:])
        word = self.words["active" if argv[1] == "is-active" else "enabled"]
        return (0 if word in ("active", "enabled") else 3), word + "\n", ""


@pytest.mark.parametrize("word", ["active", "reloading", "activating", "failed", "inactive"])
def test_active_state_is_systemctl_s_word(tmp_path, monkeypatch, word):
    monkeypatch.setattr(_persist, "SYSTEMD_RUNNING", str(tmp_path))
    module = Systemctl(active=word)
    assert _persist.active_state(module, "x.service") == word
    assert module.calls == [["is-active", "x.service"]]
    assert (word in _persist.ACTIVE) == (word in ("active", "reloading"))  # what `systemctl is-active` exits 0 for


def test_without_systemd_a_unit_is_inactive_and_systemctl_is_not_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(_persist, "SYSTEMD_RUNNING", str(tmp_path / "none"))
    module = Systemctl()
    assert not _persist.systemd_running() and _persist.active_state(module, "x.service") == "inactive"
    assert module.calls == []


@pytest.mark.parametrize("word, enabled", [("enabled", True), ("disabled", False), ("masked", False), ("", False)])
def test_unit_enabled_reads_is_enabled_also_without_systemd(tmp_path, monkeypatch, word, enabled):
    monkeypatch.setattr(_persist, "SYSTEMD_RUNNING", str(tmp_path / "none"))
    module = Systemctl(enabled=word)
    assert _persist.unit_enabled(module, "x.service") is enabled
    assert module.calls == [["is-enabled", "x.service"]]
