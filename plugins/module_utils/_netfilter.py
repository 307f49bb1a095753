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
import shutil
import subprocess

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
_RATE = re.compile(r"^(\d+)/(second|minute|hour|day)$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}$")


class NetfilterError(Exception):
    pass


# ---------------------------------------------------------------- validation (pure)

def _net(where, name, value, host=False):
    try:
        net = ipaddress.ip_interface(value).network if not host else ipaddress.ip_address(value)
    except ValueError:
        raise NetfilterError("%s: %s=%r is not an IPv4 %s" % (where, name, value, "address" if host else "address or network")) from None
    if net.version != 4:
        raise NetfilterError("%s: %s=%s is IPv6; nat_rules manages IPv4 rules" % (where, name, value))
    if not host:
        try:
            return str(ipaddress.ip_network(value))
        except ValueError:
            raise NetfilterError("%s: %s=%s has host bits set; write the network, %s" % (
                where, name, value, ipaddress.ip_interface(value).network)) from None
    return str(net)


def normalise_rule(rule, index):
    """A rule with every field present (None when unset), or NetfilterError naming the field."""
    where = "rules[%d] (%s)" % (index, rule.get("type"))
    r = dict(rule)
    t = r["type"]
    allowed = {
        "masquerade": {"source", "destination", "out_interface", "comment"},
        "snat": {"source", "destination", "out_interface", "to_source", "comment"},
        "dnat": {"destination", "protocol", "port", "in_interface", "to_destination", "to_port", "comment"},
        "accept": {"chain", "source", "destination", "protocol", "port", "in_interface", "out_interface", "comment"},
        "mark": {"source", "destination", "protocol", "port", "in_interface", "mark", "comment"},
        "rate_limit": {"destination", "protocol", "port", "rate", "burst", "comment"},
    }[t]
    extra = sorted(k for k, v in r.items() if v is not None and k not in allowed | {"type"})
    if extra:
        raise NetfilterError("%s: %s do(es) not apply to a %s rule (it takes %s)" % (
            where, ", ".join(extra), t, ", ".join(sorted(allowed))))
    for name in ("source", "destination"):
        if r.get(name) is not None:
            r[name] = _net(where, name, r[name])
    for name in ("to_source", "to_destination"):
        if r.get(name) is not None:
            r[name] = _net(where, name, r[name], host=True)
    for name in ("in_interface", "out_interface"):
        if r.get(name) is not None and not _IFNAME.match(r[name]):
            raise NetfilterError("%s: %s=%r is not an interface name" % (where, name, r[name]))
    for name in ("port", "to_port"):
        if r.get(name) is not None and not 1 <= r[name] <= 65535:
            raise NetfilterError("%s: %s=%s is out of range: it must be between 1 and 65535" % (where, name, r[name]))
    if r.get("port") is not None and r.get("protocol") is None:
        raise NetfilterError("%s: port needs protocol (tcp or udp)" % where)
    need = {"snat": ["to_source"], "dnat": ["destination", "to_destination"], "mark": ["mark"],
            "rate_limit": ["destination", "rate"], "accept": ["chain"]}.get(t, [])
    missing = [n for n in need if r.get(n) is None]
    if missing:
        raise NetfilterError("%s: missing %s" % (where, ", ".join(missing)))
    if t == "dnat" and r.get("to_port") is not None and r.get("protocol") is None:
        raise NetfilterError("%s: to_port needs protocol (tcp or udp)" % where)
    if t == "mark" and not 1 <= r["mark"] <= 0xFFFFFFFF:
        raise NetfilterError("%s: mark=%s is out of range: it must be between 1 and 4294967295" % (where, r["mark"]))
    if t == "rate_limit":
        if not _RATE.match(str(r["rate"])):
            raise NetfilterError("%s: rate=%r must look like 20/second (per second, minute, hour or day)" % (where, r["rate"]))
        if r.get("burst") is None:
            r["burst"] = DEFAULT_BURST
        if not 1 <= r["burst"] <= 10000:
            raise NetfilterError("%s: burst=%s is out of range: it must be between 1 and 10000" % (where, r["burst"]))
    if r.get("comment") is not None and not re.match(r"^[A-Za-z0-9 _.,:/=+-]{1,64}$", r["comment"]):
        raise NetfilterError("%s: comment=%r: up to 64 letters, digits, spaces and _.,:/=+-" % (where, r["comment"]))
    return r


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
        parts.append("meta l4proto %s" % r["protocol"])
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
        parts += ["-p", r["protocol"]]
        if r.get("port"):
            parts += ["-m", r["protocol"], "--dport", str(r["port"])]
    t = r["type"]
    if t == "rate_limit":
        unit = {"second": "sec", "minute": "min", "hour": "hour", "day": "day"}[r["rate"].split("/")[1]]
        parts += ["-m", "conntrack", "--ctstate", "NEW", "-m", "hashlimit", "--hashlimit-above",
                  "%s/%s" % (r["rate"].split("/")[0], unit), "--hashlimit-burst", str(r["burst"]),
                  "--hashlimit-mode", "srcip", "--hashlimit-name", "lvs_nat_flood%d" % index]
    if r.get("comment"):
        parts += ["-m", "comment", "--comment", '"%s"' % r["comment"] if " " in r["comment"] else r["comment"]]
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

