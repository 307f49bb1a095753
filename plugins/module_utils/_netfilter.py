# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Netfilter backends for the rules lvs.nat owns: nftables (table inet lvs_nat) or iptables
(chains LVS-NAT-*). Rules are rendered in the form each tool lists them, so the kernel's
listing can be compared rule by rule. Changes go in as one transaction after a dry run."""
from __future__ import annotations

import ipaddress
import re

from ansible_collections.lvs.nat.plugins.module_utils._addresses import interface_problem
from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import InvalidInput, whole_number
from ansible_collections.lvs.nat.plugins.module_utils._module import SBIN, run_command
from ansible_collections.lvs.nat.plugins.module_utils._persist import tool_path

RULE_TYPES = ("masquerade", "snat", "dnat", "accept", "mark", "rate_limit")
# Which owned chain each rule type lives in, per backend: (nft chain, iptables table, iptables chain).
PLACES = {
    "dnat": ("prerouting", "nat", "LVS-NAT-PREROUTING"),
    "masquerade": ("postrouting", "nat", "LVS-NAT-POSTROUTING"),
    "snat": ("postrouting", "nat", "LVS-NAT-POSTROUTING"),
    "mark": ("mangle", "mangle", "LVS-NAT-PREROUTING"),
    "rate_limit": ("input", "filter", "LVS-NAT-INPUT"),
    "accept_input": ("input", "filter", "LVS-NAT-INPUT"),
    "accept_forward": ("forward", "filter", "LVS-NAT-FORWARD"),
}
NFT_CHAINS = (
    ("prerouting", "type nat hook prerouting priority dstnat; policy accept;"),
    ("postrouting", "type nat hook postrouting priority srcnat; policy accept;"),
    ("mangle", "type filter hook prerouting priority mangle; policy accept;"),
    ("input", "type filter hook input priority filter; policy accept;"),
    ("forward", "type filter hook forward priority filter; policy accept;"),
)
# iptables: owned chain -> the built-in chain that jumps to it, per table.
IPT_JUMPS = (
    ("nat", "LVS-NAT-PREROUTING", "PREROUTING"),
    ("nat", "LVS-NAT-POSTROUTING", "POSTROUTING"),
    ("mangle", "LVS-NAT-PREROUTING", "PREROUTING"),
    ("filter", "LVS-NAT-INPUT", "INPUT"),
    ("filter", "LVS-NAT-FORWARD", "FORWARD"),
)
NFT_TABLE = "inet lvs_nat"
DEFAULT_BURST = 5
# Full matches, ASCII only: a value that reaches nft or iptables-restore text is one token there, and a trailing
# newline or a non-ASCII digit never passes (re.match with `$` let "eth0\n" through and split a rule in two).
_RATE = re.compile(r"([0-9]{1,10})/(second|minute|hour|day)", re.ASCII)
# What both backends take: nft refuses a rate of 0 (the kernel: Invalid argument) and iptables' hashlimit one above
# 1,000,000 a second ("Rate too fast"; 60,000,000 a minute, 3,600,000,000 an hour), both found on Debian 12.
MAX_RATE_PER_SECOND = 1000000
RATE_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# A rule's comment (_comment): 1 to 64 ASCII letters, digits, spaces and _ . , : / = + -, full match.
_COMMENT = re.compile(r"[A-Za-z0-9 _.,:/=+-]{1,64}", re.ASCII)
# What `iptables -S` prints without quotes (xtables_save_string); anything else it lists in double quotes.
_IPT_BARE = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
# VRRP (keepalived) has no ports: IP protocol 112, rendered as its number, which nft and iptables-restore take
# whatever /etc/protocols holds. Both list it by the name /etc/protocols gives it (netbase: "vrrp"), or as the
# number without that line: the backends read a listed rule's match back as the number (Nftables.current,
# Iptables.current), so the comparison with the rendered rule holds either way.
VRRP = "vrrp"
VRRP_NUMBER = 112
_NFT_VRRP = re.compile(r'\A((?:iifname "[^"]*" )?(?:oifname "[^"]*" )?(?:ip saddr \S+ )?(?:ip daddr \S+ )?)'
                       r"meta l4proto vrrp(?= |\Z)", re.ASCII)
_IPT_VRRP = re.compile(r"\A(-A \S+(?: -s \S+)?(?: -d \S+)?(?: -i \S+)?(?: -o \S+)?) -p vrrp(?= |\Z)", re.ASCII)

# Every option of a rule and its kind: a tuple of choices, an inclusive integer range, or a named string check.
RULE_FIELDS = {
    "type": RULE_TYPES,
    "source": "network",
    "destination": "network",
    "protocol": ("tcp", "udp", VRRP),
    "port": (1, 65535),
    "in_interface": "interface",
    "out_interface": "interface",
    "to_source": "address",
    "to_destination": "address",
    "to_port": (1, 65535),
    "chain": ("input", "forward"),
    "mark": (1, 0xFFFFFFFF),
    "rate": "rate",
    "burst": (1, 10000),
    "comment": "comment",
}
# The options each rule type takes (besides type), and those it needs.
TAKES = {
    "masquerade": ("source", "destination", "out_interface", "comment"),
    "snat": ("source", "destination", "out_interface", "to_source", "comment"),
    "dnat": ("destination", "protocol", "port", "in_interface", "to_destination", "to_port", "comment"),
    "accept": ("chain", "source", "destination", "protocol", "port", "in_interface", "out_interface", "comment"),
    "mark": ("source", "destination", "protocol", "port", "in_interface", "mark", "comment"),
    "rate_limit": ("destination", "protocol", "port", "rate", "burst", "comment"),
}
NEEDS = {"snat": ("to_source",), "dnat": ("destination", "to_destination"), "mark": ("mark",),
         "rate_limit": ("destination", "rate"), "accept": ("chain",)}


class NetfilterError(LvsNatError):
    """A rule refused, by the module's checks or by the backend (then with the tool's cmd, rc, stdout, stderr)."""


# ---------------------------------------------------------------- validation (pure: no kernel, no files)

def _string(where, value):
    if not isinstance(value, str):
        raise NetfilterError("%s=%r must be a string" % (where, value))
    return value


def _network(where, value):
    try:
        net = ipaddress.ip_interface(_string(where, value)).network
    except ValueError:
        raise NetfilterError("%s=%r is not an IPv4 address or network" % (where, value)) from None
    if net.version != 4:
        raise NetfilterError("%s=%r is IPv6; nat_rules manages IPv4 rules" % (where, value))
    try:
        return str(ipaddress.ip_network(value))
    except ValueError:
        raise NetfilterError("%s=%r has host bits set; write the network, %s" % (where, value, net)) from None


def _address(where, value):
    try:
        address = ipaddress.ip_address(_string(where, value))
    except ValueError:
        raise NetfilterError("%s=%r is not an IPv4 address" % (where, value)) from None
    if address.version != 4:
        raise NetfilterError("%s=%r is IPv6; nat_rules manages IPv4 rules" % (where, value))
    return str(address)


def _interface(where, value):
    problem = interface_problem(_string(where, value), where)
    if problem:
        raise NetfilterError(problem)
    return value


def _rate(where, value):
    match = _RATE.fullmatch(_string(where, value))
    if not match:
        raise NetfilterError("%s=%r must look like 20/second (ASCII digits, per second, minute, hour or day)" % (
            where, value))
    count, unit = int(match.group(1)), match.group(2)
    most = MAX_RATE_PER_SECOND * RATE_UNIT_SECONDS[unit]
    if not 1 <= count <= most:
        raise NetfilterError("%s=%s is out of range: it must be between 1 and %d per %s (nft refuses 0, iptables' "
                             "hashlimit more than %d a second)" % (where, value, most, unit, MAX_RATE_PER_SECOND))
    return value


def _comment(where, value):
    if not _COMMENT.fullmatch(_string(where, value)):
        raise NetfilterError("%s=%r is not a comment: up to 64 ASCII letters, digits, spaces and _.,:/=+-" % (where, value))
    return value


def _integer(where, value, low, high):
    try:
        return whole_number(where, value, low, high)
    except InvalidInput as e:
        raise NetfilterError(str(e)) from None


def _choice(where, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise NetfilterError("%s=%r must be one of: %s" % (where, value, ", ".join(choices)))
    return value


_CHECKS = {"network": _network, "address": _address, "interface": _interface, "rate": _rate, "comment": _comment}


def _field(where, kind, value):
    if isinstance(kind, str):
        return _CHECKS[kind](where, value)
    if isinstance(kind[0], int):
        return _integer(where, value, kind[0], kind[1])
    return _choice(where, value, kind)


def _rule_type(rule, where):
    """The rule's type, once the rule is a dict of known options that apply to that type."""
    if not isinstance(rule, dict):
        raise NetfilterError("%s must be a dict of rule options, not %r" % (where, rule))
    unknown = sorted(repr(k) if not isinstance(k, str) else k for k in rule if k not in RULE_FIELDS)
    if unknown:
        raise NetfilterError("%s.%s is not an option of a rule (options: %s)" % (
            where, unknown[0], ", ".join(RULE_FIELDS)))
    if rule.get("type") is None:
        raise NetfilterError("%s.type is required (one of: %s)" % (where, ", ".join(RULE_TYPES)))
    t = _choice(where + ".type", rule["type"], RULE_TYPES)
    extra = [k for k in RULE_FIELDS if rule.get(k) is not None and k not in TAKES[t] + ("type",)]
    if extra:
        raise NetfilterError("%s.%s does not apply when type is %s (it takes %s)" % (
            where, extra[0], t, ", ".join(TAKES[t])))
    return t


