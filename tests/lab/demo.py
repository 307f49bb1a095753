# SPDX-License-Identifier: GPL-3.0-or-later
"""The main job against the lab: playbooks/site.yml deploys the cluster, then what a user wants to see:
the hosts configured, the director's IPVS table and requests from the client with the real server that answered.
The play's output shows as it runs.

Run by `./run demo`, which puts tests/ and tests/lab on PYTHONPATH (for harness and lab)."""
from __future__ import annotations

import collections
import signal
import sys
import time

import harness
import lab

REQUESTS = 8


def main() -> int:
    inventory = lab.up()
    print(f"\n== lvs.nat.site -i {inventory}", flush=True)
    proc = harness.playbook("lvs.nat.site", inventory=inventory, stream=True)
    if proc.returncode != 0:
        print(f"demo: ansible-playbook failed (rc={proc.returncode})", file=sys.stderr)
        return proc.returncode
    print("== hosts configured")
    for host, counts in proc.recap.items():
        print(f"  {host:10} ok={counts['ok']} changed={counts['changed']}")
    print(f"\n== the director's IPVS table (ipvsadm -Ln)\n{lab.exec_on('director', 'ipvsadm -Ln').stdout}")
    for svc in lab.LAB_SERVICES:
        url = f"http://{lab.VIP}:{svc['port']}/"
        mapped = f", real servers' port {svc['real_server_port']}" if "real_server_port" in svc else ""
        print(f"== {REQUESTS} requests from the client ({lab.CLIENT_IP}) to {url} ({svc['scheduler']}{mapped})")
        out = lab.exec_on("client", f"for i in $(seq {REQUESTS}); do curl -s -m 5 {url} || echo FAILED; done").stdout
        answers = out.splitlines()
        for i, answer in enumerate(answers, 1):
            print(f"  {i:2}  {answer}")
        print("  " + ", ".join(f"{who.split()[-1]}: {n}" for who, n in sorted(collections.Counter(answers).items())))
        print()
    if len(lab.guests()) > 1:
        failover()
    print("The lab stays up: ./run lab shell client | director | rs1 ..., ./run lab status, ./run lab down")
    return 0


def failover():
    """Two directors: kill the master's QEMU while the client opens a connection every 100 ms; the requests around
    the takeover, each with the director that held the VIP when it started; then the killed one powered on again."""
    import ha  # noqa: PLC0415 - only with two directors

    holders, probe = ha.Holders(), ha.Probe()
    try:
        master = holders.wait_master(timeout=30)
        print(f"== two directors: {master} is master (holds {lab.VIP} and {lab.DIP}); killing its QEMU (kill -9) while "
              "the client opens a connection to the VIP every 100 ms (0.5 s timeout each)")
        time.sleep(2)
        t = time.time()
        lab.kill_qemu(master, sig=signal.SIGKILL)
        holders.lost(master, t)
        new = holders.wait_master(not_this=master, timeout=30)
        probe.wait_success_after(time.time(), 15)
        time.sleep(1.5)
        shown = [r for r in probe.results(t - 1.0) if r["t"] <= time.time() - 1]
        for r in shown:
            vip = ", ".join(sorted(holders.holders(lab.VIP, r["t"]))) or "nobody"
            print(f"  {r['t'] - t:+7.2f} s  {'ok    ' + r['what'] if r['ok'] else 'FAILED ' + r['what']:40}"
                  f"  VIP on {vip}")
        gap = probe.gap(t)
        print(f"== {new} took over; service gap for new connections: {gap:.2f} s (host clock)")
        lab.power_on_director(master)
        holders.attach(master)
        time.sleep(8)
        print(f"== {master} powered on again: it is "
              f"{'backup' if holders.master() == new else 'MASTER (unexpected)'}; {new} stays master\n")
    finally:
        probe.stop()
        holders.stop()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except lab.LabError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        sys.exit(1)
