# SPDX-License-Identifier: GPL-3.0-or-later
"""ipvs_health's run() with its paths in a tmp dir, a fake systemd (systemctl, and a fake lvs-nat-healthd that writes
its state and reconciles a fake kernel as the real one would) and a fake kernel Session: check mode changes nothing
and shows the files; a second run changes nothing, also after health transitions; a new declaration only reloads, new
code or unit restarts; absent stops and removes; a bad declaration fails before any file is written; a service that
never reports its round fails with what was seen and systemctl status. The installed code imports from its own
directory, without ansible."""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time

import module_fakes
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.lvs.nat.plugins.module_utils import _health, _healthd, _ipvs, _ipvs_plan, _persist
from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.modules import ipvs_health

VIP = "198.51.100.10"
SYSTEMD = "/run/systemd/system"


def declared(weight=3, interval=2, check_type="http"):
    return [dict(address=VIP, port=80, scheduler="wrr",
                 real_servers=[dict(address="198.51.100.101", port=8080, weight=weight),
                               dict(address="198.51.100.102", port=8080)],
                 check=dict(type=check_type, path="/healthz", interval=interval, timeout=1, rise=2, fall=2),
                 sorry_server="198.51.100.200:8080")]


def document(services):
    return _health.config_document(_health.check_services([ipvs_health._given(s) for s in services]))


class Systemd(object):
    """systemctl, and lvs-nat-healthd as systemd runs it: on start, restart and reload it reads the declaration,
    reconciles the kernel with the health it believes (healthy: every real server but those in down) and writes its
    state; stop stops it. calls: the systemctl argv (without systemctl's path), in order."""

    def __init__(self, kernel, paths):
        self.kernel, self.paths = kernel, paths
        self.active, self.calls, self.down, self.responsive, self.round = False, [], set(), True, 0

    def __call__(self, argv, **kwargs):
        assert argv[0] == "/usr/bin/systemctl", argv
        args = argv[1:]
        self.calls.append(args)
        if args[0] == "is-active":
            return (0 if self.active else 3), ("active\n" if self.active else "inactive\n"), ""
        if args[0] == "status":
            return 3, "lvs-nat-healthd.service - lvs.nat real-server health checks\n  Active: activating (start)\n", ""
        if args[0] in ("start", "restart", "reload"):
            self.active = True
            self.reconcile()
        elif args[0] == "stop":
            self.active = False
        return 0, "", ""

    def reconcile(self):
        """One round of the daemon: kernel <- wanted_services(declaration, health), then the state file."""
        if not self.responsive:
            return
        with open(self.paths["config"]) as fh:
            doc = _health.load_config(fh.read())
        health = {}
        services = []
        for svc in doc["services"]:
            name = _health.service_name(svc)
            rows = []
            for rs in svc["real_servers"]:
                healthy = rs["address"] not in self.down
                health[(name, rs["address"], rs["port"])] = healthy
                rows.append(dict(address=rs["address"], port=rs["port"], healthy=healthy, since=1.0,
                                 last_result="ok" if healthy else "fail",
                                 reason="ok" if healthy else "connection refused", checks=3))
            services.append(dict(service=name, real_servers=rows, sorry_server_active=False))
        wanted = _health.wanted_services(doc, health)
        ops = _ipvs_plan.plan_table(self.kernel.table(), wanted, purge_services=False, purge_real_servers=True)[0]
        if ops:
            self.kernel.apply(ops)
        self.round += 1
        state = dict(version=1, generation=doc["generation"], round=self.round, pid=4242, updated=time.time(),
                     services=services)
        os.makedirs(os.path.dirname(self.paths["state"]), exist_ok=True)
        with open(self.paths["state"], "w") as fh:
            json.dump(state, fh)

    def told(self):
        """The systemctl calls other than the reads (is-active, status)."""
        return [c for c in self.calls if c[0] not in ("is-active", "status")]