def _rule(rule, index):
    """One rule with every option present (None when unset), or NetfilterError naming rules[index].option."""
    where = "rules[%d]" % index
    t = _rule_type(rule, where)
    r = dict.fromkeys(RULE_FIELDS)
    r["type"] = t
    for name in TAKES[t]:
        if rule.get(name) is not None:
            r[name] = _field("%s.%s" % (where, name), RULE_FIELDS[name], rule[name])
    missing = [n for n in NEEDS.get(t, ()) if r[n] is None]
    if missing:
        raise NetfilterError("%s.%s is required when type is %s" % (where, missing[0], t))
    if r["protocol"] == VRRP and (t != "accept" or r["port"] is not None):
        raise NetfilterError("%s.protocol=vrrp (IP protocol %d) is for accept rules without a port%s" % (
            where, VRRP_NUMBER, "" if t != "accept" else ": remove %s.port" % where))
    for name in ("port", "to_port"):
        if r[name] is not None and r["protocol"] is None:
            raise NetfilterError("%s.%s needs %s.protocol (tcp or udp)" % (where, name, where))
    if t == "rate_limit" and r["burst"] is None:
        r["burst"] = DEFAULT_BURST
    return r


def normalise_rules(rules):
    """The rules of nat_rules, validated and normalised without touching the kernel or any file.

    Takes the module's `rules` option as given (a list of dicts; integers may be ASCII-digit strings) and returns
    a list of dicts with every option present (None when unset), addresses canonical and burst defaulted.
    Raises NetfilterError naming the first bad value as rules[i].option.
    """
    if not isinstance(rules, list):
        raise NetfilterError("rules must be a list of rules, not %r" % (rules,))
    return [_rule(rule, i) for i, rule in enumerate(rules)]


