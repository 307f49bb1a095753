# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' install phase on a fresh host: a throwaway container from the lab's node image (Debian 12, minbase,
no web server, no pip, no pyroute2) with its package lists emptied, as any minimal image ships.

- The realserver role in check mode reports the web server's install and succeeds (apt cannot refresh its lists in
  check mode); nothing is installed and the lists stay empty.
- The director role's install phase: check mode likewise; a wheel with another sha256 is refused before anything is
  installed; pip installs the pinned wheel (--require-hashes, from PyPI or a wheel copied from the controller) for the
  system Python, and a second run changes nothing.

Reached over SSH like the lab's hosts (the image carries the lab's key); no lab needed, only its image."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import harness
import lab
import pytest
import yaml

# Containers from the lab's node image, with the lab's label (lab.py down removes them): the lab part of ./run test.
pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((ROOT / "roles/director/defaults/main.yml").read_text())


@pytest.fixture
def fresh(tmp_path):
    """A fresh host: name, address, inventory file; removed afterwards (lab.py down removes it too: lab label)."""
    image = lab.node_image()
    name = f"{lab.NAME}-fresh-{uuid.uuid4().hex[:8]}"
    lab.podman("run", "-d", "--name", name, "--hostname", "fresh", "--label", lab.LABEL, "--systemd", "always",
               "--cap-add", "NET_ADMIN,NET_RAW", image)
    try:
        ip = lab.podman("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()
        assert ip, "the container has no address on podman's default network"
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {"hosts": {"fresh": {
            "ansible_host": ip, "ansible_user": "root", "ansible_ssh_private_key_file": str(lab.SSH_KEY),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3"}}}}))
        deadline = time.monotonic() + 60
        while on(name, "systemctl is-active ssh", check=False).stdout.strip() != "active":
            assert time.monotonic() < deadline, "sshd did not start in the fresh container"
            time.sleep(1)
        # Package lists as a minimal image ships them: none.
        on(name, "rm -rf /var/lib/apt/lists/* && ! dpkg -s apache2 nginx ipvsadm python3-pip >/dev/null 2>&1")
        yield name, inventory
    finally:
        lab.podman("rm", "-f", "-t", "0", name, check=False)


def on(name, command, check=True):
    proc = lab.podman("exec", name, "sh", "-c", command, check=False)
    assert not check or proc.returncode == 0, f"`{command}`: rc={proc.returncode} {proc.stdout} {proc.stderr}"
    return proc


def playbook(tmp_path, inventory, tasks, *args, **extra):
    book = tmp_path / "play.yml"
    book.write_text(yaml.safe_dump([{"name": "A fresh host", "hosts": "fresh", "gather_facts": False,
                                     "tasks": tasks}], sort_keys=False))
    proc = harness.playbook(book, *args, "-e", json.dumps(extra), inventory=inventory, cwd=tmp_path)
    return proc.returncode, proc.output, proc.recap.get("fresh", {})


def role(name, tasks_from="main"):
    return [{"name": f"The {name} role", "ansible.builtin.include_role": {"name": f"lvs.nat.{name}", "tasks_from": tasks_from}}]


def installed(name, package):
    return on(name, f"dpkg-query -W -f '${{Status}}' {package} 2>/dev/null", check=False).stdout == "install ok installed"


def no_package_lists(name):
    return on(name, "ls /var/lib/apt/lists | grep -c _Packages", check=False).stdout.strip() == "0"


@pytest.mark.parametrize(("web", "package"), [("apache", "apache2"), ("nginx", "nginx")])
def test_check_mode_on_a_fresh_real_server_reports_the_install(tmp_path, fresh, web, package):
    name, inventory = fresh
    gateway = on(name, "ip -4 route show default").stdout.split()[2]
    rc, out, counts = playbook(tmp_path, inventory, role("realserver"), "--check", "--diff",
                               realserver_web=web, realserver_gateway=gateway)
    assert rc == 0, out[-5000:]
    assert "No package matching" not in out
    assert re.search(r"TASK \[lvs\.nat\.realserver : The web server's package would be installed \(check mode\)\]"
                     r"[^\n]*\nchanged: \[fresh\]", out), out[-5000:]
    assert f"{package} is not installed: a run installs it" in out
    assert counts["changed"] > 0 and counts["failed"] == 0, counts
    # Check mode changed nothing: no package, no lists, no site.
    assert not installed(name, package)
    assert no_package_lists(name)
    assert on(name, "test ! -e /var/www/lvs-nat", check=False).returncode == 0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """pyroute2's wheel on the controller, as README tells a user without PyPI on the director to fetch it."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", out,
                    DEFAULTS["director_pyroute2"]], check=True)
    (path,) = out.glob("pyroute2-*.whl")
    # The role's default hash is that of this very wheel.
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DEFAULTS["director_pyroute2_sha256"]
    return path


def leftovers(name):
    return on(name, "ls /var/tmp | grep pyroute2", check=False).stdout.strip()


def pyroute2_state(name):
    return on(name, "python3 -c 'import pyroute2, sys; print(pyroute2.__version__, pyroute2.__file__)'", check=False)


def test_director_refuses_a_wheel_with_another_sha256_before_installing_anything(tmp_path, fresh, wheel):
    name, inventory = fresh
    tampered = tmp_path / wheel.name
    tampered.write_bytes(wheel.read_bytes() + b"\0")
    rc, out, _counts = playbook(tmp_path, inventory, role("director", "install"), director_pyroute2_wheel=str(tampered))
    assert rc == 2, out[-5000:]
    assert f"has sha256 {hashlib.sha256(tampered.read_bytes()).hexdigest()}" in out, out[-5000:]
    assert not installed(name, "ipvsadm") and not installed(name, "python3-pip")
    assert leftovers(name) == ""
    assert pyroute2_state(name).returncode != 0


@pytest.mark.parametrize("source", ["wheel", "pypi"])
def test_director_installs_pyroute2_with_pip_pinned_by_its_hash(tmp_path, fresh, wheel, source):
    name, inventory = fresh
    extra = {"director_pyroute2_wheel": str(wheel)} if source == "wheel" else {}
    # Check mode first, with empty package lists: the installs are reported, nothing is installed.
    rc, out, counts = playbook(tmp_path, inventory, role("director", "install"), "--check", "--diff", **extra)
    assert rc == 0 and counts["changed"] > 0, out[-5000:]
    assert "ipvsadm, python3-pip not installed: a run installs them" in out
    assert not installed(name, "ipvsadm") and not installed(name, "python3-pip") and no_package_lists(name)

    rc, out, counts = playbook(tmp_path, inventory, role("director", "install"), **extra)
    assert rc == 0 and counts["changed"] > 0, out[-5000:]
    version, path = pyroute2_state(name).stdout.split()
    assert version == DEFAULTS["director_pyroute2"].split("==")[1]
    # pip installed it (its INSTALLER record), beside the distribution's own files, not into them.
    assert path.startswith("/usr/local/lib/python3"), path
    site = path.rsplit("/pyroute2/", 1)[0]
    assert on(name, f"cat {site}/pyroute2-{version}.dist-info/INSTALLER").stdout.strip() == "pip"
    assert installed(name, "ipvsadm")
    assert leftovers(name) == "", "the requirement or the wheel was left behind"

    rc, out, counts = playbook(tmp_path, inventory, role("director", "install"), **extra)
    assert rc == 0 and counts["changed"] == 0, out[-5000:]
