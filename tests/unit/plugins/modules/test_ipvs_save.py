# SPDX-License-Identifier: GPL-3.0-or-later
"""ipvs_save's rendering: the saved text does not depend on the order the kernel lists the table in."""
from __future__ import annotations

import itertools

from ansible_collections.lvs.nat.plugins.modules import ipvs_save

TIMEOUTS = {"tcp": 900, "tcp_fin": 120, "udp": 300}


def service(port, *rips, protocol="tcp", fwmark=0):
    return {"family": "ipv4", "protocol": None if fwmark else protocol, "address": None if fwmark else "198.51.100.10",
            "port": None if fwmark else port, "fwmark": fwmark, "scheduler": "wrr", "scheduler_flags": [],
            "persistence_timeout": 0, "persistence_prefix": 32, "one_packet": False,
            "real_servers": [{"address": rip, "port": 80, "forwarding": "masq", "weight": 1, "upper_threshold": 0,
                              "lower_threshold": 0} for rip in rips]}


def test_render_is_independent_of_the_kernels_listing_order():
    table = [service(8080, "198.51.100.102", "198.51.100.101"), service(80, "198.51.100.101", "198.51.100.102"),
             service(0, "198.51.100.101", fwmark=7), service(53, "198.51.100.101", protocol="udp")]
    outputs = set()
    for order in itertools.permutations(table):
        reversed_dests = [dict(s, real_servers=s["real_servers"][::-1]) for s in order]
        outputs.add(tuple(ipvs_save.render(list(order), TIMEOUTS)))
        outputs.add(tuple(ipvs_save.render(reversed_dests, TIMEOUTS)))
    assert len(outputs) == 1
    lines = outputs.pop()
    assert lines[0] == "--set 900 120 300"
    # Numeric order (port 80 before 8080), each service's real servers right after it, by address.
    assert lines.index("-A -t 198.51.100.10:80 -s wrr") < lines.index("-A -t 198.51.100.10:8080 -s wrr")
    first = lines.index("-A -t 198.51.100.10:8080 -s wrr")
    assert lines[first + 1].startswith("-a -t 198.51.100.10:8080 -r 198.51.100.101:80")
    assert lines[first + 2].startswith("-a -t 198.51.100.10:8080 -r 198.51.100.102:80")
