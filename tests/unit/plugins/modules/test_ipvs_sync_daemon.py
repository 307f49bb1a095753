# SPDX-License-Identifier: GPL-3.0-or-later
"""ipvs_sync_daemon's run() against a fake kernel (module_fakes.DaemonSession) with its boot unit in a tmp dir: check
mode predicts and changes nothing; a second run changes nothing; a daemon with other settings is restarted, alone; one
not listed is stopped; absent stops all and removes the unit; bad input and a missing interface fail naming the option
before any change; every value reaching the unit is refused or parses back exactly (Hypothesis)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex

import module_fakes
import pytest
from ansible.module_utils.testing import patch_module_args
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs, _persist
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import InvalidInput
from ansible_collections.lvs.nat.plugins.modules import ipvs_sync_daemon as M

MASTER = dict(mode="master", interface="eth2", sync_id=51)
BACKUP = dict(mode="backup", interface="eth2", sync_id=51)
DEFAULTS = dict(max_len=1472, group="224.0.1.81", port=8848, ttl=1)


def held(entry, **kw):
    """A daemon as the kernel holds it."""
    return dict(dict(DEFAULTS, **entry), **kw)


@pytest.fixture
def host(tmp_path, monkeypatch):
    """The unit under tmp_path, no running systemd, the lock faked, an empty fake kernel with eth1 and eth2."""
    unit = tmp_path / "etc/systemd/system/lvs-nat-sync.service"
    monkeypatch.setattr(M, "UNIT_PATH", str(unit))
    monkeypatch.setattr(_persist, "lock", lambda name, *a, **kw: contextlib.nullcontext(name))
    kernel = module_fakes.DaemonSession()
    monkeypatch.setattr(_ipvs, "Session", kernel)
    return dict(unit=unit, link=unit.parent / "multi-user.target.wants" / unit.name, kernel=kernel)


def module(check_mode=False, **args):
    with patch_module_args(dict(args, _ansible_check_mode=check_mode, _ansible_diff=True)):
        m = M.build_module()
    m.get_bin_path = lambda name, *a, **kw: "/usr/sbin/" + name
    m.run_command = lambda argv, **kw: pytest.fail("no command runs without systemd: %r" % (argv,))
    return m


def run(check_mode=False, **args):
    return M.run(module(check_mode, **args))


def test_check_mode_predicts_then_the_run_starts_both_and_a_second_run_changes_nothing(host):
    kernel = host["kernel"]
    predicted = run(True, daemons=[MASTER, BACKUP])
    assert predicted["changed"] and predicted["daemons"] == [held(MASTER), held(BACKUP)]
    assert kernel.calls == [] and not host["unit"].exists()
    assert predicted["diff"][0] == dict(before=[], after=[held(MASTER), held(BACKUP)])
    assert predicted["diff"][1]["after"].startswith("# Managed by lvs.nat.ipvs_sync_daemon")
    done = run(daemons=[MASTER, BACKUP])
    assert done == predicted  # the kernel then holds what check mode predicted; the unit is what it showed
    assert kernel.calls == [("start", held(MASTER, max_len=None)), ("start", held(BACKUP, max_len=None))]
    assert host["unit"].read_text() == predicted["diff"][1]["after"] and os.path.islink(host["link"])
    again = run(daemons=[MASTER, BACKUP])
    assert not again["changed"] and len(kernel.calls) == 2
    assert again["diff"][0] == dict(before=[held(MASTER), held(BACKUP)], after=[held(MASTER), held(BACKUP)])


def test_the_unit_loads_ip_vs_then_starts_each_daemon_after_the_network_and_before_keepalived(host):
    run(daemons=[BACKUP, dict(MASTER, max_len=1200, group="239.0.0.5", port=9000, ttl=3)])
    text = host["unit"].read_text()
    assert [line for line in text.splitlines() if line.startswith("ExecStart=")] == [
        "ExecStart=/usr/sbin/modprobe ip_vs",
        "ExecStart=/usr/sbin/ipvsadm --start-daemon master --mcast-interface=eth2 --syncid=51 --sync-maxlen=1200 "
        "--mcast-group=239.0.0.5 --mcast-port=9000 --mcast-ttl=3",
        "ExecStart=/usr/sbin/ipvsadm --start-daemon backup --mcast-interface=eth2 --syncid=51 --mcast-group=224.0.1.81 "
        "--mcast-port=8848 --mcast-ttl=1"]
    for line in ("After=systemd-modules-load.service network-online.target", "Wants=network-online.target",
                 "Before=keepalived.service", "Type=oneshot", "RemainAfterExit=yes", "WantedBy=multi-user.target"):
        assert line in text.splitlines()
    assert "DefaultDependencies=no" not in text


def test_a_changed_sync_id_restarts_that_daemon_only(host):
    kernel = host["kernel"]
    kernel.held = {"master": held(MASTER), "backup": held(BACKUP)}
    result = run(daemons=[dict(MASTER, sync_id=52), BACKUP])
    assert result["changed"] and result["daemons"] == [held(MASTER, sync_id=52), held(BACKUP)]
    assert kernel.calls == [("stop", "master"), ("start", held(MASTER, sync_id=52, max_len=None))]


def test_a_daemon_not_listed_is_stopped_and_absent_stops_all_and_removes_the_unit(host):
    kernel = host["kernel"]
    run(daemons=[MASTER, BACKUP])
    result = run(daemons=[BACKUP])
    assert result["daemons"] == [held(BACKUP)] and kernel.calls[-1] == ("stop", "master")
    predicted = run(True, state="absent")
    assert predicted["changed"] and predicted["daemons"] == [] and host["unit"].exists()
    result = run(state="absent")
    assert result == predicted and kernel.held == {}
    assert not host["unit"].exists() and not os.path.lexists(host["link"])
    assert not run(state="absent")["changed"]


def test_a_left_out_max_len_keeps_the_running_value_and_a_given_one_restarts(host):
    kernel = host["kernel"]
    kernel.held = {"backup": held(BACKUP, max_len=8972)}  # the kernel's choice on an interface with MTU 9000
    assert not run(daemons=[BACKUP], persistent=False)["changed"]
    result = run(daemons=[dict(BACKUP, max_len=1472)], persistent=False)
    assert result["changed"] and result["daemons"] == [held(BACKUP, max_len=1472)]


def test_check_mode_predicts_the_backups_max_len_from_its_interfaces_mtu(host):
    host["kernel"].interfaces["eth2"] = 9000
    assert run(True, daemons=[BACKUP], persistent=False)["daemons"] == [held(BACKUP, max_len=8972)]
    assert run(daemons=[BACKUP], persistent=False)["daemons"] == [held(BACKUP, max_len=8972)]


def test_persistent_false_removes_the_unit_and_keeps_the_daemons(host):
    run(daemons=[MASTER])
    result = run(daemons=[MASTER], persistent=False)
    assert result["changed"] and result["daemons"] == [held(MASTER)] and not host["unit"].exists()


@pytest.mark.parametrize("daemons, message", [
    ([dict(MASTER, interface="eth 2")], "daemons[0].interface='eth 2' is not an interface name"),
    ([MASTER, dict(BACKUP, interface="eth2\n")], "daemons[1].interface='eth2\\n' is not an interface name"),
    ([dict(MASTER, interface="a" * 16)], "daemons[0].interface='aaaaaaaaaaaaaaaa' is not an interface name"),
    ([dict(MASTER, sync_id=256)], "daemons[0].sync_id=256 is out of range: it must be between 0 and 255"),
    ([dict(MASTER, port=0)], "daemons[0].port=0 is out of range: it must be between 1 and 65535"),
    ([dict(MASTER, ttl=256)], "daemons[0].ttl=256 is out of range: it must be between 1 and 255"),
    ([dict(BACKUP, max_len=1000)], "daemons[0].max_len=1000 is out of range: it must be between 1024 and 65507"),
    ([dict(MASTER, max_len=65500, group="ff02::81")], "daemons[0].max_len=65500 is out of range: it must be between 1 and 65487"),
    ([dict(MASTER, group="198.51.100.10")], "daemons[0].group='198.51.100.10' is not a multicast address"),
    ([dict(MASTER, group="224.0.1.81; reboot")], "daemons[0].group='224.0.1.81; reboot' is not an IPv4 or IPv6 address"),
    ([dict(MASTER, group="ff02::81%eth2")], "daemons[0].group='ff02::81%eth2' is a scoped address"),
    ([MASTER, dict(BACKUP, mode="master")], "daemons[1].mode=master: daemons[0] is the master daemon already"),
])
def test_bad_input_fails_naming_the_option_before_any_change(host, daemons, message):
    with pytest.raises(InvalidInput) as e:
        M.run(module(daemons=daemons))
    assert str(e.value).startswith(message), str(e.value)
    assert host["kernel"].opened == 0 and not host["unit"].exists()


def test_a_missing_interface_fails_naming_it_before_the_daemon_it_replaces_is_stopped(host):
    kernel = host["kernel"]
    kernel.held = {"master": held(MASTER)}
    with pytest.raises(InvalidInput, match=r"^daemons\[0\]\.interface=eth9: this host has no such interface$"):
        run(daemons=[dict(MASTER, interface="eth9")])
    assert kernel.calls == [] and kernel.held == {"master": held(MASTER)} and not host["unit"].exists()


def test_a_foreign_unit_fails_before_any_change(host):
    host["unit"].parent.mkdir(parents=True)
    host["unit"].write_text("[Unit]\nDescription=mine\n")
    with pytest.raises(_persist.PersistError, match="persistent: .*lvs-nat-sync.service exists and is not managed"):
        run(daemons=[MASTER])
    assert host["kernel"].calls == []


def test_a_kernel_refusal_rolls_back_and_reaches_the_failure(host, monkeypatch, capsys):
    kernel = host["kernel"]
    kernel.held = {"master": held(MASTER)}
    kernel.refuse = {("start", "backup"): errno.EINVAL}
    build = M.build_module

    def built():
        m = build()
        m.get_bin_path = lambda name, *a, **kw: "/usr/sbin/" + name
        return m

    monkeypatch.setattr(M, "build_module", built)
    with patch_module_args(dict(daemons=[dict(MASTER, sync_id=52), BACKUP])), pytest.raises(SystemExit):
        M.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and result["msg"].startswith(
        "Failed to start the backup sync daemon (interface eth2, sync_id 51): Invalid argument (the kernel refuses sync "
        "daemons while a service has real servers of the other address family) (errno 22). 2 operations rolled back")
    assert result["errno"] == errno.EINVAL and result["changed"] is False
    assert kernel.held == {"master": held(MASTER)}  # the old master runs again
    assert not host["unit"].exists()


# -- every value reaching the unit: refused naming its option, or parsed back exactly

def unit_argv(daemon):
    """The unit's ipvsadm line for the entry, split as a shell (and systemd, for these characters) splits it."""
    wanted, _where = M.desired_daemons([daemon])
    return shlex.split(M.start_command("/usr/sbin/ipvsadm", wanted[daemon["mode"]]))