def place(rule):
    return PLACES[rule["type"] if rule["type"] != "accept" else "accept_" + rule["chain"]]


# ---------------------------------------------------------------- nftables rendering (as `nft list` prints)

def _nft_match(r):
    parts = []
    if r.get("in_interface"):
        parts.append('iifname "%s"' % r["in_interface"])
    if r.get("out_interface"):
        parts.append('oifname "%s"' % r["out_interface"])
    if r.get("source"):
        parts.append("ip saddr %s" % r["source"].replace("/32", ""))
    if r.get("destination"):
        parts.append("ip daddr %s" % r["destination"].replace("/32", ""))
    if r.get("port"):
        parts.append("%s dport %d" % (r["protocol"], r["port"]))
    elif r.get("protocol"):
        parts.append("meta l4proto %s" % (VRRP_NUMBER if r["protocol"] == VRRP else r["protocol"]))
    return parts


def nft_rule(r, index):
    parts = _nft_match(r)
    t = r["type"]
    if t == "masquerade":
        parts.append("masquerade")
    elif t == "snat":
        parts.append("snat ip to %s" % r["to_source"])
    elif t == "dnat":
        to = r["to_destination"] + (":%d" % r["to_port"] if r.get("to_port") else "")
        parts.append("dnat ip to %s" % to)
    elif t == "accept":
        parts.append("accept")
    elif t == "mark":
        parts.append("meta mark set 0x%08x" % r["mark"])
    elif t == "rate_limit":
        # nft leaves the default burst (5) out of its listing; iptables prints it.
        burst = "" if r["burst"] == DEFAULT_BURST else " burst %d packets" % r["burst"]
        parts.append("ct state new add @flood%d { ip saddr limit rate over %s%s } drop" % (index, r["rate"], burst))
    if r.get("comment"):
        parts.append('comment "%s"' % r["comment"])
    return " ".join(parts)


def nft_ruleset(rules):
    """chain -> rendered rules, and the sets rate limits need."""
    chains = dict((c, []) for c, _spec in NFT_CHAINS)
    sets = []
    for i, r in enumerate(rules):
        chains[place(r)[0]].append(nft_rule(r, i))
        if r["type"] == "rate_limit":
            sets.append("flood%d" % i)
    return chains, sets


