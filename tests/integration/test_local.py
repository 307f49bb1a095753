# SPDX-License-Identifier: GPL-3.0-or-later
"""Module behaviour that needs no lab: run on this machine with ansible's local connection."""
from __future__ import annotations

import json

import harness
import pytest


@pytest.mark.parametrize("module, args", [("ipvs_info", []), ("ipvs_timeouts", ["-a", "tcp=600"])])
def test_missing_pyroute2_is_a_clear_failure(module, args, tmp_path):
    # python3 -S: only the standard library, as on a director where pyroute2 was never installed.
    python = tmp_path / "python-without-site"
    python.write_text("#!/bin/sh\nexec /usr/bin/python3 -S \"$@\"\n")
    python.chmod(0o755)
    proc = harness.ansible("ansible", "localhost", "-c", "local", "-o", "-m", f"lvs.nat.{module}",
                           *args, "-e", f"ansible_python_interpreter={python}")
    assert proc.returncode != 0
    result = json.loads(proc.stdout.split("=>", 1)[1])
    assert result["msg"].startswith("Failed to import the required Python library (pyroute2 (0.9.6 or newer, from PyPI))")
