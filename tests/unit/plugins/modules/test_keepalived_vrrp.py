# SPDX-License-Identifier: GPL-3.0-or-later
"""keepalived_vrrp's run() with its files in a tmp dir and a fake host (systemctl, keepalived -t, its addresses): what
systemd is asked for each change (start, reload only for keepalived.conf, restart for /etc/default/keepalived or a
failed unit, nothing when nothing changed), check mode changing nothing, absent, files that are not ours, keepalived's
refusal and the validator's, both before any change, and the VRRP state read from the host's addresses."""
from __future__ import annotations

import contextlib
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.lvs.nat.plugins.module_utils import _addresses, _keepalived, _persist
from ansible_collections.lvs.nat.plugins.module_utils._errors import CommandError, LvsNatError
from ansible_collections.lvs.nat.plugins.modules import keepalived_vrrp as M

UNIT = "keepalived.service"
VIP, DIP = "198.51.100.10", "198.51.100.100"


def instances():
    return [dict(name="public", interface="eth1", vrid=51, address=VIP + "/26", source="198.51.100.11",
                 peers=["198.51.100.12"], track_interfaces=["eth2"]),
            dict(name="private", interface="eth2", vrid=52, address=DIP + "/26", source="198.51.100.98",
                 peers=["198.51.100.99"], track_interfaces=["eth1"])]


def args(**over):
    return dict(dict(router_id="director1", startup_delay=5, instances=instances()), **over)


class Host(object):
    """systemctl with keepalived.service's state, `keepalived -t` (accepts, or refuses with refusal), the host's
    addresses (those in held, on eth1: addresses()). calls: each argv without the tool's directory, and
    ["addresses"] for each read of the addresses; tested: the texts keepalived -t read."""

    def __init__(self):
        self.active, self.enabled, self.calls, self.tested, self.held = "inactive", False, [], [], set()
        self.refusal, self.tested_paths = None, []

    def __call__(self, argv, **kwargs):
        tool, args = os.path.basename(argv[0]), list(argv[1:])
        self.calls.append([tool] + args)
        return getattr(self, tool)(args)

    def systemctl(self, args):
        verb = args[0]
        assert args[-1] == UNIT, args
        if verb == "is-active":
            return (0 if self.active == "active" else 3), self.active + "\n", ""
        if verb == "is-enabled":
            return (0 if self.enabled else 1), ("enabled" if self.enabled else "disabled") + "\n", ""
        if verb in ("start", "restart", "reload"):
            assert verb != "reload" or self.active == "active"
            self.active = "active"
        elif verb == "stop":
            self.active = "inactive"
        elif verb in ("enable", "disable"):
            self.enabled = verb == "enable"
        return 0, "", ""

    def keepalived(self, args):
        assert args[:2] == ["-t", "-f"] and len(args) == 3, args
        with open(args[2]) as fh:
            self.tested.append(fh.read())
        self.tested_paths.append(args[2])
        if self.refusal:
            return 5, "", "(%s: Line 16) %s\n" % (args[2], self.refusal)
        return 0, "", ""

    def addresses(self):
        self.calls.append(["addresses"])
        return dict((a, "eth1") for a in self.held)

    def told(self):
        """What systemd was asked to do (not the reads)."""
        return [c[1:] for c in self.calls if c[0] == "systemctl" and c[1] not in ("is-active", "is-enabled")]


@pytest.fixture
def host(tmp_path, monkeypatch):
    paths = dict(config=str(tmp_path / "etc/keepalived/keepalived.conf"), default=str(tmp_path / "etc/default/keepalived"),
                 systemd=str(tmp_path / "run/systemd/system"))
    os.makedirs(paths["systemd"])
    monkeypatch.setattr(M, "CONFIG_PATH", paths["config"])
    monkeypatch.setattr(M, "DEFAULT_PATH", paths["default"])
    monkeypatch.setattr(_persist, "SYSTEMD_RUNNING", paths["systemd"])
    monkeypatch.setattr(_persist, "lock", lambda name, *a, **kw: contextlib.nullcontext(name))
    fake = Host()
    monkeypatch.setattr(_addresses, "host_addresses", fake.addresses)
    fake.tmp, fake.paths, fake.installed, fake.warnings = tmp_path, paths, True, []
    return fake