@pytest.fixture
def host(tmp_path, monkeypatch):
    """ipvs_health's paths under tmp_path, systemd "running", its lock faked, an empty fake kernel."""
    paths = dict(config=str(tmp_path / "etc/lvs-nat/director.json"), state=str(tmp_path / "run/lvs-nat/health.json"),
                 code=str(tmp_path / "usr/lib/lvs-nat"), launcher=str(tmp_path / "usr/lib/lvs-nat/lvs-nat-healthd"),
                 unit=str(tmp_path / "etc/systemd/system/lvs-nat-healthd.service"))
    for name, value in (("CONFIG_PATH", "config"), ("STATE_PATH", "state"), ("CODE_DIR", "code"),
                        ("LAUNCHER", "launcher"), ("UNIT_PATH", "unit")):
        monkeypatch.setattr(ipvs_health, name, paths[value])
    monkeypatch.setattr(ipvs_health, "POLL", 0.01)
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: True if p == SYSTEMD else real_isdir(p))
    monkeypatch.setattr(_persist, "lock", lambda name, *a, **kw: contextlib.nullcontext(name))
    kernel = module_fakes.TableSession([])
    monkeypatch.setattr(_ipvs, "Session", kernel)
    systemd = Systemd(kernel, paths)
    return dict(paths, tmp=tmp_path, kernel=kernel, systemd=systemd)


def run(host, check_mode=False, **args):
    args = dict(dict(services=declared()), **args)
    with patch_module_args(dict(args, _ansible_check_mode=check_mode, _ansible_diff=True)):
        module = ipvs_health.build_module()
    module.run_command = host["systemd"]
    module.get_bin_path = lambda name, *a, **kw: "/usr/bin/" + name if name == "systemctl" else "/bin/" + name
    return ipvs_health.run(module)


def files_under(path):
    return sorted(os.path.relpath(os.path.join(d, f), str(path)) for d, _dirs, fs in os.walk(str(path)) for f in fs)


def code_path(host, name):
    return os.path.join(host["code"], "ansible_collections/lvs/nat/plugins/module_utils", name + ".py")


def unit_words(text, key):
    return [shlex.split(line.split("=", 1)[1]) for line in text.splitlines() if line.startswith(key + "=")]


# -- check mode, first install, idempotence

def test_check_mode_changes_nothing_and_shows_every_file_it_would_write(host):
    r = run(host, check_mode=True)
    assert r["changed"] is True and r["action"] == "start"
    assert files_under(host["tmp"]) == [] and host["systemd"].told() == [] and host["kernel"].applied == []
    diff = dict((d["after_header"], d) for d in r["diff"])
    doc = document(declared())
    assert r["config_generation"] == doc["generation"]
    assert diff[host["config"]]["before"] == "" and diff[host["config"]]["after"] == _health.render_config(doc)
    assert diff[host["launcher"]]["after"].startswith("#!%s\n" % sys.executable)
    assert "Type=notify" in diff[host["unit"]]["after"]
    for name in _healthd.CODE_MODULES:
        assert diff[code_path(host, name)]["after"] == ipvs_health.HEADER + open(
            os.path.join(os.path.dirname(_health.__file__), name + ".py")).read()
    # No state yet: every real server counts as unhealthy, so the kernel's (empty) table needs the sorry server.
    assert r["health"] == [] and r["differences"] == ["add service TCP 198.51.100.10:80",
                                                      "add real server 198.51.100.200:8080 to TCP 198.51.100.10:80"]


def test_install_starts_waits_and_a_second_run_changes_nothing(host):
    r = run(host)
    assert r["changed"] is True and r["action"] == "start" and r["differences"] == []
    assert host["systemd"].told() == [["daemon-reload"], ["start", "lvs-nat-healthd.service"]]
    assert [rs["healthy"] for rs in r["health"][0]["real_servers"]] == [True, True]
    [svc] = host["kernel"].held
    assert sorted((d["address"], d["weight"]) for d in svc["real_servers"]) == [("198.51.100.101", 3),
                                                                                ("198.51.100.102", 1)]
    expected = ["etc/lvs-nat/director.json", "etc/systemd/system/lvs-nat-healthd.service",
                "etc/systemd/system/multi-user.target.wants/lvs-nat-healthd.service", "run/lvs-nat/health.json", "usr/lib/lvs-nat/lvs-nat-healthd"] + sorted(
        "usr/lib/lvs-nat/ansible_collections/lvs/nat/plugins/module_utils/%s.py" % n for n in _healthd.CODE_MODULES)
    assert files_under(host["tmp"]) == sorted(expected)
    assert os.readlink(os.path.join(os.path.dirname(host["unit"]), "multi-user.target.wants",
                                    "lvs-nat-healthd.service")) == host["unit"]
    assert oct(os.stat(host["launcher"]).st_mode & 0o777) == "0o755"
    host["systemd"].calls = []
    for check_mode in (True, False):
        r = run(host, check_mode=check_mode)
        assert r["changed"] is False and r["action"] == "none" and r["differences"] == []
        assert all(d["before"] == d["after"] for d in r["diff"])
    assert host["systemd"].told() == []


