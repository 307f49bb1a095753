# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad role variables on the converged lab cluster: playbooks/site.yml stops in its preflight play, naming the
variable, before any host changes. Each declaration also differs from the converged state elsewhere (an extra service,
other timeouts, another weight), so that a task running before the refusal would show up as a change; the director's
IPVS table, ruleset, sysctls and owned files and a real server's routes are byte-identical afterwards."""
from __future__ import annotations

import concurrent.futures
import json
import re
from pathlib import Path

import harness
import pytest

ROOT = Path(__file__).resolve().parents[2]
PARALLEL = 4

DIRECTOR_STATE = (
    "ipvsadm -Sn; ipvsadm -Ln --timeout; nft list ruleset; sysctl -a 2>/dev/null | grep -E 'ip_forward|vs\\.'; "
    "for f in /etc/lvs-nat/* /etc/sysctl.d/*lvs-nat* /etc/modules-load.d/*lvs-nat* /etc/systemd/system/lvs-nat-*; "
    "do [ -f \"$f\" ] && { echo \"== $f\"; cat \"$f\"; }; done; true")
REALSERVER_STATE = "ip route; cat /etc/systemd/system/lvs-nat-route.service 2>/dev/null; true"

LAB_SERVICES = [{"protocol": "tcp", "port": 80, "scheduler": "wrr"},
                {"protocol": "tcp", "port": 8080, "scheduler": "rr", "real_server_port": 80}]
EXTRA = {"protocol": "tcp", "port": 8081, "scheduler": "rr", "real_server_port": 80}
CHECK = {"type": "http", "interval": 1, "timeout": 1, "rise": 2, "fall": 2}
INJECTED_RIP = '198.51.100.65"\n    - address: "198.51.100.166'
INJECTED_IFACE = 'eth0"}\n- {type: accept, chain: input, source: "0.0.0.0/0'


# director_ha (two directors): every HA variable given as an extra variable, so that each case is refused for its own
# reason on the one-director lab and on the pair alike. Extra variables give every director the same host variables:
# a case may be refused for that too; the message looked for is its own.
HA = {"director_dip": "198.51.100.100", "director_ha": {"vrid": 51}, "director_public_interface": "eth1",
      "director_private_interface": "eth2", "director_public_address": "198.51.100.11/26",
      "director_private_address": "198.51.100.98/26", "realserver_gateway": "198.51.100.100"}


def ha(**changes):
    return dict(services(), **dict(HA, **changes))


def services(*more):
    return {"director_services": LAB_SERVICES + [EXTRA, *more]}


def bad_service(**fields):
    return {"director_services": LAB_SERVICES + [dict({"protocol": "tcp", "port": 9090}, **fields)],
            "director_timeouts": {"tcp": 700, "tcp_fin": 70, "udp": 130}}


