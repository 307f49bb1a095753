# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab itself: a real IPVS kernel in the director, traffic through it, idempotent up."""
from __future__ import annotations

import collections
import json
import subprocess
import sys
import time

import harness
import smoke


def test_director_runs_an_ipvs_kernel(lab):
    out = lab.exec_on("director", "uname -r && modprobe ip_vs && cat /proc/net/ip_vs && ipvsadm -Ln").stdout
    assert out.splitlines()[0].endswith("-cloud-amd64")
    assert "IP Virtual Server version" in out


def test_second_up_changes_nothing(lab):
    before = lab.status()
    pid = lab.qemu_pid()
    ids = lab.podman("ps", "-q", "--filter", f"label={lab.LABEL}").stdout.split()
    lab.up()
    assert lab.qemu_pid() == pid
    assert lab.podman("ps", "-q", "--filter", f"label={lab.LABEL}").stdout.split() == ids
    assert lab.status() == before


def test_inventory_groups(lab):
    inv = json.loads(lab.INVENTORY.read_text().split("\n", 1)[1])["all"]["children"]
    assert set(inv) == {"director", "realservers", "clients"}
    assert set(inv["realservers"]["hosts"]) == set(lab.realserver_names())
    # The roles' variables come with the lab, so playbooks/site.yml runs against it as it is.
    assert inv["director"]["vars"]["director_vip"] == lab.VIP
    assert inv["realservers"]["vars"]["realserver_gateway"] == lab.DIP
    # The script form (molecule's link) holds the same hosts and variables.
    script = json.loads(subprocess.run([sys.executable, lab.__file__.replace("lab.py", "inventory.py"), "--list"],
                                       check=True, capture_output=True, text=True).stdout)
    assert set(script["realservers"]["hosts"]) == set(lab.realserver_names())
    assert script["_meta"]["hostvars"]["rs1"]["realserver_rip"] == lab.realserver_ip("rs1")
    assert script["director"]["vars"]["director_services"] == lab.LAB_SERVICES


def test_smoke_data_path_through_ipvs_nat(lab):
    """Requests from the client to the VIP are answered by every real server, via IPVS masquerading."""
    smoke.setup()
    try:
        count = 20
        answers = smoke.requests_from_client(count)
        assert "FAILED" not in answers
        assert collections.Counter(answers) == {rs: count // len(lab.realserver_names())
                                                for rs in lab.realserver_names()}
        # The kernel sums its per-CPU counters into these totals every 2 s (estimator timer).
        want = {rs: count // len(lab.realserver_names()) for rs in lab.realserver_names()}
        for _attempt in range(12):
            table = smoke.ipvs_table()
            conns = {rs: int(next(line for line in table.splitlines()
                                  if f"{lab.realserver_ip(rs)}:{smoke.RPORT}" in line).split()[2])
                     for rs in lab.realserver_names()}
            if conns == want:
                break
            time.sleep(0.5)
        assert conns == want
        masq = lab.exec_on("director", "ipvsadm -Ln").stdout
        assert masq.count("Masq") == len(lab.realserver_names())
        # NAT mode keeps the client's address: each real server logged the client, not the DIP.
        for rs in lab.realserver_names():
            log = lab.exec_on(rs, f"journalctl -u {smoke.WEB_UNIT} --no-pager -o cat").stdout
            assert f"{lab.CLIENT_IP} - -" in log
            assert f"{lab.DIP} - -" not in log
    finally:
        smoke.teardown()
    assert smoke.vservice() not in lab.exec_on("director", "ipvsadm -Ln").stdout


def test_every_host_reaches_the_debian_mirror(lab):
    for host in ("director", *lab.containers()):
        out = lab.exec_on(host, f"curl -sS -m 20 -o /dev/null -w '%{{http_code}}' {lab.MIRROR}/dists/{lab.SUITE}/Release")
        assert out.stdout == "200", host


def test_inventory_works_with_ansible_playbook(lab, tmp_path):
    play = tmp_path / "whoami.yml"
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Read the hostname\n      ansible.builtin.command: hostname\n      register: h\n      changed_when: false\n"
        "    - name: Show it\n      ansible.builtin.debug:\n        msg: \"{{ inventory_hostname }}={{ h.stdout }} in {{ group_names | join(',') }}\"\n"
    )
    proc = harness.playbook(play, inventory=lab.INVENTORY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"msg": "director1=director in director"' in proc.stdout
    assert '"msg": "client=client in clients"' in proc.stdout
    for rs in lab.realserver_names():
        assert f'"msg": "{rs}={rs} in realservers"' in proc.stdout
