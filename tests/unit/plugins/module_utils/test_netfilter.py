# SPDX-License-Identifier: GPL-3.0-or-later
"""Rule rendering in each tool's listing form (checked against real listings in the namespace tests)."""
from __future__ import annotations

import ipaddress
import re
import shlex

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.module_utils import _netfilter as N


def rule(**kw):
    return N.normalise_rules([kw])[0]


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


# ---------------------------------------------------------------- issue 12: full matches, ASCII only


def refused(rules):
    with pytest.raises(N.NetfilterError) as e:
        N.normalise_rules(rules)
    return str(e.value)


@pytest.mark.parametrize("rule, option", [
    # re.match(...$) let a trailing newline through: "eth0\n" split the rendered rule in two.
    ({"type": "masquerade", "out_interface": "eth0\n"}, "out_interface"),
    ({"type": "dnat", "destination": "198.51.100.10", "to_destination": "198.51.100.101", "in_interface": "eth0\n"},
     "in_interface"),
    ({"type": "accept", "chain": "input", "comment": "web\n"}, "comment"),
    # "20/second\n" reached the iptables renderer and raised a KeyError.
    ({"type": "rate_limit", "destination": "198.51.100.10", "rate": "20/second\n"}, "rate"),
    # Non-ASCII digits are digits to \d and to int().
    ({"type": "rate_limit", "destination": "198.51.100.10", "rate": "\u0662\u0660/second"}, "rate"),
    ({"type": "accept", "chain": "input", "protocol": "tcp", "port": "\u0668\u0660"}, "port"),
    ({"type": "accept", "chain": "input", "protocol": "tcp", "port": "80\n"}, "port"),
    ({"type": "dnat", "destination": "198.51.100.10", "to_destination": "198.51.100.101", "protocol": "tcp",
      "to_port": "\uff18\uff10"}, "to_port"),
    ({"type": "mark", "mark": "\u0667"}, "mark"),
    ({"type": "rate_limit", "destination": "198.51.100.10", "rate": "5/second", "burst": "\u0661\u0660"}, "burst"),
    # bool is an int to Python and to Ansible's int type: True rendered as port 1.
    ({"type": "accept", "chain": "input", "protocol": "tcp", "port": True}, "port"),
    ({"type": "mark", "mark": True}, "mark"),
    ({"type": "rate_limit", "destination": "198.51.100.10", "rate": "5/second", "burst": True}, "burst"),
    ({"type": "masquerade", "source": 3232235777}, "source"),
    ({"type": "masquerade", "out_interface": ".."}, "out_interface"),
])
def test_trailing_newline_non_ascii_digits_and_bools_are_refused(rule, option):
    assert refused([{"type": "masquerade"}, rule]).startswith("rules[1].%s=" % option)


@pytest.mark.parametrize("rules, message", [
    ("masquerade", "rules must be a list"),
    (["masquerade"], "rules[0] must be a dict"),
    ([{"type": "masquerade", "out_iface": "eth0"}], "rules[0].out_iface is not an option of a rule"),
    ([{"source": "198.51.100.0/24"}], "rules[0].type is required"),
    ([{"type": "nat"}], "rules[0].type='nat' must be one of"),
    ([{"type": "masquerade", "to_source": "198.51.100.1"}], "rules[0].to_source does not apply when type is masquerade"),
    ([{"type": "dnat", "destination": "198.51.100.10"}], "rules[0].to_destination is required when type is dnat"),
    ([{"type": "accept", "chain": "input", "port": 80}], "rules[0].port needs rules[0].protocol"),
    ([{"type": "accept", "chain": "output"}], "rules[0].chain='output' must be one of: input, forward"),
    ([{"type": "accept", "chain": "input", "protocol": "sctp"}], "rules[0].protocol='sctp' must be one of"),
    ([{"type": "snat", "to_source": "198.51.100.999"}], "rules[0].to_source='198.51.100.999' is not an IPv4 address"),
    ([{"type": "masquerade", "source": "198.51.100.65/26"}], "rules[0].source='198.51.100.65/26' has host bits set"),
    ([{"type": "accept", "chain": "input", "destination": "2001:db8::1"}], "rules[0].destination='2001:db8::1' is IPv6"),
    ([{"type": "accept", "chain": "input", "protocol": "tcp", "port": 0}], "rules[0].port=0 is out of range"),
    ([{"type": "mark", "mark": 2 ** 32}], "rules[0].mark=4294967296 is out of range"),
])
def test_messages_name_the_option(rules, message):
    assert refused(rules).startswith(message)


