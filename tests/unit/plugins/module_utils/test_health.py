# SPDX-License-Identifier: GPL-3.0-or-later
"""_health: the rise/fall state machine (fake clock), the table wanted from declaration, admin weight and health, the
validation of checked services, and the config file lvs-nat-healthd reads."""
from __future__ import annotations

import ipaddress
import json

import pytest
from ansible.module_utils.parsing.convert_bool import boolean
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.module_utils import _health
from ansible_collections.lvs.nat.plugins.module_utils._health import (
    Tracker,
    check_services,
    config_document,
    load_config,
    render_config,
    service_name,
    state_health,
    wanted_services,
)
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import InvalidInput, _flag, plan_table

VIP = "198.51.100.10"
NAME = "TCP 198.51.100.10:80"


def service(check=None, real_servers=None, **extra):
    svc = dict(protocol="tcp", address=VIP, port=80, scheduler="wrr",
               real_servers=real_servers if real_servers is not None else [
                   dict(address="198.51.100.101", port=8080, weight=3),
                   dict(address="198.51.100.102", port=8080, weight=1),
                   dict(address="198.51.100.103", port=8080, weight=0)],
               check=dict(dict(type="http", interval=1, timeout=1, rise=2, fall=2), **(check or {})))
    svc.update(extra)
    return svc


def doc_of(*services):
    return config_document(check_services(list(services)))


def weights(entry):
    return dict(("%s:%d" % (d["address"], d["port"]), d["weight"]) for d in entry["real_servers"])


def health(**states):
    """health for the default service: a101=True and the like (missing: not in the map)."""
    return dict(((NAME, "198.51.100.%s" % k[1:], 8080), v) for k, v in states.items())


# ---------------------------------------------------------------- the state machine

def reference(rise, fall, healthy, results):
    """The health after each result, from runs of equal results: healthy turns True on the rise-th success in a row
    while unhealthy, False on the fall-th failure in a row while healthy."""
    out, run_ok, run_len = [], None, 0
    for ok in results:
        run_len = run_len + 1 if ok == run_ok else 1
        run_ok = ok
        if ok and not healthy and run_len >= rise:
            healthy = True
        elif not ok and healthy and run_len >= fall:
            healthy = False
        out.append(healthy)
    return out


@given(rise=st.integers(1, 6), fall=st.integers(1, 6), start=st.booleans(), results=st.lists(st.booleans(), max_size=60))
def test_tracker_flips_exactly_after_rise_successes_or_fall_failures_in_a_row(rise, fall, start, results):
    tracker = Tracker(rise, fall, start, since=0.0)
    expected = reference(rise, fall, start, results)
    before, flips = start, []
    for t, ok in enumerate(results, 1):  # the fake clock: check t happens at t seconds
        flipped = tracker.observe(ok, "ok" if ok else "connection refused", float(t))
        assert flipped == (tracker.healthy != before)
        assert tracker.healthy == expected[t - 1]
        if flipped:
            flips.append(t)
        before = tracker.healthy
    assert tracker.checks == len(results)
    assert tracker.since == (float(flips[-1]) if flips else 0.0)
    if results:
        assert tracker.last is results[-1]
        assert tracker.reason == ("ok" if results[-1] else "connection refused")


def test_tracker_counts_for_the_log_line():
    t = Tracker(2, 3, True, since=0)
    assert [t.observe(False, "status 503", n) for n in (1, 2, 3)] == [False, False, True]
    assert (t.healthy, t.failures, t.since, t.reason) == (False, 3, 3, "status 503")
    assert [t.observe(True, "ok", n) for n in (4, 5)] == [False, True]
    assert (t.healthy, t.successes, t.since, t.checks) == (True, 2, 5, 5)


# ---------------------------------------------------------------- the wanted table

