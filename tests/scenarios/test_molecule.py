# SPDX-License-Identifier: GPL-3.0-or-later
"""The molecule scenarios against the run's shared lab (molecule's destroy is left to the session fixture).

The default scenario: converge playbooks/site.yml, converge again with nothing changed, then the testinfra verify in
molecule/default/tests (traffic splits, a check-mode run changing nothing, a real server restarted, drain, a
removed service)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def molecule(request, *args):
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():  # its output is the progress of a long step
        return subprocess.run([f"{sys.prefix}/bin/molecule", *args], cwd=ROOT,
                              env=dict(os.environ, PATH=f"{sys.prefix}/bin:{os.environ['PATH']}"), check=False)


def test_default_scenario(lab, request):
    # Forget any earlier run's idea of what exists: the lab is the only state.
    assert molecule(request, "reset").returncode == 0
    assert molecule(request, "test", "--destroy", "never").returncode == 0
