# SPDX-License-Identifier: GPL-3.0-or-later
"""_module.run_command, the one runner, and _kmod.modprobe on top of it: argv resolved, LC_ALL=C, no expansion,
the tool's result in the failure."""
from __future__ import annotations

import gc

import pytest

from ansible_collections.lvs.nat.plugins.module_utils import _kmod, _module
from ansible_collections.lvs.nat.plugins.module_utils._errors import CommandError, KernelError


class FakeModule(object):
    def __init__(self, rc=0, out="", err="", found=True):
        self.rc, self.out, self.err, self.found, self.calls = rc, out, err, found, []

    def get_bin_path(self, name, opt_dirs=None):
        assert opt_dirs == _module.SBIN
        return "/usr/sbin/" + name if self.found else None

    def run_command(self, argv, **kwargs):
        self.calls.append((argv, kwargs))
        return self.rc, self.out, self.err


def test_run_command_resolves_the_tool_and_runs_without_expansion_in_the_c_locale():
    m = FakeModule(out="ok\n")
    assert _module.run_command(m, ["nft", "-f", "-"], data="table x\n") == (0, "ok\n", "")
    argv, kw = m.calls[0]
    assert argv == ["/usr/sbin/nft", "-f", "-"] and kw["data"] == "table x\n" and kw["binary_data"]
    assert kw["environ_update"]["LC_ALL"] == "C" and kw["expand_user_and_vars"] is False


def test_a_failure_carries_the_tools_result():
    with pytest.raises(CommandError) as e:
        _module.run_command(FakeModule(rc=2, out="o", err="bad\n"), ["ip", "route", "del", "x"], what="ip route del")
    assert str(e.value) == "ip route del failed (rc=2): bad"
    assert e.value.details == dict(cmd=["/usr/sbin/ip", "route", "del", "x"], rc=2, stdout="o", stderr="bad\n")


def test_modprobe_reports_the_tool_failure_naming_the_kernel_module(monkeypatch):
    monkeypatch.setattr(_kmod, "loaded", lambda name: False)
    m = FakeModule(rc=1, err="modprobe: FATAL: Module ip_vs_twos not found\n")
    with pytest.raises(KernelError) as e:
        _kmod.modprobe(m, ["ip_vs_twos"], dry_run=True)
    assert str(e.value) == ("Failed to load kernel module ip_vs_twos (modprobe --dry-run ip_vs_twos: rc=1): "
                            "modprobe: FATAL: Module ip_vs_twos not found")
    assert e.value.details["rc"] == 1 and e.value.details["cmd"][0] == "/usr/sbin/modprobe"


def test_modprobe_skips_loaded_modules_and_names_a_missing_kmod(monkeypatch):
    monkeypatch.setattr(_kmod, "loaded", lambda name: name == "ip_vs")
    m = FakeModule()
    _kmod.modprobe(m, ["ip_vs", "nf_conntrack"])
    assert [argv for argv, _kw in m.calls] == [["/usr/sbin/modprobe", "nf_conntrack"]]
    with pytest.raises(KernelError, match="^Failed to load kernel module nf_conntrack: modprobe is not installed"):
        _kmod.modprobe(FakeModule(found=False), ["nf_conntrack"])


class Exited(Exception):
    pass


class MainModule(object):
    """What run_module needs of an AnsibleModule: _diff, exit_json and fail_json (both end the run)."""

    def __init__(self, diff):
        self._diff, self.result = diff, None

    def exit_json(self, **result):
        self.result = dict(result, failed=False)
        raise Exited()

    def fail_json(self, **result):
        self.result = dict(result, failed=True)
        raise Exited()


@pytest.mark.parametrize("diff", [True, False])
def test_run_module_returns_the_diff_only_in_diff_mode(diff):
    module = MainModule(diff)
    with pytest.raises(Exited):
        _module.run_module(lambda: module, lambda m: dict(changed=True, diff=dict(before="a", after="b")))
    assert module.result == dict(changed=True, failed=False, **({"diff": dict(before="a", after="b")} if diff else {}))


def test_run_module_turns_errors_into_the_tasks_failure_with_details():
    module = MainModule(False)

    def run(m):
        raise KernelError("Failed to add service: Invalid argument (errno 22)", 22, applied=["x"])
    with pytest.raises(Exited):
        _module.run_module(lambda: module, run)
    assert module.result == dict(msg="Failed to add service: Invalid argument (errno 22)", errno=22, applied=["x"],
                                 failed=True)

    def write(m):
        raise OSError(13, "Permission denied", "/etc/lvs-nat/x")
    with pytest.raises(Exited):
        _module.run_module(lambda: module, write)
    assert module.result == dict(msg="Failed to write /etc/lvs-nat/x: Permission denied", errno=13, failed=True)


def test_run_module_runs_without_the_cycle_collector_and_restores_it():
    """The collector's full passes grow with what a run holds (a large table); it is off from building the module to
    its exit, and back on after, whichever way the run ends; a caller that had it off keeps it off."""
    seen = []

    def build():
        seen.append(gc.isenabled())
        return MainModule(False)

    def run(m):
        seen.append(gc.isenabled())
        return dict(changed=False)

    def fail(m):
        seen.append(gc.isenabled())
        raise KernelError("Failed to add service: Invalid argument (errno 22)", 22)
    assert gc.isenabled()
    for body in (run, fail):
        with pytest.raises(Exited):
            _module.run_module(build, body)
        assert gc.isenabled()
    assert seen == [False] * 4
    gc.disable()
    try:
        with pytest.raises(Exited):
            _module.run_module(build, run)
        assert not gc.isenabled()
    finally:
        gc.enable()
