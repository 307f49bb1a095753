# SPDX-License-Identifier: GPL-3.0-or-later
"""lvs-nat-healthd (_healthd): the checkers against real servers on 127.0.0.1, rounds and reconciles against the
in-memory kernel (module_fakes.TableSession), signals, restart, reload, the state file; and that it imports without
ansible."""
from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from module_fakes import TableSession

from ansible_collections.lvs.nat.plugins.module_utils import _health, _healthd
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import CMD_DEL_DEST, CMD_NEW_DEST

VIP = "198.51.100.10"
NAME = "TCP 198.51.100.10:80"


# ---------------------------------------------------------------- real servers on 127.0.0.1

class Web(object):
    """A tiny HTTP server on 127.0.0.1 in its own thread: status, body, or silent (accepts and never answers)."""

    def __init__(self, status=200, body=b"OK", silent=False, tls=None):
        self.status, self.body, self.silent = status, body, silent
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.tls, self.held = tls, []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            if self.silent:
                self.held.append(conn)
                continue
            try:
                if self.tls:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 %d X\r\nContent-Type: text/plain\r\n\r\n%s" % (self.status, self.body))
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept(): a closed socket it still waits on keeps listening
        except OSError:
            pass
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def web():
    servers = []

    def make(**kwargs):
        servers.append(Web(**kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def free_port():
    """A port on 127.0.0.1 where nothing listens (connections refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(**kw):
    return dict(_health.CHECK_DEFAULTS, **dict(dict(type="tcp", interval=1, timeout=1, rise=2, fall=2), **kw))


def probe(rs_port, **kw):
    return asyncio.run(_healthd.probe("127.0.0.1", rs_port, check(**kw), NAME))


def test_tcp_check_ok_and_refused(web):
    assert probe(web().port) == (True, "ok")
    assert probe(free_port()) == (False, "connection refused")


def test_tcp_check_uses_the_check_port(web):
    assert probe(free_port(), port=web().port) == (True, "ok")


def test_http_status_and_body(web):
    ok, failing = web(body=b"<h1>all good</h1>"), web(status=503)
    assert probe(ok.port, type="http") == (True, "ok")
    assert probe(ok.port, type="http", expect_body="all g[o]+d") == (True, "ok")
    assert probe(ok.port, type="http", expect_body="^broken") == (False, "body does not match")
    assert probe(failing.port, type="http") == (False, "status 503")
    assert probe(failing.port, type="http", expect_status=[200, 503]) == (True, "ok")
    assert probe(free_port(), type="http") == (False, "connection refused")


def test_a_silent_listener_times_out(web):
    silent = web(silent=True)
    assert probe(silent.port, type="http", timeout=0.3) == (False, "timeout after 0.3s")


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=rs",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(d / "cert.pem"), str(d / "key.pem"))
    return ctx


def test_https_with_a_self_signed_certificate(web, tls_context):
    server = web(tls=tls_context, body=b"secure")
    assert probe(server.port, type="https", expect_body="secure") == (True, "ok")
    assert probe(web(body=b"plain").port, type="https")[0] is False  # not TLS


def test_exec_exit_codes_environment_and_timeout_kill(tmp_path):
    out = tmp_path / "env"
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\necho \"$LVS_NAT_RS_ADDRESS $LVS_NAT_RS_PORT $LVS_NAT_SERVICE\" > %s\nexit \"$1\"\n" % out)
    script.chmod(0o755)
    assert probe(8080, type="exec", command=[str(script), "0"]) == (True, "ok")
    assert out.read_text() == "127.0.0.1 8080 %s\n" % NAME
    assert probe(8080, type="exec", command=[str(script), "2"]) == (False, "exit code 2")
    pidfile = tmp_path / "pid"
    sleeper = tmp_path / "sleep.sh"
    sleeper.write_text("#!/bin/sh\nsleep 30 &\necho $! > %s\nwait\n" % pidfile)
    sleeper.chmod(0o755)
    assert probe(8080, type="exec", command=[str(sleeper)], timeout=0.5) == (False, "timeout after 0.5s")
    child = int(pidfile.read_text())
    for _attempt in range(50):  # the command's own children are killed with it
        if not Path("/proc/%d" % child).exists() or "Z" in Path("/proc/%d/stat" % child).read_text().split()[2]:
            break
        asyncio.run(asyncio.sleep(0.02))
    else:
        pytest.fail("the check's child %d survived the timeout" % child)
    assert probe(8080, type="exec", command=[str(tmp_path / "missing")])[0] is False


# ---------------------------------------------------------------- the daemon against the in-memory kernel

def kernel_service(weights, port=80):
    return dict(family="ipv4", fwmark=0, protocol="tcp", address=VIP, port=port, scheduler="wrr", scheduler_flags=[],
                persistence_timeout=0, persistence_prefix=32, one_packet=False,
                real_servers=[dict(address="127.0.0.1", port=p, forwarding="masq", weight=w, upper_threshold=0,
                                   lower_threshold=0) for p, w in weights.items()])


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Notes(object):
    def __init__(self):
        self.sent, self.watchdog, self.status = [], None, None

    def send(self, text):
        self.sent.append(text)

    def set_status(self, text):
        self.status = text


def config(tmp_path, real_servers, port=80, **check_options):
    svc = dict(protocol="tcp", address=VIP, port=port, scheduler="wrr", real_servers=real_servers,
               check=dict(dict(type="tcp", interval=1, timeout=0.5, rise=2, fall=2), **check_options))
    doc = _health.config_document(_health.check_services([svc]))
    path = tmp_path / "director.json"
    path.write_text(_health.render_config(doc))
    return doc


def daemon(tmp_path, kernel):
    return _healthd.Daemon(str(tmp_path / "director.json"), str(tmp_path / "health.json"),
                           session_factory=lambda: kernel, notifier=Notes(), clock=Clock())


def held(kernel):
    return dict((d["port"], d["weight"]) for s in kernel.held for d in s["real_servers"])


def test_a_failing_real_server_leaves_after_fall_rounds_and_returns_after_rise(tmp_path, web):
    good, flaky = web(), web()
    doc = config(tmp_path, [dict(address="127.0.0.1", port=good.port, weight=3),
                            dict(address="127.0.0.1", port=flaky.port, weight=1)])
    kernel = TableSession([kernel_service({good.port: 3, flaky.port: 1})])
    d = daemon(tmp_path, kernel)

    async def scenario():
        await d.setup()
        runner, = d.runners
        await d.round(runner)
        assert kernel.applied == []  # converged: nothing applied
        flaky.close()
        await d.round(runner)
        assert held(kernel) == {good.port: 3, flaky.port: 1}  # fall=2: one failure is not enough
        await d.round(runner)
        assert held(kernel) == {good.port: 3}
        assert [op[0] for op in kernel.applied[-1][0]] == [CMD_DEL_DEST]
        state = json.loads((tmp_path / "health.json").read_text())
        rs = dict((r["port"], r) for r in state["services"][0]["real_servers"])
        assert (rs[flaky.port]["healthy"], rs[flaky.port]["last_result"], rs[flaky.port]["reason"]) == (
            False, "fail", "connection refused")
        assert state["generation"] == doc["generation"] and state["pid"] == os.getpid()
        back = Web()
        runner.svc["real_servers"][1]["port"] = back.port  # the same real server, listening again
        runner.trackers[("127.0.0.1", back.port)] = runner.trackers.pop(("127.0.0.1", flaky.port))
        try:
            await d.round(runner)
            assert held(kernel) == {good.port: 3}  # rise=2
            await d.round(runner)
            assert held(kernel) == {good.port: 3, back.port: 1}
            assert [op[0] for op in kernel.applied[-1][0]] == [CMD_NEW_DEST]
            applied = len(kernel.applied)
            await d.round(runner)
            assert len(kernel.applied) == applied  # nothing changed: nothing applied
        finally:
            back.close()

    asyncio.run(scenario())


def test_a_drained_real_server_stays_at_weight_0_whatever_its_health(tmp_path, web):
    good = web()
    down = free_port()
    config(tmp_path, [dict(address="127.0.0.1", port=good.port, weight=1),
                      dict(address="127.0.0.1", port=down, weight=0)], fall=1)
    kernel = TableSession([kernel_service({good.port: 1, down: 0})])
    d = daemon(tmp_path, kernel)

    async def scenario():
        await d.setup()
        for _round in range(3):
            await d.round(d.runners[0])
        assert held(kernel) == {good.port: 1, down: 0}
        assert kernel.applied == []
        assert d.runners[0].trackers[("127.0.0.1", down)].healthy is False

    asyncio.run(scenario())


def test_the_state_file_gets_the_generation_only_after_every_service_did_a_round(tmp_path, web):
    server = web()
    services = [dict(protocol="tcp", address=VIP, port=p, real_servers=["127.0.0.1:%d" % server.port],
                     check=dict(type="tcp", interval=1, timeout=0.5)) for p in (80, 81)]
    doc = _health.config_document(_health.check_services(services))
    (tmp_path / "director.json").write_text(_health.render_config(doc))
    kernel = TableSession([kernel_service({server.port: 1}, 80), kernel_service({server.port: 1}, 81)])
    d = daemon(tmp_path, kernel)
    state = tmp_path / "health.json"

    async def scenario():
        await d.setup()
        await d.round(d.runners[0])
        assert not state.exists() and "READY=1" not in d.notifier.sent
        await d.round(d.runners[1])
        assert json.loads(state.read_text())["generation"] == doc["generation"]
        assert d.notifier.sent.count("READY=1") == 1
        first = state.stat().st_mtime_ns, json.loads(state.read_text())["round"]
        state.write_text(state.read_text())  # mark: is it written again?
        os.utime(state, ns=(1, 1))
        await d.round(d.runners[0])
        assert state.stat().st_mtime_ns == 1  # nothing but counters changed: not written
        d.written_at -= _healthd.HEARTBEAT
        await d.round(d.runners[1])
        assert state.stat().st_mtime_ns != 1 and json.loads(state.read_text())["round"] == 4 > first[1]
        assert oct(state.stat().st_mode & 0o777) == "0o644"

    asyncio.run(scenario())


def test_a_restart_resumes_health_from_the_state_file(tmp_path, web):
    server = web()
    config(tmp_path, [dict(address="127.0.0.1", port=server.port, weight=1)])
    (tmp_path / "health.json").write_text(json.dumps({"version": 1, "generation": "x", "round": 9, "services": [
        {"service": NAME, "sorry_server_active": False, "real_servers": [
            {"address": "127.0.0.1", "port": server.port, "healthy": False, "since": 5.0, "last_result": "fail",
             "reason": "connection refused", "checks": 7}]}]}))
    kernel = TableSession([kernel_service({server.port: 1})])  # the kernel still holds it
    d = daemon(tmp_path, kernel)

    async def scenario():
        await d.setup()
        tracker = d.runners[0].trackers[("127.0.0.1", server.port)]
        assert (tracker.healthy, tracker.since, tracker.checks) == (False, 5.0, 7)
        await d.round(d.runners[0])  # up, but rise=2: still down, so out of the kernel
        assert held(kernel) == {}
        await d.round(d.runners[0])
        assert held(kernel) == {server.port: 1}

    asyncio.run(scenario())


def test_without_a_state_file_every_real_server_starts_healthy(tmp_path):
    # At boot (and the first start) there is no state file: the declared table comes back at once, like keepalived's
    # checkers; the first rounds take out what fails.
    ports = [free_port() for _port in range(3)]
    config(tmp_path, [dict(address="127.0.0.1", port=p, weight=1) for p in ports])
    d = daemon(tmp_path, TableSession([]))
    asyncio.run(d.setup())
    assert [d.runners[0].trackers[("127.0.0.1", p)].healthy for p in ports] == [True, True, True]


def test_a_real_server_the_state_does_not_know_starts_from_the_kernel(tmp_path):
    ports = [free_port() for _port in range(3)]
    config(tmp_path, [dict(address="127.0.0.1", port=ports[0], weight=1),
                      dict(address="127.0.0.1", port=ports[1], weight=1),
                      dict(address="127.0.0.1", port=ports[2], weight=0)])
    kernel = TableSession([kernel_service({ports[0]: 1, ports[1]: 0, ports[2]: 0})])
    d = daemon(tmp_path, kernel)
    _healthd.write_state(d.state_path, dict(version=1, generation="0" * 16, round=1, pid=1, updated=1.0, services=[]))
    asyncio.run(d.setup())
    assert [d.runners[0].trackers[("127.0.0.1", p)].healthy for p in ports] == [True, False, True]


def test_an_invalid_config_on_reload_keeps_the_old_one(tmp_path, web, capsys):
    server = web()
    doc = config(tmp_path, [dict(address="127.0.0.1", port=server.port, weight=1)])
    kernel = TableSession([kernel_service({server.port: 1})])
    d = daemon(tmp_path, kernel)

    async def scenario():
        await d.setup()
        (tmp_path / "director.json").write_text(_health.render_config(doc).replace('"interval": 1', '"interval": 0'))
        assert d.reload() is None
        assert d.doc == doc
        new = config(tmp_path, [dict(address="127.0.0.1", port=server.port, weight=5)])
        await d.reload()
        assert d.doc == new and d.runners[0].svc["real_servers"][0]["weight"] == 5
        assert d.runners[0].trackers[("127.0.0.1", server.port)].healthy  # health carried over
        await d.round(d.runners[0])
        assert held(kernel) == {server.port: 5}

    asyncio.run(scenario())
    assert "reload: keeping the running config %s" % doc["generation"] in capsys.readouterr().err


def test_sigterm_ends_the_daemon_without_touching_the_kernel(tmp_path, web):
    server = web()
    config(tmp_path, [dict(address="127.0.0.1", port=server.port, weight=1)])
    kernel = TableSession([kernel_service({server.port: 1})])
    before = json.dumps(kernel.held)
    d = daemon(tmp_path, kernel)

    async def scenario():
        task = asyncio.get_running_loop().create_task(d.run())
        while "READY=1" not in d.notifier.sent:
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert kernel.applied == [] and json.dumps(kernel.held) == before
    # Before READY, systemd's start timeout was extended by the first round's budget (check timeout 0.5 s).
    extend = "EXTEND_TIMEOUT_USEC=%d" % (math.ceil(0.5 + _healthd.KERNEL_TIMEOUT + _healthd.START_MARGIN) * 1000000)
    assert d.notifier.sent.index(extend) < d.notifier.sent.index("READY=1")


def test_a_long_check_timeout_extends_the_start_timeout_beyond_systemds_default(tmp_path):
    services = [dict(address=VIP, port=80, real_servers=["127.0.0.1:9"], check=dict(type="tcp", interval=600,
                                                                                    timeout=120.5))]
    (tmp_path / "director.json").write_text(_health.render_config(_health.config_document(
        _health.check_services(services))))
    d = daemon(tmp_path, TableSession([]))
    asyncio.run(d.setup())
    assert d.start_budget() == 121 + _healthd.KERNEL_TIMEOUT + _healthd.START_MARGIN > 90


def test_main_refuses_to_start_without_a_valid_config(tmp_path, capsys):
    assert _healthd.main(["--config", str(tmp_path / "none.json"), "--state", str(tmp_path / "s.json")]) == 1
    assert "cannot start" in capsys.readouterr().err


def test_notifier_speaks_to_the_notify_socket(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        n = _healthd.Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())})
        assert n.watchdog == 5.0
        n.send("READY=1")
        n.set_status("x")
        n.set_status("x")
        assert sock.recv(100) == b"READY=1" and sock.recv(100) == b"STATUS=x"
    assert _healthd.Notifier({}).watchdog is None


# ---------------------------------------------------------------- no ansible on the director

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "ansible" or name.startswith("ansible."):
            raise ImportError("ansible is not installed on the director")
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
import importlib
for name in sys.argv[2:]:
    importlib.import_module("ansible_collections.lvs.nat.plugins.module_utils." + name)
from ansible_collections.lvs.nat.plugins.module_utils import _healthd
sys.exit(_healthd.main(["--config", "/nonexistent/director.json"]))
"""


def test_the_daemon_and_its_code_modules_import_without_ansible(tmp_path):
    src = Path(_healthd.__file__).parent
    code = tmp_path / "ansible_collections" / "lvs" / "nat" / "plugins" / "module_utils"
    code.mkdir(parents=True)
    for name in _healthd.CODE_MODULES:  # only these, as lvs.nat.ipvs_health installs them under CODE_DIR
        shutil.copy(src / (name + ".py"), code / (name + ".py"))
    proc = subprocess.run([sys.executable, "-c", BLOCKER, str(tmp_path)] + list(_healthd.CODE_MODULES), check=False,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=""))
    assert proc.returncode == 1, proc.stderr  # main() ran: no config there
    assert "cannot start: /nonexistent/director.json" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_round_checks_all_real_servers_at_once_with_one_timeout(web, tmp_path):
    ok, silent, refused = web(), web(silent=True), free_port()
    dests = [("127.0.0.1", ok.port), ("127.0.0.1", silent.port), ("127.0.0.1", refused)]

    async def timed():
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = await _healthd.probe_all(dests, check(type="http", timeout=0.4), NAME)
        return results, loop.time() - start

    results, took = asyncio.run(timed())
    assert results == [(True, "ok"), (False, "timeout after 0.4s"), (False, "connection refused")]
    assert took < 1.0  # concurrently: one timeout for the round, not one after another


def test_rounds_keep_their_cadence_when_a_check_takes_the_whole_interval(tmp_path, web):
    # timeout == interval and a silent real server: each round's check ends when the next round is due, then the
    # reconcile takes a while (a slow kernel). The next round still starts on time, so a failure is seen every
    # interval (one round late per failure before: 2 rounds in 1.3 s instead of 5).
    silent = web(silent=True)
    config(tmp_path, [dict(address="127.0.0.1", port=silent.port, weight=1)], type="http", interval=0.3, timeout=0.3)
    kernel = TableSession([kernel_service({silent.port: 1})])
    real_service = kernel.service

    def slow_service(key, counters=True):
        import time
        time.sleep(0.1)
        return real_service(key, counters)

    kernel.service = slow_service
    d = daemon(tmp_path, kernel)
    started = []

    async def scenario():
        await d.setup()
        runner, = d.runners
        check_round = runner.check_round

        async def counted(now):
            started.append(asyncio.get_running_loop().time())
            return await check_round(now)

        runner.check_round = counted
        d._start()
        await asyncio.sleep(1.3)
        await d._cancel()

    asyncio.run(scenario())
    assert len(started) >= 4, started


# ---------------------------------------------------------------- what a round costs (an emulated director runs it)

def count_calls(monkeypatch, obj, name):
    """Wrap obj.name (until the test ends) so that each call is recorded; the list of calls' arguments."""
    calls, real = [], getattr(obj, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


def pending_timers(loop):
    return [h for h in loop._scheduled if not h.cancelled()]


def test_the_state_document_is_made_only_when_something_changed_or_at_the_heartbeat(tmp_path, web, monkeypatch):
    good, flaky = web(), web()
    config(tmp_path, [dict(address="127.0.0.1", port=good.port, weight=1),
                      dict(address="127.0.0.1", port=flaky.port, weight=1)])
    kernel = TableSession([kernel_service({good.port: 1, flaky.port: 1})])
    d = daemon(tmp_path, kernel)
    state = tmp_path / "health.json"

    def written():
        """Whether the state file was written since the last call (then its document)."""
        if state.stat().st_mtime_ns == 1:
            return None
        os.utime(state, ns=(1, 1))
        return json.loads(state.read_text())

    async def scenario():
        await d.setup()
        runner, = d.runners
        made, reads = count_calls(monkeypatch, d, "state_document"), count_calls(monkeypatch, kernel, "service")
        await d.round(runner)
        assert len(made) == 1 and written()["round"] == 1
        assert d.notifier.status == "config %s: 2 of 2 real servers healthy" % d.generation
        for _round in range(3):
            await d.round(runner)
        assert len(made) == 1 and written() is None  # only counters changed: no document made, none written
        flaky.close()
        await d.round(runner)  # a failure, healthy still (fall=2): last_result and reason change
        doc = written()
        rs = dict((r["port"], r) for r in doc["services"][0]["real_servers"])
        assert len(made) == 2 and (rs[flaky.port]["healthy"], rs[flaky.port]["last_result"]) == (True, "fail")
        await d.round(runner)  # the transition
        doc = written()
        assert len(made) == 3 and [r["healthy"] for r in doc["services"][0]["real_servers"]] == [True, False]
        assert d.notifier.status == "config %s: 1 of 2 real servers healthy" % d.generation
        await d.round(runner)  # the same failure again
        assert len(made) == 3 and written() is None
        d.written_at -= _healthd.HEARTBEAT
        await d.round(runner)
        assert len(made) == 4 and written()["round"] == d.rounds == 8
        # The kernel was read (and compared) once every round, whatever changed.
        assert len(reads) == d.rounds

    asyncio.run(scenario())


def test_the_kernel_is_compared_every_round_and_the_wanted_entry_made_only_when_health_changes(
        tmp_path, web, monkeypatch):
    first, second = web(), web()
    config(tmp_path, [dict(address="127.0.0.1", port=first.port, weight=2),
                      dict(address="127.0.0.1", port=second.port, weight=1)], fall=1)
    kernel = TableSession([kernel_service({first.port: 2, second.port: 1})])
    d = daemon(tmp_path, kernel)
    wanted = count_calls(monkeypatch, _healthd, "wanted_service")
    prechecked = count_calls(monkeypatch, _healthd, "precheck_table") if hasattr(_healthd, "precheck_table") else []

    async def scenario():
        await d.setup()
        runner, = d.runners
        reads = count_calls(monkeypatch, kernel, "service")
        for _round in range(3):
            await d.round(runner)
        assert kernel.applied == [] and len(reads) == 3
        assert len(wanted) == 1 and len(prechecked) == 1
        # Someone else changes the kernel behind the daemon's back: health did not change, the next round puts the
        # declared table back all the same.
        kernel.held[0]["real_servers"] = [r for r in kernel.held[0]["real_servers"] if r["port"] != second.port]
        kernel.held[0]["real_servers"][0]["weight"] = 7
        await d.round(runner)
        assert held(kernel) == {first.port: 2, second.port: 1} and len(reads) == 4
        assert len(wanted) == 1
        second.close()
        await d.round(runner)  # fall=1: out at once, the wanted entry made again for the new health
        assert held(kernel) == {first.port: 2} and len(wanted) == 2
        await d.round(runner)
        assert held(kernel) == {first.port: 2} and len(wanted) == 2 and len(reads) == 6

    asyncio.run(scenario())


def test_the_session_opens_in_the_worker_thread_and_is_read_and_written_on_the_loops(tmp_path, web):
    # pyroute2 runs its own event loop to open the socket: not inside the daemon's. The reads and writes are the
    # collection's own send and recv, answered at once: on the loop's thread, without a thread handoff each.
    good, gone = web(), web()
    config(tmp_path, [dict(address="127.0.0.1", port=good.port, weight=1),
                      dict(address="127.0.0.1", port=gone.port, weight=1)], fall=1)
    kernel = TableSession([kernel_service({good.port: 1, gone.port: 1})])
    threads = []
    for name in ("service", "apply"):
        method = getattr(kernel, name)
        setattr(kernel, name, lambda *a, _m=method, _n=name, **k: threads.append((_n, threading.get_ident())) or _m(*a, **k))
    d = _healthd.Daemon(str(tmp_path / "director.json"), str(tmp_path / "health.json"), notifier=Notes(),
                        clock=Clock(), session_factory=lambda: threads.append(("open", threading.get_ident())) or kernel)

    async def scenario():
        await d.setup()
        gone.close()
        await d.round(d.runners[0])

    asyncio.run(scenario())
    d._executor.shutdown()
    assert held(kernel) == {good.port: 1}
    main = threading.get_ident()
    assert [name for name, _t in threads] == ["open", "service", "service", "apply"]  # setup reads it too
    assert threads[0][1] != main and set(t for _n, t in threads[1:]) == {main}, threads


def test_the_sorry_server_taking_over_is_written_to_the_state_file_and_the_status(tmp_path, web):
    up, down = web(), web()
    svc = dict(protocol="tcp", address=VIP, port=80, scheduler="wrr", quorum=2, sorry_server="127.0.0.2:8080",
               real_servers=[dict(address="127.0.0.1", port=p, weight=1) for p in (up.port, down.port)],
               check=dict(type="tcp", interval=1, timeout=0.5, rise=1, fall=1))
    (tmp_path / "director.json").write_text(_health.render_config(_health.config_document(
        _health.check_services([svc]))))
    kernel = TableSession([kernel_service({up.port: 1, down.port: 1})])
    d = daemon(tmp_path, kernel)
    state = tmp_path / "health.json"

    async def scenario():
        await d.setup()
        runner, = d.runners
        await d.round(runner)
        assert json.loads(state.read_text())["services"][0]["sorry_server_active"] is False
        down.close()
        await d.round(runner)
        assert held(kernel) == {8080: 1}
        assert json.loads(state.read_text())["services"][0]["sorry_server_active"] is True
        assert d.notifier.status.endswith("1 of 2 real servers healthy, 1 sorry server(s) in use")
        os.utime(state, ns=(1, 1))
        await d.round(runner)
        assert state.stat().st_mtime_ns == 1  # nothing changed since

    asyncio.run(scenario())


def test_a_tcp_round_times_out_once_and_leaves_no_callback_behind(web):
    ok, refused = web(), free_port()
    full = socket.socket()  # a listener whose accept queue is full: the kernel drops the SYN, the connect hangs
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _attempt in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(full.getsockname())
        fillers.append(filler)
    targets = [("127.0.0.1", ok.port), ("127.0.0.1", full.getsockname()[1]), ("127.0.0.1", refused)]

    async def scenario():
        loop = asyncio.get_running_loop()
        before = len(loop._selector.get_map())
        start = loop.time()
        results = await _healthd.tcp_round(targets, 0.3)
        took = loop.time() - start
        assert results == [(True, "ok"), (False, "timeout after 0.3s"), (False, "connection refused")]
        assert 0.25 < took < 1.0
        assert len(loop._selector.get_map()) == before and not pending_timers(loop)  # no writer, no timer left
        task = loop.create_task(_healthd.tcp_round(targets, 5))  # cancelled while one connect still waits
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(loop._selector.get_map()) == before and not pending_timers(loop)

    try:
        asyncio.run(scenario())
    finally:
        for sock in fillers + [full]:
            sock.close()


def test_a_tcp_round_gives_the_loop_one_reader_and_reads_so_error_only_for_failed_connects(web, monkeypatch):
    """The cost of a round's tcp checks: no writer callback per check (the round's own epoll, one reader on the loop),
    SO_ERROR asked only of the connects that failed."""
    ok, refused = [web().port for _n in range(5)], [free_port() for _n in range(3)]
    calls = {"add_reader": 0, "add_writer": 0, "getsockopt": 0}
    getsockopt = socket.socket.getsockopt

    def counted(sock, *args):
        calls["getsockopt"] += 1
        return getsockopt(sock, *args)

    monkeypatch.setattr(socket.socket, "getsockopt", counted)

    async def scenario():
        loop = asyncio.get_running_loop()

        def counting(name):
            real = getattr(loop, name)

            def count(*args):
                calls[name] += 1
                return real(*args)
            return count

        for name in ("add_reader", "add_writer"):
            monkeypatch.setattr(loop, name, counting(name))
        return await _healthd.tcp_round([("127.0.0.1", p) for p in ok + refused], 2)

    assert asyncio.run(scenario()) == [(True, "ok")] * 5 + [(False, "connection refused")] * 3
    assert calls["add_writer"] == 0 and calls["add_reader"] <= 1 and calls["getsockopt"] <= 3, calls
