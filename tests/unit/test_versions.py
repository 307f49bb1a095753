# SPDX-License-Identifier: GPL-3.0-or-later
"""version_added agrees with galaxy.yml and the released changelog."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p for p in (ROOT / "plugins" / "modules").glob("*.py") if p.name != "__init__.py")


def _version(text):
    return tuple(int(part) for part in text.split("."))


def _doc(path):
    source = path.read_text()
    start = source.index('DOCUMENTATION = r"""') + len('DOCUMENTATION = r"""')
    return yaml.safe_load(source[start:source.index('"""', start)])


def _released():
    """module name -> the release that introduced it, from changelogs/changelog.yaml."""
    changelog = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())
    out = {}
    for release, data in changelog["releases"].items():
        for module in data.get("modules", []):
            out[module["name"]] = release
        for plugins in data.get("plugins", {}).values():
            for plugin in plugins:
                out[plugin["name"]] = release
    return out


GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]


def test_galaxy_version_is_the_newest_release_or_later():
    changelog = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())
    assert _version(GALAXY) >= max(_version(release) for release in changelog["releases"]), GALAXY


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_version_added(path):
    """A released module says the release that brought it; a module not yet released says the version in the making."""
    added = str(_doc(path)["version_added"])
    assert added == _released().get(path.stem, GALAXY), (path.stem, added, GALAXY)


FILTER_DOCS = sorted((ROOT / "plugins" / "filter").glob("*.yml"))


@pytest.mark.parametrize("path", FILTER_DOCS, ids=[p.stem for p in FILTER_DOCS])
def test_filter_version_added(path):
    added = str(yaml.safe_load(path.read_text())["DOCUMENTATION"]["version_added"])
    assert added == _released().get(path.stem, GALAXY), (path.stem, added, GALAXY)
