# SPDX-License-Identifier: GPL-3.0-or-later
"""The IPVS netlink codec: what we send is what the kernel would read back to us."""
from __future__ import annotations

import errno
import socket
import struct
import types

import pytest

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs as I
from ansible_collections.lvs.nat.plugins.module_utils import _ipvs_names as N
from ansible_collections.lvs.nat.plugins.module_utils import _kmod as K


def svc(**kw):
    base = dict(family="ipv4", protocol="tcp", address="198.51.100.10", port=80, fwmark=0, scheduler="wrr",
                scheduler_flags=[], persistence_timeout=0, persistence_prefix=32, one_packet=False)
    base.update(kw)
    return base


def roundtrip_service(s):
    """Encode as a request, then decode the payload the way a kernel dump reply is decoded."""
    outer = I.parse_attrs(I.encode_service(s))
    attrs = I.parse_attrs(outer[I.CMD_ATTR_SERVICE])
    return I.decode_service(attrs)


@pytest.mark.parametrize("s", [
    svc(),
    svc(scheduler="sh", scheduler_flags=["sh-fallback", "sh-port"], persistence_timeout=300, persistence_prefix=24),
    svc(protocol="udp", port=53, one_packet=True, scheduler="rr"),
    svc(family="ipv6", address="2001:db8::10", persistence_timeout=60, persistence_prefix=64),
    svc(protocol=None, address=None, port=None, fwmark=4294967295, scheduler="mh", scheduler_flags=["mh-port"]),
    svc(protocol="sctp", port=0, persistence_timeout=1),
])
def test_service_roundtrip(s):
    back = roundtrip_service(s)
    assert back.pop("stats") == dict.fromkeys(I.STAT_NAMES, 0)
    assert back == s


def test_key_only_service_carries_no_settings():
    attrs = I.parse_attrs(I.parse_attrs(I.encode_service(svc(), key_only=True))[I.CMD_ATTR_SERVICE])
    assert set(attrs) == {I.SVC_AF, I.SVC_PROTOCOL, I.SVC_ADDR, I.SVC_PORT}


def test_dest_roundtrip_and_masq_is_zero():
    d = dict(address="198.51.100.101", port=8080, forwarding="masq", weight=0, upper_threshold=100, lower_threshold=10)
    attrs = I.parse_attrs(I.parse_attrs(I.encode_dest(d))[I.CMD_ATTR_DEST])
    assert struct.unpack("=I", attrs[I.DEST_FWD])[0] == 0  # pyroute2's IPVSDest defaults to 3 (direct routing)
    back = I.decode_dest(attrs)
    for k in d:
        assert back[k] == d[k]


def kernel_dest_reply(d, family=socket.AF_INET):
    """The body of a CMD_GET_DEST dump reply as the kernel fills it (ip_vs_genl_fill_dest, 6.1): the settings, the
    connection counts, the address family, then both statistics blocks."""
    stats = b"".join(I._nla(i, struct.pack("=Q", 1000 + i)) for i in range(1, 11))
    attrs = (I._nla(I.DEST_ADDR, I.pack_addr(d["address"])) + I._nla(I.DEST_PORT, struct.pack(">H", d["port"]))
             + I._nla(I.DEST_FWD, struct.pack("=I", I.FORWARDING[d["forwarding"]]))
             + I._nla(I.DEST_WEIGHT, struct.pack("=I", d["weight"]))
             + I._nla(I.DEST_U_THRESH, struct.pack("=I", d["upper_threshold"]))
             + I._nla(I.DEST_L_THRESH, struct.pack("=I", d["lower_threshold"]))
             + I._nla(I.DEST_ACTIVE, struct.pack("=I", 7)) + I._nla(I.DEST_INACT, struct.pack("=I", 8))
             + I._nla(I.DEST_PERSIST, struct.pack("=I", 9))
             + I._nla(I.DEST_AF, struct.pack("=H", family))
             + I._nla(I.DEST_STATS | 0x8000, stats) + I._nla(I.DEST_STATS64 | 0x8000, stats))
    return struct.pack("=BBH", N.CMD_NEW_DEST, 1, 0) + I._nla(I.CMD_ATTR_DEST | 0x8000, attrs)


@pytest.mark.parametrize("d, family", [
    (dict(address="198.51.100.101", port=8080, forwarding="masq", weight=3, upper_threshold=100, lower_threshold=10),
     socket.AF_INET),
    (dict(address="2001:db8::101", port=0, forwarding="route", weight=0, upper_threshold=0, lower_threshold=0),
     socket.AF_INET6),
    (dict(address="198.51.100.102", port=65535, forwarding="tunnel", weight=65535, upper_threshold=2 ** 31 - 1,
          lower_threshold=1), socket.AF_INET),
])
def test_the_reconcile_decoder_reads_the_settings_the_full_decoder_reads(d, family):
    body = kernel_dest_reply(d, family)
    lean = I.decode_dest_config(body)
    full = I.decode_dest(I.parse_attrs(I.parse_attrs(body, 4)[I.CMD_ATTR_DEST]))
    assert lean == d
    assert dict((k, full[k]) for k in lean) == lean and full["active_conns"] == 7


