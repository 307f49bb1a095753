# SPDX-License-Identifier: GPL-3.0-or-later
"""What the two-director lab (LVSNAT_LAB_DIRECTORS=2) is watched with, for the HA tests and `./run demo`.

Every time here is the host's clock: the client is a container, which shares the host's kernel and so its clocks;
the directors' address changes are stamped by the host when their lines arrive (`ip monitor` over SSH).

- Probe: the client opens a new connection to the VIP every 100 ms, each with a 0.5 s timeout, and reports each
  result (the real server's page, or why it failed).
- Holders: which director holds the VIP and the DIP, from `ip -o monitor address` on each director.
- Stream: long-lived TCP connections through the VIP to an echo service on the real servers.
"""
from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import threading
import time

import lab

ECHO_PORT = lab.HA_ECHO_PORT
ECHO_UNIT = "lvsnat-echo"
PROBE = r"""
import json, socket, sys, threading, time
host, port, period, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
lock = threading.Lock()
def one(t0):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(max(0.05, t0 + timeout - time.time()))
            s.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        body = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
        ok, what = data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0], body
    except Exception as e:
        ok, what = False, type(e).__name__
    with lock:
        sys.stdout.write(json.dumps({"t": t0, "ok": ok, "what": what, "took": time.time() - t0}) + "\n")
        sys.stdout.flush()
nxt = time.time()
while True:
    threading.Thread(target=one, args=(time.time(),), daemon=True).start()
    nxt += period
    time.sleep(max(0, nxt - time.time()))
"""
STREAMS = r"""
import json, socket, sys, threading, time
host, port, count, period = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = [socket.create_connection((host, port), timeout=5) for _ in range(count)]
for s in socks:
    s.settimeout(20)  # an echo that never comes back within 20 s is a lost connection
def run(i, s):
    n = 0
    f = s.makefile("rb")
    while True:
        n += 1
        line = b"%d %d\n" % (i, n)
        try:
            s.sendall(line)
            got = f.readline()
        except OSError as e:
            got = repr(e).encode()
        ok = got == line
        sys.stdout.write(json.dumps({"t": time.time(), "i": i, "n": n, "ok": ok,
                                     "got": got.decode(errors="replace").strip()}) + "\n")
        sys.stdout.flush()
        if not ok:
            return
        time.sleep(period)
for i, s in enumerate(socks):
    threading.Thread(target=run, args=(i, s), daemon=True).start()
sys.stdout.write(json.dumps({"t": time.time(), "open": count}) + "\n")
sys.stdout.flush()
while True:
    time.sleep(3600)
"""
ECHO = r"""
import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
S(("0.0.0.0", %d), H).serve_forever()
""" % ECHO_PORT


class _Lines:
    """A process whose stdout lines (JSON) are read in a thread, each with the host's time of arrival."""

    def __init__(self, argv, script=None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, CONTAINERS_CONF=str(lab.containers_conf())))
        if script is not None:
            self.proc.stdin.write(script)
        self.proc.stdin.close()
        self.lines, self.cond = [], threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            item = self.parse(line)
            if item is None:
                continue
            with self.cond:
                self.lines.append(item)
                self.cond.notify_all()

    def parse(self, line):
        return json.loads(line)

    def wait_for(self, predicate, timeout):
        deadline = time.time() + timeout
        with self.cond:
            while not any(predicate(x) for x in self.lines):
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Probe(_Lines):
    """The client: a new connection to the VIP every `period` s, each with `timeout` s for its answer."""

    def __init__(self, port=80, period=0.1, timeout=0.5):
        cname = lab.containers()["client"][0]
        super().__init__(["podman", "exec", "-i", cname, "python3", "-u", "-", lab.VIP, str(port), str(period),
                          str(timeout)], PROBE)
        self.period = period

    def results(self, since=0.0, until=float("inf")):
        with self.cond:
            return sorted((x for x in self.lines if since <= x["t"] <= until), key=lambda x: x["t"])

    def gap(self, around, until=None):
        """The service gap around the time `around`: the longest stretch between two connections that succeeded, from
        the last one started before `around` to the last one started by `until` (default: all recorded), less one
        period (a gap of one missed probe is one period). The longest stretch, not the one just after `around`: a
        connection started just after the event may still succeed (the old master not dead yet), and the outage
        follows it. A stretch without probes (the client's process starved) counts as a gap too: only a success is
        evidence of service."""
        rs = self.results(until=until or float("inf"))
        ok = [x["t"] for x in rs if x["ok"]]
        before = [t for t in ok if t <= around]
        window = [t for t in ok if before and t >= before[-1]]
        if len(window) < 2:
            return None
        return max(0.0, max(b - a for a, b in zip(window, window[1:])) - self.period)

    def wait_success_after(self, t, timeout=30):
        return self.wait_for(lambda x: x["ok"] and x["t"] > t, timeout)


