# SPDX-License-Identifier: GPL-3.0-or-later
"""The IPVS modules' run() against a fake kernel session: a kernel refusal, a modprobe failure and a read error are
failures with a message (never a traceback), the rollback's account reaches the result, bad input changes nothing."""
from __future__ import annotations

import gc
import json
from pathlib import Path

import module_fakes
import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._errors import KernelError
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import IPVS_TABLE_SPEC
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import KERNEL_TIMEOUTS, describe_op, describe_service, service_id
from ansible_collections.lvs.nat.plugins.module_utils._persist import PersistError
from ansible_collections.lvs.nat.plugins.modules import ipvs_info, ipvs_real_server, ipvs_save, ipvs_service, ipvs_table

VIP = "198.51.100.10"


def held(port=80):
    return {"family": "ipv4", "protocol": "tcp", "address": VIP, "port": port, "fwmark": 0, "scheduler": "rr",
            "scheduler_flags": [], "persistence_timeout": 0, "persistence_prefix": 32, "one_packet": False,
            "real_servers": [{"address": "198.51.100.101", "port": port, "forwarding": "masq", "weight": 2,
                              "upper_threshold": 0, "lower_threshold": 0}]}


class FakeSession(module_fakes.FakeSession):
    """_ipvs.Session over a fixed table: records apply(), after which it holds .then if set; set .refusal, .read_error,
    .session_error (raised when the modules open it) or .loaded=False (as a Session reads where ip_vs is not loaded)."""

    def __init__(self, table):
        self.held, self.loaded, self.applied, self.opened = table, True, [], 0
        self.refusal = self.read_error = self.session_error = self.then = None

    def __call__(self, module):
        if self.session_error:
            self.opened += 1
            raise self.session_error  # pylint: disable=raising-bad-type
        return super().__call__(module)

    def table(self, counters=True):
        if self.read_error:
            raise self.read_error  # pylint: disable=raising-bad-type
        return [dict(s) for s in self.held] if self.loaded else []

    def service(self, key, counters=True):
        return next((s for s in self.table() if service_id(s) == service_id(key)), None)

    def timeouts(self):
        return dict(KERNEL_TIMEOUTS)

    def info(self):
        return {"version": "1.2.1", "conn_tab_size": 4096} if self.loaded else None

    def apply(self, ops, before=(), schedulers=()):
        self.applied.append((ops, list(before), list(schedulers)))
        if self.refusal:
            raise self.refusal  # pylint: disable=raising-bad-type
        self.held = self.then or self.held


@pytest.fixture
def kernel(monkeypatch):
    fake = FakeSession([held()])
    monkeypatch.setattr(_ipvs, "Session", fake)
    return fake