def test_the_reconcile_decoder_learns_the_kernels_layout_and_reads_other_layouts_too(monkeypatch):
    """The first reply is read attribute by attribute and teaches the layout; the next ones of that layout are read
    with it (here: a reply read with a wrong learned layout would not give these values); a reply laid out otherwise
    (a kernel with tunnel attributes among the settings) is still read right."""
    monkeypatch.setattr(I, "_DEST_LAYOUTS", [])
    a = dict(address="198.51.100.101", port=80, forwarding="masq", weight=3, upper_threshold=10, lower_threshold=5)
    b = dict(address="2001:db8::102", port=8080, forwarding="tunnel", weight=0, upper_threshold=0, lower_threshold=0)
    assert I.decode_dest_config(kernel_dest_reply(a)) == a
    assert len(I._DEST_LAYOUTS) == 1
    layout = I._DEST_LAYOUTS[0]
    body = kernel_dest_reply(b, socket.AF_INET6)
    assert layout.read(body) == b  # the learned layout reads it
    assert I.decode_dest_config(body) == b
    tunnel = kernel_dest_reply(a)
    # IPVS_DEST_ATTR_TUN_TYPE (13) among the settings, as newer kernels send: the learned layout does not fit.
    head, rest = tunnel[:8], tunnel[8:]
    extra = I._nla(13, b"\0")
    tunnel = head[:4] + struct.pack("=HH", struct.unpack_from("=H", head, 4)[0] + len(extra), I.CMD_ATTR_DEST | 0x8000) + \
        rest[:20] + extra + rest[20:]
    assert layout.read(tunnel) is None
    assert I.decode_dest_config(tunnel) == a and len(I._DEST_LAYOUTS) == 2


def test_the_reconcile_decoder_names_a_reply_without_the_real_server():
    with pytest.raises(KeyError):
        I.decode_dest_config(struct.pack("=BBH", N.CMD_NEW_DEST, 1, 0) + I._nla(I.CMD_ATTR_SERVICE, b""))
    with pytest.raises(KeyError):
        I.decode_dest_config(struct.pack("=BBH", N.CMD_NEW_DEST, 1, 0) + I._nla(I.CMD_ATTR_DEST, I._nla(I.DEST_PORT, b"\0\x50")))


def test_wire_formats_the_kernel_expects():
    # Port is big-endian; the address is a 16-byte nf_inet_addr; IPv4 netmask in network order,
    # IPv6 "netmask" is the prefix length as a native integer.
    attrs = I.parse_attrs(I.parse_attrs(I.encode_service(svc(persistence_timeout=5, persistence_prefix=24)))[1])
    assert attrs[I.SVC_PORT] == b"\x00\x50"
    assert attrs[I.SVC_ADDR] == socket.inet_aton("198.51.100.10") + b"\0" * 12
    assert attrs[I.SVC_NETMASK] == b"\xff\xff\xff\x00"
    assert struct.unpack("=II", attrs[I.SVC_FLAGS]) == (N.SVC_F_PERSISTENT, 0xFFFFFFFF)
    assert I.pack_netmask("ipv6", 64) == struct.pack("=I", 64)
    assert I.unpack_netmask(I.pack_netmask("ipv4", 0 + 1), socket.AF_INET) == 1


def test_attributes_are_padded_to_four_bytes():
    blob = I._nla(6, b"wrr\0") + I._nla(6, b"lblcr\0") + I._nla(2, b"\x06\x00")
    assert len(blob) % 4 == 0
    assert I.parse_attrs(blob)[6] == b"lblcr\0"


def test_descriptions_name_the_object():
    s = svc()
    d = dict(address="198.51.100.101", port=8080)
    assert N.describe_op((N.CMD_NEW_DEST, s, d)) == "add real server 198.51.100.101:8080 to TCP 198.51.100.10:80"
    assert N.describe_op((N.CMD_DEL_DEST, s, d)) == "delete real server 198.51.100.101:8080 from TCP 198.51.100.10:80"
    assert N.describe_op((N.CMD_SET_SERVICE, svc(family="ipv6", address="2001:db8::1"), None)) == \
        "edit service TCP [2001:db8::1]:80"
    assert N.describe_failure((N.CMD_NEW_DEST, s, d), 3) == \
        "Failed to add real server 198.51.100.101:8080 to TCP 198.51.100.10:80: No such service (errno 3)"
    assert "FWM 7 (ipv4)" in N.describe_op((N.CMD_DEL_SERVICE, svc(fwmark=7), None))


def test_modprobe_reports_the_tool_failure(monkeypatch):
    class Module:
        def get_bin_path(self, name, opt_dirs=()):
            return "/usr/sbin/" + name

        def run_command(self, argv, **kw):
            return 1, "", "modprobe: FATAL: Module ip_vs_twos not found"

    monkeypatch.setattr(K, "loaded", lambda name: False)
    expected = r"Failed to load kernel module ip_vs_twos \(modprobe --dry-run ip_vs_twos: rc=1\): modprobe: FATAL: Module ip_vs_twos not found"
    with pytest.raises(K.KernelError, match=expected):
        K.modprobe(Module(), ["ip_vs_twos"], dry_run=True)


# ---------------------------------------------------------------- a fake kernel behind a fake netlink socket

