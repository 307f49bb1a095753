# SPDX-License-Identifier: GPL-3.0-or-later
"""sysctl_forwarding and nat_rules on the lab director, then a reboot: everything is back with no play run."""
from __future__ import annotations

from pathlib import Path

import harness
import yaml

HERE = Path(__file__).parent

KEYS = {
    "net.ipv4.vs.conntrack": "1",
    "net.ipv4.vs.expire_nodest_conn": "1",
    "net.ipv4.vs.expire_quiescent_template": "1",
    "net.ipv4.conf.eth1.send_redirects": "0",
    "net.ipv4.conf.eth2.send_redirects": "0",
    "net.ipv4.ip_local_port_range": "1024 65000",
    "net.ipv4.tcp_tw_reuse": "1",
    "net.netfilter.nf_conntrack_max": "262144",
}
RULES = [
    {"type": "accept", "chain": "input", "destination": "198.51.100.10", "protocol": "tcp", "port": 80},
    {"type": "accept", "chain": "forward", "source": "198.51.100.64/26"},
    {"type": "masquerade", "source": "198.51.100.64/26", "out_interface": "eth0"},
    {"type": "mark", "destination": "198.51.100.10", "protocol": "tcp", "port": 443, "mark": 7},
    {"type": "rate_limit", "destination": "198.51.100.10", "protocol": "tcp", "port": 80, "rate": "500/second"},
]


def play(tasks):
    return [{"name": "Director", "hosts": "director", "gather_facts": False, "tasks": tasks}]


def converge_tasks():
    sysctl = {"lvs.nat.sysctl_forwarding": {"ipv4_forwarding": True, "settings": KEYS}}
    rules = {"lvs.nat.nat_rules": {"rules": RULES}}
    return [
        dict(name="Forwarding and tuning", register="s1", **sysctl),
        dict(name="NAT rules", register="n1", **rules),
        dict(name="Forwarding and tuning again", register="s2", **sysctl),
        dict(name="NAT rules again", register="n2", **rules),
        {"name": "Changed once, then not", "ansible.builtin.assert": {
            "that": ["s1 is changed", "n1 is changed", "s2 is not changed", "n2 is not changed",
                     "n1.backend == 'nftables'"]}},
    ]


def cleanup_tasks():
    return [
        {"name": "No owned rules", "lvs.nat.nat_rules": {"state": "absent"}},
        {"name": "No owned sysctl files", "lvs.nat.sysctl_forwarding": {"runtime": False}},
        {"name": "Forwarding off", "lvs.nat.sysctl_forwarding": {"ipv4_forwarding": False, "persistent": False}},
    ]


def run_playbook(lab, book, *extra):
    return harness.playbook(book, *extra, inventory=lab.INVENTORY, cwd=HERE)


def kernel_state(lab):
    keys = ["net.ipv4.ip_forward", *KEYS]
    out = lab.exec_on("director", "sysctl -n " + " ".join(keys)).stdout
    values = dict(zip(keys, [" ".join(v.split()) for v in out.splitlines()]))
    rules = lab.exec_on("director", "nft list table inet lvs_nat", check=False).stdout
    return values, rules


def test_state_survives_a_reboot(lab, tmp_path):
    book = tmp_path / "converge.yml"
    book.write_text(yaml.safe_dump(play(converge_tasks()), sort_keys=False))
    check = tmp_path / "check.yml"
    check.write_text(yaml.safe_dump(play(converge_tasks()[:2]), sort_keys=False))
    cleanup = tmp_path / "cleanup.yml"
    cleanup.write_text(yaml.safe_dump(play(cleanup_tasks()), sort_keys=False))
    try:
        proc = run_playbook(lab, book)
        assert proc.returncode == 0, proc.stdout[-15000:] + proc.stderr[-3000:]
        values, rules = kernel_state(lab)
        assert values == {"net.ipv4.ip_forward": "1", **KEYS}

        lab.reboot_director()

        values, rules_after = kernel_state(lab)
        assert values == {"net.ipv4.ip_forward": "1", **KEYS}
        assert rules_after == rules
        assert 'oifname "eth0" ip saddr 198.51.100.64/26 masquerade' in rules_after
        assert "meta mark set 0x00000007" in rules_after
        assert lab.exec_on("director", "systemctl is-active lvs-nat-rules.service").stdout.strip() == "active"
        assert "ip_vs" in lab.exec_on("director", "cat /etc/modules-load.d/90-lvs-nat.conf").stdout
        # The same tasks right after boot, in check mode, find nothing to do.
        again = run_playbook(lab, check, "--check")
        assert again.returncode == 0, again.stdout[-5000:]
        assert "changed=0" in again.stdout and "ok=2" in again.stdout
    finally:
        done = run_playbook(lab, cleanup)
        assert done.returncode == 0, done.stdout[-5000:]
    values, rules = kernel_state(lab)
    assert values["net.ipv4.ip_forward"] == "0" and rules == ""
