# SPDX-License-Identifier: GPL-3.0-or-later
"""nat_rules' run() against a fake module and a fake backend: bad values are refused before any change (in check
mode too), the paths written into the unit, the argument spec's raw integers, and the lock around read-plan-apply.
The netns target proves the kernel side."""
from __future__ import annotations

import contextlib
import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.lvs.nat.plugins.module_utils import _netfilter as nf
from ansible_collections.lvs.nat.plugins.module_utils import _persist
from ansible_collections.lvs.nat.plugins.modules import nat_rules

RULES = [{"type": "masquerade", "source": "198.51.100.64/26", "out_interface": "eth0"}]


class FakeModule(object):
    def __init__(self, tmp_path, check_mode=False, **params):
        self.params = dict(rules=RULES, state="present", backend="nftables", persistent=True,
                           path=str(tmp_path / "etc" / "nat-rules"), unit_path=str(tmp_path / "system" / "lvs-nat-rules.service"))
        self.params.update(params)
        self.check_mode, self._diff = check_mode, True
        self.commands = []

    def get_bin_path(self, name, opt_dirs=None):
        return "/usr/sbin/" + name

    def atomic_move(self, src, dest):
        os.rename(src, dest)

    def run_command(self, argv, **kwargs):
        self.commands.append(argv)
        return 0, "", ""


class FakeBackend(nf.Nftables):
    """The nftables backend with a kernel in memory; records every call that reads or changes it."""

    def __init__(self, calls, held):
        self.calls, self.held, self.table = calls, held, None

    def _call(self, name):
        assert self.held, "%s outside the lock" % name
        self.calls.append(name)

    def current(self):
        self._call("current")
        return None if self.table is None else dict(self.table)

    def replace(self, rules, check_only):
        self._call("replace")
        if not check_only:
            self.table = self.desired(rules)

    def remove(self):
        self._call("remove")
        self.table = None


@pytest.fixture
def kernel(monkeypatch, tmp_path):
    calls, held = [], []

    @contextlib.contextmanager
    def lock(name):
        assert name == "nat_rules" and not held
        held.append(name)
        try:
            yield str(tmp_path / "nat_rules.lock")
        finally:
            held.pop()

    backend = FakeBackend(calls, held)
    monkeypatch.setattr(_persist, "lock", lock)
    monkeypatch.setattr(nf, "detect", lambda module, requested: backend._call("detect") or "nftables")

    def make(name, module):
        backend.module = module
        return backend
    monkeypatch.setattr(nf, "backend", make)
    return backend


def files(tmp_path):
    return sorted(os.path.relpath(os.path.join(d, f), str(tmp_path)) for d, _dirs, fs in os.walk(str(tmp_path)) for f in fs)


@pytest.mark.parametrize("value", [
    "/tmp/x\nExecStartPre=/bin/touch /tmp/pwned",  # a newline adds a unit directive
    "/tmp/x' ; touch /tmp/pwned '",  # a quote and ';' reach a shell
    "/tmp/rules file",  # a space makes two arguments
    "/tmp/%h/rules",  # a systemd specifier
    "/tmp/$HOME",
    "relative/rules",
    "/etc/../tmp/rules",
])
@pytest.mark.parametrize("option", ["path", "unit_path"])
@pytest.mark.parametrize("check_mode", [False, True])
def test_unsafe_paths_are_refused_before_any_change(kernel, tmp_path, option, value, check_mode):
    module = FakeModule(tmp_path, check_mode=check_mode, **{option: value})
    with pytest.raises(nf.NetfilterError) as e:
        nat_rules.run(module)
    assert str(e.value).startswith("%s must be an absolute path" % option)
    assert kernel.calls == [] and kernel.table is None and files(tmp_path) == [] and module.commands == []


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_bad_rule_is_refused_naming_it_before_any_change(kernel, tmp_path, check_mode):
    rules = RULES + [{"type": "masquerade", "out_interface": "eth0\n"}]
    module = FakeModule(tmp_path, check_mode=check_mode, rules=rules)
    with pytest.raises(nf.NetfilterError) as e:
        nat_rules.run(module)
    assert str(e.value).startswith("rules[1].out_interface='eth0\\n' is not an interface name")
    assert kernel.calls == [] and files(tmp_path) == []