class FakeKernel:
    """The IPVS table as the kernel keeps it (raw attributes), answering netlink frames as the kernel does:
    every request of a send is handled, a refused one answered with its error, the others with an ack when they ask
    for one; refuse(cmd, attrs) gives an errno to refuse one."""

    KEY = (I.SVC_AF, I.SVC_PROTOCOL, I.SVC_ADDR, I.SVC_PORT, I.SVC_FWMARK)

    def __init__(self, refuse=lambda cmd, svc, dest: 0, silent=False):
        self.table, self.out, self.refuse, self.silent, self.requests = {}, b"", refuse, silent, []
        self.acks_asked = 0

    # the socket
    def send(self, data):
        off = 0
        while off < len(data):
            n, _fam, flags, seq, _pid, cmd = struct.unpack_from("=IHHIIB", data, off)
            outer = I.parse_attrs(data, off + 20, off + n)
            svc = I.parse_attrs(outer[I.CMD_ATTR_SERVICE]) if I.CMD_ATTR_SERVICE in outer else None
            dest = I.parse_attrs(outer[I.CMD_ATTR_DEST]) if I.CMD_ATTR_DEST in outer else None
            self.requests.append(cmd)
            self.acks_asked += bool(flags & I.NLM_F_ACK)
            code = self.refuse(cmd, svc, dest) or self.handle(cmd, svc, dest)
            # netlink_rcv_skb: an error is always answered, a success only when the request asks for an ack.
            if not self.silent and (code or flags & I.NLM_F_ACK):
                self.out += struct.pack("=IHHIIi", 16 + 4 + 16, I.NLMSG_ERROR, 0, seq, 0, -code) + data[off:off + 16]
            off += n
        return len(data)

    def recvmsg(self, size, ancsize, flags):
        return queued_datagram(self, size, flags)

    def ready(self):
        return bool(self.out)

    # the table
    def handle(self, cmd, svc, dest):
        key = tuple(bytes(svc.get(k, b"")) for k in self.KEY)
        if cmd == N.CMD_NEW_SERVICE:
            if key in self.table:
                return errno.EEXIST
            self.table[key] = (svc, {})
            return 0
        if key not in self.table:
            return errno.ESRCH
        if cmd == N.CMD_SET_SERVICE:
            self.table[key] = (svc, self.table[key][1])
        elif cmd == N.CMD_DEL_SERVICE:
            del self.table[key]
        else:
            return self.handle_dest(cmd, self.table[key][1], dest)
        return 0

    @staticmethod
    def handle_dest(cmd, dests, dest):
        dkey = (bytes(dest[I.DEST_ADDR]), bytes(dest[I.DEST_PORT]))
        if cmd == N.CMD_NEW_DEST:
            if dkey in dests:
                return errno.EEXIST
            dests[dkey] = dest
        elif dkey not in dests:
            return errno.ENOENT
        elif cmd == N.CMD_SET_DEST:
            dests[dkey] = dest
        else:
            del dests[dkey]
        return 0

    def snapshot(self):
        return dict((k, (dict(s), dict(d))) for k, (s, d) in self.table.items())


def queued_datagram(sock, size, flags):
    """recvmsg of a fake socket: what sock.out holds as one datagram; without a wait (MSG_DONTWAIT), nothing queued
    is EAGAIN, as the kernel answers; a datagram longer than size is cut and flagged (MSG_TRUNC)."""
    assert flags == socket.MSG_DONTWAIT, "a read without MSG_DONTWAIT: a netlink socket would block here forever"
    if not sock.out:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    out, sock.out = sock.out, b""
    return out[:size], [], socket.MSG_TRUNC if len(out) > size else 0, None


@pytest.fixture
def fake_ipvs(monkeypatch):
    """IPVS() on a FakeKernel instead of a netlink socket; select() says whether an answer is queued."""
    def make(kernel):
        ipvs = object.__new__(I.IPVS)
        ipvs.family, ipvs._seq, ipvs._sock, ipvs._keys = 0x20, 1 << 20, kernel, {}
        return ipvs

    monkeypatch.setattr(I, "select", types.SimpleNamespace(select=lambda r, w, x, t: (r if r[0].ready() else [], [], [])))
    return make


def dest_of(addr, port=80, **kw):
    d = dict(address=addr, port=port, forwarding="masq", weight=1, upper_threshold=0, lower_threshold=0)
    d.update(kw)
    return d


def held_table():
    """Two services as the kernel holds them before the task (as read: with real servers)."""
    web = svc(scheduler="rr", real_servers=[dest_of("198.51.100.101", weight=2), dest_of("198.51.100.102")])
    dns = svc(protocol="udp", port=53, scheduler="rr", real_servers=[dest_of("198.51.100.101", 53)])
    return [web, dns]


def load(ipvs, table):
    ops = []
    for s in table:
        ops += [(N.CMD_NEW_SERVICE, s, None)] + [(N.CMD_NEW_DEST, s, d) for d in s["real_servers"]]
    ipvs.apply(ops)


def refuse_rip(address, code=errno.EINVAL):
    packed = I.pack_addr(address)
    return lambda cmd, s, d: code if d is not None and cmd == N.CMD_NEW_DEST and bytes(d[I.DEST_ADDR]) == packed else 0


def test_a_refusal_mid_batch_rolls_back_the_operations_before_it(fake_ipvs):
    kernel = FakeKernel(refuse=refuse_rip("198.51.100.127"))
    ipvs = fake_ipvs(kernel)
    before = held_table()
    load(ipvs, before)
    start = kernel.snapshot()
    web, dns = before
    ops = [(N.CMD_SET_SERVICE, dict(web, scheduler="wrr"), None),                        # 1: edit
           (N.CMD_SET_DEST, web, dest_of("198.51.100.101", weight=5)),                   # 2: edit
           (N.CMD_NEW_DEST, web, dest_of("198.51.100.127")),                             # 3: refused
           (N.CMD_DEL_SERVICE, dns, None)]                                               # 4: applied too (same send)
    with pytest.raises(I.IPVSError) as e:
        ipvs.apply(ops, before=before)
    assert kernel.snapshot() == start  # the table is as the task found it: the edits undone, UDP :53 back
    msg = str(e.value)
    assert msg.startswith("Failed to add real server 198.51.100.127:80 to TCP 198.51.100.10:80: Invalid argument (errno 22). "
                          "3 operations rolled back (the kernel had applied them): delete service UDP 198.51.100.10:53; "
                          "edit real server 198.51.100.101:80 of TCP 198.51.100.10:80; edit service TCP 198.51.100.10:80")
    assert msg.endswith(": the table is as the task found it.")
    assert e.value.code == errno.EINVAL and e.value.details["not_rolled_back"] == [] and e.value.details["changed"] is False
    assert e.value.details["applied"] == ["edit service TCP 198.51.100.10:80", "edit real server 198.51.100.101:80 of TCP 198.51.100.10:80",
                                          "delete service UDP 198.51.100.10:53"]