def test_health_transitions_between_runs_are_no_change(host):
    run(host)
    host["systemd"].down.add("198.51.100.101")
    host["systemd"].reconcile()  # the daemon saw it fail: out of the kernel
    [svc] = host["kernel"].held
    assert [d["address"] for d in svc["real_servers"]] == ["198.51.100.102"]
    for check_mode in (True, False):
        r = run(host, check_mode=check_mode)
        assert r["changed"] is False and r["action"] == "none"
        # The real server that is down is rightly missing: the kernel holds what declaration and health say.
        assert r["differences"] == []
        assert [rs["healthy"] for rs in r["health"][0]["real_servers"]] == [False, True]
    assert host["systemd"].told() == [["daemon-reload"], ["start", "lvs-nat-healthd.service"]]


def test_differences_name_what_the_kernel_lacks(host):
    run(host)
    host["kernel"].held[0]["real_servers"] = [d for d in host["kernel"].held[0]["real_servers"]
                                              if d["address"] != "198.51.100.101"]
    r = run(host, check_mode=True)
    assert r["changed"] is False
    assert r["differences"] == ["add real server 198.51.100.101:8080 to TCP 198.51.100.10:80"]


# -- what each change asks of systemd

def test_only_a_new_declaration_reloads(host):
    run(host)
    host["systemd"].calls = []
    r = run(host, services=declared(weight=5))
    assert r["changed"] is True and r["action"] == "reload"
    assert host["systemd"].told() == [["reload", "lvs-nat-healthd.service"]]
    assert [d["after_header"] for d in r["diff"] if d["before"] != d["after"]] == [host["config"]]
    assert [d["weight"] for d in host["kernel"].held[0]["real_servers"] if d["address"] == "198.51.100.101"] == [5]
    assert r["differences"] == [] and json.load(open(host["state"]))["generation"] == r["config_generation"]


@pytest.mark.parametrize("which", ["code", "unit", "launcher"])
def test_new_code_or_unit_restarts(host, which):
    run(host)
    path = dict(code=code_path(host, "_health"), unit=host["unit"], launcher=host["launcher"])[which]
    with open(path, "a") as fh:
        fh.write("# an older version\n")
    host["systemd"].calls = []
    r = run(host, check_mode=True)
    assert r["changed"] is True and r["action"] == "restart" and host["systemd"].told() == []
    r = run(host)
    assert r["changed"] is True and r["action"] == "restart"
    # systemd reads a changed unit again before the restart.
    assert host["systemd"].told() == [["daemon-reload"]] * (which == "unit") + [["restart", "lvs-nat-healthd.service"]]
    assert [d["after_header"] for d in r["diff"] if d["before"] != d["after"]] == [path]


def test_a_stopped_service_is_started_without_any_file_changing(host):
    run(host)
    host["systemd"].active = False
    host["systemd"].calls = []
    r = run(host)
    assert r["changed"] is True and r["action"] == "start" and all(d["before"] == d["after"] for d in r["diff"])
    assert host["systemd"].told() == [["start", "lvs-nat-healthd.service"]]


def test_a_code_file_of_an_earlier_version_no_longer_needed_is_removed(host):
    run(host)
    old = code_path(host, "_gone")
    with open(old, "w") as fh:
        fh.write(ipvs_health.HEADER + "x = 1\n")
    foreign = code_path(host, "_someone_elses")
    with open(foreign, "w") as fh:
        fh.write("y = 2\n")
    r = run(host)
    assert r["action"] == "restart" and not os.path.exists(old) and os.path.exists(foreign)


def test_absent_stops_then_removes_everything_and_leaves_the_kernel(host):
    run(host)
    table = [dict(s) for s in host["kernel"].held]
    host["systemd"].calls = []
    r = run(host, check_mode=True, state="absent", services=None)
    assert r["changed"] is True and r["action"] == "stop" and host["systemd"].told() == []
    assert all(d["after"] == "" for d in r["diff"]) and os.path.exists(host["unit"])
    r = run(host, state="absent", services=None)
    assert r["changed"] is True and r["action"] == "stop" and r["health"] == [] and r["differences"] == []
    assert r["config_generation"] is None
    assert host["systemd"].told() == [["stop", "lvs-nat-healthd.service"], ["daemon-reload"]]
    # Everything the module wrote is gone, its directories too; the state (the daemon's, on a tmpfs) and the kernel
    # stay as they were.
    assert files_under(host["tmp"]) == ["run/lvs-nat/health.json"]
    assert not os.path.exists(host["code"])
    assert not os.path.lexists(os.path.join(os.path.dirname(host["unit"]), "multi-user.target.wants",
                                            "lvs-nat-healthd.service"))
    assert host["kernel"].held == table and len(host["kernel"].applied) == 1  # the daemon's first round only
    host["systemd"].calls = []
    r = run(host, state="absent", services=None)
    assert r["changed"] is False and r["action"] == "none" and host["systemd"].told() == []


