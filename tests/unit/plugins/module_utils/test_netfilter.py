# SPDX-License-Identifier: GPL-3.0-or-later
"""Rule rendering in each tool's listing form (checked against real listings in the namespace tests)."""
from __future__ import annotations

import pytest

from ansible_collections.lvs.nat.plugins.module_utils import _netfilter as N


def rule(**kw):
    return N.normalise_rule(kw, 0)


@pytest.mark.parametrize("burst, nft, ipt", [
    (None, "limit rate over 500/second }", "--hashlimit-burst 5 "),
    (10, "limit rate over 500/second burst 10 packets }", "--hashlimit-burst 10 "),
])
def test_rate_limit_burst_as_each_tool_lists_it(burst, nft, ipt):
    r = rule(type="rate_limit", destination="198.51.100.10", protocol="tcp", port=80, rate="500/second", burst=burst)
    assert nft in N.nft_rule(r, 0)
    assert ipt in N.ipt_rule(r, 0)


def test_places_and_canonical_addresses():
    r = rule(type="dnat", destination="198.51.100.10/32", protocol="tcp", port=8080, to_destination="198.51.100.101", to_port=80)
    assert N.place(r) == ("prerouting", "nat", "LVS-NAT-PREROUTING")
    assert N.nft_rule(r, 0) == "ip daddr 198.51.100.10 tcp dport 8080 dnat ip to 198.51.100.101:80"
    assert N.ipt_rule(r, 0) == ("-A LVS-NAT-PREROUTING -d 198.51.100.10/32 -p tcp -m tcp --dport 8080 "
                                "-j DNAT --to-destination 198.51.100.101:80")
    a = rule(type="accept", chain="forward", source="198.51.100.64/26")
    assert N.place(a)[2] == "LVS-NAT-FORWARD"


def test_owned_table_replaced_in_one_transaction():
    text = N.nft_text([rule(type="masquerade", source="198.51.100.64/26", out_interface="eth0")])
    assert text.startswith("table inet lvs_nat {")
    assert 'oifname "eth0" ip saddr 198.51.100.64/26 masquerade' in text