def test_a_new_service_whose_third_operation_is_refused_is_removed_again(fake_ipvs):
    kernel = FakeKernel(refuse=refuse_rip("198.51.100.127"))
    ipvs = fake_ipvs(kernel)
    new = svc(port=81)
    ops = [(N.CMD_NEW_SERVICE, new, None), (N.CMD_NEW_DEST, new, dest_of("198.51.100.101", 81)),
           (N.CMD_NEW_DEST, new, dest_of("198.51.100.127", 81))]
    with pytest.raises(I.IPVSError) as e:
        ipvs.apply(ops)  # a new service needs no entry as it was to be undone
    assert kernel.table == {}
    assert e.value.details["rolled_back"] == ["add real server 198.51.100.101:81 to TCP 198.51.100.10:81", "add service TCP 198.51.100.10:81"]
    assert "2 operations rolled back" in str(e.value)


def test_what_cannot_be_rolled_back_is_named(fake_ipvs):
    web = held_table()[0]
    # Re-adding the deleted real server is refused too: the message says so, and which operation stays applied.
    kernel = FakeKernel()
    ipvs = fake_ipvs(kernel)
    load(ipvs, [web])
    kernel.refuse = lambda cmd, s, d: errno.ENOMEM if cmd == N.CMD_NEW_DEST else 0
    ops = [(N.CMD_DEL_DEST, web, web["real_servers"][1]), (N.CMD_NEW_DEST, web, dest_of("198.51.100.103"))]
    with pytest.raises(I.IPVSError) as e:
        ipvs.apply(ops, before=[web])
    assert "COULD NOT ROLL BACK, still applied: delete real server 198.51.100.102:80 from TCP 198.51.100.10:80 (add real server " \
           "198.51.100.102:80 to TCP 198.51.100.10:80: Cannot allocate memory (errno 12))" in str(e.value)
    assert e.value.details["not_rolled_back"] == ["delete real server 198.51.100.102:80 from TCP 198.51.100.10:80"]
    assert e.value.details["changed"] is True  # the kernel holds what the task did
    # An edit without the entry as it was (no before) cannot be undone, and says so.
    kernel.refuse = refuse_rip("198.51.100.127")
    with pytest.raises(I.IPVSError, match=r"still applied: edit service TCP 198.51.100.10:80 \(its entry as it was is unknown\)"):
        ipvs.apply([(N.CMD_SET_SERVICE, dict(web, scheduler="lc"), None), (N.CMD_NEW_DEST, web, dest_of("198.51.100.127"))])


def test_a_first_refusal_changes_nothing_and_later_batches_are_not_sent(fake_ipvs, monkeypatch):
    kernel = FakeKernel(refuse=lambda cmd, s, d: errno.EEXIST)
    ipvs = fake_ipvs(kernel)
    monkeypatch.setattr(I.IPVS, "BATCH", 2)
    ops = [(N.CMD_NEW_SERVICE, svc(port=p), None) for p in (81, 82, 83, 84)]
    with pytest.raises(I.IPVSError, match=r"Already exists \(errno 17\)\. Nothing had been applied: the table is as the task found it\.$"):
        ipvs.apply(ops)
    assert kernel.requests == [N.CMD_NEW_SERVICE] * 2


def test_a_batch_asks_for_one_ack_and_still_knows_each_refusal(fake_ipvs, monkeypatch):
    """Only a batch's last request asks for an ack: 5 operations in batches of 2 ask for 3; a refusal in the middle
    of a batch (no ack asked) is still matched to its operation and rolled back around."""
    kernel = FakeKernel()
    ipvs = fake_ipvs(kernel)
    monkeypatch.setattr(I.IPVS, "BATCH", 2)
    ops = [(N.CMD_NEW_SERVICE, svc(port=p), None) for p in (81, 82, 83, 84, 85)]
    ipvs.apply(ops)
    assert kernel.acks_asked == 3 and len(kernel.table) == 5
    kernel.refuse = refuse_rip("198.51.100.127")
    web = svc(port=81)
    before = [dict(web, real_servers=[])]
    bad = [(N.CMD_NEW_DEST, web, dest_of("198.51.100.101", 81)), (N.CMD_NEW_DEST, web, dest_of("198.51.100.127", 81)),
           (N.CMD_NEW_DEST, web, dest_of("198.51.100.102", 81))]
    monkeypatch.setattr(I.IPVS, "BATCH", 3)
    with pytest.raises(I.IPVSError) as e:
        ipvs.apply(bad, before=before)
    assert str(e.value).startswith("Failed to add real server 198.51.100.127:81 to TCP 198.51.100.10:81: Invalid argument")
    assert e.value.details["applied"] == ["add real server 198.51.100.101:81 to TCP 198.51.100.10:81",
                                          "add real server 198.51.100.102:81 to TCP 198.51.100.10:81"]
    assert all(not dests for _svc, dests in kernel.table.values())


def test_no_ack_within_the_timeout_fails_naming_the_operation(fake_ipvs):
    kernel = FakeKernel(silent=True)
    ipvs = fake_ipvs(kernel)
    with pytest.raises(I.IPVSError) as e:
        ipvs.apply([(N.CMD_NEW_SERVICE, svc(), None)])
    assert str(e.value).startswith("Failed to add service TCP 198.51.100.10:80: no answer from the kernel within 30 s")
    assert e.value.code == errno.ETIMEDOUT and e.value.details["unanswered"] == ["add service TCP 198.51.100.10:80"]


class Replying:
    """A socket that answers every request with what reply(seq) gives (bytes), or raises it."""

    def __init__(self, reply):
        self.reply, self.out = reply, b""

    def send(self, data):
        seq = struct.unpack_from("=IHHI", data)[3]
        answer = self.reply(seq)
        if isinstance(answer, Exception):
            raise answer
        self.out += answer
        return len(data)

    def recvmsg(self, size, ancsize, flags):
        return queued_datagram(self, size, flags)

    def ready(self):
        return bool(self.out)


def error_msg(seq, code, kind=I.NLMSG_ERROR):
    return struct.pack("=IHHIIi", 20, kind, 0, seq, 0, -code)


