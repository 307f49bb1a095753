# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's address plan: inside 198.51.100.0/24, no overlaps, refusal on collisions."""
from __future__ import annotations

import ipaddress
import itertools
import json
import socket
import subprocess

import lab
import pytest


def test_lab_ranges_inside_test_net_2_without_overlaps():
    testnet = ipaddress.ip_network("198.51.100.0/24")
    for net in lab.LAB_RANGES:
        assert net.subnet_of(testnet)
    for a, b in itertools.combinations(lab.LAB_RANGES, 2):
        assert not a.overlaps(b), (a, b)


def test_every_host_address_sits_in_its_segment():
    assert ipaddress.ip_address(lab.VIP) in lab.PUBLIC
    assert ipaddress.ip_address(lab.CLIENT_IP) in lab.PUBLIC
    assert ipaddress.ip_address(lab.DIP) in lab.PRIVATE
    assert ipaddress.ip_address(lab.GUEST_IP) in lab.GUEST_MGMT
    for _cname, mgmt_ip, _bridge, addr in lab.containers().values():
        assert ipaddress.ip_address(mgmt_ip) in lab.MGMT
        assert ipaddress.ip_interface(addr).network in (lab.PUBLIC, lab.PRIVATE)
    ips = [ipaddress.ip_interface(c[3]).ip for c in lab.containers().values()] + [lab.VIP, lab.DIP]
    assert len(set(map(str, ips))) == len(ips)


def test_most_realservers_still_fit(monkeypatch):
    monkeypatch.setattr(lab, "REALSERVERS", lab.MAX_REALSERVERS)
    for _cname, mgmt_ip, _bridge, addr in lab.containers().values():
        assert ipaddress.ip_address(mgmt_ip) in lab.MGMT
        assert ipaddress.ip_interface(addr).ip in lab.PRIVATE or ipaddress.ip_interface(addr).ip in lab.PUBLIC
        assert str(ipaddress.ip_interface(addr).ip) != lab.DIP


def _fake_host(monkeypatch, routes, registry_addr="203.0.113.80"):
    def fake_run(argv, check=True, **kw):
        argv = [str(a) for a in argv]
        out = json.dumps(routes) if argv[:2] == ["ip", "-j"] and "route" in argv else "[]"
        return subprocess.CompletedProcess(argv, 0 if "route" in argv else 1, out, "")

    monkeypatch.setattr(lab, "run", fake_run)
    monkeypatch.setattr(lab, "podman", lambda *a, **kw: subprocess.CompletedProcess(a, 1, "", ""))
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **kw: [(2, 1, 6, "", (registry_addr, 0))])


def test_plan_accepts_a_host_outside_the_range(monkeypatch):
    _fake_host(monkeypatch, [{"dst": "default", "dev": "eth0"}, {"dst": "192.0.2.0/24", "dev": "eth0"}])
    lab.check_address_plan()


@pytest.mark.parametrize("dst", ["198.51.100.0/24", "198.51.100.64/28", "198.51.100.0/25", "198.51.100.230"])
def test_plan_refuses_a_host_route_overlapping_a_lab_range(monkeypatch, dst):
    _fake_host(monkeypatch, [{"dst": "default", "dev": "eth0"}, {"dst": dst, "dev": "vpn0"}])
    with pytest.raises(lab.LabError, match=rf"overlaps the host route '{dst} dev vpn0'"):
        lab.check_address_plan()


def test_plan_ignores_the_labs_own_devices(monkeypatch):
    _fake_host(monkeypatch, [{"dst": "198.51.100.192/27", "dev": "lvsnat-pub"}])
    monkeypatch.setattr(lab, "lab_links", lambda: ["lvsnat-pub"])
    lab.check_address_plan()


def test_plan_refuses_a_registry_inside_a_lab_range(monkeypatch):
    _fake_host(monkeypatch, [], registry_addr="198.51.100.70")
    with pytest.raises(lab.LabError, match=r"resolves to 198\.51\.100\.70, inside the lab range 198\.51\.100\.64/26"):
        lab.check_address_plan()


