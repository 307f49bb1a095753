# SPDX-License-Identifier: GPL-3.0-or-later
"""ipvs_save: the saved text does not depend on the order the kernel lists the table in; only the owned services are
saved; the boot unit applies each saved line on its own, never flushes, and fails when a line failed; paths that
would break the unit's command line are refused before anything is read or written."""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import stat
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs, _ipvs_save, _persist
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import InvalidInput
from ansible_collections.lvs.nat.plugins.modules import ipvs_save

ROOT = Path(__file__).resolve().parents[4]
TIMEOUTS = {"tcp": 900, "tcp_fin": 120, "udp": 300}
VIP = "198.51.100.10"


def service(port, *rips, protocol="tcp", fwmark=0, address=VIP, family="ipv4"):
    return {"family": family, "protocol": None if fwmark else protocol, "address": None if fwmark else address,
            "port": None if fwmark else port, "fwmark": fwmark, "scheduler": "wrr", "scheduler_flags": [],
            "persistence_timeout": 0, "persistence_prefix": 128 if family == "ipv6" else 32, "one_packet": False,
            "real_servers": [{"address": rip, "port": 80, "forwarding": "masq", "weight": 1, "upper_threshold": 0,
                              "lower_threshold": 0} for rip in rips]}


def test_render_is_independent_of_the_kernels_listing_order():
    table = [service(8080, "198.51.100.102", "198.51.100.101"), service(80, "198.51.100.101", "198.51.100.102"),
             service(0, "198.51.100.101", fwmark=7), service(53, "198.51.100.101", protocol="udp")]
    outputs = set()
    for order in itertools.permutations(table):
        reversed_dests = [dict(s, real_servers=s["real_servers"][::-1]) for s in order]
        outputs.add(tuple(_ipvs_save.render(list(order), TIMEOUTS)))
        outputs.add(tuple(_ipvs_save.render(reversed_dests, TIMEOUTS)))
    assert len(outputs) == 1
    lines = outputs.pop()
    assert lines[0] == "--set 900 120 300"
    # Numeric order (port 80 before 8080), each service's real servers right after it, by address.
    assert lines.index("-A -t 198.51.100.10:80 -s wrr") < lines.index("-A -t 198.51.100.10:8080 -s wrr")
    first = lines.index("-A -t 198.51.100.10:8080 -s wrr")
    assert lines[first + 1].startswith("-a -t 198.51.100.10:8080 -r 198.51.100.101:80")
    assert lines[first + 2].startswith("-a -t 198.51.100.10:8080 -r 198.51.100.102:80")


# -- which services are owned

KERNEL = [service(80, "198.51.100.101"), service(53, "198.51.100.101", protocol="udp"),
          service(9999, "198.51.100.101", address="198.51.100.99"),  # a foreign service, made by hand
          service(443, "2001:db8:1::101", address="2001:db8::10", family="ipv6"),
          service(0, "198.51.100.101", fwmark=7), service(0, "2001:db8:1::101", fwmark=7, family="ipv6"),
          service(0, "198.51.100.102", fwmark=8)]


def keys(table):
    return sorted(_ipvs_save.service_option(s) for s in table)


def params(**kw):
    return dict(dict(state="present", addresses=None, fwmarks=None, path="/etc/lvs-nat/ipvs.rules",
                     unit_path="/etc/systemd/system/lvs-nat-ipvs.service"), **kw)


@pytest.mark.parametrize("addresses, fwmarks, expected", [
    ([VIP], None, ["-t 198.51.100.10:80", "-u 198.51.100.10:53"]),
    ([VIP], [7], ["-f 7", "-f 7 -6", "-t 198.51.100.10:80", "-u 198.51.100.10:53"]),
    (None, [8], ["-f 8"]),
    # The same address however written.
    (["2001:DB8:0::10"], [], ["-t [2001:db8::10]:443"]),
    ([], [], []),
    ([], None, []),
    (["198.51.100.11"], [9], []),
])
def test_only_the_owned_services_are_saved(addresses, fwmarks, expected):
    selected = ipvs_save.check(params(addresses=addresses, fwmarks=fwmarks))
    assert keys(ipvs_save.owned(KERNEL, selected)) == expected
    assert not any("198.51.100.99" in line for line in _ipvs_save.render(ipvs_save.owned(KERNEL, selected), TIMEOUTS))