@pytest.mark.parametrize("read, what", [
    (lambda ipvs: ipvs.services(), "read the IPVS services"),
    (lambda ipvs: ipvs.dests(svc()), "read the real servers of TCP 198.51.100.10:80"),
    (lambda ipvs: ipvs.table(), "read the IPVS services"),
    (lambda ipvs: ipvs.timeouts(), "read the IPVS timeouts"),
    (lambda ipvs: ipvs.info(), "read the IPVS version"),
    (lambda ipvs: ipvs.service(svc()), "read service TCP 198.51.100.10:80"),
    (lambda ipvs: ipvs.set_timeouts(1, 0, 0), "set the IPVS timeouts"),
])
@pytest.mark.parametrize("reply, reason", [
    (lambda seq: error_msg(seq, errno.EPERM), "Operation not permitted (errno 1)"),
    (lambda seq: error_msg(seq, errno.EPERM, I.NLMSG_DONE), "Operation not permitted (errno 1)"),  # a dump that fails
    (lambda seq: OSError(errno.ENOBUFS, "No buffer space available"), "No buffer space available (errno 105)"),
    (lambda seq: b"", "no answer from the kernel within 30 s"),
])
def test_every_kernel_error_of_a_read_is_a_message_naming_it(fake_ipvs, read, what, reply, reason):
    ipvs = fake_ipvs(Replying(reply))
    with pytest.raises(I.IPVSError) as e:
        read(ipvs)
    assert str(e.value) == "Failed to %s: %s" % (what, reason)


def test_an_answer_already_there_is_read_without_select_and_a_late_one_is_waited_for(fake_ipvs, monkeypatch):
    # The kernel answers while the request is sent: select() only when the read finds nothing (EAGAIN).
    waits = []
    kernel = FakeKernel()
    ipvs = fake_ipvs(kernel)
    ready = I.select.select
    monkeypatch.setattr(I.select, "select", lambda *a: waits.append(a) or ready(*a))
    load(ipvs, [svc(real_servers=[dest_of("198.51.100.101")])])
    assert kernel.requests == [N.CMD_NEW_SERVICE, N.CMD_NEW_DEST] and kernel.acks_asked and waits == []
    late = Replying(lambda seq: error_msg(seq, 0))
    ipvs = fake_ipvs(late)
    answer = []
    monkeypatch.setattr(late, "send", lambda data: answer.append(error_msg(struct.unpack_from("=IHHI", data)[3], 0)) or len(data))
    monkeypatch.setattr(I.select, "select", lambda r, w, x, t: waits.append(t) or late.__dict__.update(out=answer[0]) or (r, [], []))
    ipvs.set_timeouts(1, 0, 0)
    assert waits == [30]


def test_an_answer_longer_than_the_buffer_is_an_error_not_a_cut_message(fake_ipvs):
    big = Replying(lambda seq: struct.pack("=IHHIIBBH", I.RECV_SIZE + 20, 0x20, 0, seq, 0, N.CMD_GET_CONFIG, 1, 0) + bytes(I.RECV_SIZE))
    with pytest.raises(I.IPVSError) as e:
        fake_ipvs(big).timeouts()
    assert str(e.value) == "Failed to read the IPVS timeouts: an answer of the kernel longer than 65536 bytes (errno %d)" % errno.EMSGSIZE


def test_a_missing_service_reads_as_none_and_a_garbled_answer_is_named(fake_ipvs):
    assert fake_ipvs(Replying(lambda seq: error_msg(seq, errno.ESRCH))).service(svc()) is None
    garbled = Replying(lambda seq: struct.pack("=IHHIIBBH", 20, 0x20, 0, seq, 0, N.CMD_GET_CONFIG, 1, 0))
    with pytest.raises(I.IPVSError, match=r"^Failed to read the IPVS timeouts: the kernel's answer lacks or garbles an attribute"):
        fake_ipvs(garbled).timeouts()


def test_lost_answers_are_reported_as_unknown_not_as_refusals(fake_ipvs):
    kernel = FakeKernel()
    ipvs = fake_ipvs(kernel)
    load(ipvs, [svc(real_servers=[])])

    def recvmsg(size, ancsize, flags):
        raise OSError(errno.ENOBUFS, "No buffer space available")

    kernel.recvmsg = recvmsg
    with pytest.raises(I.IPVSError) as e:
        ipvs.apply([(N.CMD_NEW_DEST, svc(), dest_of("198.51.100.101"))])
    assert str(e.value).startswith("Failed to add real server 198.51.100.101:80 to TCP 198.51.100.10:80: the answers were lost "
                                   "(No buffer space available, errno 105); 0 operations applied and not rolled back: none; "
                                   "unknown whether applied: add real server 198.51.100.101:80")
    assert e.value.details["unanswered"] == ["add real server 198.51.100.101:80 to TCP 198.51.100.10:80"]


# ---------------------------------------------------------------- the Session: the modules' one door to the kernel

class Opened:
    """IPVS() without a socket: records what the Session asks of it."""

    def __init__(self):
        self.calls, self.closed = [], False
        Opened.instances.append(self)

    def table(self, counters=True):
        return [svc(real_servers=[])]

    def service(self, key):
        return svc()

    def dests(self, s, counters=True):
        return [dest_of("198.51.100.101")]

    def timeouts(self):
        return {"tcp": 60, "tcp_fin": 10, "udp": 30}

    def info(self):
        return {"version": "1.2.1", "conn_tab_size": 4096}

    def apply(self, ops, before=()):
        self.calls.append(("apply", ops, list(before)))

    def set_timeouts(self, *values):
        self.calls.append(("set_timeouts",) + values)

    def close(self):
        self.closed = True


@pytest.fixture
def session(monkeypatch):
    """Session(module) over Opened and a recorded modprobe; .loaded says whether ip_vs is loaded at the start."""
    state = types.SimpleNamespace(loaded=False, modprobes=[], module=types.SimpleNamespace(check_mode=False))
    Opened.instances = []
    monkeypatch.setattr(I, "IPVS", Opened)
    monkeypatch.setattr(I._kmod, "loaded", lambda name: state.loaded)
    monkeypatch.setattr(I._kmod, "modprobe", lambda module, names, dry_run=False: state.modprobes.append(
        (module, list(names), dry_run)))
    return state