def run(host, check_mode=False, **over):
    given = dict((k, v) for k, v in args(**over).items() if v is not OMIT)
    with patch_module_args(dict(given, _ansible_check_mode=check_mode, _ansible_diff=True)):
        module = M.build_module()
    module.run_command = host
    module.get_bin_path = lambda name, *a, **kw: (
        None if name == "keepalived" and not host.installed else "/usr/sbin/" + name)
    module.warn = host.warnings.append
    return M.run(module)


def files(host):
    return sorted(os.path.relpath(os.path.join(d, f), str(host.tmp)) for d, _dirs, fs in os.walk(str(host.tmp))
                  for f in fs)


def read(path):
    with open(path) as fh:
        return fh.read()


def rendered(**over):
    return _keepalived.render(_keepalived.check(args(**over)))


OMIT = object()
OURS = ["etc/default/keepalived", "etc/keepalived/keepalived.conf"]


# -- first install, idempotence, check mode

def test_check_mode_changes_nothing_and_shows_the_files_and_the_unit(host):
    r = run(host, check_mode=True)
    assert r["changed"] is True and r["action"] == "start" and r["config"] == rendered()
    assert files(host) == [] and host.told() == []
    assert host.tested == [rendered()]  # keepalived -t checked it, from a temporary file that is gone
    assert not any(os.path.exists(p) for p in host.tested_paths)
    diff = dict((d["after_header"], d) for d in r["diff"])
    assert diff[host.paths["config"]] == dict(before_header=host.paths["config"], after_header=host.paths["config"],
                                              before="", after=rendered())
    assert diff[host.paths["default"]]["after"] == M.DEFAULT_TEXT and 'DAEMON_ARGS="--vrrp"\n' in M.DEFAULT_TEXT
    assert diff[UNIT] == dict(before_header=UNIT, after_header=UNIT, before="enabled: False\nrunning: False\n",
                              after="enabled: True\nrunning: True\n")
    assert r["vrrp"] == dict(addresses={VIP: None, DIP: None}, state="BACKUP")


def test_install_enables_and_starts_and_a_second_run_changes_nothing(host):
    r = run(host)
    assert r["changed"] is True and r["action"] == "start"
    assert host.told() == [["enable", UNIT], ["start", UNIT]]
    assert files(host) == OURS
    assert read(host.paths["config"]) == rendered() and read(host.paths["default"]) == M.DEFAULT_TEXT
    assert oct(os.stat(host.paths["config"]).st_mode & 0o777) == "0o644"
    host.calls, host.tested = [], []
    for check_mode in (True, False):
        r = run(host, check_mode=check_mode)
        assert r["changed"] is False and r["action"] == "none"
        assert all(d["before"] == d["after"] for d in r["diff"])
    # Nothing changed: no systemctl verb, and no keepalived -t either (only a new text is checked).
    assert host.told() == [] and host.tested == []


# -- what each change asks of systemd

def test_only_keepalived_conf_changed_reloads(host):
    run(host)
    host.calls = []
    r = run(host, check_mode=True, priority=150)
    assert r["changed"] is True and r["action"] == "reload" and host.told() == []
    r = run(host, priority=150)
    assert r["action"] == "reload" and host.told() == [["reload", UNIT]]
    assert [d["after_header"] for d in r["diff"] if d["before"] != d["after"]] == [host.paths["config"]]
    assert "    priority 150\n" in read(host.paths["config"])


def test_a_new_etc_default_restarts(host):
    run(host)
    with open(host.paths["default"], "a") as fh:
        fh.write('DAEMON_ARGS="--vrrp --log-detail"\n')
    host.calls = []
    r = run(host)
    assert r["changed"] is True and r["action"] == "restart" and host.told() == [["restart", UNIT]]
    assert read(host.paths["default"]) == M.DEFAULT_TEXT


