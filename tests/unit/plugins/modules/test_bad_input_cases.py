# SPDX-License-Identifier: GPL-3.0-or-later
"""Every bad-input case of the lab target ipvs_bad_input (its cases.yml) through the module's main(), in-process,
against a fake kernel holding what the target's "Start from a known table" leaves: each run fails, changes nothing
and names the problem (`expect` in its message), and the kernel sees no change. The lab runs a few of the cases on
the real kernel; the refusals themselves are the argument specs and the collection's own checks."""
from __future__ import annotations

import copy
from pathlib import Path

import lab
import module_fakes
import pytest
import yaml
from test_ipvs_table import run  # the one way these tests run a module's main() with arguments

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.modules import ipvs_real_server, ipvs_service, ipvs_table, ipvs_timeouts

CASES_FILE = Path(__file__).resolve().parents[3] / "integration" / "targets" / "ipvs_bad_input" / "cases.yml"
# The target's variables as tests/integration/run_target.yml sets them from the lab's inventory.
LAB_VARS = {"{{ vip }}": lab.VIP, "{{ rip1 }}": lab.realserver_ip("rs1"), "{{ rip2 }}": lab.realserver_ip("rs2")}
MODULES = {"service_cases": ipvs_service, "real_server_cases": ipvs_real_server, "timeout_cases": ipvs_timeouts,
           "table_cases": ipvs_table}


def templated(value):
    """A case as Ansible templates it in the target: a placeholder is the whole of its string."""
    if isinstance(value, dict):
        return dict((k, templated(v)) for k, v in value.items())
    if isinstance(value, list):
        return [templated(v) for v in value]
    return LAB_VARS.get(value, value) if isinstance(value, str) else value


def load_cases():
    data = yaml.safe_load(CASES_FILE.read_text())
    assert set(data) == set(MODULES), set(data) ^ set(MODULES)
    return [pytest.param(MODULES[kind], templated(case), id="%s[%d]" % (kind, i))
            for kind, cases in data.items() for i, case in enumerate(cases)]


CASES = load_cases()


def known_table():
    """ipvsadm -A -t VIP:80 -s rr; -a -t VIP:80 -r RIP1:8080 -m -w 2; -A -t [2001:db8::10]:80 -s rr."""
    def svc(family, address, dests):
        return {"family": family, "protocol": "tcp", "address": address, "port": 80, "fwmark": 0, "scheduler": "rr",
                "scheduler_flags": [], "persistence_timeout": 0, "persistence_prefix": 128 if family == "ipv6" else 32,
                "one_packet": False, "real_servers": dests}
    rs1 = {"address": LAB_VARS["{{ rip1 }}"], "port": 8080, "forwarding": "masq", "weight": 2, "upper_threshold": 0,
           "lower_threshold": 0}
    return [svc("ipv4", lab.VIP, [rs1]), svc("ipv6", "2001:db8::10", [])]


@pytest.fixture
def kernel(monkeypatch):
    fake = module_fakes.TableSession(known_table())
    monkeypatch.setattr(_ipvs, "Session", fake)
    return fake


def test_the_cases_are_all_there():
    # The lab target checked `>= 45` when it ran them all; it now runs a subset of this file.
    assert len(CASES) >= 45


@pytest.mark.parametrize("module, case", CASES)
def test_bad_input_fails_names_the_problem_and_changes_nothing(kernel, capsys, module, case):
    args = dict(case)
    expect = args.pop("expect")
    result = run(module, copy.deepcopy(args), capsys)
    assert result.get("failed") is True, result
    assert result.get("changed", False) is False, result
    assert expect in result.get("msg", ""), "expected %r in: %s" % (expect, result.get("msg", "(no message)"))
    assert kernel.applied == [] and kernel.held == known_table()