def test_a_session_where_ip_vs_is_not_loaded_reads_an_empty_kernel_and_loads_nothing(session):
    with I.Session(session.module) as kernel:
        assert not kernel.loaded
        assert (kernel.table(), kernel.service(svc()), kernel.info()) == ([], None, None)
        assert kernel.timeouts() == N.KERNEL_TIMEOUTS and kernel.timeouts() is not N.KERNEL_TIMEOUTS
    assert session.modprobes == [(session.module, ["ip_vs"], True)]  # only proven loadable
    assert Opened.instances == []


def test_a_session_where_ip_vs_is_loaded_reads_the_kernel_and_closes_its_socket(session):
    session.loaded = True
    with I.Session(session.module) as kernel:
        assert kernel.loaded
        assert kernel.service(svc()) == svc(real_servers=[dest_of("198.51.100.101")])
        assert kernel.table() == [svc(real_servers=[])] and kernel.timeouts()["tcp"] == 60
        assert kernel.info() == {"version": "1.2.1", "conn_tab_size": 4096}
    (ipvs,) = Opened.instances
    assert ipvs.closed


def test_session_writes_load_the_kernel_modules_first_and_never_write_in_check_mode(session):
    ops = [(N.CMD_NEW_SERVICE, svc(), None)]
    with I.Session(session.module) as kernel:
        kernel.apply(ops, before=[svc()], schedulers=["wrr"])
        kernel.set_timeouts(60, 0, 0)
        assert kernel.loaded is False  # as it was at construction
    assert session.modprobes[1:] == [(session.module, ["ip_vs", "ip_vs_wrr"], False), (session.module, ["ip_vs"], False)]
    (ipvs,) = Opened.instances  # opened once, by the first write
    assert ipvs.calls == [("apply", ops, [svc()]), ("set_timeouts", 60, 0, 0)]
    session.module.check_mode, session.modprobes, Opened.instances = True, [], []
    with I.Session(session.module) as kernel:
        kernel.apply(ops, schedulers=["wrr"])
        kernel.set_timeouts(60, 0, 0)
    assert session.modprobes == [(session.module, ["ip_vs"], True)] and Opened.instances == []


def test_a_session_without_pyroute2_is_a_failure_naming_it(session, monkeypatch):
    from ansible.module_utils.basic import missing_required_lib

    monkeypatch.setattr(I, "HAS_PYROUTE2", False)
    with pytest.raises(I.IPVSError) as e:
        I.Session(session.module)
    assert str(e.value) == missing_required_lib("pyroute2 (0.9.6 or newer, from PyPI)")
    assert session.modprobes == []


def test_ipvs_errors_are_the_collections_kernel_errors_with_their_details():
    from ansible_collections.lvs.nat.plugins.module_utils._errors import KernelError, LvsNatError
    from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import InvalidInput

    e = I.IPVSError("Failed to add service TCP 198.51.100.10:80: Already exists (errno 17)", errno.EEXIST,
                    applied=[], rolled_back=[], not_rolled_back=[], unanswered=[], changed=False)
    assert isinstance(e, KernelError) and e.code == errno.EEXIST
    assert e.details == dict(errno=errno.EEXIST, applied=[], rolled_back=[], not_rolled_back=[], unanswered=[], changed=False)
    assert issubclass(InvalidInput, LvsNatError) and issubclass(InvalidInput, ValueError)


def test_pyroute2_is_imported_only_when_a_socket_is_opened():
    """Importing pyroute2 costs seconds on an emulated director: a module that fails on its input, or finds ip_vs not
    loaded, must not pay it. Importing _ipvs (and every IPVS module) leaves pyroute2 unimported; opening a socket
    imports it, and only the parts it needs."""
    code = "\n".join([
        "import sys",
        "from ansible_collections.lvs.nat.plugins.module_utils import _ipvs",
        "from ansible_collections.lvs.nat.plugins.modules import ipvs_service, ipvs_table, ipvs_info, ipvs_save",
        "assert _ipvs.HAS_PYROUTE2",
        "assert not [m for m in sys.modules if m.split('.')[0] == 'pyroute2'], 'imported on import'",
        "assert _ipvs._pyroute2()[0].__name__ == 'GenericNetlinkSocket'",
        "assert 'pyroute2.netlink.generic' in sys.modules",
        # Not the package's __init__, which imports all of pyroute2 (seconds on an emulated director).
        "assert not [m for m in ('pyroute2.ndb', 'pyroute2.ipdb', 'pyroute2.iproute', 'pyroute2.conntrack')"
        " if m in sys.modules], sorted(sys.modules)",
    ])
    _run_python(code)


def test_pyroute2_is_imported_whole_when_its_parts_need_the_package_init():
    """Should a pyroute2 release need its __init__ for the three names, _pyroute2 falls back to the normal import."""
    code = "\n".join([
        "import sys",
        "from ansible_collections.lvs.nat.plugins.module_utils import _ipvs",
        "names = _ipvs._pyroute2_names",
        "calls = []",
        "def failing_once():",
        "    calls.append(sorted(m for m in sys.modules if m.startswith('pyroute2')))",
        "    if len(calls) == 1:",
        "        import pyroute2.netlink.generic",
        "        raise ImportError('needs the package init')",
        "    return names()",
        "_ipvs._pyroute2_names = failing_once",
        "assert _ipvs._pyroute2()[0].__name__ == 'GenericNetlinkSocket'",
        "assert len(calls) == 2 and calls[1] == [], calls",
        "assert 'pyroute2.ndb' in sys.modules and hasattr(sys.modules['pyroute2'], 'IPRoute')",
    ])
    _run_python(code)


def _run_python(code):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- the sync daemons (IPVS_CMD_ATTR_DAEMON)