def nft_text(rules):
    """The nft -f input that replaces the owned table in one transaction."""
    chains, sets = nft_ruleset(rules)
    out = ["table %s {" % NFT_TABLE]
    for s in sets:
        out.append("\tset %s {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 1m\n\t}" % s)
    for name, head in NFT_CHAINS:
        out.append("\tchain %s {\n\t\t%s" % (name, head))
        out += ["\t\t" + rule for rule in chains[name]]
        out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- iptables rendering (as `iptables -S` prints)

def ipt_rule(r, index):
    chain = place(r)[2]
    parts = ["-A", chain]
    if r.get("source"):
        parts += ["-s", r["source"]]
    if r.get("destination"):
        parts += ["-d", r["destination"]]
    if r.get("in_interface"):
        parts += ["-i", r["in_interface"]]
    if r.get("out_interface"):
        parts += ["-o", r["out_interface"]]
    if r.get("protocol"):
        parts += ["-p", str(VRRP_NUMBER) if r["protocol"] == VRRP else r["protocol"]]
        if r.get("port"):
            parts += ["-m", r["protocol"], "--dport", str(r["port"])]
    t = r["type"]
    if t == "rate_limit":
        unit = {"second": "sec", "minute": "min", "hour": "hour", "day": "day"}[r["rate"].split("/")[1]]
        parts += ["-m", "conntrack", "--ctstate", "NEW", "-m", "hashlimit", "--hashlimit-above",
                  "%s/%s" % (r["rate"].split("/")[0], unit), "--hashlimit-burst", str(r["burst"]),
                  "--hashlimit-mode", "srcip", "--hashlimit-name", "lvs_nat_flood%d" % index]
    if r.get("comment"):
        comment = r["comment"]
        parts += ["-m", "comment", "--comment", comment if _IPT_BARE.fullmatch(comment) else '"%s"' % comment]
    parts += {
        "masquerade": ["-j", "MASQUERADE"],
        "snat": ["-j", "SNAT", "--to-source", r.get("to_source") or ""],
        "dnat": ["-j", "DNAT", "--to-destination",
                 (r.get("to_destination") or "") + (":%d" % r["to_port"] if r.get("to_port") else "")],
        "accept": ["-j", "ACCEPT"],
        "mark": ["-j", "MARK", "--set-xmark", "0x%x/0xffffffff" % (r.get("mark") or 0)],
        "rate_limit": ["-j", "DROP"],
    }[t]
    return " ".join(parts)


def ipt_ruleset(rules):
    """(table, chain) -> rendered rules, for every owned chain."""
    out = dict(((table, chain), []) for table, chain, _builtin in IPT_JUMPS)
    for i, r in enumerate(rules):
        _nft_chain, table, chain = place(r)
        out[(table, chain)].append(ipt_rule(r, i))
    return out


# ---------------------------------------------------------------- the tools

def detect(module, requested):
    """The backend to use: the one requested, or (auto) nftables where nft is installed, else iptables."""
    def installed(tool):
        return module.get_bin_path(tool, opt_dirs=SBIN) is not None

    if requested != "auto":
        tool = "nft" if requested == "nftables" else "iptables"
        if not installed(tool):
            raise NetfilterError("backend=%s needs the %s command, which is not installed" % (requested, tool))
        return requested
    for backend_name, tool in (("nftables", "nft"), ("iptables", "iptables")):
        if installed(tool):
            return backend_name
    raise NetfilterError("neither nft nor iptables is installed")


class _Backend(object):
    def __init__(self, module):
        self.module = module

    def _run(self, argv, data=None):
        """(rc, stdout, stderr) of the tool, whatever its rc."""
        return run_command(self.module, argv, data=data, ok=None)

    def _apply(self, argv, data):
        """Feed data to the tool; a refusal is NetfilterError with the tool's result."""
        rc, out, err = self._run(argv, data)
        if rc != 0:
            raise NetfilterError("%s refused the rules (%s, rc=%d): %s" % (self.name, " ".join(argv), rc, err.strip()),
                                 cmd=argv, rc=rc, stdout=out, stderr=err)