class Streams(_Lines):
    """`count` long-lived connections to the echo service, each sending a line every `period` s and reading it back."""

    def __init__(self, count=10, period=0.2):
        cname = lab.containers()["client"][0]
        super().__init__(["podman", "exec", "-i", cname, "python3", "-u", "-", lab.VIP, str(ECHO_PORT), str(count),
                          str(period)], STREAMS)
        self.count = count
        if not self.wait_for(lambda x: "open" in x, 20):
            raise lab.LabError("the echo connections did not open")

    def alive_after(self, t):
        """Connections that echoed correctly after time t and never failed."""
        with self.cond:
            failed = {x["i"] for x in self.lines if "i" in x and not x["ok"]}
            fresh = {x["i"] for x in self.lines if "i" in x and x["ok"] and x["t"] > t}
        return fresh - failed

    def failed(self):
        with self.cond:
            return {x["i"]: x["got"] for x in self.lines if "i" in x and not x["ok"]}


def start_echo_servers():
    for rs in lab.realserver_names():
        lab.exec_on(rs, f"(systemctl stop {ECHO_UNIT} 2>/dev/null; systemctl reset-failed {ECHO_UNIT} 2>/dev/null; "
                        f"true) && systemd-run --quiet --unit {ECHO_UNIT} python3 -c {shlex.quote(ECHO)}")
    for rs in lab.realserver_names():
        lab.exec_on(rs, f"for i in $(seq 50); do python3 -c 'import socket; socket.create_connection("
                        f"(\"127.0.0.1\", {ECHO_PORT}), 1)' 2>/dev/null && exit 0; sleep 0.1; done; exit 1")


class Holders:
    """Which director holds the VIP and the DIP, as their `ip -o -4 monitor address` lines arrive at the host."""

    ADDRESSES = (lab.VIP, lab.DIP)

    def __init__(self):
        self.events, self.cond, self.procs = [], threading.Condition(), {}
        self.state = {}
        for name in lab.guests():
            self.attach(name)

    def attach(self, name):
        """Start (again: after a power-on) watching a director: its addresses now, then every change."""
        now = lab.exec_on(name, "ip -o -4 addr show").stdout
        t = time.time()
        with self.cond:
            for addr in self.ADDRESSES:
                self._set(name, addr, f" {addr}/" in now, t)
        proc = subprocess.Popen([*lab.ssh_argv(host=name), "exec ip -o -4 monitor address"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, text=True)
        self.procs[name] = proc
        threading.Thread(target=self._read, args=(name, proc), daemon=True).start()

    def _set(self, name, addr, held, t):
        key = (name, addr)
        if self.state.get(key) != held:
            self.state[key] = held
            self.events.append((t, name, addr, held))
            self.cond.notify_all()

    def _read(self, name, proc):
        for line in proc.stdout:
            t = time.time()
            for addr in self.ADDRESSES:
                if f" inet {addr}/" in line:
                    with self.cond:
                        self._set(name, addr, not line.startswith("Deleted"), t)

    def lost(self, name, t):
        """A director died at time t (its QEMU killed): whatever it held, it holds no more."""
        with self.cond:
            for addr in self.ADDRESSES:
                self._set(name, addr, False, t)

    def holders(self, addr, at=None):
        """The directors holding addr at time at (now when None)."""
        with self.cond:
            held = {}
            for t, name, a, h in self.events:
                if a == addr and (at is None or t <= at):
                    held[name] = h
        return {n for n, h in held.items() if h}

    def master(self):
        """The one director holding both addresses, else None."""
        with self.cond:
            return self.master_locked()

    def wait_master(self, not_this=None, timeout=30):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                m = self.master_locked()
                if m is not None and m != not_this:
                    return m
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def master_locked(self):
        held = {}
        for _t, name, a, h in self.events:
            held[(name, a)] = h
        vip = {n for (n, a), h in held.items() if a == lab.VIP and h}
        dip = {n for (n, a), h in held.items() if a == lab.DIP and h}
        return next(iter(vip)) if len(vip) == 1 and vip == dip else None

    def split_seconds(self, since, until, step=0.2):
        """Sampled every `step` s from since to until: the longest run of samples in which the VIP and the DIP were
        not held by the same set of directors, in seconds (0 when never)."""
        longest = run = 0.0
        t = since
        while t <= until:
            if self.holders(lab.VIP, t) != self.holders(lab.DIP, t):
                run += step
                longest = max(longest, run)
            else:
                run = 0.0
            t += step
        return longest

    def takeover_times(self, since):
        """(time, director) of each moment a director came to hold both addresses, after since."""
        out = []
        with self.cond:
            events = list(self.events)
        held = {}
        for t, name, a, h in events:
            before = {n for n in {x[0] for x in held} if held.get((n, lab.VIP)) and held.get((n, lab.DIP))}
            held[(name, a)] = h
            after = {n for n in {x[0] for x in held} if held.get((n, lab.VIP)) and held.get((n, lab.DIP))}
            if t > since:
                out += [(t, n) for n in after - before]
        return out

    def stop(self):
        for proc in self.procs.values():
            proc.kill()


def vrrp_transitions(name):
    """The number of VRRP state changes keepalived logged on a director since its boot."""
    out = lab.exec_on(name, "journalctl -b -u keepalived.service -o cat --no-pager", check=False).stdout
    return sum(1 for line in out.splitlines() if "Entering MASTER STATE" in line or "Entering BACKUP STATE" in line
               or "Entering FAULT STATE" in line)


def keepalived_pid(name):
    return lab.exec_on(name, "systemctl show -p MainPID --value keepalived.service").stdout.strip()


def median(values):
    return statistics.median(values)
