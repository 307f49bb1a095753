# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration targets: the modules run through ansible-playbook on the lab director's kernel."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TARGETS = sorted(p.name for p in (HERE / "targets").iterdir() if (p / "tasks" / "main.yml").exists())


def ansible_env():
    return dict(os.environ, ANSIBLE_PIPELINING="1", ANSIBLE_HOST_KEY_CHECKING="0", ANSIBLE_NOCOLOR="1",
                ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_DEPRECATION_WARNINGS="0")


def run_playbook(lab, playbook, *extra):
    bindir = Path(sys.executable).parent
    return subprocess.run([bindir / "ansible-playbook", "-i", lab.INVENTORY, playbook, *extra],
                          capture_output=True, text=True, env=ansible_env(), cwd=HERE, check=False)


@pytest.mark.parametrize("target", TARGETS)
def test_target(lab, target):
    proc = run_playbook(lab, HERE / "run_target.yml", "-e", f"target={target}")
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-5000:]
    assert "failed=0" in proc.stdout