def test_healthy_real_servers_keep_their_weight_and_a_drain_stays_at_zero():
    entry, = wanted_services(doc_of(service()), health(a101=True, a102=True, a103=True))
    assert weights(entry) == {"198.51.100.101:8080": 3, "198.51.100.102:8080": 1, "198.51.100.103:8080": 0}
    assert (entry["address"], entry["port"], entry["scheduler"]) == (VIP, 80, "wrr")
    assert "check" not in entry and "sorry_server" not in entry


def test_unhealthy_is_left_out_and_drain_wins_over_health():
    # a103 is declared at weight 0: kept (existing connections finish) whether healthy or not.
    entry, = wanted_services(doc_of(service()), health(a101=False, a102=True, a103=False))
    assert weights(entry) == {"198.51.100.102:8080": 1, "198.51.100.103:8080": 0}


def test_a_real_server_missing_from_health_is_unhealthy():
    entry, = wanted_services(doc_of(service()), health(a102=True))
    assert weights(entry) == {"198.51.100.102:8080": 1, "198.51.100.103:8080": 0}


def test_quiesce_keeps_an_unhealthy_real_server_at_weight_0():
    entry, = wanted_services(doc_of(service(check=dict(on_failure="quiesce"))), health(a101=False, a102=True))
    assert weights(entry) == {"198.51.100.101:8080": 0, "198.51.100.102:8080": 1, "198.51.100.103:8080": 0}


def test_sorry_server_takes_over_below_quorum_and_leaves_when_it_is_met():
    doc = doc_of(service(sorry_server="198.51.100.200:8080", quorum=2))
    sorry_only = {"198.51.100.200:8080": 1, "198.51.100.103:8080": 0}  # the drain stays
    assert weights(wanted_services(doc, health())[0]) == sorry_only
    # one healthy real server is fewer than quorum 2: the sorry server instead of it
    assert weights(wanted_services(doc, health(a101=True))[0]) == sorry_only
    assert weights(wanted_services(doc, health(a101=True, a102=True))[0]) == {
        "198.51.100.101:8080": 3, "198.51.100.102:8080": 1, "198.51.100.103:8080": 0}
    # a healthy drain does not count for the quorum
    assert weights(wanted_services(doc, health(a101=True, a103=True))[0]) == sorry_only


def test_sorry_server_with_quiesce_keeps_the_healthy_ones_at_weight_0():
    doc = doc_of(service(check=dict(on_failure="quiesce"), sorry_server="198.51.100.200", quorum=2))
    assert weights(wanted_services(doc, health(a101=True))[0]) == {
        "198.51.100.101:8080": 0, "198.51.100.102:8080": 0, "198.51.100.103:8080": 0, "198.51.100.200:8080": 1}


def test_sorry_server_default_port_and_ipv6():
    svc = service(real_servers=["[2001:db8::11]:8080", "[2001:db8::12]:8080"], address="2001:db8::10",
                  sorry_server="[2001:db8::99]")
    checked, = check_services([svc])
    assert checked["sorry_server"] == {"address": "2001:db8::99", "port": 8080}  # the real servers' shared port
    mixed = service(real_servers=["198.51.100.101:8080", "198.51.100.102:8081"], sorry_server="198.51.100.200")
    assert check_services([mixed])[0]["sorry_server"] == {"address": "198.51.100.200", "port": 80}


def test_wanted_entries_plan_against_the_kernel():
    doc = doc_of(service())
    current = [dict(family="ipv4", fwmark=0, protocol="tcp", address=VIP, port=80, scheduler="wrr",
                    scheduler_flags=[], persistence_timeout=0, persistence_prefix=32, one_packet=False,
                    real_servers=[dict(address="198.51.100.%d" % n, port=8080, forwarding="masq", weight=w,
                                       upper_threshold=0, lower_threshold=0) for n, w in ((101, 3), (102, 1), (103, 0))])]
    ops, _after, _removed = plan_table(current, wanted_services(doc, health(a101=True, a102=True)),
                                       purge_services=False, purge_real_servers=True)
    assert ops == []
    ops, _after, _removed = plan_table(current, wanted_services(doc, health(a101=True)),
                                       purge_services=False, purge_real_servers=True)
    assert [(op[0], op[2]["address"]) for op in ops] == [(7, "198.51.100.102")]  # CMD_DEL_DEST


