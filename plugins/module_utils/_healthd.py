# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lvs-nat-healthd: checks the real servers of the checked services and keeps the kernel's IPVS table at
declaration and health, through the collection's own planner (_ipvs_plan) and kernel backend (_ipvs.Session).

Runs on the director as `python3 /usr/lib/lvs-nat/lvs-nat-healthd` under systemd (Type=notify, watchdog). Python
stdlib and pyroute2 only: nothing from ansible. One asyncio loop; every service checks all its real servers
concurrently at start + k * interval, then reconciles that service alone (one service read from the kernel, ops
applied only when the plan has some). The kernel session is opened and closed in a worker thread: pyroute2 runs its
own event loop there, which cannot start inside a running one. The reads and writes are the collection's own
send and recv on that socket, which the kernel answers while the request is sent: they run on the loop's thread (a
thread handoff each cost the daemon more than the read itself). SIGHUP reloads the config (an invalid one is logged and the old one
kept); SIGTERM and SIGINT end the daemon without touching the kernel. The state file (/run/lvs-nat/health.json) is
written when something in it changes other than counters, or every HEARTBEAT seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import errno
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.module_utils._health import (
    BODY_LIMIT,
    CONFIG_PATH,
    STATE_PATH,
    VERSION,
    Tracker,
    load_config,
    read_state,
    service_name,
    wanted_service,
)
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import describe_dest, describe_op
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import plan_table, precheck_table, service_key

# The collection's module_utils the daemon imports (installed under CODE_DIR by lvs.nat.ipvs_health).
CODE_MODULES = ("_errors", "_module", "_kmod", "_ipvs_names", "_ipvs", "_ipvs_plan", "_health", "_healthd")
HEARTBEAT = 30.0  # seconds: the state file is rewritten at least this often (counters, updated)
# Rounds of one service running at once (see Daemon._service_loop).
MAX_ROUNDS = 2
KERNEL_TIMEOUT = 5  # seconds to wait for each kernel answer (the watchdog fires at 10)
START_MARGIN = 30  # seconds systemd waits for READY beyond the first round's longest check and kernel answer
HEADER_LIMIT = 16384
EXEC_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_STATUS_LINE = re.compile(rb"HTTP/[0-9]\.[0-9] ([0-9]{3})(?: [^\r\n]*)?\r?\n?", re.ASCII)


def log(msg, priority=6):
    """One line to stderr (the journal); with its syslog priority where stderr is the journal."""
    prefix = "<%d>" % priority if os.environ.get("JOURNAL_STREAM") else ""
    sys.stderr.write("%s%s\n" % (prefix, msg.replace("\n", " ")))
    sys.stderr.flush()


class Host(object):
    """What _ipvs.Session and _kmod use of an AnsibleModule: check_mode, get_bin_path, run_command (LC_ALL=C)."""

    check_mode = False

    def get_bin_path(self, name, opt_dirs=()):
        return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", "")] + list(opt_dirs)))

    def run_command(self, argv, data=None, binary_data=False, environ_update=None, expand_user_and_vars=False):
        proc = subprocess.run(argv, input=data, capture_output=True, text=True, check=False,
                              env=dict(os.environ, **(environ_update or {})))
        return proc.returncode, proc.stdout, proc.stderr


