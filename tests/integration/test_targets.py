# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration targets: the modules run through ansible-playbook on the lab director's kernel."""
from __future__ import annotations

from pathlib import Path

import harness
import pytest

HERE = Path(__file__).parent
TARGETS = sorted(p.name for p in (HERE / "targets").iterdir() if (p / "tasks" / "main.yml").exists())


@pytest.mark.parametrize("target", TARGETS)
def test_target(lab, target):
    proc = harness.playbook(HERE / "run_target.yml", "-e", f"target={target}", inventory=lab.INVENTORY, cwd=HERE)
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-5000:]
    assert "failed=0" in proc.stdout
