# SPDX-License-Identifier: GPL-3.0-or-later
"""The director role's pyroute2 install refuses what it would paste into a pip requirements file, and a wheel whose
sha256 is not director_pyroute2_sha256, before it installs anything.

The role's install tasks run on this machine (connection local) in check mode, with an interpreter that has no
pyroute2: the refusals come before the first task that could change a host. The install itself, by pip with
--require-hashes, is proved in a container (tests/scenarios/test_realserver_check.py)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"
INSTALL = {"name": "Install", "ansible.builtin.include_role": {"name": "lvs.nat.director", "tasks_from": "install"}}
PLAY = [{"name": "The director's install phase", "hosts": "localhost", "gather_facts": False, "tasks": [INSTALL]}]
GOOD = yaml.safe_load((ROOT / "roles/director/defaults/main.yml").read_text())["director_pyroute2_sha256"]


@pytest.fixture(scope="module")
def python(tmp_path_factory):
    """An interpreter without pyroute2 (and without pip): the role goes on to install it."""
    venv = tmp_path_factory.mktemp("nopyroute2")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    py = venv / "bin" / "python"
    assert subprocess.run([py, "-c", "import pyroute2"], capture_output=True, check=False).returncode != 0
    return py


def play(tmp_path, python, **extra):
    book = tmp_path / "install.yml"
    book.write_text(yaml.safe_dump(PLAY, sort_keys=False))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    proc = subprocess.run([BIN / "ansible-playbook", "-i", "localhost,", "-c", "local", "--check", book,
                           "-e", json.dumps({"ansible_python_interpreter": str(python), **extra})],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("bad", [
    {"director_pyroute2": "pyroute2>=0.9.6"},
    {"director_pyroute2": "pyroute2"},
    {"director_pyroute2": "pyroute2==0.9.7\n--index-url http://198.51.100.1/simple"},
    {"director_pyroute2": "pyroute2==0.9.7 --hash=sha256:" + "0" * 64},
    {"director_pyroute2": "pyroute2==0.9.7\n"},
    {"director_pyroute2": "pyroute2==٠.9.7"},
    {"director_pyroute2_sha256": ""},
    {"director_pyroute2_sha256": GOOD + "\n"},
    {"director_pyroute2_sha256": GOOD.upper()},
    {"director_pyroute2_sha256": GOOD[:-1]},
    {"director_pyroute2_sha256": GOOD[:-1] + " --no-deps"},
    {"director_pyroute2_wheel": "files/evil.whl"},
    {"director_pyroute2_wheel": "files/pyroute2-0.9.7-py3-none-any.whl --index-url=http://x"},
    {"director_pyroute2_wheel": "files/pyroute2-0.9.7-py3-none-any.whl\n-e ."},
])
def test_bad_pyroute2_values_are_refused_before_any_install(tmp_path, python, bad):
    rc, out = play(tmp_path, python, **bad)
    assert rc == 2, out[-3000:]
    (option,) = bad
    assert f"TASK [lvs.nat.director : Check {option}]" in out, out[-3000:]
    assert f"{option} must " in out and f"got: {json.dumps(bad[option])}" in out, out[-3000:]
    assert "TASK [lvs.nat.director : Install them" not in out


def test_a_wheel_with_another_sha256_is_refused_on_the_controller_before_any_install(tmp_path, python):
    (tmp_path / "files").mkdir()
    wheel = tmp_path / "files" / "pyroute2-0.9.7-py3-none-any.whl"
    wheel.write_bytes(b"not the wheel PyPI serves")
    actual = hashlib.sha256(wheel.read_bytes()).hexdigest()
    rc, out = play(tmp_path, python, director_pyroute2_wheel=str(wheel))
    assert rc == 2, out[-3000:]
    assert f"director_pyroute2_wheel {wheel} has sha256 {actual}, director_pyroute2_sha256 says {GOOD}" in out, out[-3000:]
    assert "TASK [lvs.nat.director : Install them" not in out and "Copy the wheel" not in out
