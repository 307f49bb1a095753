# SPDX-License-Identifier: GPL-3.0-or-later
"""_sysctl's validators and sysctl_forwarding's files: full matches, ASCII only; what is written parses back."""
from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.lvs.nat.plugins.module_utils import _persist, _sysctl
from ansible_collections.lvs.nat.plugins.modules import sysctl_forwarding

NASTY = st.one_of(
    st.text(max_size=10000),
    st.text(alphabet=st.sampled_from(list("net.ipv4_forward/:-019 \t\n\r=#;%'\"{}\\é١")), max_size=60),
    st.sampled_from(["net.ipv4.ip_forward\n", "net.ipv4.tcp_tw_reuse\n", "net.ipv4.conf.eth0/100.rp_filter",
                     "net.ipv4.conf.eth0/../x", "net.ipv4.a = 1\nkernel.panic", "net.ipv4.x\x00", "net..x"]),
)
VALUES = st.one_of(NASTY, st.integers(), st.booleans(),
                   st.sampled_from(["1\n", "1024 65000", "1024\t65000", "١", "1;reboot", " 1 ", "1\nnet.x = 2"]))


def parse_sysctl_file(text):
    """key -> value as systemd-sysctl reads a sysctl.d file: `key = value` lines, '#' and ';' comments."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep, line
        out[key.strip()] = value.strip()
    return out


@given(key=NASTY, value=VALUES)
def test_a_key_and_value_are_refused_naming_the_key_or_written_as_given(key, value):
    try:
        text = _sysctl.check_key(key, value)
    except _sysctl.SysctlError as e:
        assert str(e).startswith((key, repr(key)))
        return
    assert key.isascii() and key.isprintable() and key.startswith("net.")
    # The path under /proc/sys stays there, one name per dot.
    assert os.path.normpath(_sysctl.proc_path(key, "/root")) == _sysctl.proc_path(key, "/root")
    assert _sysctl.proc_path(key, "/root").startswith("/root/net/")
    sysctl, _load = sysctl_forwarding.file_texts({key: text}, [])
    assert parse_sysctl_file(sysctl) == {key: text}
    assert text == _sysctl.normalise_value(text)


@given(VALUES)
def test_a_value_is_refused_or_ascii_words_separated_by_one_space(value):
    try:
        text = _sysctl.check_key("net.ipv4.tcp_tw_reuse", value)
    except _sysctl.SysctlError as e:
        assert str(e).startswith("net.ipv4.tcp_tw_reuse: value ")
        return
    assert text and text.isascii() and text == " ".join(text.split(" ")) and "\n" not in text
    assert text.split() == ("1" if value is True else "0" if value is False else str(value)).split()


@pytest.mark.parametrize("key", ["net.ipv4.ip_forward\n", "net.ipv4.tcp_tw_reuse\n", "net.ipv4.tcp_tw_reuse\r",
                                 "net.ipv\u0664.tcp_tw_reuse", "net.ipv4.conf.eth0/../rp_filter", "net..x", "kernel.panic"])
def test_keys_refused(key):
    with pytest.raises(_sysctl.SysctlError) as e:
        _sysctl.check_key(key, 1)
    assert "not a net.* kernel parameter" in str(e.value)


@pytest.mark.parametrize("value", ["1\n", "1\r", "\u0661", "1;reboot", "1\nnet.ipv4.ip_forward = 1", "", None, [1]])
def test_values_refused(value):
    with pytest.raises(_sysctl.SysctlError) as e:
        _sysctl.check_key("net.ipv4.tcp_tw_reuse", value)
    assert str(e.value).startswith("net.ipv4.tcp_tw_reuse: value %r is not" % (value,))


@pytest.mark.parametrize("value, text", [(1, "1"), (True, "1"), (False, "0"), ("1024 65000", "1024 65000"),
                                         ("1024\t65000", "1024 65000"), (" 2 ", "2"), (-1, "-1")])
def test_values_normalised(value, text):
    assert _sysctl.check_key("net.ipv4.ip_local_port_range", value) == text


def test_the_kernel_values_normalise_like_the_user_ones():
    assert _sysctl.normalise_value("1024\t65000\n") == _sysctl.check_key("net.ipv4.ip_local_port_range", "1024 65000")


def test_forwarding_key_with_a_newline_does_not_slip_past_the_guard():
    params = dict(ipv4_forwarding=None, ipv6_forwarding=None, settings={"net.ipv4.ip_forward\n": 1})
    with pytest.raises(_sysctl.SysctlError) as e:
        sysctl_forwarding.wanted_values(params)
    assert str(e.value).startswith("'net.ipv4.ip_forward\\n': not a net.* kernel parameter")


def test_forwarding_key_in_settings_is_refused():
    params = dict(ipv4_forwarding=None, ipv6_forwarding=None, settings={"net.ipv4.ip_forward": 1})
    with pytest.raises(_sysctl.SysctlError) as e:
        sysctl_forwarding.wanted_values(params)
    assert "set it with ipv4_forwarding" in str(e.value)


# sysctl_forwarding's owned files


def params(tmp_path, **kw):
    p = dict(state="present", ipv4_forwarding=None, ipv6_forwarding=None, settings={}, runtime=False, persistent=True,
             path=str(tmp_path / "sysctl.d" / "90-lvs-nat.conf"), modules_load_path=str(tmp_path / "load.conf"))
    p.update(kw)
    return p


class FakeModule(object):
    def __init__(self, p, check_mode=False):
        self.params, self.check_mode, self._diff = p, check_mode, True

    def atomic_move(self, src, dest):
        os.rename(src, dest)


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(_persist, "LOCK_DIRS", (str(tmp_path),))


@pytest.mark.parametrize("path, load", [
    ("/etc/sysctl.d/90-lvs-nat.conf", "/etc/modules-load.d/90-lvs-nat.conf"),
    ("/etc/sysctl.d/91-other.conf", "/etc/modules-load.d/91-other.conf"),
])
def test_modules_load_path_defaults_to_paths_name(path, load):
    assert sysctl_forwarding.owned_paths(dict(path=path, modules_load_path=None)) == \
        dict(path=path, modules_load_path=load)
    assert sysctl_forwarding.owned_paths(dict(path=path, modules_load_path="/x/y.conf"))["modules_load_path"] == \
        "/x/y.conf"


def test_two_paths_two_modules_load_files(tmp_path, monkeypatch):
    # Release 0.1.0: both tasks shared one modules-load file; the second removed what the first needed.
    monkeypatch.setattr(sysctl_forwarding, "MODULES_LOAD_DIR", str(tmp_path / "modules-load.d"))
    first = params(tmp_path, settings={"net.ipv4.vs.conntrack": 1}, modules_load_path=None)
    second = params(tmp_path, settings={"net.ipv4.tcp_tw_reuse": 1}, modules_load_path=None,
                    path=str(tmp_path / "sysctl.d" / "91-other.conf"))
    sysctl_forwarding.run(FakeModule(first))
    sysctl_forwarding.run(FakeModule(second))
    assert (tmp_path / "modules-load.d" / "90-lvs-nat.conf").read_text().splitlines()[1:] == ["ip_vs"]
    assert not (tmp_path / "modules-load.d" / "91-other.conf").exists()


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("option", ["path", "modules_load_path"])
def test_a_foreign_file_is_refused_before_any_change(tmp_path, option, check_mode):
    p = params(tmp_path, settings={"net.ipv4.vs.conntrack": 1})
    os.makedirs(os.path.dirname(p[option]), exist_ok=True)
    with open(p[option], "w") as fh:
        fh.write("net.ipv4.tcp_syncookies = 0\n")
    with pytest.raises(_persist.PersistError) as e:
        sysctl_forwarding.run(FakeModule(p, check_mode))
    assert str(e.value).startswith("%s: %s exists and is not managed by lvs.nat" % (option, p[option]))
    assert open(p[option]).read() == "net.ipv4.tcp_syncookies = 0\n"
    other = "modules_load_path" if option == "path" else "path"
    assert not os.path.exists(p[other])


def test_a_foreign_file_is_refused_when_not_persisting_too(tmp_path):
    # persistent false removes the owned files: a file that is not ours is not removed, and the task says so.
    p = params(tmp_path, persistent=False, runtime=False)
    os.makedirs(os.path.dirname(p["path"]))
    with open(p["path"], "w") as fh:
        fh.write("foreign\n")
    with pytest.raises(_persist.PersistError):
        sysctl_forwarding.run(FakeModule(p))
    assert open(p["path"]).read() == "foreign\n"


def test_own_files_are_replaced_and_removed(tmp_path):
    p = params(tmp_path, settings={"net.ipv4.vs.conntrack": 1})
    assert sysctl_forwarding.run(FakeModule(p))["changed"]
    assert open(p["path"]).read().startswith(sysctl_forwarding.HEADER)
    assert sysctl_forwarding.run(FakeModule(params(tmp_path)))["changed"]
    assert not os.path.exists(p["path"]) and not os.path.exists(p["modules_load_path"])


def test_the_run_holds_the_lock(tmp_path):
    with _persist.lock("sysctl_forwarding"):
        with pytest.raises(_persist.PersistError) as e:
            with pytest.MonkeyPatch.context() as m:
                m.setattr(_persist, "LOCK_TIMEOUT", 0.2)
                sysctl_forwarding.run(FakeModule(params(tmp_path, settings={"net.ipv4.tcp_tw_reuse": 1})))
    assert "Another run of lvs.nat.sysctl_forwarding" in str(e.value)
    assert not os.path.exists(params(tmp_path)["path"])


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("kw", [dict(state="absent"), dict(persistent=False)])
def test_absent_or_not_persistent_removes_the_owned_files(tmp_path, kw, check_mode):
    p = params(tmp_path, settings={"net.ipv4.vs.conntrack": 1})
    sysctl_forwarding.run(FakeModule(p))
    written = open(p["path"]).read()
    r = sysctl_forwarding.run(FakeModule(params(tmp_path, settings={"net.ipv4.vs.conntrack": 1}, **kw), check_mode))
    assert r["changed"] and [d["after"] for d in r["diff"][1:]] == ["", ""]
    assert r["diff"][1]["before"] == written
    assert os.path.exists(p["path"]) == check_mode and os.path.exists(p["modules_load_path"]) == check_mode