def _run(argv, data=None):
    proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def detect(requested):
    if requested != "auto":
        tool = "nft" if requested == "nftables" else "iptables"
        if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            raise NetfilterError("backend=%s needs the %s command, which is not installed" % (requested, tool))
        return requested
    for backend, tool in (("nftables", "nft"), ("iptables", "iptables")):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            return backend
    raise NetfilterError("neither nft nor iptables is installed")


class Nftables(object):
    name = "nftables"

    def current(self):
        """chain -> rules as the kernel lists them; None when the owned table does not exist."""
        rc, out, err = _run(["nft", "list", "table"] + NFT_TABLE.split())
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise NetfilterError("nft list table %s failed (rc=%d): %s" % (NFT_TABLE, rc, err.strip()))
        chains, chain = {}, None
        for line in out.splitlines():
            line = line.strip()
            m = re.match(r"^chain (\S+) \{$", line)
            if m:
                chain = chains.setdefault(m.group(1), [])
            elif line == "}":
                chain = None
            elif chain is not None and line and not line.startswith("type "):
                chain.append(line)
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
        rc, out, err = _run(["nft"] + args, data)
        if rc != 0:
            raise NetfilterError("nftables refused the rules (nft %s, rc=%d): %s" % (" ".join(args), rc, err.strip()))

    def boot_command(self, path):
        return "/usr/sbin/nft -f %s" % path

    def boot_text(self, rules):
        # "table {}" creates it when missing so that "delete table" cannot fail: one atomic transaction.
        return "table %s {}\ndelete table %s\n%s" % (NFT_TABLE, NFT_TABLE, nft_text(rules))


class Iptables(object):
    name = "iptables"

    def current(self):
        # Whole-table listings: iptables-nft 1.8.9 calls a chain that does not exist "incompatible".
        chains, exists = {}, False
        for table in ("nat", "mangle", "filter"):
            rc, out, err = _run(["iptables", "-w", "-t", table, "-S"])
            if rc != 0:
                raise NetfilterError("iptables -t %s -S failed (rc=%d): %s" % (table, rc, err.strip()))
            lines = out.splitlines()
            for t, chain, _builtin in IPT_JUMPS:
                if t == table:
                    exists = exists or ("-N %s" % chain) in lines
                    chains[(table, chain)] = [line for line in lines if line.startswith("-A %s " % chain)]
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
        return _run(["iptables", "-w", "-t", table, "-C", builtin, "-j", chain])[0] == 0

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
                _run(["iptables", "-w", "-t", table, "-D", builtin, "-j", chain])
            _run(["iptables", "-w", "-t", table, "-F", chain])
            _run(["iptables", "-w", "-t", table, "-X", chain])

    def _restore(self, args, data):
        rc, out, err = _run(["iptables-restore", "-w", "--noflush"] + args, data)
        if rc != 0:
            raise NetfilterError("iptables refused the rules (iptables-restore --noflush %s, rc=%d): %s" % (
                " ".join(args), rc, err.strip()))

    def boot_command(self, path):
        return "/usr/sbin/iptables-restore -w --noflush %s" % path

    def boot_text(self, rules):
        # At boot the built-in chains have no jumps to ours yet.
        return self._restore_text(rules, lambda *a: True)


def backend(name):
    return Nftables() if name == "nftables" else Iptables()
