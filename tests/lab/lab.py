# SPDX-License-Identifier: GPL-3.0-or-later
"""The lvs.nat lab: a real IPVS kernel on one machine.

The director is a QEMU guest booting Debian's cloud kernel (the host kernel has no
IPVS); real servers and a client are podman containers with systemd as PID 1.
Lab segments are host bridges with no address, inside 198.51.100.0/24 only:

  public   198.51.100.0/26    client eth1 .50  <-> director eth1 (VIP .10)
  private  198.51.100.64/26   director eth2 (DIP .100) <-> rsN eth1 (.100+N)
  mgmt     198.51.100.192/27  podman network: the containers' eth0, outbound NAT
  guest    198.51.100.224/27  QEMU user networking: the director's eth0, SSH hostfwd

With LVSNAT_LAB_DIRECTORS=2 two director guests boot side by side from the same image (director1, director2): each
has fixed addresses of its own (.11 and .98, .12 and .99) and the VIP and the DIP float between them (keepalived,
from the director role's HA declaration in the inventory).

Usage: lab.py up | down | status | shell HOST [CMD...] | inventory
Settings come from LVSNAT_LAB_* environment variables (see README).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"LVSNAT_LAB_{name}", default)


NAME = _env("NAME", "lvsnat")  # prefix of every device, container and network the lab makes
REALSERVERS = int(_env("REALSERVERS", "2"))
ACCEL = _env("ACCEL", "auto")  # auto | kvm | tcg
SSH_PORT = int(_env("SSH_PORT", "2222"))  # the first director's; the second's is the next port
CACHE = Path(_env("CACHE", "/var/cache/lvs-nat-lab"))
STATE = Path(_env("STATE", "/run/lvs-nat-lab")) / NAME
MIRROR = _env("MIRROR", "http://deb.debian.org/debian")
GUEST_MEMORY = _env("MEMORY", "1024")
GUEST_CPUS = _env("CPUS", "1")
BOOT_TIMEOUT = int(_env("BOOT_TIMEOUT", "300"))
# tests/lab/lvsnat_lab_pyc.py on each director booted (0: not; ./run bench removes it either way)
PYC_CACHE = _env("PYC_CACHE", "1") != "0"
SUITE = "bookworm"
# The director's pyroute2, from PyPI (Debian 12's 0.7.2 has no IPVS); kept equal to requirements-test.txt.
PYROUTE2 = "pyroute2==0.9.7"

PUBLIC = ipaddress.ip_network("198.51.100.0/26")
PRIVATE = ipaddress.ip_network("198.51.100.64/26")
PODMAN_DEFAULT = ipaddress.ip_network("198.51.100.160/27")  # podman's default network, unused by the lab
MGMT = ipaddress.ip_network("198.51.100.192/27")
GUEST_MGMT = ipaddress.ip_network("198.51.100.224/27")
LAB_RANGES = (PUBLIC, PRIVATE, PODMAN_DEFAULT, MGMT, GUEST_MGMT)

VIP = "198.51.100.10"
CLIENT_IP = "198.51.100.50"
DIP = "198.51.100.100"
MGMT_GATEWAY = "198.51.100.193"
GUEST_HOST, GUEST_DNS, GUEST_IP = "198.51.100.225", "198.51.100.226", "198.51.100.240"
MAX_REALSERVERS = 20
# Two directors (LVSNAT_LAB_DIRECTORS=2): fixed addresses of each on the public and the private segment; the VIP and
# the DIP float. VRRP ids of the two instances (public, private).
HA_FIXED = {"director1": ("198.51.100.11", "198.51.100.98"), "director2": ("198.51.100.12", "198.51.100.99")}
HA_VRIDS = (51, 52)
HA_ECHO_PORT = 7007
REGISTRY_HOSTS = ("deb.debian.org", "pypi.org", "files.pythonhosted.org")

BR_PUB, BR_PRIV = f"{NAME}-pub", f"{NAME}-priv"
TAP_PUB, TAP_PRIV = f"{NAME}-dpub", f"{NAME}-dpriv"
DIRECTORS_FILE = STATE / "directors"
MGMT_NET = f"{NAME}-mgmt"
LABEL = f"lvsnat.lab={NAME}"
FW_COMMENT = f"{NAME}-lab"
SSH_KEY = CACHE / "ssh" / "id_ed25519"
INVENTORY = STATE / "inventory.yml"

COMMON_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt",
    "iproute2", "iptables", "nftables", "procps", "curl", "ca-certificates", "kmod",
    "netbase", "iputils-ping", "less",
]
# keepalived: the director role installs it for two directors (HA); in the image so that the HA lab needs no download.
DIRECTOR_PACKAGES = COMMON_PACKAGES + ["linux-image-cloud-amd64", "initramfs-tools", "udev", "ipvsadm", "keepalived"]
NODE_PACKAGES = COMMON_PACKAGES


class LabError(Exception):
    """A failure the user can act on; printed without a traceback."""


# ---------------------------------------------------------------- output and commands

_T0 = time.monotonic()
_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(f"[lab {time.monotonic() - _T0:6.1f}s] {msg}", flush=True)


class step:
    """Context manager that prints what is happening and how long it took."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        self.t = time.monotonic()
        say(f"{self.what} ...")
        return self

    def __exit__(self, exc_type, exc, tb):
        took = time.monotonic() - self.t
        say(f"{self.what}: {'done' if exc is None else 'FAILED'} in {took:.1f}s")
        return False


