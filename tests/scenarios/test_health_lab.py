# SPDX-License-Identifier: GPL-3.0-or-later
"""Real-server health checks on the lab cluster (issue 15): playbooks/site.yml with a check on every service, then
web servers stopped, paused and started on the real servers while a watcher on the director reports each change of
the kernel's table (/proc/net/ip_vs, read every 50 ms) to the host, which stamps it with its own clock. The figures
(seconds from the host's clock) are printed and written to $TMPDIR/lvs-nat-health.json; README and BENCHMARKS.md quote
them with the run they came from. At the end site.yml without checks removes lvs-nat-healthd."""
from __future__ import annotations

import collections
import ipaddress
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import harness
import pytest

ROOT = Path(__file__).resolve().parents[2]
# The lab settings.
TIMING = {"interval": 1, "timeout": 1, "rise": 2, "fall": 2}
SORRY_PORT = 8099
SORRY_UNIT = "lvsnat-sorry-web"
FIGURES = Path(tempfile.gettempdir()) / "lvs-nat-health.json"
WATCH = r"""
import json, sys, time
last = None
while True:
    with open("/proc/net/ip_vs") as fh:
        text = fh.read()
    if text != last:
        sys.stdout.write(json.dumps(text) + "\n")
        sys.stdout.flush()
        last = text
    time.sleep(0.05)
"""


def _hex_endpoint(text):
    addr, port = text.split(":")
    return "%s:%d" % (ipaddress.IPv4Address(int(addr, 16)), int(port, 16))


def parse_table(text):
    """/proc/net/ip_vs -> {"TCP 198.51.100.10:80": {"198.51.100.101:80": weight}}."""
    table, current = {}, None
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] in ("TCP", "UDP", "SCTP") and ":" in fields[1]:
            current = "%s %s" % (fields[0], _hex_endpoint(fields[1]))
            table[current] = {}
        elif fields and fields[0] == "->" and current and re.fullmatch(r"[0-9A-F]{8}:[0-9A-F]{4}", fields[1]):
            table[current][_hex_endpoint(fields[1])] = int(fields[3])
    return table


