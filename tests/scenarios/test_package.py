# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection as users get it: `ansible-galaxy collection build` from this checkout, installed into a separate
directory laid out like an existing infra repo (its own ansible.cfg, inventory and playbook), and a play there that
converges the lab cluster with lvs.nat.director, lvs.nat.realserver and modules by FQCN, with nothing from the
checkout on Ansible's path."""
from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import harness
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"
# What a user's artifact must not carry: tests, the lab, CI, the test requirements and the linters' settings.
NOT_SHIPPED = ("tests/", "molecule/", ".ci/", "run", "requirements.txt", "requirements-test.txt", "pytest.ini",
               "ruff.toml", ".ansible-lint", ".gitignore", "changelogs/fragments/", "changelogs/.plugin-cache.yaml", ".venv/")
# Everything else at the top: the collection's own files.
TOP_LEVEL = {"MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.md", "BENCHMARKS.md", "LICENSE", "meta", "plugins",
             "roles", "playbooks", "changelogs"}
SHIPPED = ("MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.md", "LICENSE", "meta/runtime.yml",
           "plugins/modules/ipvs_service.py", "plugins/module_utils/_ipvs.py", "roles/director/tasks/main.yml",
           "roles/realserver/meta/argument_specs.yml", "playbooks/site.yml", "changelogs/changelog.yaml")

PLAYBOOK = [
    {"name": "LVS-NAT directors", "hosts": "director", "gather_facts": False, "force_handlers": True,
     "roles": ["lvs.nat.director"],
     "post_tasks": [
         {"name": "Read the IPVS table", "lvs.nat.ipvs_info": {}, "register": "ipvs"},
         {"name": "Both services are there with every real server",
          "ansible.builtin.assert": {"that": [
              "ipvs.services | length == 2",
              "ipvs.services | map(attribute='real_servers') | map('length') | list == [2, 2]"]}},
     ]},
    {"name": "LVS-NAT real servers", "hosts": "realservers", "gather_facts": False, "force_handlers": True,
     "roles": ["lvs.nat.realserver"]},
]


def run(argv, cwd, env=None):
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    proc = run([BIN / "ansible-galaxy", "collection", "build", "--output-path", out, ROOT], cwd=out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("lvs-nat-*.tar.gz")
    return path


def test_the_tarball_holds_the_collection_and_no_tests_lab_or_ci(tarball):
    with tarfile.open(tarball) as tar:
        names = [m.name + ("/" if m.isdir() else "") for m in tar.getmembers()]
    leaked = [n for n in names if n.startswith(NOT_SHIPPED) or n.rstrip("/") in NOT_SHIPPED]
    assert leaked == []
    assert {n.split("/")[0] for n in names} == TOP_LEVEL
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert set(SHIPPED) <= set(names), set(SHIPPED) - set(names)
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    assert tarball.name == f"lvs-nat-{version}.tar.gz"


@pytest.fixture(scope="module")
def infra(tarball, tmp_path_factory, lab):
    """An existing infra repo: ansible.cfg, inventory/, a playbook; the collection installed from the tarball."""
    repo = tmp_path_factory.mktemp("infra-repo")
    (repo / "ansible.cfg").write_text(
        "[defaults]\n"
        "inventory = inventory/lab.yml\n"
        "collections_path = ./collections\n"
        # Only ./collections: not site-packages, not ~/.ansible/collections.
        "collections_scan_sys_path = False\n"
        "stdout_callback = ansible.builtin.default\n"
        "nocolor = True\n")
    (repo / "inventory").mkdir()
    shutil.copy(lab.INVENTORY, repo / "inventory" / "lab.yml")
    (repo / "lvs.yml").write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    # The environment of a user's shell: the virtualenv's tools, none of the test run's Ansible settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    proc = run([BIN / "ansible-galaxy", "collection", "install", tarball], cwd=repo, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return repo, env


def test_the_infra_repo_sees_only_the_installed_collection(infra):
    repo, env = infra
    proc = run([BIN / "ansible-galaxy", "collection", "list", "lvs.nat", "--format", "json"], cwd=repo, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = json.loads(proc.stdout)
    assert list(found) == [str(repo / "collections" / "ansible_collections")], found
    installed = repo / "collections" / "ansible_collections" / "lvs" / "nat"
    assert installed.is_dir() and not installed.is_symlink()
    assert not (installed / "tests").exists() and not (installed / "molecule").exists()


def test_the_infra_repo_play_converges_the_lab_cluster(infra, lab):
    repo, env = infra
    rs_last = lab.realserver_names()[-1]
    # Undo part of the cluster so that the play has work to do: the director's IPVS table, a real server's page.
    # (Its route stays: a real server that still has to install its web server reaches the mirror through it.)
    lab.exec_on("director", "ipvsadm -C")
    lab.exec_on(rs_last, "rm -f /var/www/lvs-nat/index.html")

    # The user's shell environment and the infra repo's ansible.cfg, not the tests' Ansible settings.
    proc = harness.playbook("-vv", "lvs.yml", cwd=repo, env=env, bindir=BIN)
    out = proc.output
    assert proc.returncode == 0, out[-6000:]
    counts = proc.recap
    assert set(counts) == {"director1", *lab.realserver_names()}
    assert counts["director1"]["changed"] > 0 and counts[rs_last]["changed"] > 0
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values())
    # Every task came from the installed copy; nothing from this checkout.
    installed = f"{repo}/collections/ansible_collections/lvs/nat/roles/"
    paths = re.findall(r"^task path: (\S+)", proc.stdout, re.M)
    role_paths = [p for p in paths if "/roles/" in p]
    assert role_paths and all(p.startswith(installed) for p in role_paths), sorted(set(role_paths))[:5]
    assert f"Using {repo}/ansible.cfg as config file" in proc.stdout
    assert f"ansible collection location = {repo}/collections\n" in proc.stdout
    assert not [line for line in proc.stdout.splitlines()
                if f"{ROOT}/roles" in line or f"{ROOT}/plugins" in line or f"{ROOT}/playbooks" in line]

    # The kernel and the data path: both services answer from every real server.
    table = lab.exec_on("director", "ipvsadm -Sn").stdout
    for rs in lab.realserver_names():
        assert f"-r {lab.realserver_ip(rs)}:80 -m" in table, table
    assert "default via " + lab.DIP in lab.exec_on(rs_last, "ip route show default").stdout
    answers = collections.Counter(
        lab.exec_on("client", f"curl -s -m 5 http://{lab.VIP}:{port}/").stdout.removeprefix("lvs.nat real server ").strip()
        for port in (80, 8080) for _request in range(8))
    assert set(answers) == set(lab.realserver_names()), answers

    # The same play again changes nothing.
    again = harness.playbook("lvs.yml", cwd=repo, env=env, bindir=BIN)
    assert again.returncode == 0, again.output[-6000:]
    assert {h: c["changed"] for h, c in again.recap.items()} == dict.fromkeys(counts, 0)