def run(argv, check=True, capture=True, input=None, env=None, timeout=None):
    """Run argv with LC_ALL=C; on failure raise LabError carrying rc, stdout and stderr."""
    full_env = dict(os.environ, LC_ALL="C", **(env or {}))
    proc = subprocess.run(
        [str(a) for a in argv], input=input, text=True, env=full_env, timeout=timeout,
        stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None, check=False,
    )
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed (rc={proc.returncode}): {shlex.join(str(a) for a in argv)}\n"
            f"stdout: {(proc.stdout or '').strip()[-2000:]}\nstderr: {(proc.stderr or '').strip()[-2000:]}"
        )
    return proc


def podman(*args, check=True, **kw):
    return run(["podman", *args], check=check, env={"CONTAINERS_CONF": str(containers_conf())}, **kw)


def containers_conf() -> Path:
    # Settings this machine needs (LAB-FACTS.md): cgroupfs, file events, runc (crun refuses
    # this cgroup layout), nofile capped at 20000, and a default subnet inside the lab's range.
    path = CACHE / "containers.conf"
    text = (
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n'
        f'[network]\ndefault_subnet = "{PODMAN_DEFAULT}"\n'
    )
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


# ---------------------------------------------------------------- topology

def realserver_names():
    return [f"rs{i}" for i in range(1, REALSERVERS + 1)]


def containers():
    """name -> (container name, mgmt ip, lab bridge, lab ip with prefix)."""
    hosts = {"client": (f"{NAME}-client", str(MGMT[8]), BR_PUB, f"{CLIENT_IP}/{PUBLIC.prefixlen}")}
    for i, rs in enumerate(realserver_names(), start=1):
        hosts[rs] = (f"{NAME}-{rs}", str(MGMT[8 + i]), BR_PRIV, f"{PRIVATE[36 + i]}/{PRIVATE.prefixlen}")
    return hosts


def stable_mac(segment: int, ip: str) -> str:
    """A fixed, locally administered MAC per host and segment: a restarted container keeps its NICs' addresses,
    as a rebooted machine does, so no neighbour (the host, the director) holds a stale entry for it."""
    return f"02:4c:56:{segment:02x}:00:{int(ip.split('/')[0].rsplit('.', 1)[1]):02x}"


def realserver_ip(rs: str) -> str:
    return containers()[rs][3].split("/")[0]


class Guest:
    """One director guest: its name among the lab hosts, SSH port, taps, NIC MACs (the image's networkd files give
    each MAC its addresses), QEMU files and lab addresses."""

    def __init__(self, name, index, ha):
        self.name, self.index, self.ha = name, index, ha
        self.ssh_port = SSH_PORT + index - 1
        self.inventory_name = "director%d" % index
        tag = "" if not ha else str(index)
        self.tap_pub, self.tap_priv = (TAP_PUB, TAP_PRIV) if not ha else (f"{NAME}-d{tag}pub", f"{NAME}-d{tag}priv")
        self.mac = "52:54:00:51:%02x" % (0x64 if not ha else 0x65 + index)
        suffix = "" if not ha else f"-{name}"
        self.pidfile, self.disk = STATE / f"qemu{suffix}.pid", STATE / f"{'director' if not ha else name}.qcow2"
        self.console, self.qemu_log = f"console{suffix}.log", f"qemu{suffix}.log"
        self.monitor = STATE / f"monitor{suffix}.sock"
        self.qemu_name = f"{NAME}-{'director' if not ha else name}"
        self.public_ip, self.private_ip = (VIP, DIP) if not ha else HA_FIXED[name]


def directors_count() -> int:
    """The running lab's number of directors (written by up), else LVSNAT_LAB_DIRECTORS."""
    try:
        return int(DIRECTORS_FILE.read_text())
    except (OSError, ValueError):
        return env_directors()


def env_directors() -> int:
    text = _env("DIRECTORS", "1")
    if text not in ("1", "2"):
        raise LabError(f"LVSNAT_LAB_DIRECTORS={text}: must be 1 or 2")
    return int(text)


def guests(count=None) -> dict:
    """name -> Guest: {"director"} with one director (the lab as always), {"director1", "director2"} with two."""
    count = directors_count() if count is None else count
    if count == 1:
        return {"director": Guest("director", 1, False)}
    return {f"director{i}": Guest(f"director{i}", i, True) for i in range(1, count + 1)}


def guest(host="director") -> Guest:
    """A director guest by lab host name; "director" is the first one whatever the count."""
    found = guests()
    if host == "director":
        return next(iter(found.values()))
    if host not in found:
        raise LabError(f"unknown director {host!r}; directors: {', '.join(found)}")
    return found[host]


def is_director(host: str) -> bool:
    return host == "director" or host in guests()


# ---------------------------------------------------------------- preflight