def test_state_health_reads_the_state_document():
    state = {"services": [{"service": NAME, "real_servers": [
        {"address": "198.51.100.101", "port": 8080, "healthy": True},
        {"address": "198.51.100.102", "port": 8080, "healthy": False}]}]}
    assert state_health(state) == health(a101=True, a102=False)
    assert state_health(None) == {}


def test_service_names():
    assert service_name(check_services([service()])[0]) == NAME
    fwm = check_services([dict(fwmark=7, real_servers=["198.51.100.101"], check=dict(type="exec", command="/bin/true"))])
    assert service_name(fwm[0]) == "FWM 7 (ipv4)"
    v6 = check_services([service(address="2001:db8::10", real_servers=["[2001:db8::11]:8080"])])
    assert service_name(v6[0]) == "TCP [2001:db8::10]:80"


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("change, message", [
    (dict(check=dict(interval=0)), "services[0].check.interval=0 is out of range"),
    (dict(check=dict(fall=0)), "services[0].check.fall=0 is out of range"),
    (dict(check=dict(rise=0)), "services[0].check.rise=0 is out of range"),
    (dict(check=dict(rise=True)), "services[0].check.rise=True is not a whole number (ASCII digits)"),
    (dict(check=dict(fall="2 ")), "services[0].check.fall='2 ' is not a whole number (ASCII digits)"),
    (dict(check=dict(interval=1, timeout=2)), "services[0].check.timeout=2 exceeds services[0].check.interval=1"),
    (dict(check=dict(interval=1, timeout=1.5)), "services[0].check.timeout=1.5 exceeds"),
    (dict(check=dict(type="icmp")), "services[0].check.type='icmp' is not one of"),
    (dict(check=dict(path="health")), "services[0].check.path='health' must start with /"),
    (dict(check=dict(path="/a b")), "services[0].check.path='/a b' must start with /"),
    (dict(check=dict(type="exec", command="bin/check")), "services[0].check.command[0]='bin/check' is not an absolute path"),
    (dict(check=dict(type="exec", command=["check", "-x"])), "services[0].check.command[0]='check' is not an absolute"),
    (dict(check=dict(type="exec")), "services[0].check.command is required with type=exec"),
    (dict(check=dict(expect_status=99)), "services[0].check.expect_status=99 is out of range"),
    (dict(check=dict(expect_status=[200, 600])), "services[0].check.expect_status[1]=600 is out of range"),
    (dict(check=dict(expect_body="(")), "services[0].check.expect_body='(' is not a valid regular expression"),
    (dict(check=dict(host="a b")), "services[0].check.host='a b' is neither"),
    (dict(check=dict(on_failure="drop")), "services[0].check.on_failure='drop' is not one of"),
    (dict(check=dict(port=0)), "services[0].check.port=0 is out of range"),
    (dict(check=dict(interval=True)), "services[0].check.interval=True is not a number"),
    (dict(check=dict(interval=float("nan"))), "services[0].check.interval=nan is not a number"),
    (dict(check=dict(type="tcp", path="/x")), "services[0].check.path='/x' does not apply to type=tcp"),
    (dict(check=dict(type="exec", command="/bin/true", port=80)), "services[0].check.port=80 does not apply to type=exec"),
    (dict(check=dict(colour="red")), "services[0].check: unknown option(s) 'colour'"),
    (dict(check=None), "services[0].check is required"),
    (dict(check="tcp"), "services[0].check='tcp' is not a mapping"),
    (dict(sorry_server="nope"), "services[0].sorry_server='nope' is not an address"),
    (dict(sorry_server="2001:db8::1"), "services[0].sorry_server='2001:db8::1' is not an address"),
    (dict(sorry_server="[2001:db8::1]"), "services[0].sorry_server address=2001:db8::1 is ipv6"),
    (dict(sorry_server="198.51.100.101:8080"), "services[0].sorry_server='198.51.100.101:8080' is also a real server"),
    (dict(sorry_server="198.51.100.200:70000"), "services[0].sorry_server port=70000 is out of range"),
    (dict(quorum=0), "services[0].quorum=0 is out of range"),
    (dict(quorum=4), "services[0].quorum=4 is out of range: it must be between 1 and 3"),
    (dict(protocol="udp", check=dict(type="tcp")), "services[0].check.port is required: the service is UDP"),
    (dict(protocol="udp"), "services[0].check.port is required: the service is UDP"),
    (dict(real_servers=None), "services[0].real_servers is required"),
    (dict(real_servers=[]), "services[0].real_servers is empty"),
    (dict(real_servers=["nope"]), "services[0]: real_servers[0]='nope' is neither"),
    (dict(address="nope"), "services[0]: address='nope' is not an IPv4 or IPv6 address"),
    (dict(weight=3), "services[0]: unknown option(s) 'weight'"),
])
def test_bad_declarations_are_refused_naming_the_field(change, message):
    svc = service()
    if "check" in change and isinstance(change["check"], dict):
        svc["check"].update(change.pop("check"))
    svc.update(change)
    if svc.get("check") is None:
        svc.pop("check")
    with pytest.raises(InvalidInput) as e:
        check_services([svc])
    assert message in str(e.value)