# -- failures before any change

@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("edit, field", [
    (lambda s: s["check"].update(interval=0), "services[0].check.interval"),
    (lambda s: s["check"].update(rise=0), "services[0].check.rise"),
    (lambda s: s["check"].update(fall=0), "services[0].check.fall"),
    (lambda s: s["check"].update(timeout=3), "services[0].check.timeout"),
    (lambda s: s["check"].update(path="healthz"), "services[0].check.path"),
    (lambda s: s["check"].update(expect_status=[99]), "services[0].check.expect_status"),
    (lambda s: s.update(check=dict(type="exec", command=["check"])), "services[0].check.command[0]"),
    (lambda s: s.update(check=dict(type="exec")), "services[0].check.command"),
    (lambda s: s.update(sorry_server="nope"), "services[0].sorry_server"),
    (lambda s: s["real_servers"].append(dict(address="198.51.100.101", port=8080)), "services[0]"),
])
def test_a_bad_declaration_fails_before_anything_is_read_or_written(host, check_mode, edit, field):
    services = declared()
    edit(services[0])
    with pytest.raises(_ipvs_plan.InvalidInput) as e:
        run(host, check_mode=check_mode, services=services)
    assert str(e.value).startswith(field), str(e.value)
    assert files_under(host["tmp"]) == [] and host["systemd"].calls == [] and host["kernel"].opened == 0


def test_the_argument_spec_refuses_an_unknown_check_type_naming_it(host, capsys):
    services = declared()
    services[0]["check"]["type"] = "ping"
    with pytest.raises(SystemExit):
        run(host, services=services)
    assert "value of type must be one of: tcp, http, https, exec, got: ping found in services -> check" in (
        capsys.readouterr().out)
    assert files_under(host["tmp"]) == [] and host["systemd"].calls == []


def test_a_file_that_is_not_ours_fails_before_anything_is_written(host):
    os.makedirs(os.path.dirname(host["config"]))
    with open(host["config"], "w") as fh:
        fh.write("{}\n")
    with pytest.raises(_persist.PersistError, match="config: .*director.json exists and is not managed by lvs.nat"):
        run(host)
    assert files_under(host["tmp"]) == ["etc/lvs-nat/director.json"] and host["systemd"].calls == []


def test_without_systemd_nothing_is_written(host, monkeypatch):
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: False if p == SYSTEMD else real_isdir(p))
    with pytest.raises(LvsNatError, match="systemd does not run this host"):
        run(host)
    assert files_under(host["tmp"]) == [] and host["systemd"].calls == []
    r = run(host, check_mode=True)  # check mode says what it would do
    assert r["changed"] is True and r["action"] == "start"


def test_a_service_that_never_reports_its_round_fails_with_what_was_seen_and_its_status(host):
    run(host)
    host["systemd"].responsive = False
    with pytest.raises(LvsNatError) as e:
        run(host, services=declared(weight=5), wait_timeout=0.2)
    assert "did not report a check round with the declaration of generation %s within 0.2 s" % (
        document(declared(weight=5))["generation"]) in str(e.value)
    old = json.load(open(host["state"]))
    assert "the state of generation %s (round 1, pid 4242" % old["generation"] in str(e.value)
    assert e.value.details["state"] == old and "Active: activating" in e.value.details["status"]
    assert host["systemd"].told() == [["daemon-reload"], ["start", "lvs-nat-healthd.service"],
                                      ["reload", "lvs-nat-healthd.service"]]
    assert ["status", "--no-pager", "--full", "--lines=20", "lvs-nat-healthd.service"] in host["systemd"].calls


def test_a_restart_waits_for_a_round_after_it_even_with_the_same_generation(host):
    run(host)
    host["systemd"].responsive = False  # the state on disk is of this generation, but from before the restart
    with open(host["launcher"], "a") as fh:
        fh.write("# older\n")
    with pytest.raises(LvsNatError, match="within 0.1 s: the state of generation"):
        run(host, wait_timeout=0.1)