def test_normalised_rules_have_every_option_and_accept_ascii_digit_strings():
    [r] = N.normalise_rules([{"type": "rate_limit", "destination": "198.51.100.10/32", "protocol": "tcp", "port": "80",
                              "rate": "20/second"}])
    assert set(r) == set(N.RULE_FIELDS)
    assert (r["destination"], r["port"], r["burst"], r["source"]) == ("198.51.100.10/32", 80, N.DEFAULT_BURST, None)


@pytest.mark.parametrize("comment, listed", [
    ("web", "--comment web "),
    ("a-b_c", "--comment a-b_c "),
    # iptables -S quotes every comment with a character outside [A-Za-z0-9_-]: render it the same way,
    # or the rule never compares equal to the kernel's listing and every run reports a change.
    ("health.checks", '--comment "health.checks" '),
    ("a=b:c/d,e+f", '--comment "a=b:c/d,e+f" '),
    ("health checks", '--comment "health checks" '),
])
def test_iptables_comment_quoted_as_iptables_lists_it(comment, listed):
    assert listed in N.ipt_rule(N.normalise_rules([{"type": "accept", "chain": "input", "comment": comment}])[0], 0)


# ---------------------------------------------------------------- properties: refused, or rendered exactly as given

# One valid rule of each type with every option it takes, so that any one option can be replaced.
BASE = {
    "masquerade": {"type": "masquerade", "source": "198.51.100.64/26", "destination": "198.51.100.10",
                   "out_interface": "eth0", "comment": "web"},
    "snat": {"type": "snat", "source": "198.51.100.64/26", "destination": "198.51.100.10", "out_interface": "eth1",
             "to_source": "198.51.100.11", "comment": "wan 1"},
    "dnat": {"type": "dnat", "destination": "198.51.100.10", "protocol": "tcp", "port": 8080, "in_interface": "eth0",
             "to_destination": "198.51.100.101", "to_port": 80, "comment": "port map"},
    "accept": {"type": "accept", "chain": "input", "source": "198.51.100.64/26", "destination": "198.51.100.10",
               "protocol": "udp", "port": 53, "in_interface": "eth0", "out_interface": "eth1", "comment": "dns"},
    "mark": {"type": "mark", "source": "198.51.100.64/26", "destination": "198.51.100.10", "protocol": "tcp",
             "port": 443, "in_interface": "eth0", "mark": 7, "comment": "fwmark 7"},
    "rate_limit": {"type": "rate_limit", "destination": "198.51.100.10", "protocol": "tcp", "port": 80,
                   "rate": "20/second", "burst": 10, "comment": "flood"},
}
# Characters that end a token, a string, a line or a statement somewhere, and some that only look like ASCII.
SPECIALS = ["\n", "\r", "\r\n", "\t", " ", '"', "'", "{", "}", "#", ";", "%", "\\", "$", "`", "\x00", "\x0b",
            "\u2028", "\x85", "\u00a0", "\u0663", "\uff11", "\u00e9", "/", ":", "-", "!"]


def _spliced(valid):
    """A valid value with one special character spliced in somewhere, or a valid value unchanged."""
    return st.one_of(valid, st.builds(lambda v, s, at: v[:at] + s + v[at:], valid, st.sampled_from(SPECIALS),
                                      st.integers(0, 70)))


@pytest.mark.parametrize("rate", ["0/second", "0/day", "1000001/second", "60000001/minute", "3600000001/hour"])
def test_a_rate_a_backend_refuses_is_refused_here(rate):
    # nft refuses 0 (Invalid argument), iptables' hashlimit more than 1,000,000 a second (Rate too fast): on the
    # director, after the tasks before nat_rules had changed it.
    assert refused([{"type": "masquerade"}, {"type": "rate_limit", "destination": "198.51.100.10", "rate": rate}]) == (
        "rules[1].rate=%s is out of range: it must be between 1 and %d per %s (nft refuses 0, iptables' hashlimit "
        "more than 1000000 a second)" % (rate, 1000000 * N.RATE_UNIT_SECONDS[rate.split("/")[1]], rate.split("/")[1]))


