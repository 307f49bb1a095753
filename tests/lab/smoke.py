# SPDX-License-Identifier: GPL-3.0-or-later
"""The data path by hand, before any module: ipvsadm, sysctl and ip route on the lab hosts.

Used by the lab smoke test. Every step can be repeated.
"""
from __future__ import annotations

import lab

VPORT = 80
RPORT = 8080  # port mapping: the VIP's port 80 goes to each real server's 8080
WEB_UNIT = "lvsnat-smoke-web"


def vservice() -> str:
    return f"{lab.VIP}:{VPORT}"


def setup() -> None:
    """A masquerading rr service on the VIP, forwarding on, real servers routed via the DIP."""
    rips = [lab.realserver_ip(rs) for rs in lab.realserver_names()]
    adds = " && ".join(f"ipvsadm -a -t {vservice()} -r {rip}:{RPORT} -m" for rip in rips)
    lab.exec_on("director", f"modprobe ip_vs && sysctl -qw net.ipv4.ip_forward=1 && "
                            f"(ipvsadm -D -t {vservice()} 2>/dev/null; true) && "
                            f"ipvsadm -A -t {vservice()} -s rr && {adds}")
    for rs in lab.realserver_names():
        lab.exec_on(rs, f"ip route replace default via {lab.DIP} dev eth1 && "
                        f"mkdir -p /srv/smoke && hostname > /srv/smoke/index.html && "
                        f"(systemctl stop {WEB_UNIT} 2>/dev/null; systemctl reset-failed {WEB_UNIT} 2>/dev/null; true) && "
                        f"systemd-run --quiet --unit {WEB_UNIT} python3 -m http.server --directory /srv/smoke {RPORT}")
    # The web servers listen a moment after systemd-run returns.
    for rs in lab.realserver_names():
        lab.exec_on(rs, f"for i in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:{RPORT}/ && exit 0; "
                        f"sleep 0.1; done; exit 1")


def requests_from_client(count: int) -> list[str]:
    """`count` HTTP requests from the client to the VIP, a fresh connection each; the bodies."""
    out = lab.exec_on("client", f"for i in $(seq {count}); do curl -s -m 5 http://{vservice()}/ || echo FAILED; done")
    return out.stdout.split()


def ipvs_table() -> str:
    return lab.exec_on("director", "ipvsadm -Ln --stats").stdout


def teardown() -> None:
    """Remove what setup made: the service, the web servers, the routes via the DIP."""
    lab.exec_on("director", f"(ipvsadm -D -t {vservice()} 2>/dev/null; true) && sysctl -qw net.ipv4.ip_forward=0")
    for rs in lab.realserver_names():
        lab.exec_on(rs, f"systemctl stop {WEB_UNIT} 2>/dev/null; "
                        f"ip route replace default via {lab.MGMT_GATEWAY} dev eth0; rm -rf /srv/smoke; true")