def test_two_directors_have_their_own_ports_taps_files_and_fixed_addresses(tmp_path, monkeypatch):
    monkeypatch.setattr(lab, "DIRECTORS_FILE", tmp_path / "none")
    one, two = lab.guests(1), lab.guests(2)
    assert list(one) == ["director"] and list(two) == ["director1", "director2"]
    # One director: the lab as it always was (its taps, port, files and static VIP and DIP).
    d = one["director"]
    assert (d.tap_pub, d.tap_priv, d.ssh_port, d.public_ip, d.private_ip) == (
        lab.TAP_PUB, lab.TAP_PRIV, lab.SSH_PORT, lab.VIP, lab.DIP)
    gs = list(two.values())
    # Never two of a kind at once; the first HA director may reuse the lone director's SSH port (never both up).
    assert gs[0].ssh_port != gs[1].ssh_port
    for attr in ("tap_pub", "tap_priv", "mac", "pidfile", "disk", "console", "monitor", "qemu_name",
                 "public_ip", "private_ip"):
        values = [getattr(g, attr) for g in gs] + [getattr(d, attr)]
        assert len(set(map(str, values))) == 3, attr
    for g in gs:
        assert len(g.tap_pub) <= 15 and len(g.tap_priv) <= 15
        assert ipaddress.ip_address(g.public_ip) in lab.PUBLIC and ipaddress.ip_address(g.private_ip) in lab.PRIVATE
        assert g.public_ip not in (lab.VIP, lab.CLIENT_IP) and g.private_ip != lab.DIP
        assert g.private_ip not in [c[3].split("/")[0] for c in lab.containers().values()]


def test_the_image_gives_each_directors_nics_their_addresses_by_mac(tmp_path, monkeypatch):
    """customize_director's networkd files: the MAC each Guest's NICs get -> that guest's addresses."""
    net = tmp_path / "etc/systemd/network"
    net.mkdir(parents=True)
    monkeypatch.setattr(lab, "customize_common", lambda root: None)
    monkeypatch.setattr(lab, "run", lambda *a, **k: None)
    monkeypatch.setattr(lab.tempfile, "TemporaryDirectory", lambda: _EmptyDir(tmp_path / "wheels"))
    lab.customize_director(tmp_path)
    by_mac = {}
    for f in net.glob("*.network"):
        text = f.read_text()
        if "MACAddress=" in text:
            by_mac[text.split("MACAddress=")[1].split()[0]] = text.split("Address=")[-1].split()[0]
    monkeypatch.setattr(lab, "DIRECTORS_FILE", tmp_path / "none")
    for g in [*lab.guests(1).values(), *lab.guests(2).values()]:
        assert by_mac[f"{g.mac}:01"] == f"{g.public_ip}/{lab.PUBLIC.prefixlen}"
        assert by_mac[f"{g.mac}:02"] == f"{g.private_ip}/{lab.PRIVATE.prefixlen}"


class _EmptyDir:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.path.mkdir(exist_ok=True)
        return str(self.path)

    def __exit__(self, *exc):
        return False


def test_the_probes_gap_counts_a_stretch_without_probes():
    """The HA tests' service gap: only a success is evidence of service. A stretch where the client started no probe
    (its process starved) is a gap as long as one with failed probes; steady successes are no gap."""
    import threading

    import ha

    probe = object.__new__(ha.Probe)
    probe.period, probe.cond = 0.1, threading.Condition()
    steady = [{"t": round(0.1 * i, 1), "ok": True} for i in range(11)]
    probe.lines = steady + [{"t": 4.0 + 0.1 * i, "ok": True} for i in range(5)]
    assert probe.gap(2.0) == pytest.approx(2.9)
    failing = [{"t": 0.5 + 0.1 * i, "ok": False} for i in range(10)]
    probe.lines = steady[:5] + failing + [{"t": 1.5 + 0.1 * i, "ok": True} for i in range(5)]
    assert probe.gap(0.6) == pytest.approx(1.0)  # the successes at 0.4 and 1.5 around it, less one period
    probe.lines = steady
    assert probe.gap(0.55) == pytest.approx(0.0)
    # A connection started just after the kill that still succeeded (the old master not dead yet), then the outage:
    # the gap is the outage (the CI run of 2026-12-04 18:38 UTC recorded 0.0 s for a takeover of 3.3 s).
    probe.lines = steady + [{"t": 1.02, "ok": True}] + [{"t": 4.3 + 0.1 * i, "ok": True} for i in range(5)]
    assert probe.gap(1.01) == pytest.approx(3.18)
    # Only up to `until`: a later stretch (another event) is not this one's.
    probe.lines += [{"t": 9.0, "ok": True}]
    assert probe.gap(1.01, until=5.0) == pytest.approx(3.18)
    assert probe.gap(1.01) == pytest.approx(4.2)