def attr(kind, payload):
    """One netlink attribute built by hand: u16 length (header included), u16 type, payload, zeros to 4 bytes."""
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-(4 + len(payload)) % 4)


MASTER = dict(mode="master", interface="eth2", sync_id=51, max_len=1400, group="239.1.2.3", port=8850, ttl=2)


def test_the_daemon_numbers_are_the_kernels():
    # include/uapi/linux/ip_vs.h
    assert (N.CMD_NEW_DAEMON, N.CMD_DEL_DAEMON, N.CMD_GET_DAEMON, I.CMD_ATTR_DAEMON) == (9, 10, 11, 3)
    assert (I.DAEMON_STATE, I.DAEMON_MCAST_IFN, I.DAEMON_SYNC_ID, I.DAEMON_SYNC_MAXLEN, I.DAEMON_MCAST_GROUP,
            I.DAEMON_MCAST_GROUP6, I.DAEMON_MCAST_PORT, I.DAEMON_MCAST_TTL) == tuple(range(1, 9))
    assert N.DAEMON_MODES == {"master": 1, "backup": 2}  # IP_VS_STATE_MASTER, IP_VS_STATE_BACKUP


def test_a_start_request_is_laid_out_as_the_kernel_reads_it():
    """ip_vs_daemon_policy: u32 state, NUL-terminated name, u32 sync id, u16 maxlen, in_addr group (network order),
    u16 port in host order (ip_vs_genl_new_daemon: nla_get_u16), u8 ttl."""
    inner = (attr(1, struct.pack("=I", 1)) + attr(2, b"eth2\0") + attr(3, struct.pack("=I", 51))
             + attr(4, struct.pack("=H", 1400)) + attr(5, bytes([239, 1, 2, 3])) + attr(7, struct.pack("=H", 8850))
             + attr(8, bytes([2])))
    assert I.encode_daemon(MASTER) == attr(3, inner)


def test_a_stop_request_carries_the_mode_only_and_left_out_settings_are_not_sent():
    assert I.encode_daemon({"mode": "backup"}, key_only=True) == attr(3, attr(1, struct.pack("=I", 2)))
    lean = dict(MASTER, max_len=None, group=None, port=None, ttl=None)
    assert I.encode_daemon(lean) == attr(3, attr(1, struct.pack("=I", 1)) + attr(2, b"eth2\0") + attr(3, struct.pack("=I", 51)))


def test_an_ipv6_group_goes_in_its_own_attribute():
    inner = I.parse_attrs(I.parse_attrs(I.encode_daemon(dict(MASTER, group="ff02::1:81")))[I.CMD_ATTR_DAEMON])
    assert I.DAEMON_MCAST_GROUP not in inner
    assert inner[I.DAEMON_MCAST_GROUP6] == bytes.fromhex("ff020000000000000000000000010081")


def kernel_daemon_reply(state, ifname, syncid, maxlen, port, ttl, group):
    """The attributes of a GET_DAEMON dump reply as ip_vs_genl_fill_daemon (6.1) puts them."""
    inner = (attr(1, struct.pack("=I", state)) + attr(2, ifname + b"\0") + attr(3, struct.pack("=I", syncid))
             + attr(4, struct.pack("=H", maxlen)) + attr(7, struct.pack("=H", port)) + attr(8, bytes([ttl])))
    inner += attr(6, group) if len(group) == 16 else attr(5, group)
    return attr(3, inner)


def test_a_kernel_reply_reads_back_as_the_daemon():
    reply = I.parse_attrs(kernel_daemon_reply(2, b"eth2", 51, 1472, 8848, 1, bytes([224, 0, 1, 81])))
    assert I._daemon_reply(reply) == dict(mode="backup", interface="eth2", sync_id=51, max_len=1472,
                                          group="224.0.1.81", port=8848, ttl=1)
    six = I.parse_attrs(kernel_daemon_reply(1, b"eth1", 0, 1452, 9000, 3, bytes.fromhex("ff05" + "00" * 13 + "51")))
    assert I._daemon_reply(six)["group"] == "ff05::51"
    # A kernel before 4.3 sends the mode, the interface and the sync id only.
    old = I.parse_attrs(attr(3, attr(1, struct.pack("=I", 1)) + attr(2, b"eth2\0") + attr(3, struct.pack("=I", 7))))
    assert I._daemon_reply(old) == dict(mode="master", interface="eth2", sync_id=7, max_len=None, group=None,
                                        port=None, ttl=None)


def test_what_is_sent_reads_back_the_same():
    for daemon in (MASTER, dict(MASTER, mode="backup", group="ff02::1:81", sync_id=0, ttl=255, port=65535)):
        assert I._daemon_reply(I.parse_attrs(I.encode_daemon(daemon))) == daemon


def genl(seq, cmd, payload, kind=0x20, flags=I.NLM_F_MULTI):
    return struct.pack("=IHHIIBBH", 20 + len(payload), kind, flags, seq, 0, cmd, 1, 0) + payload


def test_daemons_are_read_with_a_dump_master_first(fake_ipvs):
    sent = []

    def reply(seq):
        return (genl(seq, N.CMD_NEW_DAEMON, kernel_daemon_reply(2, b"eth2", 51, 1472, 8848, 1, bytes([224, 0, 1, 81])))
                + genl(seq, N.CMD_NEW_DAEMON, kernel_daemon_reply(1, b"eth2", 51, 1472, 8848, 1, bytes([224, 0, 1, 81])))
                + error_msg(seq, 0, I.NLMSG_DONE))

    sock = Replying(reply)
    real_send = sock.send
    sock.send = lambda data: sent.append(data) or real_send(data)
    assert [d["mode"] for d in fake_ipvs(sock).daemons()] == ["master", "backup"]
    n, _family, flags, _seq, _pid, cmd = struct.unpack_from("=IHHIIB", sent[0])
    assert cmd == N.CMD_GET_DAEMON and flags & I.NLM_F_DUMP == I.NLM_F_DUMP and n == 20