def test_the_index_is_that_of_the_bad_service():
    good = service()
    bad = service(address="198.51.100.11")
    bad["check"]["interval"] = 0
    with pytest.raises(InvalidInput, match=r"^services\[1\]\.check\.interval=0 "):
        check_services([good, bad])
    with pytest.raises(InvalidInput, match=r"services\[1\]: TCP 198.51.100.10:80 is listed twice"):
        check_services([good, service()])


@pytest.mark.parametrize("check", [
    dict(type="tcp", interval=1, timeout=1),  # the lab settings: timeout == interval is allowed
    dict(type="http", interval="0.5", timeout="0.25", rise="1", fall="5", expect_status=[503, 200, 200]),
    dict(type="https", host="www.example.com", path="/health?full=1", expect_body="^OK$"),
    dict(type="exec", command="/usr/local/bin/check"),
])
def test_good_checks_are_normalised_with_every_key(check):
    checked, = check_services([service(check=check)])
    assert set(checked["check"]) == set(_health.CHECK_DEFAULTS)
    assert checked["check"]["timeout"] <= checked["check"]["interval"]
    assert checked["quorum"] == 1 and checked["sorry_server"] is None
    assert check_services([checked]) == [checked]  # its own output is accepted as it is


def test_numbers_are_normalised():
    c = check_services([service(check=dict(type="http", interval="0.5", timeout="0.25", rise="1",
                                           expect_status=[503, 200, 200]))])[0]["check"]
    assert (c["interval"], c["timeout"], c["rise"], c["expect_status"]) == (0.5, 0.25, 1, [200, 503])
    assert check_services([service(check=dict(interval=2.0))])[0]["check"]["interval"] == 2


def test_udp_and_fwmark_services_with_a_port_or_exec():
    udp = service(protocol="udp", port=53, real_servers=["198.51.100.101:53"], check=dict(type="tcp", port=5353))
    assert check_services([udp])[0]["check"]["port"] == 5353
    exe = service(protocol="udp", port=53, real_servers=["198.51.100.101:53"],
                  check=dict(type="exec", command=["/usr/bin/dig", "@$LVS_NAT_RS_ADDRESS"]))
    assert check_services([exe])[0]["check"]["command"] == ["/usr/bin/dig", "@$LVS_NAT_RS_ADDRESS"]
    fwm = dict(fwmark=7, real_servers=["198.51.100.101"], check=dict(type="tcp"))
    with pytest.raises(InvalidInput, match=r"services\[0\]\.check\.port is required: the service is a fwmark service"):
        check_services([fwm])


# ---------------------------------------------------------------- the config file

