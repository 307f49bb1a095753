# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module's EXAMPLES run on the lab director; each example task, run again at once, changes nothing and
returns no key that its RETURN does not document."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import harness
import pytest
import yaml

HERE = Path(__file__).parent

MODULES = ["ipvs_service", "ipvs_table", "ipvs_real_server", "ipvs_timeouts", "ipvs_info", "ipvs_save", "sysctl_forwarding",
           "nat_rules"]
# What the examples assume exists: the services ipvs_real_server's examples name.
SETUP = "ipvsadm -C && ipvsadm -A -t 198.51.100.10:80 -s wlc && ipvsadm -A -f 1 -s wlc"
RESET_IPVS = {"name": "Reset IPVS", "ansible.builtin.raw": "ipvsadm -C && ipvsadm --set 900 120 300",
              "changed_when": False}
# What each module's examples change besides the IPVS table (SETUP fills it for every module), put back afterwards:
# each reset is a module run on the emulated director, so only those a module needs.
RESET = {
    "ipvs_save": [{"name": "Reset the saved IPVS state", "lvs.nat.ipvs_save": {"state": "absent"}}],
    "ipvs_table": [{"name": "Reset the saved IPVS state", "lvs.nat.ipvs_save": {"state": "absent"}}],
    "nat_rules": [{"name": "Reset nftables rules", "lvs.nat.nat_rules": {"state": "absent", "backend": "nftables"}},
                  {"name": "Reset iptables rules", "lvs.nat.nat_rules": {"state": "absent", "backend": "iptables"}}],
    "sysctl_forwarding": [
        {"name": "Reset sysctl files", "lvs.nat.sysctl_forwarding": {"runtime": False}},
        {"name": "Reset forwarding", "lvs.nat.sysctl_forwarding": {"ipv4_forwarding": False, "persistent": False}}],
}


def example_playbook(module):
    mod = importlib.import_module(f"ansible_collections.lvs.nat.plugins.modules.{module}")
    examples = yaml.safe_load(mod.EXAMPLES)
    tasks = [{"name": "Setup", "ansible.builtin.raw": SETUP, "changed_when": False}]
    for i, task in enumerate(examples):
        tasks.append(task)
        if any(k.startswith("lvs.nat.") for k in task):
            again = dict(task, name=f"{task['name']} (again)", register=f"again{i}")
            tasks.append(again)
            tasks.append({"name": f"Second run of example {i} changed nothing and returned only documented keys",
                          "vars": {"undocumented": f"{{{{ again{i}.keys() | reject('in', documented) | list }}}}"},
                          "ansible.builtin.assert": {"that": [f"again{i} is not changed", "undocumented == []"],
                                                     "fail_msg": "changed or undocumented return values: {{ undocumented }}"}})
    tasks += [RESET_IPVS, *RESET.get(module, [])]
    # What every module result may carry besides its RETURN (ansible-core adds these).
    documented = sorted(yaml.safe_load(mod.RETURN) or {}) + ["changed", "failed", "diff", "invocation", "warnings", "deprecations"]
    return [{"name": f"Examples of lvs.nat.{module}", "hosts": "director", "gather_facts": False,
             # Setup and resets through raw (no Python started on the emulated director), without a tty.
             "vars": {"documented": documented, "ansible_ssh_use_tty": False}, "tasks": tasks}]


@pytest.mark.parametrize("module", MODULES)
def test_examples_are_idempotent(lab, module, tmp_path):
    book = tmp_path / f"{module}-examples.yml"
    book.write_text(yaml.safe_dump(example_playbook(module), sort_keys=False))
    proc = harness.playbook(book, inventory=lab.INVENTORY, cwd=HERE)
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-3000:]
    assert proc.stdout.count("Second run of example") >= 1 and "failed=0" in proc.stdout


@pytest.mark.parametrize("module", MODULES + ["gateway_route"])  # gateway_route's examples are for real servers
def test_ansible_doc_renders(module):
    proc = subprocess.run([f"{sys.prefix}/bin/ansible-doc", f"lvs.nat.{module}"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "EXAMPLES:" in proc.stdout and "RETURN VALUES:" in proc.stdout
    assert "[WARNING]" not in proc.stderr