@pytest.mark.parametrize("call, code, message", [
    (lambda ipvs: ipvs.start_daemon(MASTER), errno.EEXIST,
     "Failed to start the master sync daemon (interface eth2, sync_id 51): A daemon of that mode already runs (errno 17)"),
    (lambda ipvs: ipvs.start_daemon(MASTER), errno.ENODEV,
     "Failed to start the master sync daemon (interface eth2, sync_id 51): No such interface (errno 19)"),
    (lambda ipvs: ipvs.stop_daemon("backup"), errno.ESRCH,
     "Failed to stop the backup sync daemon: No daemon of that mode runs (errno 3)"),
])
def test_a_refused_start_or_stop_names_the_daemon_and_what_the_errno_means_for_it(fake_ipvs, call, code, message):
    with pytest.raises(I.IPVSError) as e:
        call(fake_ipvs(Replying(lambda seq: error_msg(seq, code))))
    assert str(e.value) == message and e.value.code == code


class Daemons:
    """start(daemon) and stop(mode) over held daemons, refusing as refuse says: (verb, mode) or ("start", mode,
    sync_id) -> errno."""

    def __init__(self, held, refuse=None):
        self.held, self.refuse, self.calls = dict((d["mode"], d) for d in held), refuse or {}, []

    def start(self, daemon):
        self.calls.append(("start", daemon["mode"], daemon["sync_id"]))
        code = self.refuse.get(("start", daemon["mode"], daemon["sync_id"]), self.refuse.get(
            ("start", daemon["mode"]), errno.EEXIST if daemon["mode"] in self.held else 0))
        if code:
            raise I.IPVSError("Failed to start the %s: %s (errno %d)" % (N.describe_daemon(daemon), N.daemon_strerror(code), code), code)
        self.held[daemon["mode"]] = daemon

    def stop(self, mode):
        self.calls.append(("stop", mode))
        code = self.refuse.get(("stop", mode), 0 if mode in self.held else errno.ESRCH)
        if code:
            raise I.IPVSError("Failed to stop the %s sync daemon: %s (errno %d)" % (mode, N.daemon_strerror(code), code), code)
        del self.held[mode]


def test_a_refused_restart_starts_the_daemon_it_stopped_again_as_it_was():
    backup = dict(MASTER, mode="backup")
    old, new = dict(MASTER, sync_id=50), dict(MASTER, sync_id=52)
    kernel = Daemons([old, backup], refuse={("start", "master", 52): errno.ENODEV})
    ops = [("stop", old), ("start", new)]
    with pytest.raises(I.IPVSError) as e:
        I.run_daemon_ops(ops, [old, backup], kernel.start, kernel.stop)
    assert kernel.calls == [("stop", "master"), ("start", "master", 52), ("start", "master", 50)]
    assert kernel.held == {"master": old, "backup": backup}
    assert str(e.value) == (
        "Failed to start the master sync daemon (interface eth2, sync_id 52): No such interface (errno 19). "
        "1 operation rolled back: stop the master sync daemon (interface eth2, sync_id 50): the sync daemons are as "
        "the task found them.")
    assert e.value.code == errno.ENODEV


def test_a_rollback_restarts_the_old_daemon_and_names_what_it_could_not_undo():
    old, new = dict(MASTER, sync_id=50), dict(MASTER, sync_id=52)
    kernel = Daemons([old])
    kernel.refuse[("start", "backup")] = errno.EINVAL
    ops = [("stop", old), ("start", new), ("start", dict(new, mode="backup"))]
    with pytest.raises(I.IPVSError) as e:
        I.run_daemon_ops(ops, [old], kernel.start, kernel.stop)
    # Undone, the last first: the new master stopped, the old one started again.
    assert kernel.calls[3:] == [("stop", "master"), ("start", "master", 50)]
    assert kernel.held == {"master": old}
    assert e.value.details == dict(applied=["stop the master sync daemon (interface eth2, sync_id 50)",
                                            "start the master sync daemon (interface eth2, sync_id 52)"],
                                   rolled_back=["start the master sync daemon (interface eth2, sync_id 52)",
                                                "stop the master sync daemon (interface eth2, sync_id 50)"],
                                   not_rolled_back=[], changed=False, errno=errno.EINVAL)
    # The old master cannot come back: the failure says so, and that the kernel was changed.
    kernel = Daemons([old], refuse={("start", "backup"): errno.EINVAL})
    real_start = kernel.start

    def start(d):
        if d["sync_id"] == 50:
            raise I.IPVSError("Failed to start the %s: No such interface (errno 19)" % N.describe_daemon(d), errno.ENODEV)
        return real_start(d)

    kernel.start = start
    with pytest.raises(I.IPVSError) as e:
        I.run_daemon_ops(ops, [old], kernel.start, kernel.stop)
    assert "COULD NOT ROLL BACK, still applied: stop the master sync daemon (interface eth2, sync_id 50)" in str(e.value)
    assert e.value.details["changed"] is True


def test_a_first_refusal_changes_nothing():
    kernel = Daemons([], refuse={("start", "master"): errno.ENODEV})
    with pytest.raises(I.IPVSError, match=r"\. Nothing had been applied: the sync daemons are as the task found them\.$"):
        I.run_daemon_ops([("start", MASTER)], [], kernel.start, kernel.stop)


def test_session_daemons_where_ip_vs_is_not_loaded_and_no_daemon_write_in_check_mode(session):
    with I.Session(session.module) as kernel:
        assert kernel.daemons() == []
    session.module.check_mode = True
    with I.Session(session.module) as kernel:
        kernel.start_daemon(MASTER)
        kernel.stop_daemon("master")
        kernel.apply_daemons([("start", MASTER)], [])
    assert Opened.instances == [] and session.modprobes == [(session.module, ["ip_vs"], True)] * 2


def test_an_interface_mtu_and_a_missing_interface():
    assert I.interface_mtu("lo") > 0 and I.interface_mtu("lvsnat-none0") is None