def option_values(argv):
    return dict(a.split("=", 1) for a in argv[4:])


TEXT = st.text(max_size=10000) | st.text(alphabet="eth0:@+-._ \n\t'\"{}#;%$\\é", max_size=40)


@given(TEXT)
def test_an_interface_name_is_refused_or_reaches_the_unit_exactly(value):
    try:
        argv = unit_argv(dict(MASTER, interface=value))
    except InvalidInput as e:
        assert str(e).startswith("daemons[0].interface=")
        return
    assert argv[:4] == ["/usr/sbin/ipvsadm", "--start-daemon", "master", "--mcast-interface=" + value]


@given(TEXT | st.ip_addresses().map(str))
def test_a_group_is_refused_or_reaches_the_unit_exactly(value):
    try:
        argv = unit_argv(dict(BACKUP, group=value))
    except InvalidInput as e:
        assert str(e).startswith("daemons[0].group=")
        return
    assert option_values(argv)["--mcast-group"] == value


@given(st.integers(-2 ** 40, 2 ** 40), st.integers(-2 ** 40, 2 ** 40), st.integers(-2 ** 40, 2 ** 40),
       st.none() | st.integers(-2 ** 40, 2 ** 40))
def test_numbers_are_refused_or_reach_the_unit_exactly(sync_id, port, ttl, max_len):
    entry = dict(MASTER, sync_id=sync_id, port=port, ttl=ttl, max_len=max_len)
    try:
        argv = unit_argv(entry)
    except InvalidInput as e:
        assert str(e).split("=", 1)[0] in ("daemons[0].sync_id", "daemons[0].port", "daemons[0].ttl", "daemons[0].max_len")
        return
    values = option_values(argv)
    assert (int(values["--syncid"]), int(values["--mcast-port"]), int(values["--mcast-ttl"])) == (sync_id, port, ttl)
    assert values.get("--sync-maxlen") == (None if max_len is None else str(max_len))
