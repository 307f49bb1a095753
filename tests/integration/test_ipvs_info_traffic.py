# SPDX-License-Identifier: GPL-3.0-or-later
"""ipvs_info's counters against real traffic through the lab director, compared with ipvsadm."""
from __future__ import annotations

import json
import time

import harness
import smoke


def ipvs_info(lab):
    proc = harness.ansible("ansible", "director", "-m", "lvs.nat.ipvs_info", "-o", inventory=lab.INVENTORY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.split("=>", 1)[1])


def test_counters_follow_traffic(lab):
    smoke.setup()
    try:
        answers = smoke.requests_from_client(10)
        assert len(answers) == 10 and "FAILED" not in answers
        for _attempt in range(5):  # the kernel folds per-CPU counters into these totals every 2 s
            info = ipvs_info(lab)
            web = next(s for s in info["services"] if s["address"] == lab.VIP and s["port"] == smoke.VPORT)
            if web["stats"]["conns"] == 10:
                break
            time.sleep(1)
        assert web["stats"]["conns"] == 10
        assert web["stats"]["inpkts"] > 0 and web["stats"]["outbytes"] > 0
        stats = lab.exec_on("director", f"ipvsadm -Ln --stats -t {smoke.vservice()}").stdout
        for rs in web["real_servers"]:
            assert rs["forwarding"] == "masq"
            line = next(x for x in stats.splitlines() if f"{rs['address']}:{rs['port']}" in x).split()
            assert rs["stats"]["conns"] == int(line[2]) == 5
            assert rs["stats"]["inpkts"] == int(line[3])
    finally:
        smoke.teardown()