def preflight(directors=1) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (bridges, taps, rootful podman)")
    if directors not in (1, 2):
        raise LabError(f"LVSNAT_LAB_DIRECTORS={directors}: must be 1 or 2")
    if not 1 <= REALSERVERS <= MAX_REALSERVERS:
        raise LabError(f"LVSNAT_LAB_REALSERVERS={REALSERVERS}: must be between 1 and {MAX_REALSERVERS}")
    if ACCEL not in ("auto", "kvm", "tcg"):
        raise LabError(f"LVSNAT_LAB_ACCEL={ACCEL}: must be auto, kvm or tcg")
    if len(NAME) > 8 or not NAME.replace("-", "").isalnum():
        raise LabError(f"LVSNAT_LAB_NAME={NAME}: at most 8 letters/digits (device names are limited to 15 characters)")
    for tool in ("podman", "qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "ip", "ssh", "ssh-keygen", "iptables"):
        if shutil.which(tool) is None:
            raise LabError(f"missing tool {tool!r}: run the README's setup (./run setup)")
    check_address_plan()


def check_address_plan() -> None:
    """Refuse to start when a lab range overlaps a host route or a registry address."""
    own_devs = set(lab_links()) | {mgmt_bridge() or ""}
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    for r in routes:
        dst = r.get("dst", "")
        if dst in ("default", "") or r.get("dev") in own_devs or r.get("type") in ("broadcast", "multicast"):
            continue
        try:
            net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if net.version != 4 or net.is_loopback:
            continue
        for lab in LAB_RANGES:
            if net.overlaps(lab):
                raise LabError(
                    f"lab range {lab} overlaps the host route '{dst} dev {r.get('dev')}': "
                    "the lab would cut this machine off from that network; free the range or change the host route"
                )
    for host in REGISTRY_HOSTS + (MIRROR.split("/")[2].split(":")[0],):
        try:
            addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None, socket.AF_INET)}
        except socket.gaierror:
            continue  # not resolvable here: nothing it could collide with
        for a in addrs:
            for lab in LAB_RANGES:
                if ipaddress.ip_address(a) in lab:
                    raise LabError(
                        f"package registry {host} resolves to {a}, inside the lab range {lab}: "
                        "lab hosts would lose the registry; the lab refuses to start"
                    )


# ---------------------------------------------------------------- images

def ssh_key() -> Path:
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lvs-nat-lab", "-f", SSH_KEY])
    return SSH_KEY


def host_ca_certs():
    # HTTPS from lab hosts to the registries needs this machine's extra CA certificates.
    return sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


def recipe_hash(kind: str, packages, customize) -> str:
    h = hashlib.sha256()
    for part in (kind, SUITE, MIRROR, PYROUTE2, " ".join(packages), inspect.getsource(customize),
                 inspect.getsource(customize_common), ssh_key().with_suffix(".pub").read_text()):
        h.update(part.encode())
        h.update(b"\0")
    for crt in host_ca_certs():
        h.update(crt.read_bytes())
    return h.hexdigest()[:16]


def mmdebstrap(packages, target: Path, log: Path) -> None:
    with open(log, "w") as fh:
        proc = subprocess.run(
            ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(packages), "--aptopt=Acquire::Retries \"3\"",
             SUITE, str(target), MIRROR],
            stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ, LC_ALL="C"), check=False,
        )
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise LabError(f"mmdebstrap failed (rc={proc.returncode}); log {log}:\n{tail}")


