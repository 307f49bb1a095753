# SPDX-License-Identifier: GPL-3.0-or-later
"""The converged lab cluster, checked from the outside: requests from the client, the director's kernel,
the real servers' routes; a check-mode run, a real server restarted with no play, and a drain through the role's
variables.

Run by `molecule verify` (testinfra, hosts from the lab inventory); the lab itself is driven through lab.py.
molecule runs pytest from molecule/default: its rootdir is the checkout's (pytest.ini), whose pythonpath brings
harness (tests/) and lab (tests/lab), as for every other test."""
from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import time

import harness
import lab
import pytest
import testinfra

REQUESTS = 200
TOLERANCE = 0.10  # each real server's share within 10 % of its expected share


@pytest.fixture(scope="module")
def inventory(request):
    return request.config.option.ansible_inventory


@pytest.fixture(scope="module")
def hostvars(inventory):
    out = subprocess.run([f"{sys.prefix}/bin/ansible-inventory", "-i", inventory, "--list"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["_meta"]["hostvars"]


def host(inventory, name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)


@pytest.fixture(scope="module")
def client(inventory):
    return host(inventory, "client")


@pytest.fixture(scope="module")
def director(inventory):
    return host(inventory, "director1")


def services():
    return {svc["port"]: svc for svc in lab.LAB_SERVICES}


def ask(client, port, count=REQUESTS):
    """`count` requests from the client to the VIP, a new connection each; how many each real server answered."""
    out = client.check_output(f"for i in $(seq {count}); do curl -s -m 5 http://{lab.VIP}:{port}/ || echo; "
                              f"echo; done")
    answers = [line.removeprefix("lvs.nat real server ").strip() for line in out.split("\n") if line.strip()]
    counts = collections.Counter(answers)
    print(f"VIP:{port} {services()[port]['scheduler']}: {dict(sorted(counts.items()))} of {count}")
    return counts


def expected_shares(hostvars, scheduler, drained=()):
    rs = [h for h in lab.realserver_names() if h not in drained]
    weights = {h: (hostvars[h].get("realserver_weight", 1) if scheduler == "wrr" else 1) for h in rs}
    total = sum(weights.values())
    return {h: w / total for h, w in weights.items()}


def assert_split(counts, shares, count=REQUESTS):
    assert sum(counts.values()) == count, f"some requests failed or were answered by something else: {counts}"
    assert set(counts) == set(shares), f"answered by {set(counts)}, expected {set(shares)}"
    for h, share in shares.items():
        assert abs(counts[h] - share * count) <= TOLERANCE * share * count, (h, counts[h], share * count)


def test_wrr_split_follows_the_weights(client, hostvars):
    port = next(p for p, s in services().items() if s["scheduler"] == "wrr")
    assert_split(ask(client, port), expected_shares(hostvars, "wrr"))


def test_rr_split_is_even(client, hostvars):
    port = next(p for p, s in services().items() if s["scheduler"] == "rr")
    assert_split(ask(client, port), expected_shares(hostvars, "rr"))


def declared_services(director, weights):
    """The declared services' lines of `ipvsadm -Sn`, as the kernel holds them and as declared."""
    held = {line for line in director.check_output("ipvsadm -Sn").splitlines()
            if any(f" {lab.VIP}:{port} " in f"{line} " for port in services())}
    declared = set()
    for port, svc in services().items():
        declared.add(f"-A -t {lab.VIP}:{port} -s {svc['scheduler']}")
        for rs in lab.realserver_names():
            declared.add(f"-a -t {lab.VIP}:{port} -r {lab.realserver_ip(rs)}:{svc.get('real_server_port', port)} "
                         f"-m -w {weights[rs]}")
    return held, declared


def test_director_kernel_holds_exactly_the_declared_table(director, hostvars):
    held, declared = declared_services(director, {rs: hostvars[rs].get("realserver_weight", 1)
                                                  for rs in lab.realserver_names()})
    assert held == declared
    timeouts = hostvars["director1"]["director_timeouts"]
    held_timeouts = re.search(r"(\d+) (\d+) (\d+)\s*$", director.check_output("ipvsadm -Ln --timeout")).groups()
    assert held_timeouts == (str(timeouts["tcp"]), str(timeouts["tcp_fin"]), str(timeouts["udp"]))
    assert director.sysctl("net.ipv4.ip_forward") == 1


def playbook(inventory, *args, expect_rc=0):
    proc = harness.playbook("lvs.nat.site", *args, inventory=inventory)
    assert proc.returncode == expect_rc, proc.stdout[-4000:] + proc.stderr[-2000:]
    # Molecule's ansible.cfg sends a failed task's output to stderr (display_failed_stderr).
    return proc.output


def test_check_mode_on_the_converged_cluster_changes_nothing(inventory):
    counts = harness.recap(playbook(inventory, "--check", "--diff"))
    assert set(counts) == {"director1", *lab.realserver_names()}
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), counts


@pytest.mark.parametrize(("bad", "message"), [
    ({"director_services": [{"protocol": "tcp", "scheduler": "rr"}]}, "every service needs a port or a fwmark"),
    ({"director_services": [{"protocol": "icmp", "port": 80}]}, "value of protocol must be one of: tcp, udp, sctp, got: icmp"),
    ({"director_vip": ""}, "director_vip: address='' is not an IPv4 or IPv6 address"),
    ({"realserver_weight": "heavy"}, "realserver_weight: argument 'weight' is of type"),
    ({"realserver_rip": "web-1"}, "realserver_rip: address='web-1' is not an IPv4 or IPv6 address"),
    ({"realserver_web": "lighttpd"}, "value of realserver_web must be one of: apache, nginx, none, got: lighttpd"),
    ({"realserver_route_mode": "routes"}, "route_mode routes needs realserver_client_networks"),
])
def test_bad_role_variables_fail_before_any_change(inventory, director, bad, message):
    """Wrong variables fail in the role's argument check or preflight, naming the problem; nothing changes."""
    rs = host(inventory, lab.realserver_names()[0])
    before = (director.check_output("ipvsadm -Sn; nft list ruleset; sysctl net.ipv4"), rs.check_output("ip route"))
    out = playbook(inventory, "-e", json.dumps(bad), expect_rc=2)
    assert message in out
    # The preflight play stopped the run: no host reached its role's changes.
    assert "PLAY [LVS-NAT director]" not in out and "PLAY [LVS-NAT real servers]" not in out
    assert (director.check_output("ipvsadm -Sn; nft list ruleset; sysctl net.ipv4"), rs.check_output("ip route")) == before


# realserver_web -> the Debian service that serves the page.
WEB_SERVICE = {"apache": "apache2", "nginx": "nginx"}


def web_service(hostvars, rs_name):
    return WEB_SERVICE[hostvars[rs_name].get("realserver_web", "apache")]


def test_each_real_server_runs_the_web_server_its_variables_name(inventory, hostvars):
    """rs2 runs Nginx (molecule/default/host_vars), the others Apache: the named one serves the page, the other
    is stopped and disabled."""
    assert "nginx" in {hostvars[rs].get("realserver_web", "apache") for rs in lab.realserver_names()}
    for rs_name in lab.realserver_names():
        rs, service = host(inventory, rs_name), web_service(hostvars, rs_name)
        assert rs.service(service).is_running and rs.service(service).is_enabled, (rs_name, service)
        other = rs.service(({"apache2", "nginx"} - {service}).pop())
        assert not other.is_running and not other.is_enabled, (rs_name, service)
        server = rs.check_output("curl -sI http://127.0.0.1/ | sed -n 's/^Server: //Ip'")
        assert server.lower().startswith("nginx" if service == "nginx" else "apache"), (rs_name, server)
        assert rs.check_output("curl -s http://127.0.0.1/") == f"lvs.nat real server {rs_name}"


def kernel_state(director, rs, service):
    """What the real server's restart must leave as it was (the director's part) or bring back (the real server's)."""
    return {
        "ipvs": director.check_output("ipvsadm -Sn"),
        "route": rs.check_output("ip route show default"),
        "web": rs.service(service).is_running,
    }


def test_a_restarted_real_server_comes_back_with_its_route_and_web_server(inventory, client, director, hostvars):
    """A real server restarted with no play: its route via the DIP (gateway_route's boot unit) and its web server are
    back and it takes its share again. The director's reboot is the run's one, in
    tests/integration/test_director_reboot.py (forwarding, NAT rules, the saved table and timeouts, lvs-nat-healthd)."""
    rs_name = lab.realserver_names()[-1]
    rs = host(inventory, rs_name)
    service = web_service(hostvars, rs_name)
    before = kernel_state(director, rs, service)
    assert before["route"].startswith(f"default via {lab.DIP} dev eth1"), before["route"]
    # The container's systemd is a new process (its kernel is the host's).
    boot_id = rs.check_output("stat -c %Z /proc/1")
    lab.restart_container(rs_name)
    rs = host(inventory, rs_name)
    assert rs.check_output("stat -c %Z /proc/1") != boot_id
    wait_until(lambda: rs.service(service).is_running and rs.check_output("ip route show default") == before["route"])
    after = kernel_state(director, rs, service)
    assert after == before
    port = next(p for p, s in services().items() if s["scheduler"] == "wrr")
    assert_split(ask(client, port), expected_shares(hostvars, "wrr"))


def wait_until(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the host did not settle after its reboot"
        time.sleep(2)


def conns(director):
    """(port, real server address) -> the kernel's connection counter."""
    out = director.check_output("ipvsadm -Ln --stats --exact")
    result, port = {}, None
    for line in out.splitlines():
        if m := re.match(r"TCP\s+\S+:(\d+)", line):
            port = int(m.group(1))
        elif m := re.match(r"\s+->\s+([\d.]+):\d+\s+(\d+)", line):
            result[(port, m.group(1))] = int(m.group(2))
    return result


def test_drain_a_stopped_real_server_through_the_roles_variables(inventory, client, director, hostvars, tmp_path):
    rs_name = lab.realserver_names()[-1]
    rs, rip = host(inventory, rs_name), lab.realserver_ip(rs_name)
    drain = tmp_path / "drain.yml"
    drain.write_text(json.dumps({"all": {"children": {"realservers": {"hosts": {rs_name: {"realserver_weight": 0}}}}}}))
    rs.check_output(f"systemctl stop {web_service(hostvars, rs_name)}")
    try:
        counts = harness.recap(playbook(inventory, "-i", str(drain), "--limit", "director"))
        assert counts["director1"]["changed"] > 0
        held, declared = declared_services(director, {rs: 0 if rs == rs_name else hostvars[rs].get("realserver_weight", 1)
                                                      for rs in lab.realserver_names()})
        assert held == declared
        time.sleep(3)  # the kernel's per-destination counters are summed by a 2 s estimator
        before = conns(director)
        for port, svc in services().items():
            assert_split(ask(client, port, 100), expected_shares(hostvars, svc["scheduler"], drained={rs_name}), 100)
        time.sleep(3)
        after = conns(director)
        for port in services():
            assert after[(port, rip)] == before[(port, rip)], f"new connections reached the drained {rs_name}"
    finally:
        # Back to the declared cluster: weights from the inventory, the web server started by the role.
        playbook(inventory)
    assert_split(ask(client, 80), expected_shares(hostvars, "wrr"))


def test_a_service_removed_from_director_services_leaves_the_kernel_and_the_boot_file(inventory, director, tmp_path):
    """The role owns its VIP's services: one dropped from director_services is removed by the next run (check mode
    shows it first and removes nothing), from the kernel and from the saved boot state; another tool's service on
    another address survives the run; a second run changes nothing."""
    kept, dropped = sorted(services())[0], sorted(services())[1]
    fewer = [dict(svc) for port, svc in services().items() if port == kept]
    override = json.dumps({"all": {"hosts": {"director1": {"director_services": fewer}}}})
    foreign = "-t 198.51.100.97:80"
    director.check_output(f"ipvsadm -A {foreign} -s rr")
    (tmp_path / "fewer.json").write_text(override)
    args = ("-i", str(tmp_path / "fewer.json"), "--limit", "director")
    try:
        counts = harness.recap(playbook(inventory, *args, "--check", "--diff"))
        assert counts["director1"]["changed"] > 0
        assert f" {lab.VIP}:{dropped} " in director.check_output("ipvsadm -Sn") + " "
        counts = harness.recap(playbook(inventory, *args))
        assert counts["director1"]["changed"] > 0
        held, saved = director.check_output("ipvsadm -Sn"), director.check_output("cat /etc/lvs-nat/ipvs.rules")
        assert f"{lab.VIP}:{dropped} " not in held + " " and f"{lab.VIP}:{dropped} " not in saved
        assert f"{lab.VIP}:{kept} " in held and f"-A {foreign} -s rr" in held
        assert "198.51.100.97" not in saved  # another tool's service: neither removed nor saved by the role
        counts = harness.recap(playbook(inventory, *args))
        assert counts["director1"]["changed"] == 0, counts
    finally:
        director.run(f"ipvsadm -D {foreign}")
        playbook(inventory)  # back to the declared cluster
    assert f"{lab.VIP}:{dropped} " in director.check_output("ipvsadm -Sn")