def test_without_wait_the_module_returns_once_systemd_was_told(host):
    host["systemd"].responsive = False
    r = run(host, wait=False)
    assert r["action"] == "start" and r["health"] == []


# -- what is installed

def test_the_unit_runs_the_launcher_with_the_modules_interpreter(host):
    run(host)
    unit = open(host["unit"]).read()
    assert unit.startswith(ipvs_health.HEADER)
    assert unit_words(unit, "ExecStart") == [[sys.executable, host["launcher"], "--config", host["config"],
                                             "--state", host["state"]]]
    assert unit_words(unit, "ExecReload") == [["/bin/kill", "-HUP", "$MAINPID"]]
    for key, value in (("Type", "notify"), ("WatchdogSec", "10"), ("Restart", "on-failure"),
                       ("WantedBy", "multi-user.target")):
        assert unit_words(unit, key) == [[value]], key
    assert "lvs-nat-ipvs.service" in unit_words(unit, "After")[0]
    proc = subprocess.run(["systemd-analyze", "verify", host["unit"]], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_a_path_that_would_break_the_unit_is_refused_before_any_change(host, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3 --evil")
    with pytest.raises(_ipvs_plan.InvalidInput, match="^the module's Python interpreter"):
        run(host)
    assert files_under(host["tmp"]) == []


# The launcher's import, in a fresh interpreter that cannot import ansible: the installed code is complete (every
# module_utils the daemon imports is in CODE_MODULES) and comes from CODE_DIR only.
PROBE = """
import importlib.abc, json, sys
class NoAnsible(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ansible" or name.startswith("ansible."):
            raise ImportError("the director has no ansible: " + name)
sys.meta_path.insert(0, NoAnsible())
sys.argv = [sys.argv[0], "--help"]
launcher = open(LAUNCHER).read().replace("raise SystemExit(_healthd.main())", "")
exec(compile(launcher, LAUNCHER, "exec"))
print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() if n.startswith("ansible_collections.")
                        and getattr(m, "__file__", None))))
"""


def test_the_installed_code_runs_from_its_own_directory_without_ansible(host):
    run(host)
    proc = subprocess.run([sys.executable, "-I", "-c", "LAUNCHER = %r\n" % host["launcher"] + PROBE],
                          capture_output=True, text=True, check=False, cwd="/")
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    assert code_path(host, "_healthd") in loaded
    assert all(path.startswith(host["code"] + "/") for path in loaded), loaded
    assert not [p for p in files_under(host["code"]) if "__pycache__" in p]


def test_a_transition_between_reading_the_state_and_the_kernel_is_not_a_difference(host, monkeypatch):
    # The state read first says rs .102 is down; the service brings it back (kernel, then state) before the module
    # reads the kernel: the module compares again with the new state instead of reporting a difference.
    run(host)
    systemd = host["systemd"]
    systemd.down = {"198.51.100.102"}
    systemd.reconcile()
    stale = _health.read_state(host["state"])
    systemd.down = set()
    systemd.reconcile()
    doc = document(declared())
    assert ipvs_health.differences(None, doc, stale) == []
    # A real difference (the kernel lost a real server nobody puts back) is still reported, after the settling time.
    monkeypatch.setattr(time, "monotonic", iter(range(0, 1000, 5)).__next__)
    host["kernel"].held[0]["real_servers"].pop()
    assert ipvs_health.differences(None, doc, _health.read_state(host["state"])) == [
        "add real server 198.51.100.102:8080 to TCP 198.51.100.10:80"]


def test_the_settling_time_counts_from_the_first_comparison_not_from_before_the_session_opens(host, monkeypatch):
    # Seen in the lab: opening the session (pyroute2's import on an emulated director) took longer than the settling
    # time, so a transition applied meanwhile (state file still old) was reported as a difference at once.
    run(host)
    systemd = host["systemd"]
    stale = _health.read_state(host["state"])  # every real server healthy
    systemd.down = {"198.51.100.102"}
    systemd.reconcile()  # the service took .102 out: kernel first, then its state file
    doc = document(declared())
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))
    kernel = _ipvs.Session

    def slow_session(module):
        now[0] += 10  # longer than the 3 s of settling
        return kernel(module)

    monkeypatch.setattr(_ipvs, "Session", slow_session)
    assert ipvs_health.differences(None, doc, stale) == []