class Nftables(_Backend):
    name = "nftables"

    def current(self):
        """chain -> rules as the kernel lists them; None when the owned table does not exist."""
        argv = ["nft", "list", "table"] + NFT_TABLE.split()
        rc, out, err = self._run(argv)
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise NetfilterError("nft list table %s failed (rc=%d): %s" % (NFT_TABLE, rc, err.strip()),
                                 cmd=argv, rc=rc, stdout=out, stderr=err)
        chains, chain = {}, None
        for line in out.splitlines():
            line = line.strip()
            m = re.match(r"^chain (\S+) \{$", line)
            if m:
                chain = chains.setdefault(m.group(1), [])
            elif line == "}":
                chain = None
            elif chain is not None and line and not line.startswith("type "):
                chain.append(_NFT_VRRP.sub(r"\1meta l4proto %d" % VRRP_NUMBER, line, count=1))
        return chains

    def desired(self, rules):
        return nft_ruleset(rules)[0]

    def jumps_missing(self):
        return False  # base chains hook in by themselves

    def replace(self, rules, check_only):
        data = self.boot_text(rules)
        self._nft(["-c", "-f", "-"], data)
        if not check_only:
            self._nft(["-f", "-"], data)

    def remove(self):
        self._nft(["-f", "-"], "table %s {}\ndelete table %s\n" % (NFT_TABLE, NFT_TABLE))

    def _nft(self, args, data):
        self._apply(["nft"] + args, data)

    def boot_command(self, path):
        return "%s -f %s" % (tool_path(self.module, "nft", "/usr/sbin/nft"), path)

    def boot_text(self, rules):
        # "table {}" creates it when missing so that "delete table" cannot fail: one atomic transaction.
        return "%stable %s {}\ndelete table %s\n%s" % (BOOT_HEADER, NFT_TABLE, NFT_TABLE, nft_text(rules))


class Iptables(_Backend):
    name = "iptables"

    def current(self):
        # Whole-table listings: iptables-nft 1.8.9 calls a chain that does not exist "incompatible".
        chains, exists = {}, False
        for table in ("nat", "mangle", "filter"):
            out = run_command(self.module, ["iptables", "-w", "-t", table, "-S"],
                              what="iptables -t %s -S" % table)[1]
            lines = out.splitlines()
            for t, chain, _builtin in IPT_JUMPS:
                if t == table:
                    exists = exists or ("-N %s" % chain) in lines
                    chains[(table, chain)] = [_IPT_VRRP.sub(r"\1 -p %d" % VRRP_NUMBER, line, count=1)
                                              for line in lines if line.startswith("-A %s " % chain)]
        return chains if exists else None

    def desired(self, rules):
        return ipt_ruleset(rules)

    def _restore_text(self, rules, jumps):
        sets = ipt_ruleset(rules)
        out = []
        for table in ("nat", "mangle", "filter"):
            owned = [(c, b) for t, c, b in IPT_JUMPS if t == table]
            out.append("*%s" % table)
            out += [":%s - [0:0]" % c for c, _builtin in owned]  # with --noflush this flushes an existing owned chain
            for c, b in owned:
                if jumps(table, b, c):
                    out.append("-I %s 1 -j %s" % (b, c))
            for c, _builtin in owned:
                out += sets[(table, c)]
            out.append("COMMIT")
        return "\n".join(out) + "\n"

    def _has_jump(self, table, builtin, chain):
        return self._run(["iptables", "-w", "-t", table, "-C", builtin, "-j", chain])[0] == 0

    def jumps_missing(self):
        return any(not self._has_jump(t, builtin, c) for t, c, builtin in IPT_JUMPS)

    def replace(self, rules, check_only):
        data = self._restore_text(rules, lambda t, b, c: not self._has_jump(t, b, c))
        self._restore(["--test"], data)
        if not check_only:
            self._restore([], data)

    def remove(self):
        for table, chain, builtin in IPT_JUMPS:
            while self._has_jump(table, builtin, chain):
                self._run(["iptables", "-w", "-t", table, "-D", builtin, "-j", chain])
            self._run(["iptables", "-w", "-t", table, "-F", chain])
            self._run(["iptables", "-w", "-t", table, "-X", chain])

    def _restore(self, args, data):
        self._apply(["iptables-restore", "-w", "--noflush"] + args, data)

    def boot_command(self, path):
        return "%s -w --noflush %s" % (tool_path(self.module, "iptables-restore", "/usr/sbin/iptables-restore"), path)

    def boot_text(self, rules):
        # At boot the built-in chains have no jumps to ours yet.
        return BOOT_HEADER + self._restore_text(rules, lambda *a: True)


# Both nft -f and iptables-restore skip "#" lines; the header marks the file as the module's own (_persist.managed).
BOOT_HEADER = "# Managed by lvs.nat.nat_rules: edits here are overwritten.\n"


def backend(name, module):
    """The backend `name` (nftables or iptables), running its tools through module."""
    return Nftables(module) if name == "nftables" else Iptables(module)
