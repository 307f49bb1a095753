# SPDX-License-Identifier: GPL-3.0-or-later
"""Each role's meta/argument_specs.yml and defaults/main.yml say the same: every default in one is in the other
with the same value, required options have no default, and every option carries the role's prefix."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir()))
def test_argument_specs_match_defaults(role):
    options = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    assert all(name.startswith(f"{role}_") for name in [*options, *defaults])
    assert set(defaults) <= set(options), f"undocumented defaults: {set(defaults) - set(options)}"
    for name, spec in options.items():
        if spec.get("required"):
            assert name not in defaults and "default" not in spec, f"{name} is required and has a default"
        else:
            assert name in defaults, f"{name} has no default in defaults/main.yml"
            assert spec.get("default") == defaults[name], f"{name}: {spec.get('default')!r} != {defaults[name]!r}"
        assert spec.get("description"), f"{name} has no description"