@pytest.mark.parametrize("rate", ["1/second", "1000000/second", "60000000/minute", "3600000000/hour", "9999999999/day"])
def test_the_largest_rates_both_backends_take_are_rendered(rate):
    [r] = N.normalise_rules([{"type": "rate_limit", "destination": "198.51.100.10", "rate": rate}])
    assert "limit rate over %s" % rate in N.nft_rule(r, 0)


class Refusing:
    """A module whose tools all fail as nft does on a rule it refuses."""

    def __init__(self):
        self.calls = []

    def get_bin_path(self, name, opt_dirs=()):
        return "/usr/sbin/" + name

    def run_command(self, argv, data=None, **kwargs):
        self.calls.append(argv)
        return 1, "", "Error: Could not process rule: Invalid argument\n"


@pytest.mark.parametrize("backend, checked", [(N.Nftables, ["/usr/sbin/nft", "-c", "-f", "-"]),
                                              (N.Iptables, ["/usr/sbin/iptables-restore", "-w", "--noflush", "--test"])])
def test_a_rule_the_tool_refuses_in_its_dry_run_is_never_applied(backend, checked):
    # The tool's own dry run (nft -c, iptables-restore --test) first: its refusal is the task's failure with the
    # tool's words, and the rules are never fed to it for real.
    module = Refusing()
    with pytest.raises(N.NetfilterError) as e:
        backend(module).replace(N.normalise_rules([{"type": "masquerade"}]), False)
    assert str(e.value) == "%s refused the rules (%s, rc=1): Error: Could not process rule: Invalid argument" % (
        backend.name, " ".join(checked).replace("/usr/sbin/", ""))
    assert module.calls[-1] == checked and [a for a in checked if a not in ("-c", "--test")] not in module.calls
    assert e.value.details["rc"] == 1


def _network():
    return st.builds(lambda a, p: str(ipaddress.ip_interface("%s/%d" % (a, p)).network), st.ip_addresses(v=4),
                     st.integers(0, 32))


VALID = {
    "network": st.one_of(_network(), st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)),
    "address": st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)),
    "interface": st.from_regex(r"[A-Za-z0-9_.+-]{1,15}", fullmatch=True),
    "comment": st.from_regex(r"[A-Za-z0-9 _.,:/=+-]{1,64}", fullmatch=True),
    "rate": st.from_regex(r"[0-9]{1,10}/(second|minute|hour|day)", fullmatch=True),
}


def values(kind):
    """Arbitrary values for an option: any text (up to 10 kB), near misses of valid values, and other types."""
    anything = st.one_of(st.text(max_size=40), st.text(max_size=10000), st.integers(), st.booleans(), st.floats())
    if isinstance(kind, str):
        return st.one_of(anything, _spliced(VALID[kind]))
    if isinstance(kind[0], int):
        digits = st.integers(kind[0] - 2, kind[1] + 2)
        return st.one_of(anything, digits, digits.map(str), _spliced(digits.map(str)),
                         st.from_regex(r"\d{1,6}", fullmatch=True))  # \d: any script's digits
    return st.one_of(anything, st.sampled_from(kind), _spliced(st.sampled_from(kind)))


def nft_tokens(line):
    return re.findall(r'"[^"]*"|[^\s"]+', line)


def after(tokens, word):
    """The one token after word (which must occur exactly once)."""
    assert tokens.count(word) == 1, (word, tokens)
    return tokens[tokens.index(word) + 1]


def same_network(token, value):
    return ipaddress.ip_network(token) == ipaddress.ip_network(value)