def test_apply_under_the_lock_then_nothing_to_do(kernel, tmp_path):
    check = nat_rules.run(FakeModule(tmp_path, check_mode=True))
    assert check["changed"] and kernel.table is None and files(tmp_path) == []
    first = nat_rules.run(FakeModule(tmp_path))
    assert first["changed"] and first["ruleset"]["postrouting"] == ['oifname "eth0" ip saddr 198.51.100.64/26 masquerade']
    module = FakeModule(tmp_path)
    unit = open(module.params["unit_path"]).read()
    assert "ExecStart=/usr/sbin/nft -f %s\n" % module.params["path"] in unit
    assert not nat_rules.run(module)["changed"]
    assert "replace" not in kernel.calls[-3:]
    gone = nat_rules.run(FakeModule(tmp_path, state="absent"))
    assert gone["changed"] and kernel.table is None and files(tmp_path) == []


def fail_message(args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit):
        nat_rules.main()
    return json.loads(capsys.readouterr().out)["msg"]


@pytest.mark.parametrize("rule, message", [
    # Ansible's int type turns "٨٠" into 80 and keeps True as True: the integers are raw, checked by the validator.
    ({"type": "accept", "chain": "input", "protocol": "tcp", "port": "\u0668\u0660"}, "rules[0].port='\u0668\u0660' is not a whole number"),
    ({"type": "accept", "chain": "input", "protocol": "tcp", "port": True}, "rules[0].port=True is not a whole number"),
    ({"type": "mark", "mark": 1.5}, "rules[0].mark=1.5 is not a whole number"),
    ({"type": "rate_limit", "destination": "198.51.100.10", "rate": "20/second\n"}, "rules[0].rate='20/second\\n' must look like"),
])
def test_through_the_argument_spec(kernel, rule, message, capsys, tmp_path):
    args = {"rules": [rule], "path": str(tmp_path / "r"), "unit_path": str(tmp_path / "u.service"), "_ansible_check_mode": True}
    assert fail_message(args, capsys).startswith(message)
    assert kernel.calls == [] and files(tmp_path) == []


@pytest.mark.parametrize("check_mode", [False, True])
def test_persistent_false_removes_the_files_an_earlier_run_wrote(kernel, tmp_path, check_mode):
    nat_rules.run(FakeModule(tmp_path))
    assert files(tmp_path) == ["etc/nat-rules", "system/lvs-nat-rules.service",
                               "system/multi-user.target.wants/lvs-nat-rules.service"]
    r = nat_rules.run(FakeModule(tmp_path, check_mode=check_mode, persistent=False))
    assert r["changed"] and [d["after"] for d in r["diff"][1:]] == ["", ""]
    assert kernel.table is not None  # the rules stay in the kernel
    assert (files(tmp_path) == []) != check_mode


# ---------------------------------------------------------------- protocol vrrp (keepalived's adverts, IP protocol 112)

VRRP_RULES = [{"type": "accept", "chain": "input", "in_interface": "eth1", "protocol": "vrrp"},
              {"type": "accept", "chain": "input", "source": "198.51.100.12", "destination": "198.51.100.11",
               "protocol": "vrrp", "comment": "peer -p vrrp meta l4proto vrrp"},
              {"type": "accept", "chain": "input", "in_interface": "eth2", "protocol": "udp", "port": 8848}]


class ListingModule(FakeModule):
    """A module whose tools print the given listing, whatever they are asked."""

    def __init__(self, tmp_path, listing):
        super(ListingModule, self).__init__(tmp_path)
        self.listing = listing

    def run_command(self, argv, **kwargs):
        self.commands.append(argv)
        return 0, self.listing(argv), ""


