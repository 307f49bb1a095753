# SPDX-License-Identifier: GPL-3.0-or-later
"""The main job against the lab: playbooks/site.yml deploys the cluster, then what a user wants to see:
the hosts configured, the director's IPVS table and requests from the client with the real server that answered.
The play's output shows as it runs.

Run by `./run demo`, which puts tests/ and tests/lab on PYTHONPATH (for harness and lab)."""
from __future__ import annotations

import collections
import sys

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
    print("The lab stays up: ./run lab shell client | director | rs1 ..., ./run lab status, ./run lab down")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except lab.LabError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        sys.exit(1)