def run(module, args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_a_refusal_mid_batch_fails_with_what_was_rolled_back(kernel, capsys):
    kernel.refusal = _ipvs.IPVSError(
        "Failed to add real server 198.51.100.127:81 to TCP 198.51.100.10:81: Invalid argument (errno 22). 2 operations rolled back ...",
        22, applied=["a", "b"], rolled_back=["b", "a"], not_rolled_back=[], unanswered=[])
    result = run(ipvs_table, {"services": [
        {"address": VIP, "port": 80, "scheduler": "wrr"},
        {"address": VIP, "port": 81, "real_servers": [{"address": "198.51.100.101"}, {"address": "198.51.100.127"}]}]}, capsys)
    assert result["failed"] and result["msg"].startswith("Failed to add real server 198.51.100.127:81")
    assert (result["errno"], result["rolled_back"], result["not_rolled_back"]) == (22, ["b", "a"], [])
    ((ops, before, schedulers),) = kernel.applied
    assert before == [held()]  # the rollback knows the entries as they were, to edit them back
    assert schedulers == ["wlc", "wrr"]  # every listed service's scheduler module is loaded first
    assert [describe_op(op) for op in ops][0] == "edit service TCP 198.51.100.10:80"


def test_ipvs_service_and_ipvs_real_server_give_the_rollback_the_service_as_it_was(kernel, capsys):
    run(ipvs_service, {"address": VIP, "port": 80, "scheduler": "wrr"}, capsys)
    run(ipvs_real_server, {"service": {"address": VIP, "port": 80}, "address": "198.51.100.101", "weight": 5}, capsys)
    assert [before for _ops, before, _schedulers in kernel.applied] == [[held()], [held()]]


@pytest.mark.parametrize("where", ["session_error", "refusal"])
def test_a_kernel_module_that_cannot_be_loaded_is_a_failure_not_a_traceback(kernel, capsys, where):
    # Session() proves ip_vs loadable; apply() loads ip_vs_<scheduler> before it writes anything.
    error = KernelError("Failed to load kernel module ip_vs_twos (modprobe ip_vs_twos: rc=1): modprobe: FATAL: Module ip_vs_twos not found",
                        rc=1, stdout="", stderr="modprobe: FATAL: Module ip_vs_twos not found")
    setattr(kernel, where, error)
    result = run(ipvs_service, {"address": VIP, "port": 80, "scheduler": "twos"}, capsys)
    assert result["failed"] and result["msg"] == str(error) and result["rc"] == 1
    assert [schedulers for _ops, _before, schedulers in kernel.applied] == ([] if where == "session_error" else [["twos"]])


def test_a_read_error_is_a_failure_naming_the_read(kernel, capsys):
    kernel.read_error = _ipvs.IPVSError("Failed to read the IPVS services: no answer from the kernel within 30 s", 110)
    for module, args in ((ipvs_info, {}), (ipvs_table, {"services": [{"address": VIP, "port": 80}]})):
        result = run(module, args, capsys)
        assert result["failed"] and result["msg"] == "Failed to read the IPVS services: no answer from the kernel within 30 s"


@pytest.mark.parametrize("module, args, message", [
    (ipvs_table, {"services": [{"address": VIP, "port": 80}, {"address": VIP, "port": 81, "persistence_timeout": 2678401}]},
     "services[1]: persistence_timeout=2678401 is out of range: it must be between 0 and 2678400"),
    (ipvs_service, {"address": VIP, "port": 80, "real_servers": [{"address": "fe80::1%eth0"}]},
     "real_servers[0] address='fe80::1%eth0' is a scoped address"),
    (ipvs_service, {"address": VIP, "port": 80, "real_servers": [{"address": "255.255.255.255"}]},
     "real_servers[0] address=255.255.255.255 cannot be a real server address: it is the broadcast address"),
    (ipvs_real_server, {"service": {"address": VIP, "port": 80}, "address": "0.0.0.0"},
     "real server address=0.0.0.0 cannot be a real server address: it is the unspecified address"),
    (ipvs_table, {"services": [{"address": "fe80::10", "port": 80}]},
     "services[0]: address=fe80::10 cannot be a virtual service address: it is an IPv6 link-local address"),
    (ipvs_table, {"services": [{"address": VIP, "port": 80}, {"address": VIP, "port": 81, "real_servers": [{"address": "x"}]}]},
     "services[1]: real_servers[0] address='x' is not an IPv4 or IPv6 address"),
    (ipvs_service, {"address": VIP, "port": 80, "real_servers": [{"address": "198.51.100.101", "weight": 70000}]},
     "real_servers[0] weight=70000 is out of range"),
    (ipvs_real_server, {"service": {"address": VIP, "port": 80}, "address": "198.51.100.101", "upper_threshold": -1},
     "real server upper_threshold=-1 is out of range"),
])
def test_bad_input_fails_before_any_change(kernel, capsys, module, args, message):
    result = run(module, args, capsys)
    assert result["failed"] and result["msg"].startswith(message), result["msg"]
    assert kernel.applied == []
    assert kernel.opened == 0  # refused before the Session: no kernel access, no pyroute2 import


@pytest.mark.parametrize("module, args, message", [
    (ipvs_service, {"address": VIP, "port": 80, "scheduler_flags": ["sh-port"]}, "scheduler_flags=sh-port do not fit scheduler=rr"),
    (ipvs_table, {"services": [{"address": VIP, "port": 80, "persistence_prefix": 24}]},
     "services[0]: persistence_prefix=24 needs persistence_timeout"),
])
def test_relations_with_the_kernels_values_are_checked_after_reading_it(kernel, capsys, module, args, message):
    """A relation between an option given and one left out needs the kernel's value (here the scheduler rr)."""
    result = run(module, args, capsys)
    assert result["failed"] and result["msg"].startswith(message), result["msg"]
    assert (kernel.applied, kernel.opened) == ([], 1)


TABLE = {"services": [{"address": VIP, "port": 80, "scheduler": "wrr"},
                      {"address": VIP, "port": 81, "scheduler": "sh", "real_servers": [{"address": "198.51.100.102"}]}]}


def by_service(*services):
    """The diff's form: a mapping, which ansible-core's diff display takes (a list makes its callback fail)."""
    return dict((describe_service(svc), svc) for svc in services)


def predicted():
    new = dict(held(81), scheduler="sh", real_servers=[dict(held(81)["real_servers"][0], address="198.51.100.102", weight=1)])
    return [dict(held(), scheduler="wrr"), new]


def test_check_mode_predicts_the_touched_services_and_applies_nothing(kernel, capsys):
    result = run(ipvs_table, dict(TABLE, _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert kernel.applied == [] and result["changed"]
    assert result["changes"] == ["edit service TCP 198.51.100.10:80", "add service TCP 198.51.100.10:81",
                                 "add real server 198.51.100.102:81 to TCP 198.51.100.10:81"]
    assert result["services"] == predicted()
    assert result["diff"] == dict(before=by_service(held()), after=by_service(*result["services"])) and result["removed"] == []


def test_a_run_applies_the_plan_and_reports_the_table_the_kernel_then_holds(kernel, capsys):
    kernel.then = predicted()
    kernel.then[1]["real_servers"][0]["weight"] = 7  # what the kernel reads back wins over the prediction
    result = run(ipvs_table, dict(TABLE, purge_services=True, _ansible_diff=True), capsys)
    ((ops, before, schedulers),) = kernel.applied
    assert [describe_op(op) for op in ops] == result["changes"] and before == [held()] and schedulers == ["sh", "wrr"]
    assert result["services"] == kernel.then and result["diff"] == dict(before=by_service(held()), after=by_service(*kernel.then))


def test_where_ip_vs_is_not_loaded_the_table_is_empty_and_purging_removes_nothing(kernel, capsys):
    kernel.loaded = False
    result = run(ipvs_table, dict(TABLE, purge_services=True, _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert result["removed"] == [] and result["diff"]["before"] == {} and kernel.applied == []
    assert result["changes"][0] == "add service TCP 198.51.100.10:80"
    assert run(ipvs_info, {}, capsys) == dict(changed=False, ipvs_loaded=False, services=[], health=None, sync_daemons=[],
                                              invocation={"module_args": {"floating": None}})


# -- owned: the services the task declared once and no longer lists are removed, nothing else

OTHER = "198.51.100.99"  # another tool's service, on an address the task does not own


def mark_svc(mark, family="ipv4"):
    return dict(held(), family=family, protocol=None, address=None, port=None, fwmark=mark,
                real_servers=[dict(held()["real_servers"][0], port=0)])


def recorded(*marks):
    return ipvs_table.OWNED_HEADER + "".join("%d\n" % m for m in marks)


@pytest.fixture
def owned_table(kernel, tmp_path):
    """The kernel holds the task's VIP:80 and VIP:81, another tool's OTHER:80, mark 5 (never declared) and mark 7
    (declared by an earlier run, recorded in the file)."""
    kernel.held = [held(80), held(81), dict(held(80), address=OTHER), mark_svc(5), mark_svc(7)]
    path = tmp_path / "owned"
    path.write_text(recorded(7))
    return kernel, path


def owned_args(path, **extra):
    return dict({"services": [{"address": VIP, "port": 80}, {"fwmark": 9, "real_servers": [{"address": "198.51.100.101"}]}],
                 "owned": {"addresses": [VIP], "path": str(path)}}, **extra)


def test_owned_removes_its_unlisted_services_and_keeps_other_tools_and_undeclared_marks(owned_table, capsys):
    kernel, path = owned_table
    kernel.then = [held(80), dict(held(80), address=OTHER), mark_svc(5), mark_svc(9)]
    result = run(ipvs_table, owned_args(path, _ansible_diff=True), capsys)
    assert result["changed"] and not result.get("failed"), result
    assert result["changes"][:2] == ["delete service TCP 198.51.100.10:81", "delete service FWM 7 (ipv4)"]
    assert [(s["address"], s["port"], s["fwmark"]) for s in result["removed"]] == [(VIP, 81, 0), (None, None, 7)]
    ((ops, _before, _schedulers),) = kernel.applied
    deleted = [op[1] for op in ops if describe_op(op).startswith("delete service")]
    assert all(s["address"] != OTHER and s["fwmark"] != 5 for s in deleted)  # another tool's, a mark never declared
    assert path.read_text() == recorded(9)  # the marks listed now
    table_diff, file_diff = result["diff"]
    assert [s["fwmark"] or s["port"] for s in table_diff["before"].values()] == [81, 7]
    assert (file_diff["before"], file_diff["after"]) == (recorded(7), recorded(9))


def test_owned_in_check_mode_shows_the_removal_and_changes_nothing(owned_table, capsys):
    kernel, path = owned_table
    result = run(ipvs_table, owned_args(path, _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert result["changed"] and kernel.applied == [] and path.read_text() == recorded(7)
    assert [s["fwmark"] or s["port"] for s in result["removed"]] == [81, 7]
    assert result["changes"][:3] == ["delete service TCP 198.51.100.10:81", "delete service FWM 7 (ipv4)", "add service FWM 9 (ipv4)"]
    assert [s["fwmark"] or s["port"] for s in result["diff"][0]["before"].values()] == [81, 7]
    assert result["diff"][1]["after"] == recorded(9)


def test_owned_repeat_changes_nothing_and_no_mark_means_no_file(kernel, tmp_path, capsys):
    path = tmp_path / "owned"
    args = {"services": [{"address": VIP, "port": 80}], "owned": {"addresses": [VIP], "path": str(path)}}
    result = run(ipvs_table, args, capsys)
    assert not result["changed"] and not path.exists() and kernel.applied == []
    path.write_text(recorded(7))  # a mark declared before and no longer listed: the file goes with it
    result = run(ipvs_table, args, capsys)
    assert result["changed"] and not path.exists() and result["changes"] == []


def test_a_mark_listed_now_is_owned_in_both_families(kernel, tmp_path, capsys):
    kernel.held = [mark_svc(9), mark_svc(9, "ipv6")]
    result = run(ipvs_table, {"services": [{"fwmark": 9}], "owned": {"path": str(tmp_path / "owned")}}, capsys)
    assert result["changes"] == ["delete service FWM 9 (ipv6)"]
    assert (tmp_path / "owned").read_text() == recorded(9)


def test_without_owned_or_purge_nothing_is_removed(owned_table, capsys):
    kernel, _path = owned_table
    result = run(ipvs_table, {"services": [{"address": VIP, "port": 80}]}, capsys)
    assert result["removed"] == [] and not result["changed"]


@pytest.mark.parametrize("owned, content, message", [
    ({"addresses": [VIP, "198.51.100.x"]}, None, "owned.addresses[1]='198.51.100.x' is not an IPv4 or IPv6 address"),
    ({"addresses": ["fe80::1%eth0"]}, None, "owned.addresses[0]='fe80::1%eth0' is a scoped address"),
    ({"addresses": ["010.0.0.1"]}, None, "owned.addresses[0]='010.0.0.1' is not an IPv4"),
    ({"path": "relative/owned"}, None, "owned.path must be an absolute path"),
    ({"path": "/tmp/a b"}, None, "owned.path must be an absolute path"),
    ({}, "# my own notes\n7\n", "owned.path: {path} exists and is not managed by lvs.nat"),
    ({}, recorded(7) + "8 # web\n", "owned.path: line 3 of {path} is not a fwmark (1 to 4294967295): '8 # web'"),
    ({}, recorded(7) + "4294967296\n", "owned.path: line 3 of {path} is not a fwmark"),
    ({}, recorded(7, 5), "owned.path: {path} is not a list of fwmarks as lvs.nat.ipvs_table writes it"),
    ({}, recorded(7).rstrip("\n"), "owned.path: {path} is not a list of fwmarks"),
    ({}, "# Managed by lvs.nat.ipvs_save: the owned IPVS services\n-A -t 198.51.100.10:80 -s wlc\n", "owned.path: line 2 of {path}"),
])
def test_bad_owned_values_and_files_are_refused_before_the_kernel_is_read(owned_table, capsys, owned, content, message):
    kernel, path = owned_table
    if content is not None:
        path.write_text(content)
    before = path.read_text()
    result = run(ipvs_table, dict(owned_args(path), owned=dict({"addresses": [VIP], "path": str(path)}, **owned)), capsys)
    assert result["failed"] and result["msg"].startswith(message.format(path=path)), result["msg"]
    assert (kernel.opened, kernel.applied, path.read_text()) == (0, [], before)


def test_owned_skip_leaves_another_writers_services_in_the_kernel(owned_table, capsys):
    # VIP:81 and mark 7 are the health service's (owned.skip): on the owned address / a recorded mark, yet kept.
    kernel, path = owned_table
    args = owned_args(path, _ansible_diff=True)
    args["owned"]["skip"] = [{"address": VIP, "port": 81}, {"fwmark": 7}]
    result = run(ipvs_table, args, capsys)
    assert not result.get("failed") and result["removed"] == [], result
    ((ops, _before, _schedulers),) = kernel.applied
    assert not [op for op in ops if describe_op(op).startswith("delete service")]
    assert result["changes"] == ["add service FWM 9 (ipv4)", "add real server 198.51.100.101:0 to FWM 9 (ipv4)"]


@pytest.mark.parametrize("skip, message", [
    ([{"address": VIP, "port": 80}], "services[0]: TCP 198.51.100.10:80 is also in owned.skip[0]: a service has one writer"),
    ([{"fwmark": 9}], "services[1]: FWM 9 (ipv4) is also in owned.skip[0]"),
    ([{"fwmark": 5}, {"address": "198.51.100.x", "port": 80}], "owned.skip[1]: address='198.51.100.x' is not an IPv4"),
])
def test_a_skipped_service_cannot_be_listed_or_malformed(owned_table, capsys, skip, message):
    kernel, path = owned_table
    args = owned_args(path)
    args["owned"]["skip"] = skip
    result = run(ipvs_table, args, capsys)
    assert result["failed"] and result["msg"].startswith(message), result["msg"]
    assert (kernel.opened, kernel.applied) == (0, [])


def test_owned_and_purge_services_are_mutually_exclusive(owned_table, capsys):
    kernel, path = owned_table
    result = run(ipvs_table, owned_args(path, purge_services=True), capsys)
    assert result["failed"] and "mutually exclusive: purge_services|owned" in result["msg"], result["msg"]
    assert kernel.opened == 0


@given(st.sets(st.integers(1, 2 ** 32 - 1), max_size=20))
def test_the_owned_file_gives_back_the_marks_written(marks):
    text = ipvs_table.owned_text(marks)
    assert (text is None) == (not marks)
    assert ipvs_table.parse_owned(text, "/x") == marks


@given(st.text(max_size=300) | st.builds(lambda t: ipvs_table.OWNED_HEADER + t, st.text(alphabet="0123456789\n -#x", max_size=40)))
def test_any_other_owned_file_is_refused_naming_the_option(text):
    try:
        marks = ipvs_table.parse_owned(text, "/x")
    except PersistError as e:
        assert str(e).startswith("owned.path: ")
    else:  # accepted: exactly what owned_text writes for those marks
        assert ipvs_table.owned_text(marks) == text


def test_the_diff_renders_in_ansible_cores_display(owned_table, capsys):
    """--diff output goes through CallbackBase._get_diff, which takes text or mappings: a list made it fail
    ("'list' object has no attribute 'splitlines'") and showed no diff."""
    from ansible.plugins.callback import CallbackBase

    _kernel, path = owned_table
    shown = CallbackBase()._get_diff(run(ipvs_table, owned_args(path, _ansible_check_mode=True, _ansible_diff=True), capsys)["diff"])
    assert "TCP 198.51.100.10:81" in shown and "FWM 7 (ipv4)" in shown and str(path) in shown
    shown = CallbackBase()._get_diff(run(ipvs_table, dict(TABLE, _ansible_check_mode=True, _ansible_diff=True), capsys)["diff"])
    assert "TCP 198.51.100.10:81" in shown


# ---------------------------------------------------------------- ipvs_table at scale: compact form, result, timeouts

@pytest.mark.parametrize("entry, message", [
    ("198.51.100.101:80:70000", "services[0]: real_servers[1] weight=70000 is out of range"),
    ("198.51.100.101:70000", "services[0]: real_servers[1] port=70000 is out of range"),
    ("2001:db8::101:80", "services[0]: real_servers[1]='2001:db8::101:80' is neither ADDRESS, ADDRESS:PORT nor "
                         "ADDRESS:PORT:WEIGHT (an IPv6 address in brackets)"),
    ("[198.51.100.101]:80", "services[0]: real_servers[1]='[198.51.100.101]:80': only an IPv6 address goes in brackets"),
    ("198.51.100.101:80:3\n", "services[0]: real_servers[1]='198.51.100.101:80:3\\n' is neither"),
    ("198.51.100.101 :80", "services[0]: real_servers[1]='198.51.100.101 :80' is neither"),
    ("224.0.0.5:80", "services[0]: real_servers[1] address=224.0.0.5 cannot be a real server address: it is a multicast"),
    ("198.51.100.102:80:1", "services[0]: real_servers[1]: 198.51.100.102:80 is listed twice"),
    ({"address": "198.51.100.103", "wieght": 3}, "services[0]: real_servers[1]: 'wieght' is not an option of a real server "
                                                 "(it takes address, port, forwarding, weight, upper_threshold, lower_threshold)"),
    ({"address": "198.51.100.103", "weight": "3 "}, "services[0]: real_servers[1] weight='3 ' is not an integer"),
    (["198.51.100.103"], "services[0]: real_servers[1]=['198.51.100.103'] is neither a dict"),
])
def test_a_bad_real_server_in_either_form_is_named_before_any_change(kernel, capsys, entry, message):
    """Real servers are checked by the module's own one-pass code (not AnsibleModule's sub-options): each error names
    services[i]: real_servers[j] and the field, before the Session is opened."""
    result = run(ipvs_table, {"services": [{"address": VIP, "port": 80,
                                            "real_servers": [{"address": "198.51.100.102"}, entry]}]}, capsys)
    assert result["failed"] and result["msg"].startswith(message), result["msg"]
    assert kernel.applied == [] and kernel.opened == 0


@pytest.fixture
def table_kernel(monkeypatch):
    """A kernel that applies the operations (module_fakes.TableSession), holding held()."""
    fake = module_fakes.TableSession([held()])
    monkeypatch.setattr(_ipvs, "Session", fake)
    return fake


def test_the_compact_form_is_the_dict_with_those_keys(table_kernel, capsys):
    compact = run(ipvs_table, {"services": [{"address": VIP, "port": 80, "real_servers": [
        "198.51.100.101:80:2", "198.51.100.102", "198.51.100.103:8080"]}], "purge_real_servers": True}, capsys)
    table_kernel.held = [held()]
    as_dicts = run(ipvs_table, {"services": [{"address": VIP, "port": 80, "real_servers": [
        {"address": "198.51.100.101", "port": 80, "weight": 2}, {"address": "198.51.100.102"},
        {"address": "198.51.100.103", "port": 8080}]}], "purge_real_servers": True}, capsys)
    assert compact["changes"] == as_dicts["changes"] == [
        "add real server 198.51.100.102:80 to TCP 198.51.100.10:80", "add real server 198.51.100.103:8080 to TCP 198.51.100.10:80"]
    # the weight left out of 198.51.100.102 takes the creation default; 198.51.100.101 keeps weight 2: no edit
    added = compact["services"][0]["real_servers"]
    assert [(d["address"], d["port"], d["weight"]) for d in added] == [
        ("198.51.100.101", 80, 2), ("198.51.100.102", 80, 1), ("198.51.100.103", 8080, 1)]
    v6 = run(ipvs_table, {"services": [{"address": "2001:db8::10", "port": 443, "real_servers": ["[2001:DB8::0101]:8443:4"]}]},
             capsys)
    assert v6["changes"] == ["add service TCP [2001:db8::10]:443", "add real server [2001:db8::101]:8443 to TCP [2001:db8::10]:443"]


def test_the_result_echoes_a_count_of_the_table_not_the_table(kernel, capsys):
    """ansible-core echoes the whole arguments (and scans them for no_log values) unless a module names its own
    invocation: a 10,000-destination table would make every result as large as the table."""
    dests = ["198.51.100.%d:80" % n for n in range(101, 121)]
    result = run(ipvs_table, {"services": [{"address": VIP, "port": 80, "real_servers": dests}]}, capsys)
    args = result["invocation"]["module_args"]
    assert args["services"] == "1 services, 20 real servers" and args["purge_real_servers"] is False
    assert "198.51.100.120" not in json.dumps(result["invocation"])


def test_compact_returns_the_touched_services_by_name(table_kernel, capsys):
    table_kernel.held = [held(80), held(81)]
    result = run(ipvs_table, {"services": [{"address": VIP, "port": 80, "scheduler": "wrr"}, {"address": VIP, "port": 82}],
                              "purge_services": True, "compact": True}, capsys)
    assert result["services"] == ["TCP 198.51.100.10:80", "TCP 198.51.100.10:82"]
    assert result["removed"] == ["TCP 198.51.100.10:81"]
    assert result["changes"] == ["delete 1 service", "edit 1 service", "add 1 service"] and result["operations"] == 3
    # Real servers counted too, each kind in the order it first comes; diff mode still shows the services in full.
    table_kernel.held = [held(80)]
    dests = ["198.51.100.%d" % n for n in range(102, 112)]
    result = run(ipvs_table, {"services": [{"address": VIP, "port": 80, "real_servers": dests},
                                           {"address": VIP, "port": 83, "real_servers": dests[:2]}],
                              "purge_real_servers": True, "compact": True, "_ansible_diff": True}, capsys)
    assert result["changes"] == ["delete 1 real server", "add 12 real servers", "add 1 service"]
    assert result["operations"] == 14 and result["services"] == ["TCP 198.51.100.10:80", "TCP 198.51.100.10:83"]
    assert len(result["diff"]["after"]["TCP 198.51.100.10:80"]["real_servers"]) == 10


class TimeoutsSession(FakeSession):
    """FakeSession with the kernel's global timeouts, set as the kernel sets them (0 leaves one as it is)."""

    def __init__(self, table):
        super().__init__(table)
        self.times, self.set = dict(KERNEL_TIMEOUTS), []

    def timeouts(self):
        return dict(self.times)

    def set_timeouts(self, tcp, tcp_fin, udp):
        self.set.append((tcp, tcp_fin, udp))
        self.times.update((k, v) for k, v in dict(tcp=tcp, tcp_fin=tcp_fin, udp=udp).items() if v)


def test_timeouts_are_set_in_the_same_run_as_ipvs_timeouts_sets_them(monkeypatch):
    kernel = TimeoutsSession([held()])
    monkeypatch.setattr(_ipvs, "Session", kernel)
    args = {"services": [{"address": VIP, "port": 80, "scheduler": "rr"}], "timeouts": {"tcp": 600, "udp": 300}}
    checked = ipvs_table.run(module_fakes.FakeModule(IPVS_TABLE_SPEC, args, check_mode=True))
    assert checked["changed"] and checked["changes"] == ["set the timeouts tcp=600"] and kernel.set == []
    assert checked["timeouts"] == dict(KERNEL_TIMEOUTS, tcp=600)
    assert checked["diff"]["before"]["timeouts"]["tcp"] == 900 and checked["diff"]["after"]["timeouts"]["tcp"] == 600
    done = ipvs_table.run(module_fakes.FakeModule(IPVS_TABLE_SPEC, args))
    assert kernel.set == [(600, 0, 300)] and done["timeouts"] == checked["timeouts"]
    again = ipvs_table.run(module_fakes.FakeModule(IPVS_TABLE_SPEC, args))
    assert not again["changed"] and again["changes"] == [] and len(kernel.set) == 1
    bad = module_fakes.FakeModule(IPVS_TABLE_SPEC, dict(args, timeouts={"tcp_fin": 0}))
    with pytest.raises(ipvs_table._ipvs_plan.InvalidInput, match=r"^timeouts\.tcp_fin=0 is out of range"):
        ipvs_table.run(bad)
    assert len(kernel.set) == 1


# -- save: the listed services and the timeouts kept for the boot, in the run that reconciles them

def save_args(tmp_path, **extra):
    """VIP:80 edited, VIP:82 added, VIP:81 removed (owned), VIP:90 lvs-nat-healthd's (skipped), OTHER:80 another tool's."""
    return dict({"services": [{"address": VIP, "port": 80, "scheduler": "wrr", "real_servers": ["198.51.100.101:80:3"]},
                              {"address": VIP, "port": 82, "real_servers": ["198.51.100.102:8080"]}],
                 "owned": {"addresses": [VIP], "path": str(tmp_path / "marks"), "skip": [{"address": VIP, "port": 90}]},
                 "save": {"path": str(tmp_path / "ipvs.rules"), "unit_path": str(tmp_path / "lvs-nat-ipvs.service")}},
                **extra)


def test_save_writes_what_ipvs_save_writes_predicted_in_check_mode(monkeypatch, tmp_path, capsys):
    """The saved file and unit of a run with save are, byte for byte, those lvs.nat.ipvs_save then writes for the same
    services; check mode predicts the file and writes nothing; a second run changes nothing."""
    kernel = module_fakes.TableSession([held(80), held(81), held(90), dict(held(80), address=OTHER)])
    monkeypatch.setattr(_ipvs, "Session", kernel)
    rules, unit = tmp_path / "ipvs.rules", tmp_path / "lvs-nat-ipvs.service"
    checked = run(ipvs_table, save_args(tmp_path, _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert checked["changed"] and not rules.exists() and not unit.exists() and kernel.applied == []
    predicted = next(d["after"] for d in checked["diff"][1:] if d["after_header"] == str(rules))
    done = run(ipvs_table, save_args(tmp_path), capsys)
    assert done["changed"] and done["saved"]["changed"] and rules.read_text() == predicted
    assert [(s["port"], s["scheduler"]) for s in done["saved"]["services"]] == [(80, "wrr"), (82, "wlc")]
    assert predicted.splitlines()[1:] == [
        "--set 900 120 300",
        "-A -t 198.51.100.10:80 -s wrr", "-a -t 198.51.100.10:80 -r 198.51.100.101:80 -m -w 3 -x 0 -y 0",
        "-A -t 198.51.100.10:82 -s wlc", "-a -t 198.51.100.10:82 -r 198.51.100.102:8080 -m -w 1 -x 0 -y 0"]
    again = run(ipvs_table, save_args(tmp_path), capsys)
    assert not again["changed"] and not again["saved"]["changed"] and len(kernel.applied) == 1
    by_save = {"path": str(tmp_path / "saved-by-ipvs_save"), "unit_path": str(tmp_path / "unit-by-ipvs_save")}
    run(ipvs_save, dict(by_save, addresses=[VIP], skip=[{"address": VIP, "port": 90}]), capsys)
    assert Path(by_save["path"]).read_text() == rules.read_text()
    assert Path(by_save["unit_path"]).read_text() == unit.read_text().replace(str(rules), by_save["path"])


def test_save_refuses_bad_paths_and_foreign_files_before_the_kernel_is_read(monkeypatch, tmp_path, capsys):
    kernel = module_fakes.TableSession([held(80)])
    monkeypatch.setattr(_ipvs, "Session", kernel)
    bad = save_args(tmp_path)
    bad["save"]["path"] = str(tmp_path / "a b")
    result = run(ipvs_table, bad, capsys)
    assert result["failed"] and result["msg"].startswith("save.path must be an absolute path"), result["msg"]
    (tmp_path / "lvs-nat-ipvs.service").write_text("[Unit]\nDescription=someone else's\n")
    result = run(ipvs_table, save_args(tmp_path), capsys)
    assert result["failed"] and result["msg"].startswith("save.unit_path: "), result["msg"]
    assert kernel.opened == 0 and kernel.applied == [] and not (tmp_path / "ipvs.rules").exists()


def test_a_large_table_is_planned_and_applied_without_the_cycle_collectors_passes(kernel, capsys, monkeypatch):
    """50,000 destinations from empty: with the collector on, this run made 2 full passes over everything alive and
    about 200 young ones up to its result (2026-12-05), a cost that grows faster than the table; run_module turns it
    off (the passes after the module's exit, in this test's process, are not counted)."""
    kernel.held = []
    rips = ["10.0.0.%d" % n for n in range(1, 51)]
    args = {"services": [{"address": VIP, "port": 10000 + s, "real_servers": [
        "%s:%d:1" % (rips[r % 50], 8000 + r // 50) for r in range(100)]} for s in range(500)],
        "purge_services": True, "purge_real_servers": True, "compact": True}
    passes, counted = [], []  # counted: the passes from building the module to its exit_json

    def count(phase, info):
        if phase == "start":
            passes.append(info["generation"])
    build_module, exit_json = ipvs_table.build_module, AnsibleModule.exit_json

    def building():
        del passes[:]
        return build_module()

    def exiting(module, **result):
        counted[:] = passes
        exit_json(module, **result)
    monkeypatch.setattr(ipvs_table, "build_module", building)
    monkeypatch.setattr(AnsibleModule, "exit_json", exiting)
    gc.callbacks.append(count)
    try:
        result = run(ipvs_table, args, capsys)
    finally:
        gc.callbacks.remove(count)
    assert result["operations"] == 50500 and result["changes"] == ["add 500 services", "add 50000 real servers"]
    assert counted == []