def test_both_files_changed_restarts_once(host):
    run(host)
    with open(host.paths["default"], "a") as fh:
        fh.write("# x\n")
    host.calls = []
    assert run(host, priority=120)["action"] == "restart" and host.told() == [["restart", UNIT]]


def test_the_packages_own_etc_default_is_taken_over(host):
    os.makedirs(os.path.dirname(host.paths["default"]))
    with open(host.paths["default"], "w") as fh:
        fh.write(M.DEBIAN_DEFAULT)
    host.active, host.enabled = "active", True  # the package's keepalived, running without --vrrp
    r = run(host)
    assert r["action"] == "restart" and host.told() == [["restart", UNIT]]
    assert read(host.paths["default"]) == M.DEFAULT_TEXT


@pytest.mark.parametrize("active, action", [("inactive", "start"), ("failed", "restart"), ("unknown", "start")])
def test_a_unit_not_running_is_started_and_a_failed_one_restarted(host, active, action):
    run(host)
    host.active, host.calls = active, []
    r = run(host)
    assert r["changed"] is True and r["action"] == action and host.told() == [[action, UNIT]]
    assert all(d["before"] == d["after"] for d in r["diff"][:2])


def test_a_disabled_unit_is_enabled_without_any_restart(host):
    run(host)
    host.enabled, host.calls = False, []
    r = run(host)
    assert r["changed"] is True and r["action"] == "none" and host.told() == [["enable", UNIT]]


# -- absent

def test_absent_stops_disables_and_removes_the_files(host):
    run(host)
    host.calls = []
    r = run(host, check_mode=True, state="absent", router_id=None, instances=None)
    assert r["changed"] is True and r["action"] == "stop" and host.told() == [] and files(host) == OURS
    r = run(host, state="absent", router_id=None, instances=None)
    assert r["changed"] is True and r["action"] == "stop" and r["config"] is None
    assert r["vrrp"] == dict(addresses={}, state=None)
    assert host.told() == [["stop", UNIT], ["disable", UNIT]] and files(host) == []
    host.calls = []
    r = run(host, state="absent", router_id=None, instances=None)
    assert r["changed"] is False and r["action"] == "none" and host.told() == []


def test_absent_leaves_the_packages_etc_default(host):
    os.makedirs(os.path.dirname(host.paths["default"]))
    with open(host.paths["default"], "w") as fh:
        fh.write(M.DEBIAN_DEFAULT)
    host.enabled = True
    r = run(host, state="absent", router_id=None, instances=None)
    assert r["action"] == "none" and host.told() == [["disable", UNIT]]
    assert read(host.paths["default"]) == M.DEBIAN_DEFAULT


# -- failures before any change

def test_a_keepalived_conf_that_is_not_ours_is_left_and_fails(host):
    os.makedirs(os.path.dirname(host.paths["config"]))
    with open(host.paths["config"], "w") as fh:
        fh.write("vrrp_instance x {\n}\n")
    for over in (dict(), dict(state="absent", router_id=None, instances=None)):
        with pytest.raises(_persist.PersistError, match="^config: .*keepalived.conf exists and is not managed"):
            run(host, **over)
    assert files(host) == ["etc/keepalived/keepalived.conf"] and host.calls == []


def test_an_edited_etc_default_that_is_not_ours_fails(host):
    os.makedirs(os.path.dirname(host.paths["default"]))
    with open(host.paths["default"], "w") as fh:
        fh.write(M.DEBIAN_DEFAULT.replace('""', '"-D"'))
    with pytest.raises(_persist.PersistError, match="^default: .*keepalived exists and is not managed"):
        run(host)
    assert files(host) == ["etc/default/keepalived"] and host.calls == []