class Watcher:
    """The director's table as it changes, each version stamped with the host's monotonic clock on arrival."""

    def __init__(self, lab):
        self.proc = subprocess.Popen([*lab.ssh_argv(), "python3", "-u", "-"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.proc.stdin.write(WATCH)
        self.proc.stdin.close()
        self.versions, self.cond = [], threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            stamped = (time.monotonic(), parse_table(json.loads(line)))
            with self.cond:
                self.versions.append(stamped)
                self.cond.notify_all()

    def wait(self, predicate, since, timeout=30):
        """The first version seen at or after `since` (host monotonic) for which predicate(table) holds: (time,
        table); fails after timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                # The version current at `since` counts too (a change can land before `since` is taken).
                start = max([i for i, (t, _table) in enumerate(self.versions) if t <= since] or [0])
                for t, table in self.versions[start:]:
                    if predicate(table):
                        return max(t, since), table
                left = deadline - time.monotonic()
                assert left > 0, "not seen within %ss; last table: %s" % (timeout, self.versions[-1:])
                self.cond.wait(left)

    # The watcher's process on the director: python3 reading stdin ("-"), the script.
    REMOTE = "'^python3 -u -$'"

    def pause(self, lab, paused):
        """Stop (or continue) the watcher's process on the director: a measurement of the director's CPU without it."""
        lab.exec_on("director", "pkill -%s -f %s" % ("STOP" if paused else "CONT", self.REMOTE))

    def close(self):
        self.proc.kill()
        self.proc.wait()


def svc(port, proto="TCP", vip="198.51.100.10"):
    return "%s %s:%d" % (proto, vip, port)


def rs_of(table, service):
    return table.get(service, {})


def run_site(lab, tmp_path, name, extra, *args):
    path = tmp_path / ("%s.json" % name)
    path.write_text(json.dumps(extra))
    return harness.playbook(ROOT / "playbooks" / "site.yml", "-e", "@%s" % path, *args, inventory=lab.INVENTORY)


def declaration(lab, weights=(3, 1), sorry=True):
    rs1, rs2 = (lab.realserver_ip(rs) for rs in lab.realserver_names()[:2])
    listed = [{"address": rs1, "weight": weights[0]}, {"address": rs2, "weight": weights[1]}]
    check = dict(TIMING, type="http", path="/", expect_status=[200])
    web8080 = {"protocol": "tcp", "port": 8080, "scheduler": "rr", "real_server_port": 80,
               "check": dict(check, expect_body="lvs[.]nat real server")}
    if sorry:
        web8080["sorry_server"] = "%s:%d" % (rs1, SORRY_PORT)
    return {"director_services": [
        {"protocol": "tcp", "port": 80, "scheduler": "wrr", "real_servers": listed, "check": check},
        web8080,
        # A UDP service checked by a command on the director: bash connects to the real server's web port (bash's
        # /dev/tcp; exit 1 when refused). Every 2 s with 2 s to answer. Not sh and curl: about 0.3 s of the emulated
        # director's one vCPU per check, which slowed every play of this scenario, and the checks timed out and
        # flapped while plays ran (46 times in one CI run at 1 s; at 2 s a kill -9 test saw them flap once).
        {"protocol": "udp", "port": 5353, "scheduler": "rr", "real_servers": [{"address": rs1}, {"address": rs2}],
         "check": dict(TIMING, interval=2, timeout=2, type="exec", command=[
             "/bin/bash", "-c", 'exec 3<>"/dev/tcp/$LVS_NAT_RS_ADDRESS/80"'])},
    ]}


def web(lab, rs, action):
    """Stop or start the real server's web server; the host's clock once systemctl returned."""
    lab.exec_on(rs, "systemctl %s apache2" % action)
    return time.monotonic()


def block(lab, rs, on=True):
    """Refuse the director's checks (from the DIP) on the real server's web port with a table of the test's own, which
    a play leaves alone (a play's realserver role starts a stopped web server again, and fetches its page from the
    real server itself); the host's clock once done."""
    if on:
        lab.exec_on(rs, "nft add table inet lvsnat_test && nft 'add chain inet lvsnat_test input "
                        "{ type filter hook input priority -10; }' && nft add rule inet lvsnat_test input "
                        "ip saddr %s tcp dport 80 reject with tcp reset" % lab.DIP)
    else:
        lab.exec_on(rs, "nft delete table inet lvsnat_test")
    return time.monotonic()


def requests(lab, port, count):
    out = lab.exec_on("client", "for i in $(seq %d); do curl -s -m 2 http://%s:%d/ || echo FAILED; echo; done"
                      % (count, lab.VIP, port), timeout=600).stdout
    return collections.Counter(line.removeprefix("lvs.nat real server ").strip() for line in out.splitlines()
                               if line.strip())


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    """site.yml with checks on all three services; a watcher on the director's table; the figures collected."""
    tmp = tmp_path_factory.mktemp("health")
    rs1 = lab.realserver_names()[0]
    lab.exec_on(rs1, "mkdir -p /srv/sorry && echo sorry > /srv/sorry/index.html && "
                     "(systemctl stop %s 2>/dev/null; systemctl reset-failed %s 2>/dev/null; true) && "
                     "systemd-run --quiet --unit %s python3 -m http.server --directory /srv/sorry %d"
                % (SORRY_UNIT, SORRY_UNIT, SORRY_UNIT, SORRY_PORT))
    proc = run_site(lab, tmp, "checked", declaration(lab))
    assert proc.returncode == 0, proc.output[-8000:]
    watcher = Watcher(lab)
    figures = {}
    yield lab, tmp, watcher, figures
    watcher.close()
    for rs in lab.realserver_names():
        lab.exec_on(rs, "systemctl start apache2; nft delete table inet lvsnat_test 2>/dev/null; true", check=False)
    lab.exec_on(rs1, "systemctl stop %s; rm -rf /srv/sorry; true" % SORRY_UNIT, check=False)
    figures["run"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    print("\nhealth figures (s, host clock):", json.dumps(figures))


def names(lab):
    return [(rs, "%s:80" % lab.realserver_ip(rs)) for rs in lab.realserver_names()[:2]]


def test_the_checked_services_are_written_by_lvs_nat_healthd(cluster):
    lab, _tmp, watcher, _figures = cluster
    (_rs1, ep1), (_rs2, ep2) = names(lab)
    assert lab.exec_on("director", "systemctl is-active lvs-nat-healthd").stdout.strip() == "active"
    _t, table = watcher.wait(lambda t: rs_of(t, svc(80)) == {ep1: 3, ep2: 1} and len(rs_of(t, svc(8080))) == 2
                             and len(rs_of(t, svc(5353, "UDP"))) == 2, time.monotonic())
    state = json.loads(lab.exec_on("director", "cat /run/lvs-nat/health.json").stdout)
    config = json.loads(lab.exec_on("director", "cat /etc/lvs-nat/director.json").stdout)
    assert state["generation"] == config["generation"]
    assert all(rs["healthy"] for s in state["services"] for rs in s["real_servers"]), state


def test_a_refused_real_server_leaves_and_comes_back_within_2_5_s(cluster):
    lab, _tmp, watcher, figures = cluster
    (rs1, ep1), (_rs2, ep2) = names(lab)
    stopped = web(lab, rs1, "stop")
    t, _table = watcher.wait(lambda t: ep1 not in rs_of(t, svc(80)), stopped)
    figures["refused_out"] = round(t - stopped, 2)
    # Every service checked on that real server loses it, the UDP one (exec check) too.
    watcher.wait(lambda t: ep1 not in rs_of(t, svc(8080)) and
                 ("%s:5353" % lab.realserver_ip(rs1)) not in rs_of(t, svc(5353, "UDP")), stopped)
    answers = requests(lab, 80, 200)
    assert answers == {"rs2": 200}, answers
    started = web(lab, rs1, "start")
    t, _table = watcher.wait(lambda t: rs_of(t, svc(80)) == {ep1: 3, ep2: 1}, started)
    figures["refused_back"] = round(t - started, 2)
    watcher.wait(lambda t: len(rs_of(t, svc(8080))) == 2 and len(rs_of(t, svc(5353, "UDP"))) == 2, started)
    answers = requests(lab, 80, 200)
    assert sum(answers.values()) == 200 and "FAILED" not in answers, answers
    figures["wrr_split_after_return"] = "%d:%d" % (answers["rs1"], answers["rs2"])
    assert abs(answers["rs1"] / max(answers["rs2"], 1) - 3) <= 0.3, answers
    assert figures["refused_out"] <= 2.5 and figures["refused_back"] <= 2.5, figures


def test_a_silent_real_server_leaves_within_3_5_s(cluster):
    lab, _tmp, watcher, figures = cluster
    (_rs1, ep1), (rs2, ep2) = names(lab)
    cname = lab.containers()[rs2][0]
    subprocess.run(["podman", "pause", cname], check=True, env=dict(os.environ, CONTAINERS_CONF=str(lab.containers_conf())))
    paused = time.monotonic()
    try:
        t, _table = watcher.wait(lambda t: ep2 not in rs_of(t, svc(80)), paused)
        figures["silent_out"] = round(t - paused, 2)
    finally:
        subprocess.run(["podman", "unpause", cname], check=True,
                       env=dict(os.environ, CONTAINERS_CONF=str(lab.containers_conf())))
    unpaused = time.monotonic()
    t, _table = watcher.wait(lambda t: rs_of(t, svc(80)) == {ep1: 3, ep2: 1}, unpaused)
    figures["silent_back"] = round(t - unpaused, 2)
    assert figures["silent_out"] <= 3.5, figures


def test_drain_wins_and_a_play_run_does_not_put_back_a_down_real_server(cluster):
    lab, tmp, watcher, _figures = cluster
    (rs1, ep1), (rs2, ep2) = names(lab)
    # Down by a refusing firewall rule: the play's realserver role would start a stopped web server again.
    stopped = block(lab, rs2)
    watcher.wait(lambda t: ep2 not in rs_of(t, svc(80)), stopped)
    # A play while rs2 is down, draining rs1: rs1 stays at weight 0 (drain wins), rs2 stays out (down).
    proc = run_site(lab, tmp, "drain", declaration(lab, weights=(0, 1)))
    assert proc.returncode == 0, proc.output[-8000:]
    _t, table = watcher.wait(lambda t: rs_of(t, svc(80)).get(ep1) == 0, time.monotonic())
    assert ep2 not in rs_of(table, svc(80)), table
    # rs2 healthy again: back with its weight; rs1 healthy but drained: still 0.
    started = block(lab, rs2, False)
    watcher.wait(lambda t: rs_of(t, svc(80)) == {ep1: 0, ep2: 1}, started)
    # rs1 down while drained stays at 0; declared 3 again while down, it does not come back until healthy.
    stopped = block(lab, rs1)
    watcher.wait(lambda t: ep1 not in rs_of(t, svc(8080)), stopped)
    assert rs_of(watcher.versions[-1][1], svc(80)) == {ep1: 0, ep2: 1}
    proc = run_site(lab, tmp, "undrain", declaration(lab))
    assert proc.returncode == 0, proc.output[-8000:]
    time.sleep(2 * TIMING["interval"])
    assert rs_of(watcher.versions[-1][1], svc(80)) == {ep2: 1}, watcher.versions[-1]
    started = block(lab, rs1, False)
    watcher.wait(lambda t: rs_of(t, svc(80)) == {ep1: 3, ep2: 1}, started)
    # Health changed between the runs: a second run and a check run change nothing.
    again = run_site(lab, tmp, "undrain", declaration(lab))
    assert again.returncode == 0, again.output[-8000:]
    assert {h: c["changed"] for h, c in again.recap.items()} == dict.fromkeys(again.recap, 0), again.recap
    check = run_site(lab, tmp, "undrain", declaration(lab), "--check", "--diff")
    assert check.returncode == 0, check.output[-8000:]
    assert {h: c["changed"] for h, c in check.recap.items()} == dict.fromkeys(check.recap, 0), check.recap


def test_the_sorry_server_takes_over_when_every_real_server_is_down(cluster):
    lab, _tmp, watcher, figures = cluster
    (rs1, ep1), (rs2, ep2) = names(lab)
    sorry = "%s:%d" % (lab.realserver_ip(rs1), SORRY_PORT)
    stopped = min(web(lab, rs1, "stop"), web(lab, rs2, "stop"))
    t, table = watcher.wait(lambda t: rs_of(t, svc(8080)) == {sorry: 1}, stopped)
    figures["sorry_in"] = round(t - stopped, 2)
    assert requests(lab, 8080, 5) == {"sorry": 5}
    started = web(lab, rs2, "start")
    watcher.wait(lambda t: rs_of(t, svc(8080)) == {ep2: 1}, started)
    assert requests(lab, 8080, 5) == {"rs2": 5}
    started = web(lab, rs1, "start")
    # Port 8080 lists no real servers of its own: the inventory's, rs1 weighing 3.
    watcher.wait(lambda t: rs_of(t, svc(8080)) == {ep1: 3, ep2: 1} and rs_of(t, svc(80)) == {ep1: 3, ep2: 1}, started)


def test_kill_9_leaves_the_table_and_systemd_restarts_the_service(cluster):
    lab, _tmp, watcher, _figures = cluster
    (rs1, ep1), (rs2, ep2) = names(lab)
    # Converged first (the UDP service's exec checks can be a round behind the TCP ones).
    udp = dict(("%s:5353" % lab.realserver_ip(rs), 1) for rs in (rs1, rs2))
    watcher.wait(lambda t: rs_of(t, svc(80)) == {ep1: 3, ep2: 1} and rs_of(t, svc(5353, "UDP")) == udp, time.monotonic())
    before = lab.exec_on("director", "ipvsadm -Sn").stdout
    pid = lab.exec_on("director", "systemctl show -p MainPID --value lvs-nat-healthd").stdout.strip()
    lab.exec_on("director", "kill -9 %s" % pid)
    assert lab.exec_on("director", "ipvsadm -Sn").stdout == before
    lab.exec_on("director", "for i in $(seq 100); do p=$(systemctl show -p MainPID --value lvs-nat-healthd); "
                            "[ \"$p\" != 0 ] && [ \"$p\" != %s ] && systemctl is-active -q lvs-nat-healthd && exit 0; "
                            "sleep 0.2; done; exit 1" % pid)
    assert lab.exec_on("director", "ipvsadm -Sn").stdout == before
    # It resumed: a failure is acted on again.
    stopped = web(lab, rs2, "stop")
    watcher.wait(lambda t: ep2 not in rs_of(t, svc(80)), stopped)
    started = web(lab, rs2, "start")
    watcher.wait(lambda t: rs_of(t, svc(80)) == {ep1: 3, ep2: 1}, started)


def test_ten_real_servers_times_two_services_cost_little(cluster):
    lab, tmp, watcher, figures = cluster
    rs1, rs2 = (lab.realserver_ip(rs) for rs in lab.realserver_names()[:2])
    listed = [{"address": a, "port": p} for a in (rs1, rs2) for p in range(8001, 8006)]
    check = dict(TIMING, type="tcp", port=80)
    extra = {"director_services": [
        {"protocol": "tcp", "port": 80, "scheduler": "wrr", "real_servers": listed, "check": check},
        {"protocol": "tcp", "port": 8080, "scheduler": "rr", "real_servers": listed, "check": check}]}
    proc = run_site(lab, tmp, "ten", extra)
    assert proc.returncode == 0, proc.output[-8000:]
    # The service alone on the director for the 60 s: the table watcher's process (reading /proc/net/ip_vs 20 times a
    # second) is stopped meanwhile. User and system time apart (fields 14 and 15 of /proc/PID/stat).
    measure = ("p=$(systemctl show -p MainPID --value lvs-nat-healthd); "
               "a=$(awk '{print $14, $15}' /proc/$p/stat); t0=$(date +%s.%N); sleep 60; "
               "b=$(awk '{print $14, $15}' /proc/$p/stat); t1=$(date +%s.%N); "
               "echo $a $b $t0 $t1 $(getconf CLK_TCK) $(awk '/VmRSS/{print $2}' /proc/$p/status)")
    watcher.pause(lab, True)
    try:
        ua, sa, ub, sb, t0, t1, hz, rss_kb = lab.exec_on("director", measure, timeout=180).stdout.split()
    finally:
        watcher.pause(lab, False)
    wall = float(t1) - float(t0)
    user, system = (int(ub) - int(ua)) / int(hz) / wall, (int(sb) - int(sa)) / int(hz) / wall
    cpu = user + system
    figures["ten_x_two_cpu_percent"] = round(100 * cpu, 2)
    figures["ten_x_two_cpu_user_percent"] = round(100 * user, 2)
    figures["ten_x_two_cpu_system_percent"] = round(100 * system, 2)
    figures["ten_x_two_rss_mb"] = round(int(rss_kb) / 1024, 1)
    print("\n10 x 2 real servers at 1 s: %.2f %% of the director's vCPU over 60 s (user %.2f %%, system %.2f %%), "
          "%.1f MB RSS" % (100 * cpu, 100 * user, 100 * system, int(rss_kb) / 1024))
    # The CPU share is a performance figure: reported (README, BENCHMARKS.md), not a pass/fail line here, as the
    # project measures performance; on the emulated director it moved from 4.0 % to 8.7 % between runs of the same
    # code. Memory is asserted.
    assert 0 < cpu < 1 and int(rss_kb) < 50 * 1024, figures


def test_without_checks_site_yml_removes_the_health_service(cluster):
    lab, tmp, _watcher, _figures = cluster
    proc = run_site(lab, tmp, "plain", {})
    assert proc.returncode == 0, proc.output[-8000:]
    gone = lab.exec_on("director", "systemctl is-active lvs-nat-healthd; ls /etc/lvs-nat/ /etc/systemd/system/ | "
                                   "grep -c -e director.json -e lvs-nat-healthd; true").stdout.split()
    assert gone[0] in ("inactive", "unknown") and gone[1] == "0", gone
    table = lab.exec_on("director", "ipvsadm -Sn").stdout
    assert "5353" not in table and table.count("-r ") == 4, table
