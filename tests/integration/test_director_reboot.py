# SPDX-License-Identifier: GPL-3.0-or-later
"""What the director role writes, through its modules on the lab director, then the run's one director reboot:
forwarding and tuning (sysctl_forwarding), the NAT rules (nat_rules), an IPVS service and the timeouts (ipvs_table)
saved for the boot (ipvs_save), and a health-checked service (ipvs_health). Everything is back with no play run,
and lvs-nat-healthd puts its service back and re-checks it within one interval of its start (issue 15, item 7).
(The molecule scenario restarts a real server; it leaves the director's reboot to this test.)"""
from __future__ import annotations

import json
import re
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

# A checked service whose real servers are the lab real servers' sshd (up) and a port nobody listens on (refused).
INTERVAL = 1
CHECKED = {
    "address": "198.51.100.10", "port": 2222, "scheduler": "rr",
    "real_servers": ["198.51.100.101:22", "198.51.100.102:22", "198.51.100.101:9"],
    "check": {"type": "tcp", "interval": INTERVAL, "timeout": 1, "rise": 2, "fall": 2},
}
UP = {"198.51.100.101:22", "198.51.100.102:22"}
DOWN = "198.51.100.101:9"
CHECKED_KEY = {"protocol": "tcp", "address": CHECKED["address"], "port": CHECKED["port"]}
# A service the boot restore puts back (lvs-nat-ipvs.service), with the lab's timeouts (not the kernel's defaults).
TABLE = {
    "services": [{"address": "198.51.100.10", "port": 80, "scheduler": "wrr",
                  "real_servers": ["198.51.100.101:80:3", "198.51.100.102:80:1"]}],
    "timeouts": {"tcp": 600, "tcp_fin": 60, "udp": 120},
    "owned": {"addresses": ["198.51.100.10"], "skip": [CHECKED_KEY]},
}
SAVE = {"addresses": ["198.51.100.10"], "skip": [CHECKED_KEY]}


def play(tasks):
    return [{"name": "Director", "hosts": "director", "gather_facts": False, "tasks": tasks}]


def converge_tasks():
    sysctl = {"lvs.nat.sysctl_forwarding": {"ipv4_forwarding": True, "settings": KEYS}}
    rules = {"lvs.nat.nat_rules": {"rules": RULES}}
    health = {"lvs.nat.ipvs_health": {"services": [CHECKED]}}
    table = {"lvs.nat.ipvs_table": TABLE}
    save = {"lvs.nat.ipvs_save": SAVE}
    return [
        dict(name="Forwarding and tuning", register="s1", **sysctl),
        dict(name="NAT rules", register="n1", **rules),
        dict(name="Health-checked service", register="h1", **health),
        dict(name="IPVS service and timeouts", register="t1", **table),
        dict(name="Saved for the boot", register="v1", **save),
        dict(name="Forwarding and tuning again", register="s2", **sysctl),
        dict(name="NAT rules again", register="n2", **rules),
        dict(name="Health-checked service again", register="h2", **health),
        dict(name="IPVS service and timeouts again", register="t2", **table),
        dict(name="Saved again", register="v2", **save),
        {"name": "Changed once, then not", "ansible.builtin.assert": {
            "that": ["s1 is changed", "n1 is changed", "h1 is changed", "t1 is changed", "v1 is changed",
                     "s2 is not changed", "n2 is not changed", "h2 is not changed", "t2 is not changed",
                     "v2 is not changed", "n1.backend == 'nftables'", "h2.differences == []"]}},
    ]