def test_without_a_selection_the_whole_table_is_saved():
    # Neither option: the behaviour of earlier versions, as documented.
    assert keys(ipvs_save.owned(KERNEL, ipvs_save.check(params()))) == keys(KERNEL)


@pytest.mark.parametrize("kw, option", [
    (dict(addresses=["198.51.100.10\n"]), "addresses[0]"),
    (dict(addresses=[VIP, "fe80::1%eth0"]), "addresses[1]"),
    (dict(addresses=["\uff11\uff19\uff18.51.100.10"]), "addresses[0]"),  # fullwidth digits
    (dict(addresses=["vip"]), "addresses[0]"),
    (dict(addresses=["198.51.100.0/24"]), "addresses[0]"),
    (dict(fwmarks=[7, 0]), "fwmarks[1]"),
    (dict(fwmarks=[2 ** 32]), "fwmarks[0]"),
    (dict(path="/etc/lvs-nat/ipvs rules"), "path"),
    (dict(path="/etc/lvs-nat/ipvs.rules\nExecStartPre=/bin/touch /tmp/x"), "path"),
    (dict(path="/etc/lvs-nat/ipvs.rules';touch /tmp/y;'"), "path"),
    (dict(path="/etc/lvs-nat/%n.rules"), "path"),
    (dict(path="/etc/lvs-nat/$HOME"), "path"),
    (dict(path="etc/lvs-nat/ipvs.rules"), "path"),
    (dict(unit_path="/etc/systemd/system/lvs nat.service"), "unit_path"),
])
def test_bad_options_are_refused_naming_the_option(kw, option):
    with pytest.raises(InvalidInput) as e:
        ipvs_save.check(params(**kw))
    assert str(e.value).startswith(option)


# -- the module run, against a fake kernel session

class FakeSession(object):
    """_ipvs.Session(module) over a fixed table; records that it was opened, and whether under the module's lock."""
    opened = []
    loaded = True

    def __init__(self, module):
        assert module.params["state"] == "present"
        FakeSession.opened.append(Locks.held)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def table(self, counters=True):
        return [dict(s) for s in KERNEL]

    def timeouts(self):
        return dict(TIMEOUTS)


class Locks(object):
    held = None
    taken = []


@contextlib.contextmanager
def fake_lock(name, *args, **kwargs):
    Locks.taken.append(name)
    Locks.held = name
    try:
        yield name
    finally:
        Locks.held = None


@pytest.fixture
def fake_kernel(monkeypatch):
    FakeSession.opened = []
    Locks.taken = []
    monkeypatch.setattr(_ipvs, "Session", FakeSession)
    monkeypatch.setattr(_persist, "lock", fake_lock)
    return FakeSession


def run(args, check_mode=False):
    with patch_module_args(dict(args, _ansible_check_mode=check_mode, _ansible_diff=True)):
        module = ipvs_save.build_module()
    return ipvs_save.run(module)


def unit_lines(text, key):
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def systemd_words(value):
    """An ExecStart= value split as systemd does it, for the subset of its syntax a unit of ours may use: words
    separated by blanks, single or double quotes, $$ for $, %% for %. Anything else (backslash escapes, a lone $ or %
    that systemd would expand) raises ValueError: systemd would not pass what was written."""
    words, i = [], 0
    while True:
        while i < len(value) and value[i] in " \t":
            i += 1
        if i >= len(value):
            return words
        word = ""
        while i < len(value) and value[i] not in " \t":
            if value[i] in "'\"":
                end = value.index(value[i], i + 1)  # ValueError when unbalanced
                word += value[i + 1:end]
                i = end + 1
            elif value[i] == "\\":
                raise ValueError("backslash escape")
            else:
                word += value[i]
                i += 1
        if re.search(r"(?<!\$)(\$\$)*\$(?!\$)", word) or re.search(r"(?<!%)(%%)*%(?!%)", word):
            raise ValueError("a $ or % that systemd expands")
        words.append(word.replace("$$", "$").replace("%%", "%"))