# (name, extra vars, what the message says): each differs from the lab's declaration besides its bad value.
CASES = [
    ("unknown scheduler", bad_service(scheduler="fastest"), "director_services[2].scheduler: value of scheduler"),
    ("service declared twice", services(dict(LAB_SERVICES[0], scheduler="rr")),
     "director_services[3]: the service is declared twice (also director_services[0])"),
    ("VIP 999.1.1.1", dict(services(), director_vip="999.1.1.1"), "director_vip: address='999.1.1.1'"),
    ("IPv6 VIP", dict(services(), director_vip="2001:db8::10"), "director_vip: destination='2001:db8::10' is IPv6"),
    ("bad weight", dict(services(), realserver_weight="heavy"), "realserver_weight: "),
    ("bad port", bad_service(port=70000), "director_services[2]: port=70000 is out of range"),
    ("flags without their scheduler", bad_service(scheduler="rr", scheduler_flags=["sh-port"]),
     "director_services[2]: scheduler_flags=sh-port do not fit scheduler=rr"),
    ("prefix without persistence", bad_service(persistence_prefix=24),
     "director_services[2]: persistence_prefix=24 needs persistence_timeout"),
    ("persistence beyond 31 days", bad_service(persistence_timeout=2678401),
     "director_services[2]: persistence_timeout=2678401 is out of range"),
    ("duplicate real server", bad_service(real_servers=[{"address": "198.51.100.65"}, {"address": "198.51.100.65"}]),
     "is listed twice"),
    ("real server 0.0.0.0", bad_service(real_servers=[{"address": "0.0.0.0"}]),
     "director_services[2].real_servers[0].address: address=0.0.0.0 cannot be a real server address"),
    ("multicast real server", dict(services(), realserver_rip="224.0.0.5"),
     "realserver_rip: address=224.0.0.5 cannot be a real server address"),
    ("injection via a real server's host variable", dict(services(), realserver_rip=INJECTED_RIP),
     "realserver_rip: address='198.51.100.65\"\\n"),
    ("injection via director_outbound_interface", dict(services(), director_outbound_interface=INJECTED_IFACE),
     "director_outbound_interface: out_interface="),
    ("bad director_sysctl key", dict(services(), director_sysctl={"kernel.panic": 1, "net.ipv4.tcp_tw_reuse": 0}),
     "director_sysctl['kernel.panic']: "),
    # Only the director's kernel knows its keys: the preflight's probe looks for them (it failed in the configure phase,
    # after packages were installed and while the real servers' play went on).
    ("misspelt director_sysctl key", dict(services(), director_sysctl={"net.ipv4.tcp_fin_timout": 30}),
     "has no parameter net.ipv4.tcp_fin_timout (nothing was installed or changed)"),
    ("forwarding key with a newline", dict(services(), director_sysctl={"net.ipv4.ip_forward\n": 0}),
     "director_sysctl['net.ipv4.ip_forward\\n']: "),
    ("timeout out of range", dict(services(), director_timeouts={"tcp": 0, "tcp_fin": 60, "udp": 120}),
     "director_timeouts.tcp: tcp=0 is out of range"),
    ("timeout misspelt", dict(services(), director_timeouts={"tcp": 600, "tcpfin": 60}),
     "director_timeouts: unknown option(s) 'tcpfin'"),
    ("one_packet on TCP", bad_service(one_packet=True), "director_services[2]: one_packet=true is for UDP"),
    ("fwmark and port", bad_service(fwmark=3), "parameters are mutually exclusive: fwmark|port"),
    ("private network with host bits", dict(services(), director_private_network="198.51.100.65/26"),
     "director_private_network: source='198.51.100.65/26' has host bits set"),
    ("extra rule incomplete", dict(services(), director_nat_rules=[{"type": "snat"}]),
     "director_nat_rules[0].to_source is required"),
    ("real server gateway with a newline", dict(services(), realserver_gateway="198.51.100.100\n"),
     "realserver_gateway: gateway='198.51.100.100\\n' is not an IP address"),
    ("real server interface injection", dict(services(), realserver_interface="eth1; touch /tmp/y"),
     "realserver_interface: in_interface="),
    ("real server port with a newline", dict(services(), realserver_port="80\n"), "realserver_port: port="),
    # Health checks (lvs-nat-healthd): refused in the preflight, naming the field.
    ("check interval 0", bad_service(check=dict(CHECK, interval=0)), "director_services[2].check.interval=0 is out of range"),
    ("check fall 0", bad_service(check=dict(CHECK, fall=0)), "director_services[2].check.fall=0 is out of range"),
    ("check rise 0", bad_service(check=dict(CHECK, rise=0)), "director_services[2].check.rise=0 is out of range"),
    ("check timeout beyond its interval", bad_service(check=dict(CHECK, timeout=3)),
     "director_services[2].check.timeout=3 exceeds director_services[2].check.interval=1"),
    ("unknown check type", bad_service(check=dict(CHECK, type="ping")), "got: ping"),
    ("check path without /", bad_service(check=dict(CHECK, path="healthz")),
     "director_services[2].check.path='healthz' must start with /"),
    ("exec check not an absolute path", bad_service(check=dict(type="exec", command=["curl", "-f", "http://x/"])),
     "director_services[2].check.command[0]='curl' is not an absolute path"),
    ("expect_status 99", bad_service(check=dict(CHECK, expect_status=[99])),
     "director_services[2].check.expect_status[0]=99 is out of range"),
    ("sorry server not an address", bad_service(check=CHECK, sorry_server="nope"),
     "director_services[2].sorry_server='nope' is not an address"),
    # director_ha (issue 16, item 9): refused in the preflight, naming the variable.
    ("real servers' gateway not the DIP", ha(realserver_gateway="198.51.100.99"),
     "realserver_gateway=198.51.100.99 is not director_dip 198.51.100.100"),
    ("VIP outside the public network", ha(director_public_address="203.0.113.11/26"),
     "director_vip=198.51.100.10 is outside host "),
    ("DIP outside the private network", ha(director_dip="198.51.100.130", realserver_gateway="198.51.100.130"),
     "director_dip=198.51.100.130 is outside host "),
    ("VRID used twice", ha(director_ha={"vrid": 51, "private_vrid": 51}),
     "director_ha.private_vrid=51 is director_ha.vrid too"),
    ("floating DIP is a fixed address", ha(director_private_address="198.51.100.100/26"),
     "director_dip=198.51.100.100 is host "),
    ("director_ha with one director (the one-director lab)", ha(),
     "director_ha needs at least two directors"),
    ("advert_int 0", ha(director_ha={"vrid": 51, "advert_int": 0}), "director_ha.advert_int=0 is out of range"),
    ("vrid 256", ha(director_ha={"vrid": 256}), "director_ha.vrid=256 is out of range"),
]


def state(lab, rs):
    return lab.exec_on("director", DIRECTOR_STATE).stdout, lab.exec_on(rs, REALSERVER_STATE).stdout


def run_site(lab, tmp_path, name, extra):
    path = tmp_path / ("%s.json" % re.sub(r"\W+", "-", name))
    path.write_text(json.dumps(extra))
    proc = harness.playbook(ROOT / "playbooks" / "site.yml", "-e", "@%s" % path, inventory=lab.INVENTORY)
    return proc.returncode, proc.output


@pytest.fixture(scope="module")
def converged(lab):
    """The lab cluster as site.yml leaves it, and its state."""
    rc, out = run_site(lab, Path("/tmp"), "lvsnat-converge", {})
    assert rc == 0, out[-6000:]
    return state(lab, lab.realserver_names()[0])


def test_every_bad_declaration_stops_site_yml_before_any_change(lab, converged, tmp_path):
    assert len(CASES) >= 20
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        results = dict(zip([c[0] for c in CASES],
                           pool.map(lambda c: run_site(lab, tmp_path, c[0], c[1]), CASES)))
    failures = []
    for name, _extra, message in CASES:
        rc, out = results[name]
        counts = harness.recap(out)
        if rc == 0 or message not in out:
            failures.append("%s: rc=%s, message %r not found:\n%s" % (name, rc, message, out[-3000:]))
        elif "PLAY [LVS-NAT director]" in out or "PLAY [LVS-NAT real servers]" in out:
            failures.append("%s: a play after the preflight started" % name)
        elif not counts or any(c["changed"] for c in counts.values()):
            failures.append("%s: changes reported: %s" % (name, counts))
    assert failures == [], "\n\n".join(failures)
    # Nothing changed on the director or the real server, by any case.
    assert state(lab, lab.realserver_names()[0]) == converged