@pytest.mark.parametrize("check_mode", [False, True])
def test_keepalived_refusing_the_config_fails_naming_its_message_and_changes_nothing(host, check_mode):
    host.refusal = "WARNING - interface eth1 for vrrp_instance public doesn't exist"
    with pytest.raises(_keepalived.KeepalivedError) as e:
        run(host, check_mode=check_mode)
    assert str(e.value) == ("keepalived -t refused the rendered configuration (rc=5): (keepalived.conf: Line 16) "
                            "WARNING - interface eth1 for vrrp_instance public doesn't exist")
    assert e.value.details["config"] == rendered() and e.value.details["rc"] == 5
    assert files(host) == [] and host.told() == []
    assert host.tested_paths and not any(os.path.exists(p) for p in host.tested_paths)


def test_a_refused_new_config_leaves_the_running_one(host):
    run(host)
    before = read(host.paths["config"])
    host.refusal, host.calls = "bad", []
    with pytest.raises(_keepalived.KeepalivedError):
        run(host, priority=120)
    assert read(host.paths["config"]) == before and host.told() == []


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("over, option", [
    (dict(advert_int=0), "advert_int"),
    (dict(priority=255), "priority"),
    (dict(preempt_delay=5), "preempt_delay"),
    (dict(router_id="director 1"), "router_id"),
    (dict(instances=[dict(instances()[0]), dict(instances()[1], vrid=256)]), "instances[1].vrid"),
    (dict(instances=[dict(instances()[0]), dict(instances()[1], vrid=51)]), "instances[1].vrid"),
    (dict(instances=[dict(instances()[0], track_interfaces=["eth1"])]), "instances[0].track_interfaces[0]"),
    (dict(instances=[dict(instances()[0], peers=["198.51.100.11"])]), "instances[0].peers[0]"),
    (dict(instances=[dict(instances()[0], address=VIP)]), "instances[0].address"),
    (dict(instances=[dict(instances()[0], name="pub}lic")]), "instances[0].name"),
])
def test_bad_input_fails_naming_the_option_before_anything_is_read_or_run(host, check_mode, over, option):
    with pytest.raises(_keepalived.KeepalivedError) as e:
        run(host, check_mode=check_mode, **over)
    assert str(e.value).startswith(option + "="), str(e.value)
    assert files(host) == [] and host.calls == []


@pytest.mark.parametrize("option", ["router_id", "instances"])
def test_the_argument_spec_requires_router_id_and_instances(host, capsys, option):
    with pytest.raises(SystemExit):
        run(host, **{option: OMIT})
    assert "state is present but all of the following are missing: %s" % option in capsys.readouterr().out
    assert host.calls == [] and files(host) == []


def test_a_null_router_id_is_refused_by_the_validator(host):
    # An explicit null passes AnsibleModule's required_if (the key is there); the validator names it.
    with pytest.raises(_keepalived.KeepalivedError, match="^router_id=None must be"):
        run(host, router_id=None)
    assert host.calls == []


def test_without_systemd_nothing_is_written(host):
    os.rmdir(host.paths["systemd"])
    with pytest.raises(LvsNatError, match="systemd does not run this host"):
        run(host)
    assert files(host) == [] and host.told() == []
    assert run(host, check_mode=True)["action"] == "start"


def test_check_mode_without_keepalived_installed_warns_instead_of_checking(host):
    host.installed = False
    r = run(host, check_mode=True)
    assert r["action"] == "start" and host.tested == []
    assert host.warnings == ["keepalived is not installed: the rendered configuration was not checked with keepalived -t"]
    with pytest.raises(CommandError, match="keepalived is not installed"):
        run(host)
    assert files(host) == []


# -- the VRRP state read from the host

@pytest.mark.parametrize("held, state", [({VIP, DIP}, "MASTER"), ({VIP}, "SPLIT"), (set(), "BACKUP")])
def test_vrrp_state_from_the_hosts_addresses(host, held, state):
    host.held = held | {"198.51.100.11"}
    r = run(host)
    # ipvs_info's shape: the interface holding each floating address, or None.
    assert r["vrrp"] == dict(addresses={VIP: "eth1" if VIP in held else None, DIP: "eth1" if DIP in held else None},
                             state=state)
    assert host.calls[-1] == ["addresses"]  # read after systemd was asked