def test_run_saves_the_owned_services_and_a_unit_that_restores_the_file(fake_kernel, tmp_path):
    path, unit_path = str(tmp_path / "ipvs.rules"), str(tmp_path / "system" / "lvs-nat-ipvs.service")
    args = dict(addresses=[VIP], fwmarks=[7], path=path, unit_path=unit_path)
    r = run(args, check_mode=True)
    assert r["changed"] and not os.path.exists(path) and not os.path.exists(unit_path)
    r = run(args)
    text = Path(path).read_text()
    assert r["changed"] and text == _ipvs_save.HEADER + "\n".join(r["rules"]) + "\n"
    assert r["rules"][0] == "--set 900 120 300"
    assert "-A -t 198.51.100.10:80 -s wrr" in r["rules"] and "-A -f 7 -6 -s wrr" in r["rules"]
    assert not [line for line in r["rules"] if "198.51.100.99" in line or "-f 8" in line or "2001:db8::10" in line]
    # The saved services come back as data, in the file's order, without counters (the role's verify phase uses them).
    named = [(s["protocol"], s["address"], s["port"], s["fwmark"], s["family"]) for s in r["services"]]
    assert [line.split(" -s ")[0] for line in r["rules"] if line.startswith("-A ")] == [
        "-A " + _ipvs_save.service_option(s) for s in r["services"]]
    assert ("tcp", VIP, 80, 0, "ipv4") in named and (None, None, None, 7, "ipv6") in named and len(named) == len(set(named))
    assert all("stats" not in s and all("active_conns" not in d for d in s["real_servers"]) for s in r["services"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    unit = Path(unit_path).read_text()
    [exec_start] = unit_lines(unit, "ExecStart")
    assert systemd_words(exec_start) == ["/bin/sh", "-c", _ipvs_save.RESTORE_SCRIPT, path]
    assert "ipvsadm-restore" not in unit and "-C" not in _ipvs_save.RESTORE_SCRIPT
    assert unit_lines(unit, "Type") == ["oneshot"] and unit_lines(unit, "WantedBy") == ["multi-user.target"]
    assert os.path.islink(str(tmp_path / "system" / "multi-user.target.wants" / "lvs-nat-ipvs.service"))
    assert run(args)["changed"] is False
    # The kernel was read, and the files written, under the module's lock.
    assert fake_kernel.opened == ["ipvs_save"] * 3 and Locks.taken == ["ipvs_save"] * 3
    r = run(dict(args, state="absent"))
    assert r["changed"] and not os.path.exists(path) and not os.path.exists(unit_path)


def test_the_unit_passes_systemd_analyze_verify(fake_kernel, tmp_path):
    unit_path = tmp_path / "lvs-nat-ipvs.service"
    run(dict(addresses=[VIP], path=str(tmp_path / "ipvs.rules"), unit_path=str(unit_path)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("option", ["path", "unit_path"])
def test_a_bad_path_fails_before_anything_is_read_or_written(fake_kernel, tmp_path, option, check_mode):
    args = dict(addresses=[VIP], path=str(tmp_path / "ipvs.rules"), unit_path=str(tmp_path / "u.service"))
    args[option] = str(tmp_path / "x\nExecStartPre=/bin/touch") + " /tmp/lvs-nat-injected"
    with pytest.raises(InvalidInput, match="^%s must be" % option):
        run(args, check_mode=check_mode)
    assert list(tmp_path.iterdir()) == [] and fake_kernel.opened == [] and Locks.taken == []


@given(st.one_of(st.text(max_size=10000), st.text(alphabet="/a.-_ \n\t'\"\\;%$#{}\u00e9\x00:", max_size=60),
                 st.from_regex(r"/[A-Za-z0-9_./+,@=:%$;' -]{0,40}", fullmatch=True)))
def test_any_path_is_refused_or_reaches_the_unit_as_exactly_one_word(value):
    for option in ("path", "unit_path"):
        try:
            ipvs_save.check(params(**{option: value}))
        except InvalidInput as e:
            assert str(e).startswith(option + " must be")
            continue
        unit = _persist.unit_text("ipvs_save", "d", _ipvs_save.restore_command(value), ["local-fs.target"])
        [exec_start] = unit_lines(unit, "ExecStart")
        assert systemd_words(exec_start) == ["/bin/sh", "-c", _ipvs_save.RESTORE_SCRIPT, value]
        assert len(unit.splitlines()) == len(_persist.unit_text("ipvs_save", "d", "/bin/true", ["local-fs.target"])
                                             .splitlines())
        assert os.path.isabs(value) and "\n" not in value


# -- the restore, run by a shell as systemd would start it, with a fake ipvsadm first in PATH

FAKE_IPVSADM = """#!/bin/sh
# Records each call; -E/-e succeed only when EXISTING is set (a restart on a running director); -A/-a/--set succeed
# unless given the scheduler "broken".
echo "$*" >> "$LOG"
case "$1" in
  -E|-e) [ -n "$EXISTING" ] || { echo "No such service" >&2; exit 1; } ;;
esac
case " $* " in
  *" -s broken "*) echo "Scheduler not found" >&2; exit 2 ;;
esac
exit 0
"""


@pytest.fixture
def restore(tmp_path, fake_kernel):
    """Runs the unit's ExecStart= on a saved file, the fake ipvsadm first in PATH; returns (status, calls, stderr)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ipvsadm").write_text(FAKE_IPVSADM)
    (bindir / "ipvsadm").chmod(0o755)
    path, unit_path = tmp_path / "ipvs.rules", tmp_path / "system" / "lvs-nat-ipvs.service"
    run(dict(addresses=[VIP], fwmarks=[7], path=str(path), unit_path=str(unit_path)))
    [exec_start] = unit_lines(unit_path.read_text(), "ExecStart")

    def do(edit=None, existing=False, shell=None):
        if edit:
            path.write_text(edit(path.read_text()))
        log = tmp_path / "calls"
        if log.exists():
            log.unlink()
        argv = systemd_words(exec_start)
        if shell:
            argv[0] = shell
        env = dict(PATH="%s:/usr/sbin:/usr/bin:/sbin:/bin" % bindir, LOG=str(log), EXISTING="1" if existing else "")
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=60)
        calls = log.read_text().splitlines() if log.exists() else []
        return proc.returncode, calls, proc.stderr
    do.saved = lambda: [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return do


def boot_calls(lines):
    """What a boot (nothing exists) runs for the saved lines: an edit that fails, then the add."""
    calls = []
    for line in lines:
        op, rest = line.split(" ", 1)
        calls += {"-A": ["-E " + rest, "-A " + rest], "-a": ["-e " + rest, "-a " + rest]}.get(op, [line])
    return calls


@pytest.mark.parametrize("shell", [None, "/bin/bash"])
def test_restore_applies_every_line_and_exits_zero(restore, shell):
    status, calls, stderr = restore(shell=shell)
    assert status == 0, stderr
    assert calls == boot_calls(restore.saved())


def test_a_broken_line_in_the_middle_fails_the_unit_but_every_other_line_is_applied(restore):
    saved = restore.saved()
    middle = len(saved) // 2
    broken = "-A -t 198.51.100.10:81 -s broken"

    def edit(text):
        lines = text.splitlines()
        lines.insert(len(lines) - len(saved) + middle, broken)
        return "\n".join(lines) + "\n"
    status, calls, stderr = restore(edit)
    assert status != 0
    # Every saved line was applied, the broken one was tried, in file order.
    assert calls == boot_calls(saved[:middle] + [broken] + saved[middle:])
    assert "lvs-nat-ipvs: failed: " + broken in stderr and "Scheduler not found" in stderr


def test_restore_never_flushes_and_refuses_lines_it_did_not_write(restore):
    saved = restore.saved()
    status, calls, stderr = restore(lambda text: text.replace("--set", "-C\n--set") + "-D -t 198.51.100.10:80\n")
    assert status != 0
    assert not [c for c in calls if c.startswith(("-C", "-D"))]
    assert calls == boot_calls(saved)
    assert "failed: -C" in stderr and "failed: -D -t 198.51.100.10:80" in stderr


def test_restart_on_a_running_director_edits_what_exists_and_succeeds(restore):
    status, calls, stderr = restore(existing=True)
    assert status == 0, stderr
    assert not [c for c in calls if c.startswith(("-A", "-a"))]
    assert len(calls) == len(restore.saved())


def test_restore_reads_a_last_line_without_newline_and_skips_blank_lines(restore):
    saved = restore.saved()
    status, calls, stderr = restore(lambda text: text.replace("\n-A", "\n\n   \n-A", 1).rstrip("\n"))
    assert status == 0, stderr
    assert calls == boot_calls(saved)


@pytest.mark.parametrize("shell", [None, "/bin/bash"])
def test_restore_of_a_missing_file_fails(restore, tmp_path, shell):
    (tmp_path / "ipvs.rules").unlink()
    status, calls = restore(shell=shell)[:2]
    assert status != 0 and calls == []


# -- the director role passes its VIP and its declared marks

def test_the_director_role_saves_its_vip_and_declared_fwmarks():
    tasks = []
    for path in sorted((ROOT / "roles/director").glob("*/*.yml")):
        tasks += [t for t in yaml.safe_load(path.read_text()) or [] if isinstance(t, dict)]
    calls = [t["lvs.nat.ipvs_save"] for t in tasks if "lvs.nat.ipvs_save" in t]
    assert calls
    env = jinja2.Environment()
    services = [dict(protocol="tcp", port=80), dict(fwmark=7), dict(fwmark=9, scheduler="sh")]
    skip = [dict(protocol="tcp", address=VIP, port=80)]
    variables = dict(director_vip=VIP, director_services=services, _director_services=services,
                     _director_plan=dict(skip=skip))
    for call in calls:
        rendered = {k: env.from_string(v if isinstance(v, str) else yaml.safe_dump(v)).render(variables)
                    for k, v in call.items()}
        assert yaml.safe_load(rendered["addresses"]) == [VIP]
        assert yaml.safe_load(rendered["fwmarks"]) == [7, 9]
        # lvs-nat-healthd's services are not saved (director_plan's skip).
        assert yaml.safe_load(rendered["skip"].replace("'", '"')) == skip


def test_absent_removes_the_file_and_the_unit_without_reading_the_kernel(fake_kernel, tmp_path):
    path, unit_path = tmp_path / "ipvs.rules", tmp_path / "system" / "lvs-nat-ipvs.service"
    args = dict(addresses=[VIP], path=str(path), unit_path=str(unit_path))
    run(args)
    fake_kernel.opened = []
    r = run(dict(args, state="absent"), check_mode=True)
    assert r["changed"] and path.exists() and unit_path.exists() and r["rules"] == []
    assert [d["after"] for d in r["diff"]] == ["", ""] and r["diff"][0]["before"].startswith(_ipvs_save.HEADER)
    r = run(dict(args, state="absent"))
    assert r["changed"] and not path.exists() and not unit_path.exists()
    assert not (tmp_path / "system" / "multi-user.target.wants" / "lvs-nat-ipvs.service").is_symlink()
    assert fake_kernel.opened == [] and run(dict(args, state="absent"))["changed"] is False


def test_skipped_services_are_not_saved(fake_kernel, tmp_path):
    # lvs-nat-healthd's services: on the owned address, yet not saved (their real servers are health, not
    # configuration); a bad key is named before anything is read.
    path, unit_path = str(tmp_path / "ipvs.rules"), str(tmp_path / "lvs-nat-ipvs.service")
    args = dict(addresses=[VIP], path=path, unit_path=unit_path, skip=[{"protocol": "tcp", "address": VIP, "port": 80}])
    r = run(args)
    assert r["rules"] and not [line for line in r["rules"] if "198.51.100.10:80 " in line + " "], r["rules"]
    assert [s for s in r["services"] if s["address"] == VIP] and not [s for s in r["services"] if s["port"] == 80]
    with pytest.raises(InvalidInput, match=r"^skip\[0\]: address='x' is not an IPv4"):
        run(dict(args, skip=[{"address": "x", "port": 80}]))