def test_vrrp_is_written_as_its_number_for_both_tools():
    rules = nf.normalise_rules(VRRP_RULES)
    assert nf.nft_ruleset(rules)[0]["input"] == [
        'iifname "eth1" meta l4proto 112 accept',
        'ip saddr 198.51.100.12 ip daddr 198.51.100.11 meta l4proto 112 accept comment "peer -p vrrp meta l4proto vrrp"',
        'iifname "eth2" udp dport 8848 accept']
    assert nf.ipt_ruleset(rules)[("filter", "LVS-NAT-INPUT")] == [
        "-A LVS-NAT-INPUT -i eth1 -p 112 -j ACCEPT",
        '-A LVS-NAT-INPUT -s 198.51.100.12/32 -d 198.51.100.11/32 -p 112 -m comment --comment '
        '"peer -p vrrp meta l4proto vrrp" -j ACCEPT',
        "-A LVS-NAT-INPUT -i eth2 -p udp -m udp --dport 8848 -j ACCEPT"]


@pytest.mark.parametrize("name", ["vrrp", "112"])  # /etc/protocols with netbase's vrrp line, or without it
def test_vrrp_listed_by_name_or_number_reads_back_as_written(tmp_path, name):
    """nft 1.0.6 and iptables 1.8.9 list protocol 112 by its /etc/protocols name: the read-back equals the rendered
    rule, so a second run changes nothing; a comment that happens to contain the words is left as it is."""
    rules = nf.normalise_rules(VRRP_RULES)
    comment = '"peer -p vrrp meta l4proto vrrp"'
    nft_listing = ("table inet lvs_nat {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
                   '\t\tiifname "eth1" meta l4proto %s accept\n'
                   "\t\tip saddr 198.51.100.12 ip daddr 198.51.100.11 meta l4proto %s accept comment %s\n"
                   '\t\tiifname "eth2" udp dport 8848 accept\n\t}\n}\n') % (name, name, comment)
    nft = nf.Nftables(ListingModule(tmp_path, lambda argv: nft_listing))
    assert nft.current()["input"] == nft.desired(rules)["input"]

    def ipt_listing(argv):
        if "filter" not in argv:
            return ""
        return ("-P INPUT ACCEPT\n-N LVS-NAT-INPUT\n-A INPUT -j LVS-NAT-INPUT\n-A LVS-NAT-INPUT -i eth1 -p %s -j ACCEPT\n"
                "-A LVS-NAT-INPUT -s 198.51.100.12/32 -d 198.51.100.11/32 -p %s -m comment --comment %s -j ACCEPT\n"
                "-A LVS-NAT-INPUT -i eth2 -p udp -m udp --dport 8848 -j ACCEPT\n") % (name, name, comment)
    ipt = nf.Iptables(ListingModule(tmp_path, ipt_listing))
    assert ipt.current()[("filter", "LVS-NAT-INPUT")] == ipt.desired(rules)[("filter", "LVS-NAT-INPUT")]


@pytest.mark.parametrize("rule, message", [
    ({"type": "accept", "chain": "input", "protocol": "vrrp", "port": 112},
     "rules[0].protocol=vrrp (IP protocol 112) is for accept rules without a port: remove rules[0].port"),
    ({"type": "mark", "protocol": "vrrp", "mark": 1}, "rules[0].protocol=vrrp (IP protocol 112) is for accept rules"),
    ({"type": "dnat", "destination": "198.51.100.10", "protocol": "vrrp", "to_destination": "198.51.100.65"},
     "rules[0].protocol=vrrp (IP protocol 112) is for accept rules"),
    ({"type": "accept", "chain": "input", "protocol": "112"}, "rules[0].protocol='112' must be one of: tcp, udp, vrrp"),
    ({"type": "accept", "chain": "input", "protocol": "VRRP"}, "rules[0].protocol='VRRP' must be one of"),
])
def test_vrrp_is_refused_where_it_does_not_apply(rule, message):
    with pytest.raises(nf.NetfilterError) as e:
        nf.normalise_rules([rule])
    assert str(e.value).startswith(message)


def test_vrrp_applied_once_then_nothing_to_do(kernel, tmp_path):
    """Applied once, then read back equal; the argument spec takes vrrp (its choices are the validator's)."""
    module = FakeModule(tmp_path, rules=VRRP_RULES)
    first = nat_rules.run(module)
    assert first["changed"] and 'iifname "eth1" meta l4proto 112 accept' in first["ruleset"]["input"]
    assert not nat_rules.run(FakeModule(tmp_path, rules=VRRP_RULES))["changed"]
    assert nat_rules.RULE_SPEC["protocol"]["choices"] == ["tcp", "udp", "vrrp"]