# option -> (nft keyword, iptables flag, does the rendered token carry the value given)
RENDERED = {
    "in_interface": ("iifname", "-i", lambda nft, ipt, v: nft == '"%s"' % v and ipt == v),
    "out_interface": ("oifname", "-o", lambda nft, ipt, v: nft == '"%s"' % v and ipt == v),
    "comment": ("comment", "--comment", lambda nft, ipt, v: nft == '"%s"' % v and ipt == v),
    "source": ("saddr", "-s", lambda nft, ipt, v: same_network(nft, v) and same_network(ipt, v)),
    "destination": ("daddr", "-d", lambda nft, ipt, v: same_network(nft, v) and same_network(ipt, v)),
    "to_source": ("to", "--to-source", lambda nft, ipt, v: nft == ipt == v),
    "to_destination": ("to", "--to-destination", lambda nft, ipt, v: nft.split(":")[0] == ipt.split(":")[0] == v),
    "to_port": ("to", "--to-destination", lambda nft, ipt, v: nft.split(":")[1] == ipt.split(":")[1] == str(int(v))),
    "port": ("dport", "--dport", lambda nft, ipt, v: nft == ipt == str(int(v))),
    "protocol": ("dport", "-p", lambda nft, ipt, v: ipt == v),
    "mark": ("set", "--set-xmark", lambda nft, ipt, v: int(nft, 16) == int(ipt.split("/")[0], 16) == int(v)),
    "rate": ("over", "--hashlimit-above", lambda nft, ipt, v: nft == v and ipt == v.replace("second", "sec").replace(
        "minute", "min")),
    "burst": ("over", "--hashlimit-burst", lambda nft, ipt, v: ipt == str(int(v))),
    # The nft chain the rule is listed in, and the rule's action.
    "chain": (None, "-A", lambda nft, ipt, v: nft == v and ipt == "LVS-NAT-" + v.upper()),
    "type": (None, "-j", lambda nft, ipt, v: (nft, ipt) == ACTIONS[v]),
}
ACTIONS = {"masquerade": ("masquerade", "MASQUERADE"), "snat": ("snat", "SNAT"), "dnat": ("dnat", "DNAT"),
           "accept": ("accept", "ACCEPT"), "mark": ("mark", "MARK"), "rate_limit": ("drop", "DROP")}


def check_nft(rules, i, option, value):
    text = N.Nftables(None).boot_text(rules)
    sets = sum(r["type"] == "rate_limit" for r in rules)
    # header (1), delete/create (2), table (1), sets (6 each), five chains (3 each), one line per rule, closing brace.
    assert text.startswith(N.BOOT_HEADER)
    assert len(text.splitlines()) == 1 + 2 + 1 + 6 * sets + 15 + len(rules) + 1
    line = N.nft_rule(rules[i], i)
    assert ("\t\t%s\n" % line) in text
    tokens = nft_tokens(line)
    if option == "burst":
        burst = int(after(tokens, "burst")) if "burst" in tokens else N.DEFAULT_BURST
        assert burst == int(value)
    if option == "protocol":
        assert tokens[tokens.index("dport") - 1] == value
    if option == "chain":
        return [c for c, listed in N.nft_ruleset(rules)[0].items() if line in listed][0]
    if option == "type":
        return [a for a, _ipt in ACTIONS.values() if a in tokens][0]
    return after(tokens, RENDERED[option][0])


def check_ipt(rules, i, option):
    text = N.Iptables(None).boot_text(rules)
    lines = text.splitlines()
    # The managed header, per table a header and COMMIT, per owned chain a declaration and a jump: 17 lines, then
    # one per rule.
    assert text.startswith(N.BOOT_HEADER)
    assert len(lines) == 17 + len(rules)
    assert sum(line.startswith("-A ") for line in lines) == len(rules)
    line = N.ipt_rule(rules[i], i)
    assert line in lines
    return after(shlex.split(line), RENDERED[option][1])


@pytest.mark.parametrize("option", sorted(N.RULE_FIELDS))
@given(data=st.data())
def test_any_value_is_refused_naming_the_option_or_rendered_exactly(option, data):
    kind = N.RULE_FIELDS[option]
    value = data.draw(values(kind), label="value")
    if option == "type":
        rule = dict(BASE.get(value, {}) if isinstance(value, str) else {}, type=value)
    else:
        t = data.draw(st.sampled_from(sorted(t for t, takes in N.TAKES.items() if option in takes)), label="type")
        rule = dict(BASE[t], **{option: value})
    if option != "comment":
        rule["comment"] = "under test"  # its rendered line differs from every other rule's
    others = data.draw(st.lists(st.sampled_from(sorted(BASE)).map(BASE.get), max_size=3), label="others")
    i = data.draw(st.integers(0, len(others)), label="index")
    rules = others[:i] + [rule] + others[i:]
    try:
        normalised = N.normalise_rules(rules)
    except N.NetfilterError as e:
        event("refused")
        assert str(e).startswith("rules[%d].%s" % (i, option)), str(e)[:300]
        return
    event("rendered")
    assert not isinstance(value, (bool, float))
    nft = check_nft(normalised, i, option, value)
    ipt = check_ipt(normalised, i, option)
    assert RENDERED[option][2](nft.strip('"') if option in ("to_source", "to_destination", "to_port") else nft, ipt,
                               value), (nft, ipt, value)