def customize_common(root: Path) -> None:
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(ssh_key().with_suffix(".pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    certs = host_ca_certs()
    if certs:
        for crt in certs:
            shutil.copy(crt, root / "usr/local/share/ca-certificates" / crt.name)
        run(["chroot", root, "update-ca-certificates"])
    # Units that only slow a lab host down.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"):
        (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")


def customize_director(root: Path) -> None:
    (root / "etc/hostname").write_text("director\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 director\n")
    (root / "etc/fstab").write_text("/dev/vda / ext4 defaults,noatime 0 1\n")
    # A minbase image has no DHCP client; systemd-networkd does DHCP on the management NIC.
    net = root / "etc/systemd/network"
    (net / "10-eth0.network").write_text("[Match]\nName=eth0\n[Network]\nDHCP=ipv4\n")
    # The lab NICs' addresses by MAC (Guest.mac): one director holds the VIP and the DIP; each of two holds its
    # fixed addresses and keepalived adds the VIP and the DIP on the master.
    for index, (pub, priv) in enumerate([(VIP, DIP), *HA_FIXED.values()]):
        mac = "52:54:00:51:%02x" % (0x64 + index + (1 if index else 0))
        for nic, addr, net_ in ((1, pub, PUBLIC), (2, priv, PRIVATE)):
            (net / f"2{index}-eth{nic}-{mac.replace(':', '')}{nic:02x}.network").write_text(
                f"[Match]\nMACAddress={mac}:{nic:02x}\n[Network]\nAddress={addr}/{net_.prefixlen}\n")
    # networkd writes no resolv.conf without resolved; QEMU user networking answers DNS here.
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text(f"nameserver {GUEST_DNS}\n")
    run(["chroot", root, "systemctl", "enable", "systemd-networkd.service"])
    # wait-online would hold boot for minutes if a lab NIC has no carrier.
    run(["chroot", root, "systemctl", "mask", "systemd-networkd-wait-online.service"])
    # pyroute2 as a user gets it with `pip install pyroute2`: a pure-Python wheel, unpacked.
    with tempfile.TemporaryDirectory() as wheels:
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", wheels, PYROUTE2])
        for whl in Path(wheels).glob("*.whl"):
            run(["python3", "-m", "zipfile", "-e", whl, root / "usr/local/lib/python3.11/dist-packages"])
    customize_common(root)


def customize_node(root: Path) -> None:
    # podman provides hostname, hosts and resolv.conf; the container's sshd serves Ansible.
    (root / "etc/fstab").write_text("")
    for unit in ("systemd-networkd-wait-online.service", "getty@tty1.service", "console-getty.service"):
        (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    customize_common(root)


def director_image() -> dict:
    """Build (or reuse) the director's disk image, kernel and initrd; return their paths."""
    tag = recipe_hash("director", DIRECTOR_PACKAGES, customize_director)
    out = CACHE / f"director-{tag}"
    paths = {"disk": out / "disk.raw", "kernel": out / "vmlinuz", "initrd": out / "initrd.img", "tag": tag}
    if (out / "complete").exists():
        say(f"director image {tag}: cached")
        return paths
    with step(f"building director image {tag} (mmdebstrap + kernel, about a minute)"):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            root = Path(tmp) / "root"
            mmdebstrap(DIRECTOR_PACKAGES, root, out / "mmdebstrap.log")
            customize_director(root)
            shutil.copy(sorted((root / "boot").glob("vmlinuz-*"))[-1], paths["kernel"])
            shutil.copy(sorted((root / "boot").glob("initrd.img-*"))[-1], paths["initrd"])
            # mkfs.ext4 -d fills the file system from a folder: no loop mount needed.
            run(["mkfs.ext4", "-q", "-F", "-L", "director", "-d", root, paths["disk"], "4G"])
        (out / "complete").write_text(tag)
    prune_cache("director-", out.name)
    return paths


def node_image() -> str:
    """Build (or reuse) the podman image for real servers and the client; return its name."""
    tag = recipe_hash("node", NODE_PACKAGES, customize_node)
    image = f"localhost/lvs-nat-lab-node:{tag}"
    if podman("image", "exists", image, check=False).returncode == 0:
        say(f"node image {tag}: cached")
        return image
    with step(f"building node image {tag} (mmdebstrap, podman import)"):
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            root = Path(tmp) / "root"
            mmdebstrap(NODE_PACKAGES, root, Path(tmp) / "mmdebstrap.log")
            customize_node(root)
            tar = Path(tmp) / "rootfs.tar"
            run(["tar", "-C", root, "--numeric-owner", "-cf", tar, "."])
            podman("import", "--change", 'CMD ["/sbin/init"]', "--change", "STOPSIGNAL=SIGRTMIN+3",
                   "--change", "ENV container=podman", tar, image)
    for old in podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/lvs-nat-lab-node").stdout.split():
        if old != image:
            podman("rmi", old, check=False)
    return image


def prune_cache(prefix: str, keep: str) -> None:
    for p in CACHE.glob(prefix + "*"):
        if p.name != keep:
            shutil.rmtree(p, ignore_errors=True)


def build_images():
    """Build both images side by side; the downloads dominate, not the CPU."""
    ssh_key()
    containers_conf()
    result, errors = {}, []

    def job(key, fn):
        try:
            result[key] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=job, args=(k, f)) for k, f in (("director", director_image), ("node", node_image))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return result["director"], result["node"]


# ---------------------------------------------------------------- network plumbing

def lab_links():
    out = run(["ip", "-j", "link", "show"], check=False).stdout or "[]"
    return [link["ifname"] for link in json.loads(out) if link["ifname"].startswith(f"{NAME}-")]


def mgmt_bridge():
    proc = podman("network", "inspect", MGMT_NET, check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0].get("network_interface")


def make_bridges() -> None:
    for br in (BR_PUB, BR_PRIV):
        if br not in lab_links():
            run(["ip", "link", "add", br, "type", "bridge"])
        # The host side of lab bridges holds no address: lab traffic never reaches the host stack.
        run(["ip", "link", "set", br, "up"])
        run(["sysctl", "-qw", f"net.ipv6.conf.{br}.disable_ipv6=1"])
    for tap, br in [(t, br) for g in guests().values() for t, br in ((g.tap_pub, BR_PUB), (g.tap_priv, BR_PRIV))]:
        if tap not in lab_links():
            run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
        run(["ip", "link", "set", tap, "master", br, "up"])
    # br_netfilter sends bridged frames through the host's FORWARD chain; accept lab frames
    # even where the host's policy is DROP.
    for br in (BR_PUB, BR_PRIV):
        rule = ["FORWARD", "-i", br, "-o", br, "-m", "comment", "--comment", FW_COMMENT, "-j", "ACCEPT"]
        if run(["iptables", "-C", *rule], check=False).returncode != 0:
            run(["iptables", "-I", *rule])


def remove_forward_rules() -> None:
    for line in run(["iptables", "-S", "FORWARD"], check=False).stdout.splitlines():
        if f"--comment {FW_COMMENT}" in line and line.startswith("-A "):
            run(["iptables", "-D", *shlex.split(line[3:])], check=False)


def plumb_container(host: str) -> None:
    """Plug a container's lab cable: a veth whose host end sits on a lab bridge, eth1 inside.

    Called between `podman init` and `podman start`, so eth1 and its address exist before the container's
    systemd starts, as a real host's NIC does at power-on."""
    cname, _mgmt_ip, bridge, addr = containers()[host]
    pid = podman("inspect", "-f", "{{.State.Pid}}", cname).stdout.strip()
    hostend = f"{NAME}-{host}"[:15]
    run(["ip", "link", "del", hostend], check=False)
    run(["ip", "link", "add", hostend, "type", "veth", "peer", "name", "eth1", "address", stable_mac(2, addr),
         "netns", pid])
    run(["ip", "link", "set", hostend, "master", bridge, "up"])
    nsenter = ["nsenter", "-t", pid, "-n"]
    run([*nsenter, "ip", "addr", "add", addr, "dev", "eth1"])
    run([*nsenter, "ip", "link", "set", "eth1", "up"])


def power_on(host: str) -> None:
    """Create the container's namespaces, plug its lab cable, then start its systemd."""
    cname = containers()[host][0]
    podman("init", cname)
    plumb_container(host)
    podman("start", cname)


# ---------------------------------------------------------------- containers

def start_containers(image: str) -> None:
    if podman("network", "exists", MGMT_NET, check=False).returncode != 0:
        podman("network", "create", "--subnet", str(MGMT), "--gateway", MGMT_GATEWAY, "--label", LABEL, MGMT_NET)
    for host, (cname, mgmt_ip, _bridge, _addr) in containers().items():
        podman("rm", "-f", "-t", "0", cname, check=False)
        # NET_ADMIN: real servers change their own routes and firewall, as on real hosts.
        podman("create", "--name", cname, "--hostname", host, "--label", LABEL,
               "--network", MGMT_NET, "--ip", mgmt_ip, "--mac-address", stable_mac(1, mgmt_ip), "--systemd", "always",
               "--cap-add", "NET_ADMIN,NET_RAW", image)
        power_on(host)


def restart_container(host: str) -> None:
    """Reboot a container host: systemd stops, the container's network namespace goes, and it boots anew with
    its lab NIC present from the start; nothing of the old kernel state (routes, rules) survives."""
    if host not in containers():
        raise LabError(f"unknown lab host {host!r}; lab hosts: director, {', '.join(containers())}")
    with step(f"rebooting container {host}"):
        podman("stop", "-t", "10", containers()[host][0])
        power_on(host)
        wait_booted(host, time.monotonic() + BOOT_TIMEOUT)


def wait_booted(host: str, deadline: float) -> None:
    """Wait until a lab host's boot is over: systemd has started every unit of it (running, or degraded when one
    failed, which the callers' own checks name). Right after a start, systemctl may not reach the new systemd yet (it
    prints nothing, seen in a container): asked again every 0.5 s until it answers, up to deadline (monotonic)."""
    while True:
        wait = max(10, int(deadline - time.monotonic()))
        r = exec_on(host, f"timeout {wait} systemctl is-system-running --wait", check=False, timeout=wait + 30)
        state = r.stdout.strip()
        if state in ("running", "degraded"):
            return
        if time.monotonic() > deadline:
            raise LabError(f"{host}: its boot did not finish (systemd: {state!r}; {r.stderr.strip()[-300:]!r})")
        time.sleep(0.5)


# ---------------------------------------------------------------- director guest

def kvm_usable() -> bool:
    if ACCEL == "tcg":
        return False
    if ACCEL == "kvm":
        return True
    # Nested KVM fails on some machines (KVM internal error, emulation failure): remember it.
    return os.access("/dev/kvm", os.R_OK | os.W_OK) and not (CACHE / "kvm-broken").exists()


def qemu_argv(img: dict, accel: str, g: Guest) -> list:
    append = "root=/dev/vda rw console=ttyS0 net.ifnames=0 mitigations=off"
    return [
        "qemu-system-x86_64", "-name", g.qemu_name, "-accel", accel,
        "-m", GUEST_MEMORY, "-smp", GUEST_CPUS, "-display", "none", "-no-user-config", "-nodefaults",
        "-serial", f"file:{STATE / g.console}", "-pidfile", str(g.pidfile),
        # The human monitor on a socket: set_link pulls a NIC's cable (the guest sees its carrier go).
        "-monitor", f"unix:{g.monitor},server=on,wait=off",
        "-kernel", str(img["kernel"]), "-initrd", str(img["initrd"]),
        "-append", append + (f" systemd.hostname={g.name}" if g.ha else ""),
        "-drive", f"file={g.disk},if=virtio,format=qcow2",
        "-netdev", f"user,id=mgmt,ipv6=off,net={GUEST_MGMT},host={GUEST_HOST},dns={GUEST_DNS},dhcpstart={GUEST_IP},"
                   f"hostfwd=tcp:127.0.0.1:{g.ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=mgmt,mac={g.mac}:00",
        "-netdev", f"tap,id=pub,ifname={g.tap_pub},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=pub,mac={g.mac}:01",
        "-netdev", f"tap,id=priv,ifname={g.tap_priv},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=priv,mac={g.mac}:02",
        "-device", "virtio-rng-pci",
    ]


def qemu_pid(host="director"):
    try:
        pid = int(guest(host).pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stray_qemu_pids(host=None):
    """QEMU processes of this lab (of one director, or all), found by name even when the pidfile is gone."""
    pattern = f"qemu-system-x86_64 -name {guest(host).qemu_name} " if host else f"qemu-system-x86_64 -name {NAME}-director"
    out = run(["pgrep", "-f", pattern], check=False).stdout
    return [int(p) for p in out.split()]


def boot_director(img: dict, host="director", accel=None) -> str:
    """Boot a director guest; in auto mode fall back from KVM to TCG when nested KVM fails."""
    g = guest(host)
    if not is_port_free(g.ssh_port):
        raise LabError(f"127.0.0.1:{g.ssh_port} is in use: set LVSNAT_LAB_SSH_PORT to a free port")
    accel = accel or ("kvm" if kvm_usable() else "tcg")
    while True:
        g.disk.unlink(missing_ok=True)
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", img["disk"], g.disk])
        try:
            with step(f"booting {g.name} guest ({accel}, {GUEST_CPUS} vCPU, {GUEST_MEMORY} MiB)"):
                start_guest(img, accel, g)
            if PYC_CACHE:
                pyc_cache(host, True)
            return accel
        except LabError:
            if accel == "kvm" and ACCEL == "auto":
                say("KVM did not boot the guest (nested KVM fails on some machines): falling back to TCG")
                (CACHE / "kvm-broken").write_text("nested KVM failed to boot the lab guest\n")
                kill_qemu(host)
                accel = "tcg"
                continue
            raise


def start_guest(img: dict, accel: str, g: Guest) -> None:
    """Start QEMU on the guest's existing disk and wait for SSH (a first boot, or a power-on after a crash)."""
    # Not -daemonize: QEMU's own messages (a KVM internal error) must land in a file.
    with open(STATE / g.qemu_log, "w") as log:
        proc = subprocess.Popen(qemu_argv(img, accel, g), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True)
    wait_for_ssh(proc, g, kvm=accel == "kvm")


PYC_HOOK = Path(__file__).with_name("lvsnat_lab_pyc.py")
PYC_SITE = "/usr/local/lib/python3.11/dist-packages"


def pyc_cache(host: str, enabled: bool) -> None:
    """Install (or remove) tests/lab/lvsnat_lab_pyc.py on a director: AnsiballZ's zip compiled once, not per run."""
    if enabled:
        exec_on(host, f"mkdir -p {PYC_SITE} && cat > {PYC_SITE}/lvsnat_lab_pyc.py && "
                      f"echo 'import lvsnat_lab_pyc' > {PYC_SITE}/lvsnat_lab_pyc.pth", input=PYC_HOOK.read_text())
    else:
        exec_on(host, f"rm -rf {PYC_SITE}/lvsnat_lab_pyc.pth {PYC_SITE}/lvsnat_lab_pyc.py /var/cache/lvsnat-lab-pyc")


def is_port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def ssh_argv(extra=(), host="director"):
    return ["ssh", "-i", str(ssh_key()), "-p", str(guest(host).ssh_port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
            "-o", f"ControlPath={STATE / 'ssh-%C'}", "-o", "ControlMaster=auto", "-o", "ControlPersist=120",
            *extra, "root@127.0.0.1"]


def _tail(name: str, n: int = 1500) -> str:
    path = STATE / name
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def wait_for_ssh(proc: subprocess.Popen, g: Guest, kvm: bool = False) -> None:
    # Under KVM the guest answers in seconds; nested KVM that fails leaves QEMU alive with
    # a paused guest ("KVM internal error. Suberror: 1"), so give it a short leash.
    # Seen here: under broken nested KVM the serial console stays empty; a working KVM
    # guest prints its first kernel lines within a second or two.
    start = time.monotonic()
    limit = min(BOOT_TIMEOUT, 90) if kvm else BOOT_TIMEOUT
    while time.monotonic() < start + limit:
        if "KVM internal error" in _tail(g.qemu_log, 100000):
            raise LabError(f"KVM internal error while booting the guest:\n{_tail(g.qemu_log)}")
        if kvm and time.monotonic() > start + 15 and not _tail(g.console):
            raise LabError("under KVM the guest printed nothing on its console in 15s")
        if proc.poll() is not None:
            raise LabError(f"the {g.name} guest exited during boot; QEMU said:\n{_tail(g.qemu_log)}\n"
                           f"console tail:\n{_tail(g.console)}")
        if run([*ssh_argv(["-o", "ConnectTimeout=5"], g.name), "true"], check=False, timeout=30).returncode == 0:
            return
        time.sleep(2)
    raise LabError(f"the {g.name} guest did not answer SSH within {limit}s; console tail:\n{_tail(g.console)}")


def kill_qemu(host=None, sig=signal.SIGTERM) -> None:
    """Stop the QEMU of one director (or of all): sig first (SIGKILL: a crash), SIGKILL after 10 s."""
    pids = set(stray_qemu_pids(host))
    for g in ([guest(host)] if host else guests().values()):
        if qemu_pid(g.name):
            pids.add(qemu_pid(g.name))
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        for p in list(pids):
            try:  # reap QEMU when this process started it; otherwise it is not our child
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
            if not Path(f"/proc/{p}").exists():
                pids.discard(p)
        time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for g in ([guest(host)] if host else guests().values()):
        g.pidfile.unlink(missing_ok=True)


def power_on_director(host: str) -> None:
    """Start a director whose QEMU was killed, on its disk as the crash left it, and wait for SSH."""
    g = guest(host)
    if qemu_pid(host):
        raise LabError(f"{g.name} is running")
    img = director_image()
    accel = "kvm" if kvm_usable() else "tcg"
    with step(f"powering on {g.name} ({accel})"):
        run([*ssh_argv(["-O", "exit"], g.name)], check=False, timeout=10)
        start_guest(img, accel, g)


def set_link(host: str, nic: str, up: bool) -> None:
    """Plug or pull a director NIC's cable (pub or priv) through QEMU's monitor: the guest sees its carrier."""
    g = guest(host)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(g.monitor))
        sock.sendall(f"set_link {nic} {'on' if up else 'off'}\n".encode())
        time.sleep(0.1)


def reboot_director(host="director") -> None:
    """Reboot a guest from inside (QEMU restarts it) and wait until SSH answers again."""
    g = guest(host)
    with step(f"rebooting {g.name} guest"):
        boot_id = exec_on(g.name, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
        run([*ssh_argv(host=g.name), "systemctl reboot"], check=False, timeout=30)
        run([*ssh_argv(["-O", "exit"], g.name)], check=False, timeout=10)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            time.sleep(3)
            proc = run([*ssh_argv(["-o", "ConnectTimeout=5"], g.name), "cat /proc/sys/kernel/random/boot_id"],
                       check=False, timeout=30)
            if proc.returncode == 0 and proc.stdout.strip() != boot_id:
                break
        else:
            raise LabError(f"the {g.name} guest did not come back within {BOOT_TIMEOUT}s")
        # SSH answers before the boot is over.
        wait_booted(g.name, deadline)


# ---------------------------------------------------------------- running commands on lab hosts

def exec_on(host: str, command: str, check=True, timeout=120, input=None):
    """Run a shell command on a lab host: SSH for the guest, podman exec for containers."""
    if is_director(host):
        argv = [*ssh_argv(host=host), command]
    else:
        argv = ["podman", "exec", *(["-i"] if input is not None else []), containers()[host][0], "sh", "-c", command]
    proc = run(argv, check=False, timeout=timeout, input=input, env={"CONTAINERS_CONF": str(containers_conf())})
    if check and proc.returncode != 0:
        raise LabError(f"on {host}: `{command}` failed (rc={proc.returncode})\n"
                       f"stdout: {proc.stdout.strip()[-2000:]}\nstderr: {proc.stderr.strip()[-2000:]}")
    return proc


# ---------------------------------------------------------------- inventory

# The cluster the lab declares for the roles: wrr 3:1 on port 80 (rs1 weighs 3), rr on 8080 mapped to port 80.
LAB_SERVICES = [
    {"protocol": "tcp", "port": 80, "scheduler": "wrr"},
    {"protocol": "tcp", "port": 8080, "scheduler": "rr", "real_server_port": 80},
]


def inventory_data(accel: str) -> dict:
    """The lab as an Ansible YAML inventory: connection details, lab facts and the roles' variables."""
    common = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    realservers = {}
    for i, rs in enumerate(realserver_names(), start=1):
        _cname, mgmt_ip, _bridge, addr = containers()[rs]
        ip = addr.split("/")[0]
        realservers[rs] = {"ansible_host": mgmt_ip, "lab_private_iface": "eth1", "lab_private_ip": ip,
                           "realserver_rip": ip, "realserver_weight": 3 if i == 1 else 1}
    _cname, client_mgmt, _bridge, client_addr = containers()["client"]
    return {"all": {
        "vars": {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(ssh_key()),
            "ansible_ssh_common_args": common,
            "ansible_python_interpreter": "/usr/bin/python3",
            # One SSH round trip per task instead of several (README: infra repo): the emulated director pays for each.
            "ansible_pipelining": True,
            "lab_accel": accel, "lab_vip": VIP, "lab_dip": DIP,
            "lab_public_net": str(PUBLIC), "lab_private_net": str(PRIVATE),
        },
        "children": {
            "director": {
                "hosts": director_hosts(),
                "vars": {
                    "director_vip": VIP,
                    "director_private_network": str(PRIVATE),
                    # The guest's user-mode NIC: the real servers' own traffic (package installs) leaves there.
                    "director_outbound_interface": "eth0",
                    "director_services": LAB_SERVICES,
                    # Not the kernel's defaults (900 120 300), so that a reboot test sees them restored.
                    "director_timeouts": {"tcp": 600, "tcp_fin": 60, "udp": 120},
                    **ha_vars(),
                },
            },
            "realservers": {"hosts": realservers, "vars": {"realserver_gateway": DIP}},
            "clients": {"hosts": {"client": {
                "ansible_host": client_mgmt, "lab_public_iface": "eth1",
                "lab_public_ip": client_addr.split("/", maxsplit=1)[0],
            }}},
        },
    }}


def director_hosts() -> dict:
    hosts = {}
    for g in guests().values():
        hosts[g.inventory_name] = {
            "ansible_host": "127.0.0.1", "ansible_port": g.ssh_port,
            "lab_public_iface": "eth1", "lab_public_ip": g.public_ip,
            "lab_private_iface": "eth2", "lab_private_ip": g.private_ip,
        }
        if g.ha:
            hosts[g.inventory_name].update({
                "director_public_interface": "eth1", "director_private_interface": "eth2",
                "director_public_address": f"{g.public_ip}/{PUBLIC.prefixlen}",
                "director_private_address": f"{g.private_ip}/{PRIVATE.prefixlen}",
            })
    return hosts


def ha_vars() -> dict:
    """The director role's HA declaration with two directors: the DIP floats with the VIP."""
    if len(guests()) == 1:
        return {}
    return {"director_dip": DIP, "director_ha": {"vrid": HA_VRIDS[0], "private_vrid": HA_VRIDS[1], "advert_int": 1},
            # Long-lived connections through the VIP (tests/lab/ha.py starts an echo server on the real servers).
            "director_services": [*LAB_SERVICES, {"protocol": "tcp", "port": HA_ECHO_PORT, "scheduler": "rr"}]}


def write_inventory(accel: str) -> Path:
    # JSON is YAML: ansible-playbook -i reads this file as it is, and inventory.py reads it without PyYAML.
    INVENTORY.write_text("# Written by tests/lab/lab.py up: the lvs.nat lab. Usable directly with ansible-playbook -i.\n"
                         + json.dumps(inventory_data(accel), indent=2) + "\n")
    return INVENTORY


def script_inventory() -> dict:
    """The running lab's inventory in Ansible's script-inventory form (empty when the lab is down)."""
    out = {"_meta": {"hostvars": {}}}
    if not INVENTORY.exists():
        return out
    text = INVENTORY.read_text()
    data = json.loads(text[text.index("{"):])["all"]
    out["all"] = {"vars": data["vars"], "children": list(data["children"])}
    for group, body in data["children"].items():
        out[group] = {"hosts": list(body["hosts"]), "vars": body.get("vars", {})}
        out["_meta"]["hostvars"].update(body["hosts"])
    return out


# ---------------------------------------------------------------- verbs

def status() -> dict:
    """What of the lab exists now; 'up' is true only when every part answers."""
    st = {"director": None, "containers": {}, "links": lab_links(), "mgmt_network": False}
    states = {}
    for g in guests().values():
        if qemu_pid(g.name):
            ok = run([*ssh_argv(["-o", "ConnectTimeout=5"], g.name), "true"], check=False, timeout=30).returncode == 0
            states[g.name] = "running, ssh ok" if ok else "running, ssh not answering"
        else:
            states[g.name] = "stray qemu process" if stray_qemu_pids(g.name) else None
    # "director": the one director's state; with two, the first that is not running well (else running, ssh ok).
    st["director"] = next((v for v in states.values() if v != "running, ssh ok"), "running, ssh ok")
    if st["director"] is None and any(states.values()):
        st["director"] = next(v for v in states.values() if v)
    if st["director"] is None and stray_qemu_pids():
        st["director"] = "stray qemu process"
    if len(states) > 1:
        st["directors"] = states
    out = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "json", check=False).stdout
    for c in json.loads(out or "[]"):
        st["containers"][c["Names"][0]] = c["State"]
    st["mgmt_network"] = podman("network", "exists", MGMT_NET, check=False).returncode == 0
    wanted_links = {BR_PUB, BR_PRIV} | {t for g in guests().values() for t in (g.tap_pub, g.tap_priv)}
    wanted_links |= {f"{NAME}-{h}"[:15] for h in containers()}
    st["up"] = (
        st["director"] == "running, ssh ok"
        and all(st["containers"].get(c[0]) == "running" for c in containers().values())
        and wanted_links <= set(st["links"]) and INVENTORY.exists()
    )
    return st


def anything_left(st: dict) -> bool:
    return bool(st["director"] or st["containers"] or st["links"] or st["mgmt_network"])


def up(directors=None) -> Path:
    """The lab up with `directors` director guests (default: as it runs, else LVSNAT_LAB_DIRECTORS): reused when it
    is up with that many, else (re)made."""
    st = status()
    running = len(guests()) if st["up"] else None
    want = directors or running or env_directors()
    preflight(want)
    STATE.mkdir(parents=True, exist_ok=True)
    st = status()
    if st["up"] and running == want:
        say(f"lab already up; inventory: {INVENTORY}")
        return INVENTORY
    if anything_left(st):
        if st["up"]:
            say(f"the lab is up with {running} director(s): making it anew with {want}")
        else:
            say("a partial lab is present (an earlier up failed or was interrupted): cleaning it first")
        down(quiet=True)
        STATE.mkdir(parents=True, exist_ok=True)
    DIRECTORS_FILE.write_text(f"{want}\n")
    t0 = time.monotonic()
    try:
        img, node = build_images()
        with step("creating bridges and taps"):
            make_bridges()
        # The guests boot in the background, side by side, while the containers start.
        boxes = {name: {} for name in guests()}
        boots = [threading.Thread(target=lambda n=name: boxes[n].setdefault("accel", _boot_catching(img, n)))
                 for name in guests()]
        for boot in boots:
            boot.start()
        with step(f"starting client and {REALSERVERS} real server container(s)"):
            start_containers(node)
        for boot in boots:
            boot.join()
        for box in boxes.values():
            if isinstance(box["accel"], BaseException):
                raise box["accel"]
        accel = next(iter(boxes.values()))["accel"]
        write_inventory(accel)
    except BaseException:
        say("up failed: removing what it made")
        down(quiet=True)
        raise
    say(f"lab up in {time.monotonic() - t0:.1f}s; inventory: {INVENTORY}")
    return INVENTORY


def _boot_catching(img, host):
    try:
        return boot_director(img, host)
    except BaseException as e:  # noqa: BLE001 - handed to the main thread
        return e


def down(quiet: bool = False) -> None:
    """Remove everything the lab made, whether or not up finished."""
    t0 = time.monotonic()
    kill_qemu()
    ids = podman("ps", "-a", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids, check=False)
    if podman("network", "exists", MGMT_NET, check=False).returncode == 0:
        podman("network", "rm", "-f", MGMT_NET, check=False)
    for link in lab_links():
        run(["ip", "link", "del", link], check=False)
    remove_forward_rules()
    shutil.rmtree(STATE, ignore_errors=True)
    left = status()
    if anything_left(left):
        raise LabError(f"down left something behind: {json.dumps(left)}")
    if not quiet:
        say(f"lab down in {time.monotonic() - t0:.1f}s: no VM, container, network, bridge, tap or veth left")


def shell(host: str, command) -> int:
    known = sorted({"director", *guests()}) + list(containers())
    if host not in known:
        raise LabError(f"unknown lab host {host!r}; lab hosts: {', '.join(known)}")
    if is_director(host):
        argv = [*ssh_argv(["-t"] if not command else [], host), *([shlex.join(command)] if command else [])]
    else:
        argv = ["podman", "exec", *(["-it"] if not command else []), containers()[host][0],
                *(command or ["bash", "-l"])]
    return subprocess.call(argv, env=dict(os.environ, CONTAINERS_CONF=str(containers_conf())))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("up", help="build images if their recipe changed, boot the director, start the containers")
    sub.add_parser("down", help="remove every VM, container, network and device the lab made")
    sub.add_parser("status", help="show what of the lab is running")
    sub.add_parser("inventory", help="print the path of the Ansible inventory")
    sh = sub.add_parser("shell", help="open a shell (or run a command) on a lab host")
    sh.add_argument("host")
    sh.add_argument("cmd", nargs=argparse.REMAINDER)
    rb = sub.add_parser("reboot", help="reboot a lab host and wait until it is back")
    rb.add_argument("host")
    args = parser.parse_args(argv)
    try:
        if args.verb == "up":
            up()
        elif args.verb == "down":
            down()
        elif args.verb == "status":
            st = status()
            print(json.dumps(st, indent=2))
            return 0 if st["up"] else 3
        elif args.verb == "inventory":
            if not INVENTORY.exists():
                raise LabError("the lab is not up")
            print(INVENTORY)
        elif args.verb == "shell":
            return shell(args.host, args.cmd)
        elif args.verb == "reboot":
            if is_director(args.host):
                reboot_director(args.host)
            else:
                restart_container(args.host)
    except LabError as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
