# SPDX-License-Identifier: GPL-3.0-or-later
"""Fast integration targets: modules run by ansible-playbook inside throwaway network namespaces here.

This machine's kernel has forwarding, conntrack and NAT per namespace (not IPVS). Two
namespaces joined by a veth pair in 198.51.100.128/29, clear of every lab segment.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import harness
import pytest

HERE = Path(__file__).parent
TARGETS = sorted(p.name for p in (HERE / "netns_targets").iterdir() if (p / "tasks" / "main.yml").exists())
NS_A, NS_B = "lvsnat-ta", "lvsnat-tb"
IP_A, IP_B = "198.51.100.129", "198.51.100.130"


def sh(*argv, check=True):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check)


@pytest.fixture
def netns(tmp_path):
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "lvsnat-va", "netns", NS_A, "type", "veth", "peer", "name", "lvsnat-vb", "netns", NS_B)
    for ns, dev, ip in ((NS_A, "lvsnat-va", IP_A), (NS_B, "lvsnat-vb", IP_B)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/29", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    yield tmp_path
    left = {}
    for ns in (NS_A, NS_B):
        # What a target started in a namespace (the nat_rules target's web servers) ends with it.
        for _attempt in range(50):
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            if not pids:
                break
            sh("kill", *pids, check=False)
            time.sleep(0.1)
        left[ns] = pids
        sh("ip", "netns", "del", ns, check=False)
    assert NS_A not in sh("ip", "netns", "list").stdout
    assert left == {NS_A: [], NS_B: []}, f"processes of the target still running: {left}"


@pytest.mark.parametrize("target", TARGETS)
def test_netns_target(netns, target):
    play = netns / "play.yml"
    play.write_text(
        f"- name: Target {target} in a network namespace\n  hosts: localhost\n  gather_facts: false\n"
        f"  vars:\n    tmp: {netns}\n    ns_a: {NS_A}\n    ns_b: {NS_B}\n    ip_a: {IP_A}\n    ip_b: {IP_B}\n"
        f"  tasks:\n    - name: Run the target\n"
        f"      ansible.builtin.include_tasks: {HERE}/netns_targets/{target}/tasks/main.yml\n")
    proc = harness.playbook("-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", play,
                            inventory="localhost,", prefix=("ip", "netns", "exec", NS_A), cwd=HERE)
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-3000:]
    assert "failed=0" in proc.stdout