class Notifier(object):
    """sd_notify over NOTIFY_SOCKET (stdlib socket); does nothing outside systemd."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET") or None
        self.address = "\0" + path[1:] if path and path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        mine = env.get("WATCHDOG_PID", str(os.getpid())) == str(os.getpid())
        self.watchdog = int(usec) / 2e6 if usec.isdigit() and int(usec) and mine else None
        self.status = None

    def send(self, text):
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0)) as sock:
                sock.sendto(text.encode("utf-8"), self.address)
        except OSError as e:
            log("sd_notify failed: %s" % e, 4)

    def set_status(self, text):
        if text != self.status:
            self.status = text
            self.send("STATUS=%s" % text)


# ---------------------------------------------------------------- the checks

_TLS = []


def _tls_context():
    # Health checks talk to real servers by address, often with self-signed certificates: no verification.
    if not _TLS:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        _TLS.append(ctx)
    return _TLS[0]


# Closing a check's connection with a reset (SO_LINGER 0), as HAProxy's checks do: no FIN exchange and no TIME_WAIT
# entry on the director for each of 20 checks a second.
_RESET = struct.pack("ii", 1, 0)


def _start_connect(address, port):
    """A non-blocking socket closed with a reset, its connect started: (socket, connect_ex's errno)."""
    # Non-blocking from socket(2) on (SOCK_NONBLOCK): no ioctl per check.
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        return sock, sock.connect_ex((address, port))
    except BaseException:
        sock.close()
        raise


async def _connect(address, port):
    """A connected non-blocking socket, closed with a reset. The connect is waited for with one writer callback on the
    event loop: asyncio's sock_connect costs twice as much on an emulated director (20 checks a second)."""
    sock, err = _start_connect(address, port)
    try:
        if err == errno.EINPROGRESS:
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            fd = sock.fileno()
            loop.add_writer(fd, lambda: done.done() or done.set_result(None))
            try:
                await done
            finally:
                loop.remove_writer(fd)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    return sock


async def _tcp(address, port, check, service):
    return (await tcp_round([(address, port)], check["timeout"]))[0]


def _connected(err):
    if err:
        return False, _reason(OSError(err, os.strerror(err)))
    return True, "ok"


async def tcp_round(targets, timeout):
    """The tcp checks of a round, without a task each: every connect started at once and watched by one epoll of the
    round's own, which the event loop watches (one reader callback per round; a socket watched once, EPOLLONESHOT,
    and gone from that epoll when it is closed: no registration with the loop per check), one timer for all. A
    connect reported writable without EPOLLERR or EPOLLHUP has no error (tcp_poll reports an error as EPOLLERR):
    SO_ERROR is read only for the others. [(ok, reason)] in the order of targets ((address, port) each); each socket
    closed with a reset. (A task and asyncio's sock_connect per check cost half the daemon's CPU on an emulated
    director; a writer callback per socket, a syscall more and a registration per check.)"""
    loop = asyncio.get_running_loop()
    results, socks, waiting = [None] * len(targets), [], {}
    everything = timer = poller = None

    def ready():
        for fd, events in poller.poll(0):
            i, sock = waiting.pop(fd, (None, None))
            if sock is None:
                continue
            if events & (select.EPOLLERR | select.EPOLLHUP):
                results[i] = _connected(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            else:
                results[i] = True, "ok"
        if not waiting and not everything.done():
            everything.set_result(None)

    try:
        for i, (address, port) in enumerate(targets):
            try:
                sock, err = _start_connect(address, port)
            except OSError as e:
                results[i] = False, _reason(e)
                continue
            socks.append(sock)
            if err == errno.EINPROGRESS:
                if poller is None:
                    poller = select.epoll()
                fd = sock.fileno()
                waiting[fd] = i, sock
                poller.register(fd, select.EPOLLOUT | select.EPOLLONESHOT)
            else:
                results[i] = _connected(err)
        if waiting:
            # One timer, the future awaited directly: asyncio.wait would add a waiter future and callbacks per round.
            everything = loop.create_future()
            loop.add_reader(poller.fileno(), ready)
            timer = loop.call_later(timeout, lambda: everything.done() or everything.set_result(None))
            await everything
        return [r or (False, "timeout after %gs" % timeout) for r in results]
    finally:
        if timer is not None:
            timer.cancel()
        if poller is not None:
            if everything is not None:
                loop.remove_reader(poller.fileno())
            poller.close()
        for sock in socks:
            sock.close()


def _request(address, check):
    host = check["host"] or address
    return ("GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\nUser-Agent: lvs-nat-healthd\r\n\r\n" % (
        check["path"], "[%s]" % host if ":" in host else host)).encode("ascii")


def _enough(data, check):
    """Whether data holds all the response the check needs: the status line, or the headers and BODY_LIMIT bytes."""
    if check["expect_body"] is None:
        return b"\n" in data
    return len(data) >= HEADER_LIMIT + BODY_LIMIT


async def _plain_response(address, port, check):
    loop = asyncio.get_running_loop()
    sock = await _connect(address, port)
    try:
        await loop.sock_sendall(sock, _request(address, check))
        data = b""
        while not _enough(data, check):
            more = await loop.sock_recv(sock, 65536)
            if not more:
                break
            data += more
        return data
    finally:
        sock.close()


async def _tls_response(address, port, check):
    reader, writer = await asyncio.open_connection(address, port, ssl=_tls_context(), server_hostname=check["host"] or "")
    try:
        writer.write(_request(address, check))
        data = b""
        while not _enough(data, check):
            more = await reader.read(65536)
            if not more:
                break
            data += more
        return data
    finally:
        writer.close()


def judge(response, check):
    """(ok, reason) of an HTTP response (bytes) for check: status in expect_status, expect_body found in the first
    BODY_LIMIT bytes of the body."""
    line = response.split(b"\n", 1)[0]
    match = _STATUS_LINE.fullmatch(line + b"\n")
    if not match:
        return False, "not an HTTP response"
    if int(match.group(1)) not in check["expect_status"]:
        return False, "status %s" % match.group(1).decode()
    if check["expect_body"] is None:
        return True, "ok"
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = response.partition(b"\n\n")
    if not sep or len(head) > HEADER_LIMIT:
        return False, "no end of headers" if not sep else "headers too long"
    if not re.search(check["expect_body"], body[:BODY_LIMIT].decode("utf-8", "replace")):
        return False, "body does not match"
    return True, "ok"


async def _http(address, port, check, service):
    fetch = _tls_response if check["type"] == "https" else _plain_response
    return judge(await fetch(address, port, check), check)


async def _exec(address, port, check, service):
    env = dict(os.environ, PATH=os.environ.get("PATH") or EXEC_PATH, LVS_NAT_RS_ADDRESS=address,
               LVS_NAT_RS_PORT=str(port), LVS_NAT_SERVICE=service)
    proc = await asyncio.create_subprocess_exec(*check["command"], env=env, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                start_new_session=True)
    try:
        rc = await proc.wait()
    finally:
        if proc.returncode is None:  # timed out or cancelled: the command and whatever it started
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            await proc.wait()
    if rc < 0:
        return False, "killed by signal %d" % -rc
    return rc == 0, "ok" if rc == 0 else "exit code %d" % rc


CHECKERS = {"tcp": _tcp, "http": _http, "https": _http, "exec": _exec}


def _reason(e):
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ssl.SSLError):
        return "TLS failed: %s" % (e.reason or e)
    if isinstance(e, asyncio.IncompleteReadError):
        return "connection closed early"
    if isinstance(e, OSError):
        return (e.strerror or str(e) or type(e).__name__).lower()
    return "%s: %s" % (type(e).__name__, e)


async def probe(address, port, check, service):
    """One check of one real server: (ok, reason). Never raises but for cancellation; a check not done within
    check's timeout fails with "timeout after Xs"."""
    port = check["port"] or port
    try:
        return await asyncio.wait_for(CHECKERS[check["type"]](address, port, check, service), check["timeout"])
    except asyncio.TimeoutError:
        return False, "timeout after %gs" % check["timeout"]
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of a check is that check's result
        return False, _reason(e)


async def probe_all(dests, check, service):
    """probe for each (address, port) of dests at once, with one timer for all: [(ok, reason)] in their order."""
    loop = asyncio.get_running_loop()
    port = check["port"]
    if check["type"] == "tcp":
        return await tcp_round([(a, port) for a, _p in dests] if port else dests, check["timeout"])
    tasks = [loop.create_task(CHECKERS[check["type"]](a, port or p, check, service)) for a, p in dests]
    try:
        await asyncio.wait(tasks, timeout=check["timeout"])
    finally:
        for task in tasks:
            task.cancel()  # a check not done within timeout, or all of them when the round is cancelled
    await asyncio.wait(tasks)  # the cancelled ones finish (an exec check kills its command)
    return [_result(task, check) for task in tasks]


def _result(task, check):
    if task.cancelled():
        return False, "timeout after %gs" % check["timeout"]
    e = task.exception()
    return task.result() if e is None else (False, _reason(e))


# ---------------------------------------------------------------- one service

class Runner(object):
    """One checked service: its trackers ((address, port) -> Tracker), its round, its reconcile. svc is not changed
    while the runner lives (a reload makes new runners)."""

    def __init__(self, svc, trackers):
        self.svc, self.name, self.check = svc, service_name(svc), svc["check"]
        self.key = service_key(dict((k, svc[k]) for k in ("family", "protocol", "address", "port", "fwmark") if k in svc))
        self.trackers = trackers
        self.sorry_active = False
        self.rounds = 0
        self.progress = time.monotonic()
        # Whether a tracker changed something the state file holds (all but the counters) since the daemon last
        # compared its state; the sorry server's use (set by reconcile) the daemon compares itself (sorry_seen).
        self.dirty = True
        self.sorry_seen = None
        # (health, (entry, active, precheck_table([entry]), schedulers)): what the kernel must hold for that health,
        # made again only when health changes. The kernel is still read and compared every round.
        self._wanted = None

    def health(self):
        return dict(((self.name, a, p), t.healthy) for (a, p), t in self.trackers.items())

    def wanted(self):
        """(entry, sorry server active, parsed entry, schedulers) for the trackers' health now."""
        health = tuple([t.healthy for t in self.trackers.values()])
        if self._wanted is None or self._wanted[0] != health:
            entry, active = wanted_service(self.svc, self.health())
            parsed = precheck_table([entry])
            self._wanted = health, (entry, active, parsed, [entry["scheduler"]] if entry.get("scheduler") else ())
        return self._wanted[1]

    async def check_round(self, now):
        """Check every real server concurrently; log each transition once. Returns the transitions."""
        dests = [(d["address"], d["port"]) for d in self.svc["real_servers"]]
        results = await probe_all(dests, self.check, self.name)
        stamp = now()
        flipped = []
        for (address, port), (ok, reason) in zip(dests, results):
            tracker = self.trackers[(address, port)]
            if tracker.last is not bool(ok) or tracker.reason != reason:  # last_result or reason in the state file
                self.dirty = True
            if tracker.observe(ok, reason, stamp):
                self.dirty = True
                flipped.append((address, port))
                count = tracker.successes if ok else tracker.failures
                log("%s real server %s %s: %s (%d %s)" % (
                    self.name, describe_dest(dict(address=address, port=port)), "up" if ok else "down", reason,
                    count, ("success" if count == 1 else "successes") if ok else ("failure" if count == 1 else "failures")),
                    5 if ok else 4)
        return flipped

    def reconcile(self, session):
        """Make the kernel's entry of this service what declaration and health ask. The ops."""
        current = session.service(self.key, counters=False)
        entry, active, parsed, schedulers = self.wanted()
        held = [current] if current else []
        ops = plan_table(held, [entry], purge_services=False, purge_real_servers=True, parsed=parsed, predict=False)[0]
        if ops:
            session.apply(ops, before=held, schedulers=schedulers)
            log("%s: %s" % (self.name, "; ".join(describe_op(op) for op in ops)))
        if active != self.sorry_active:
            log("%s: sorry server %s" % (self.name, "in use" if active else "no longer in use"), 5)
        self.sorry_active = active
        return ops

    def state(self):
        return {"service": self.name, "sorry_server_active": self.sorry_active, "real_servers": [
            {"address": d["address"], "port": d["port"], "healthy": t.healthy, "since": t.since,
             "last_result": None if t.last is None else "ok" if t.last else "fail", "reason": t.reason,
             "checks": t.checks}
            for d, t in ((d, self.trackers[(d["address"], d["port"])]) for d in self.svc["real_servers"])]}


def initial_trackers(svc, previous, current, now, optimistic=False):
    """The trackers of a service's real servers: as the previous state file says (a restart resumes), else healthy
    iff the kernel holds the real server (any weight for a declared drain, weight > 0 otherwise) - or, optimistic
    (the daemon's start without any state file: at boot, or the first start), healthy: the declared table is back at
    once, and the first rounds take out what fails, as keepalived's checkers start (the role does not save these
    services for the boot restore: their real servers are runtime state)."""
    name, check = service_name(svc), svc["check"]
    before = dict(((rs.get("address"), rs.get("port")), rs) for s in (previous or {}).get("services") or []
                  if s.get("service") == name for rs in s.get("real_servers") or [])
    held = dict(((d["address"], d["port"]), d) for d in (current or {}).get("real_servers") or [])
    out = {}
    for d in svc["real_servers"]:
        rid = (d["address"], d["port"])
        if rid in before:
            rs = before[rid]
            since = rs.get("since") if isinstance(rs.get("since"), (int, float)) else now
            checks = rs.get("checks") if isinstance(rs.get("checks"), int) else 0
            out[rid] = Tracker(check["rise"], check["fall"], rs.get("healthy") is True, since, checks)
        else:
            kernel = held.get(rid)
            healthy = optimistic or (kernel is not None and (d["weight"] == 0 or kernel["weight"] > 0))
            out[rid] = Tracker(check["rise"], check["fall"], healthy, now)
    return out


# ---------------------------------------------------------------- the daemon

class Daemon(object):
    """The daemon: config, runners, the kernel session (in its thread), the state file, sd_notify."""

    def __init__(self, config_path=CONFIG_PATH, state_path=STATE_PATH, session_factory=None, notifier=None,
                 clock=time.time):
        self.config_path, self.state_path = config_path, state_path
        self.session_factory = session_factory or (lambda: _ipvs.Session(Host()))
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.doc, self.session, self.runners, self.tasks = None, None, [], []
        self.generation, self.rounds, self.ready = None, 0, False
        self.written, self.written_at = None, None
        self.dirty = True  # the runners or the generation changed since the state was last compared
        self.previous = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lvs-nat-kernel")
        self._stop = None
        self._reloading = None

    # -- config
    def load(self):
        """Read and validate the config file; InvalidInput/OSError when it is bad or missing."""
        with open(self.config_path, encoding="utf-8") as fh:
            return load_config(fh.read())

    async def kernel(self, fn, *args):
        """fn(*args) in the worker thread: opening and closing the session (pyroute2's own event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def setup(self, doc=None):
        """Open the kernel session and build the runners of the config (no check run yet)."""
        self.doc = doc or self.doc or self.load()
        try:
            self.previous = read_state(self.state_path)
        except LvsNatError as e:
            log("ignoring the previous state: %s" % e, 4)
            self.previous = None
        self.generation = (self.previous or {}).get("generation")
        self.session = await self.kernel(self.session_factory)
        self.runners = await self._runners(self.doc, {}, optimistic=self.previous is None)

    async def _runners(self, doc, old, optimistic=False):
        """Runners for doc's services; trackers carried over from old ({name: Runner}) where the real server stays."""
        out = []
        for svc in doc["services"]:
            name = service_name(svc)
            carried = dict(old[name].trackers) if name in old else {}
            missing = [d for d in svc["real_servers"] if (d["address"], d["port"]) not in carried]
            runner = Runner(svc, carried)
            if missing:
                current = self.session.service(runner.key, False)
                fresh = initial_trackers(svc, self.previous, current, self.clock(), optimistic)
                carried.update((rid, fresh[rid]) for rid in fresh if rid not in carried)
            runner.trackers = dict(((d["address"], d["port"]), carried[(d["address"], d["port"])])
                                   for d in svc["real_servers"])
            for tracker in runner.trackers.values():
                tracker.rise, tracker.fall = svc["check"]["rise"], svc["check"]["fall"]
            runner.sorry_active = old[name].sorry_active if name in old else False
            out.append(runner)
        return out

    # -- one round
    async def round(self, runner):
        """Check runner's real servers, reconcile its service, then the state file (and READY) when due."""
        await runner.check_round(self.clock)
        try:
            runner.reconcile(self.session)
        except LvsNatError as e:
            log("%s: %s" % (runner.name, e), 3)
        runner.rounds += 1
        runner.progress = time.monotonic()
        self.rounds += 1
        self.after_round()

    def after_round(self):
        if not all(r.rounds for r in self.runners):
            return
        if self.generation != self.doc["generation"]:
            self.generation, self.dirty = self.doc["generation"], True
        changed = self.changed()
        self.write_state(changed=changed)
        if not self.ready:
            self.ready = True
            self.notifier.send("READY=1")
        if changed:  # the status says what the state file holds but the counters
            healthy = sum(t.healthy for r in self.runners for t in r.trackers.values())
            total = sum(len(r.trackers) for r in self.runners)
            sorry = sum(r.sorry_active for r in self.runners)
            self.notifier.set_status("config %s: %d of %d real servers healthy%s" % (
                self.generation, healthy, total, ", %d sorry server(s) in use" % sorry if sorry else ""))

    def changed(self):
        """Whether something the state file holds but the counters may have changed since it was last compared."""
        return self.dirty or any(r.dirty or r.sorry_active != r.sorry_seen for r in self.runners)

    def state_document(self):
        return {"version": VERSION, "generation": self.generation, "round": self.rounds, "pid": os.getpid(),
                "updated": self.clock(), "services": [r.state() for r in self.runners]}

    def write_state(self, force=False, changed=None):
        """Write the state file when something other than the counters changed, or HEARTBEAT seconds passed. The
        document is made only then (changed: what self.changed() says, when the caller asked it already)."""
        now = time.monotonic()
        if changed is None:
            changed = self.changed()
        if not (force or changed) and self.written_at is not None and now - self.written_at < HEARTBEAT:
            return False
        doc = self.state_document()
        self.dirty = False
        for runner, svc in zip(self.runners, doc["services"]):
            runner.dirty, runner.sorry_seen = False, svc["sorry_server_active"]
        essential = (doc["generation"], [dict(s, real_servers=[dict(rs, checks=None) for rs in s["real_servers"]])
                                         for s in doc["services"]])
        if not force and essential == self.written and now - self.written_at < HEARTBEAT:
            return False
        write_state(self.state_path, doc)
        self.written, self.written_at = essential, now
        return True

    # -- the loops
    async def _service_loop(self, runner):
        """A round of runner's service at start + k * interval, whether or not the previous round is done: with a
        timeout as long as the interval, a silent real server's check ends when the next round is due, and the
        reconcile after it would push that round to the tick after (a failure seen an interval late). At most
        MAX_ROUNDS rounds of a service run at once (a hung kernel call stops them: the watchdog sees it)."""
        loop = asyncio.get_running_loop()
        start, k, interval = loop.time(), 0, runner.check["interval"]
        rounds = set()
        try:
            while True:
                if len(rounds) < MAX_ROUNDS:
                    task = loop.create_task(self.round(runner))
                    rounds.add(task)
                    task.add_done_callback(rounds.discard)
                k += 1
                now = loop.time()
                if start + k * interval < now:  # the loop itself was late: skip the missed starts
                    k = int((now - start) // interval) + 1
                await asyncio.sleep(start + k * interval - now)
        finally:
            for task in list(rounds):
                task.cancel()
            await asyncio.gather(*rounds, return_exceptions=True)

    def _start(self):
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._service_loop(r)) for r in self.runners]

    async def _cancel(self):
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []

    async def _watchdog(self):
        while True:
            now = time.monotonic()
            # A service whose rounds stopped (a hung check or kernel call) stops the pings: systemd restarts us.
            stalled = [r for r in self.runners
                       if now - r.progress > 2 * r.check["interval"] + r.check["timeout"] + KERNEL_TIMEOUT + 5]
            if not stalled:
                self.notifier.send("WATCHDOG=1")
            await asyncio.sleep(self.notifier.watchdog)

    def reload(self):
        """SIGHUP: read the config again; apply it when valid and new (else log and keep the old one)."""
        try:
            doc = self.load()
        except (LvsNatError, OSError) as e:
            log("reload: keeping the running config %s: %s" % (self.doc["generation"], e), 3)
            return None
        if doc["generation"] == self.doc["generation"]:
            log("reload: config %s unchanged" % doc["generation"])
            return None
        self._reloading = asyncio.get_running_loop().create_task(self.switch(doc))
        return self._reloading

    async def switch(self, doc):
        """Run doc from now on: the runners restart (a round each at once); health carries over by real server.
        Services no longer declared are left in the kernel as they are."""
        log("reload: config %s replaces %s" % (doc["generation"], self.doc["generation"]))
        old = dict((r.name, r) for r in self.runners)
        await self._cancel()
        self.doc = doc
        self.runners = await self._runners(doc, old)
        self.dirty = True
        if self._stop is not None and not self._stop.is_set():
            self._start()

    def start_budget(self):
        """Seconds the first round of every service may take: the longest check timeout, a kernel answer, a margin."""
        return int(max([r.check["timeout"] for r in self.runners] or [0]) + KERNEL_TIMEOUT + START_MARGIN + 0.999)

    def stop(self):
        """SIGTERM, SIGINT: end without touching the kernel."""
        if self._stop is not None:
            self._stop.set()

    async def run(self):
        """The daemon until stop(): setup, a round of every service at once, then each on its cadence."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        handlers = ((signal.SIGHUP, self.reload), (signal.SIGTERM, self.stop), (signal.SIGINT, self.stop))
        for sig, handler in handlers:
            loop.add_signal_handler(sig, handler)
        watchdog = None
        try:
            await self.setup()
            log("started: config %s, %d service(s)" % (self.doc["generation"], len(self.runners)))
            # READY comes after the first round of every service, which may take the longest check timeout: systemd
            # gets that much more time than its start timeout (90 s by default) from here.
            self.notifier.send("EXTEND_TIMEOUT_USEC=%d" % (self.start_budget() * 1000000))
            self._start()
            if self.notifier.watchdog:
                watchdog = loop.create_task(self._watchdog())
            await self._stop.wait()
            log("stopping: the IPVS table is left as it is")
        finally:
            for sig, _handler in handlers:
                loop.remove_signal_handler(sig)
            if self._reloading is not None:
                await asyncio.gather(self._reloading, return_exceptions=True)
            await self._cancel()
            if watchdog is not None:
                watchdog.cancel()
            if self.session is not None and hasattr(self.session, "close"):
                await self.kernel(self.session.close)
            self._executor.shutdown(wait=True)


def write_state(path, doc):
    """The state file in one rename (mode 0644). No fsync: it lives on /run (tmpfs) and is rebuilt every round."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, 0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".health.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json_text(doc))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def json_text(doc):
    return json.dumps(doc, sort_keys=True, indent=1) + "\n"


def main(argv=None):
    """lvs-nat-healthd [--config PATH] [--state PATH]; 0 after SIGTERM/SIGINT, 1 when it cannot start."""
    parser = argparse.ArgumentParser(prog="lvs-nat-healthd", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--config", default=CONFIG_PATH, help="the checked services (default %(default)s)")
    parser.add_argument("--state", default=STATE_PATH, help="the state file written (default %(default)s)")
    args = parser.parse_args(argv)
    daemon = Daemon(args.config, args.state)
    try:
        daemon.doc = daemon.load()
    except (LvsNatError, OSError) as e:
        log("cannot start: %s: %s" % (args.config, getattr(e, "strerror", None) or e), 3)
        return 1
    if not _ipvs.HAS_PYROUTE2:
        log("cannot start: pyroute2 is not installed for %s" % sys.executable, 3)
        return 1
    _ipvs.IPVS.TIMEOUT = KERNEL_TIMEOUT
    try:
        asyncio.run(daemon.run())
    except LvsNatError as e:
        log("cannot run: %s" % e, 3)
        return 1
    return 0
