# SPDX-License-Identifier: GPL-3.0-or-later
"""The director role refuses what its pyroute2 install would paste into a pip requirements file (in its preflight,
the one place that checks those variables), and a wheel whose sha256 is not director_pyroute2_sha256, before it
installs anything.

The role's preflight and install tasks run on this machine (connection local) in check mode, with an interpreter that
has no pyroute2: the refusals come before the first task that could change a host. The install itself, by pip with
--require-hashes, is proved in a container (tests/scenarios/test_realserver_check.py)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import harness
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PHASES = [{"name": phase.capitalize(), "ansible.builtin.include_role": {"name": "lvs.nat.director", "tasks_from": phase}}
          for phase in ("preflight", "install")]
PLAY = [{"name": "The director's preflight and install phases", "hosts": "localhost", "gather_facts": False,
         "tasks": PHASES}]
# What the preflight needs besides the pyroute2 variables: a VIP and a service with its real server.
ROLE_VARS = {"director_vip": "192.0.2.10",
             "director_services": [{"protocol": "tcp", "port": 80, "real_servers": [{"address": "192.0.2.11"}]}]}
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
    extra_vars = {"ansible_python_interpreter": str(python), **ROLE_VARS, **extra}
    proc = harness.playbook("-c", "local", "--check", book, "-e", json.dumps(extra_vars),
                            inventory="localhost,", cwd=tmp_path,
                            env=harness.ansible_env(ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0"))
    return proc.returncode, proc.output


REASON = {
    "director_pyroute2": "be an exact pin, pyroute2==VERSION",
    "director_pyroute2_sha256": "be a sha256 in 64 lowercase hex digits",
    "director_pyroute2_wheel": "be empty or the path of a wheel file named as pip takes it, "
                               "pyroute2-VERSION-PYTHON-ABI-PLATFORM.whl (such as pyroute2-0.9.7-py3-none-any.whl)",
}


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
    # Refused by the preflight's one check of every role variable, naming the variable and showing its value.
    failed = out[out.index("TASK [lvs.nat.director : Every role variable is valid]"):]
    assert failed.startswith("TASK [lvs.nat.director : Every role variable is valid]") and "FAILED!" in failed, out[-3000:]
    message = json.loads(failed[failed.index("{"):failed.index("\n", failed.index("FAILED!"))])["msg"]
    shown = repr(bad[option]) if len(repr(bad[option])) <= 80 else repr(bad[option])[:77] + "..."
    assert message == f"1 bad director variable(s): {option} must {REASON[option]}, not {shown}", message
    assert "TASK [lvs.nat.director : Is pyroute2" not in out and "TASK [lvs.nat.director : Install them" not in out


def test_a_wheel_with_another_sha256_is_refused_on_the_controller_before_any_install(tmp_path, python):
    (tmp_path / "files").mkdir()
    wheel = tmp_path / "files" / "pyroute2-0.9.7-py3-none-any.whl"
    wheel.write_bytes(b"not the wheel PyPI serves")
    actual = hashlib.sha256(wheel.read_bytes()).hexdigest()
    rc, out = play(tmp_path, python, director_pyroute2_wheel=str(wheel))
    assert rc == 2, out[-3000:]
    assert f"director_pyroute2_wheel {wheel} has sha256 {actual}, director_pyroute2_sha256 says {GOOD}" in out, out[-3000:]
    assert "TASK [lvs.nat.director : Install them" not in out and "Copy the wheel" not in out