def cleanup_tasks():
    return [
        {"name": "No health service", "lvs.nat.ipvs_health": {"state": "absent"}},
        {"name": "No checked service", "lvs.nat.ipvs_service": {
            "address": CHECKED["address"], "port": CHECKED["port"], "state": "absent"}},
        {"name": "No saved state", "lvs.nat.ipvs_save": {"state": "absent"}},
        {"name": "No service, the kernel's timeouts", "lvs.nat.ipvs_table": {
            "services": [], "timeouts": {"tcp": 900, "tcp_fin": 120, "udp": 300}, "owned": {"addresses": ["198.51.100.10"]}}},
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


def restored_table(lab):
    """The kernel's IPVS table (ipvsadm -Sn) without the checked service, and its timeouts (ipvsadm -L --timeout)."""
    table = lab.exec_on("director", "ipvsadm -Sn").stdout.splitlines()
    checked = "%s:%d" % (CHECKED["address"], CHECKED["port"])
    timeouts = lab.exec_on("director", "ipvsadm -L --timeout").stdout.strip()
    return [line for line in table if checked not in line], timeouts


def checked_table(lab):
    """The real servers the kernel holds for the checked service, from ipvsadm (the kernel's own tool)."""
    out = lab.exec_on("director", "ipvsadm -Ln -t %s:%d" % (CHECKED["address"], CHECKED["port"]), check=False).stdout
    return set(re.findall(r"->\s+(\d+\.\d+\.\d+\.\d+:\d+)\s+Masq", out))


def healthd_boot_journal(lab):
    """This boot's journal of lvs-nat-healthd as (seconds since boot, message), the director's monotonic clock."""
    out = lab.exec_on("director", "journalctl -b -o json --no-pager -u lvs-nat-healthd.service "
                                  "--output-fields=MESSAGE").stdout
    lines = []
    for line in out.splitlines():
        entry = json.loads(line)
        message = entry.get("MESSAGE")
        if isinstance(message, str):
            lines.append((int(entry["__MONOTONIC_TIMESTAMP"]) / 1e6, message))
    return lines


def first(lines, pattern):
    return next((t for t, m in lines if re.search(pattern, m)), None)


def test_state_survives_a_reboot(lab, tmp_path):
    book = tmp_path / "converge.yml"
    book.write_text(yaml.safe_dump(play(converge_tasks()), sort_keys=False))
    check = tmp_path / "check.yml"
    check.write_text(yaml.safe_dump(play(converge_tasks()[:5]), sort_keys=False))
    cleanup = tmp_path / "cleanup.yml"
    cleanup.write_text(yaml.safe_dump(play(cleanup_tasks()), sort_keys=False))
    try:
        proc = run_playbook(lab, book)
        assert proc.returncode == 0, proc.stdout[-15000:] + proc.stderr[-3000:]
        values, rules = kernel_state(lab)
        assert values == {"net.ipv4.ip_forward": "1", **KEYS}
        assert checked_table(lab) == UP
        table = restored_table(lab)
        assert table[0] == ["-A -t 198.51.100.10:80 -s wrr", "-a -t 198.51.100.10:80 -r 198.51.100.101:80 -m -w 3",
                            "-a -t 198.51.100.10:80 -r 198.51.100.102:80 -m -w 1"], table
        assert table[1] == "Timeout (tcp tcpfin udp): 600 60 120", table

        lab.reboot_director()

        values, rules_after = kernel_state(lab)
        assert values == {"net.ipv4.ip_forward": "1", **KEYS}
        assert rules_after == rules
        assert 'oifname "eth0" ip saddr 198.51.100.64/26 masquerade' in rules_after
        assert "meta mark set 0x00000007" in rules_after
        assert lab.exec_on("director", "systemctl is-active lvs-nat-rules.service").stdout.strip() == "active"
        assert "ip_vs" in lab.exec_on("director", "cat /etc/modules-load.d/90-lvs-nat.conf").stdout
        # The saved service and timeouts, restored by lvs-nat-ipvs.service before lvs-nat-healthd starts.
        assert lab.exec_on("director", "systemctl is-active lvs-nat-ipvs.service").stdout.strip() == "active"
        assert restored_table(lab) == table
        # lvs-nat-healthd: started at boot (no state file on /run: every declared real server begins healthy, the
        # service is back at once), then the first rounds take out the one that refuses.
        assert lab.exec_on("director", "systemctl is-active lvs-nat-healthd.service").stdout.strip() == "active"
        assert checked_table(lab) == UP
        journal = healthd_boot_journal(lab)
        started = first(journal, r"^started: config [0-9a-f]{16}, 1 service")
        back = first(journal, r"^TCP 198\.51\.100\.10:2222: add service ")
        down = first(journal, r"^TCP 198\.51\.100\.10:2222 real server %s down: connection refused \(2 failures\)" % re.escape(DOWN))
        ready = first(journal, r"^Started .*lvs-nat-healthd")
        assert None not in (started, back, down, ready), journal
        print("\nreboot: lvs-nat-healthd started %.2f s after boot; first round done (READY) %.2f s later; %s out "
              "%.2f s after the start" % (started, ready - started, DOWN, down - started))
        # Health re-evaluated within one interval of the start: the first round ends (READY) within it, and the
        # refused real server is out at the second round (fall 2), one interval after the first. Both with 0.5 s
        # for the emulated director, busy with the rest of its boot (READY came 0.40 s and 1.01 s after the start
        # in two runs).
        assert ready - started <= INTERVAL + 0.5
        assert down - started <= (CHECKED["check"]["fall"] - 1) * INTERVAL + 0.5
        state = json.loads(lab.exec_on("director", "cat /run/lvs-nat/health.json").stdout)
        rs = {"%s:%d" % (r["address"], r["port"]): r for s in state["services"] for r in s["real_servers"]}
        assert {k for k, r in rs.items() if r["healthy"]} == UP and rs[DOWN]["reason"] == "connection refused"
        # The same tasks right after boot, in check mode, find nothing to do.
        again = run_playbook(lab, check, "--check")
        assert again.returncode == 0, again.stdout[-5000:]
        assert "changed=0" in again.stdout and "ok=5" in again.stdout
    finally:
        done = run_playbook(lab, cleanup)
        assert done.returncode == 0, done.stdout[-5000:]
    values, rules = kernel_state(lab)
    assert values["net.ipv4.ip_forward"] == "0" and rules == ""
