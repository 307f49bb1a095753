# SPDX-License-Identifier: GPL-3.0-or-later
"""Module documentation names only what exists: example tasks, M() references and seealso modules of lvs.nat."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p for p in (ROOT / "plugins" / "modules").glob("*.py") if p.name != "__init__.py")
NAMES = set(p.stem for p in MODULES)


def _block(source, name):
    start = source.index('%s = r"""' % name) + len('%s = r"""' % name)
    return source[start:source.index('"""', start)]


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_documentation_names_existing_modules(path):
    source = path.read_text()
    examples = yaml.safe_load(_block(source, "EXAMPLES"))
    used = [key for task in examples for key in task if key.startswith("lvs.nat.")]
    doc = _block(source, "DOCUMENTATION")
    used += re.findall(r"M\((lvs\.nat\.[a-z0-9_.]+)\)", doc)
    used += [s["module"] for s in yaml.safe_load(doc).get("seealso", []) if "module" in s and s["module"].startswith("lvs.nat.")]
    assert used or path.stem in ("ipvs_info",), path.stem
    missing = sorted(set(name for name in used if name.split(".", 2)[2] not in NAMES))
    assert not missing, missing
