# SPDX-License-Identifier: GPL-3.0-or-later
"""The main job against the lab: playbooks/site.yml deploys the cluster, then what a user wants to see:
the hosts configured, the director's IPVS table and requests from the client with the real server that answered."""
from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

import lab

REQUESTS = 8


def main() -> int:
    inventory = lab.up()
    argv = [f"{sys.prefix}/bin/ansible-playbook", "lvs.nat.site", "-i", str(inventory)]
    print(f"\n== {' '.join(argv[1:])}", flush=True)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1"), check=False)
    print(proc.stdout, end="", flush=True)
    if proc.returncode != 0:
        print(f"demo: ansible-playbook failed (rc={proc.returncode})", file=sys.stderr)
        return proc.returncode
    print("== hosts configured")
    for m in re.finditer(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)", proc.stdout, re.M):
        print(f"  {m.group(1):10} ok={m.group(2)} changed={m.group(3)}")
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