def test_render_load_round_trip_and_deterministic_generation():
    services = [service(sorry_server="198.51.100.200"), service(address="198.51.100.11", check=dict(type="tcp"))]
    doc = doc_of(*services)
    text = render_config(doc)
    assert text == render_config(doc_of(*services))  # the same declaration, the same text
    assert load_config(text) == doc
    assert json.loads(text)["generation"] == doc["generation"]
    assert len(doc["generation"]) == 16 and int(doc["generation"], 16) >= 0
    assert "Managed by lvs.nat" in "\n".join(text.split("\n")[:5])  # what _persist.Owned looks for
    changed = doc_of(services[0], service(address="198.51.100.11", check=dict(type="tcp", fall=5)))
    assert changed["generation"] != doc["generation"]
    # the order of keys as given does not matter
    reordered = [dict(reversed(list(s.items()))) for s in services]
    assert doc_of(*reordered)["generation"] == doc["generation"]


@pytest.mark.parametrize("text, message", [
    ("{", "is not JSON"),
    ('{"version": 2, "services": []}', "not version 1"),
    ('[]', "not version 1"),
])
def test_load_config_refuses_what_is_not_a_config(text, message):
    with pytest.raises(InvalidInput, match=message):
        load_config(text)


def test_load_config_revalidates_and_checks_the_generation():
    doc = doc_of(service())
    bad = json.loads(render_config(doc))
    bad["services"][0]["check"]["interval"] = 0
    with pytest.raises(InvalidInput, match=r"services\[0\]\.check\.interval=0"):
        load_config(json.dumps(bad))
    edited = json.loads(render_config(doc))
    edited["services"][0]["check"]["fall"] = 5
    with pytest.raises(InvalidInput, match="does not match its services"):
        load_config(json.dumps(edited))


def test_read_state(tmp_path):
    assert _health.read_state(str(tmp_path / "none.json")) is None
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(_health.LvsNatError, match="not JSON"):
        _health.read_state(str(tmp_path / "bad.json"))
    (tmp_path / "ok.json").write_text('{"version": 1, "services": []}')
    assert _health.read_state(str(tmp_path / "ok.json")) == {"version": 1, "services": []}


# Arbitrary text where the declaration takes text: refused naming the field, or back from the file exactly.
TEXT = st.text(max_size=200) | st.text(alphabet="/{}\"'#;%\\\n\r\t $[]:.0123456789abcdef", max_size=50) | \
    st.text(max_size=10000)


@given(field=st.sampled_from(["path", "host", "expect_body", "command", "sorry_server"]), value=TEXT)
def test_any_text_is_refused_naming_the_field_or_round_trips(field, value):
    check = dict(type="exec") if field == "command" else dict(type="http")
    svc = service(check=check)
    if field == "sorry_server":
        svc["sorry_server"] = value
    else:
        svc["check"][field] = value
    try:
        doc = doc_of(svc)
    except InvalidInput as e:
        assert str(e).startswith("services[0].%s%s" % ("" if field == "sorry_server" else "check.", field))
        return
    back = load_config(render_config(doc))["services"][0]
    if field == "sorry_server":
        assert back["sorry_server"]["address"] in value
    elif field == "command":
        assert back["check"]["command"] == [value]
    elif field == "host":
        assert back["check"]["host"] == value or ipaddress.IPv6Address(back["check"]["host"]) == ipaddress.IPv6Address(value)
    else:
        assert back["check"][field] == value


# ---------------------------------------------------------------- the planner's boolean, without ansible

@given(st.one_of(st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=8),
                 st.sampled_from(["yes", "No", " ON ", "off\n", "TRUE", "f", "Y", "1", "0", "1.0", "t"])))
def test_ipvs_plan_boolean_accepts_what_ansible_accepts(value):
    try:
        expected = boolean(value, strict=True)
    except TypeError:
        expected = "refused"
    try:
        got = _flag("one_packet", value)
    except InvalidInput as e:
        assert str(e).startswith("one_packet=")
        got = "refused"
    assert got == expected
