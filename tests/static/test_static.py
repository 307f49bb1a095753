# SPDX-License-Identifier: GPL-3.0-or-later
"""What users judge a collection by, without a lab: ruff, ansible-lint (production profile), ansible-test sanity with
empty ignore files, and the changelog (antsibull-changelog). Each runs the tool as a user would and fails on its
findings, which it shows."""
from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import ansible_test
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"
SANITY = ROOT / "tests" / "sanity"


def run(argv, cwd=ROOT, env=None):
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def tracked_files():
    """The checkout's files as a clone has them: tracked, plus new files not ignored by .gitignore."""
    rc, out = run(["git", "ls-files", "-co", "--exclude-standard", "-z"])
    assert rc == 0, out
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def test_ruff():
    rc, out = run([BIN / "ruff", "check", "--no-cache", "."])
    assert rc == 0, out


def test_ansible_lint_production_profile(tmp_path):
    # ANSIBLE_HOME of its own: a copy of lvs.nat installed in ~/.ansible/collections (an older release) would be
    # found before this checkout, and its modules linted against instead (seen: 0.3.0 without ipvs_health).
    rc, out = run([BIN / "ansible-lint", "--profile", "production", "--nocolor", "-f", "pep8"],
                  env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_HOME=str(tmp_path)))
    assert rc == 0, out[-8000:]
    assert "Profile 'production' was required, and it passed" in out


def test_ansible_test_sanity_with_empty_ignore_files(tmp_path):
    ignores = sorted(SANITY.glob("ignore-*.txt"))
    assert ignores, "tests/sanity/ignore-<core>.txt states that nothing is ignored"
    assert [p.name for p in ignores if p.read_text().strip()] == []
    # ansible-test needs the collection at .../ansible_collections/NAMESPACE/NAME.
    tree = tmp_path / "ansible_collections" / "lvs" / "nat"
    for rel in tracked_files():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tree / rel)
    # ansible-test bootstraps pip in its virtual environments with a script from ci-files.testing.ansible.com;
    # where that host is unreachable it takes the script from its cache (tests/sanity/get_pip.py says how).
    pip_version = re.search(r"pip='([\d.]+)'", (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py")
                            .read_text()).group(1)
    cached = Path.home() / ".ansible" / "test" / "cache" / f"get_pip_{pip_version.replace('.', '_')}.py"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SANITY / "get_pip.py", cached)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    rc, out = run([BIN / "ansible-test", "sanity", "--venv", "--python", python, "--color", "no"], cwd=tree,
                  env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"))
    assert rc == 0, out[-8000:]
    assert "Running sanity test \"validate-modules\"" in out and "Running sanity test \"pylint\"" in out


def test_changelog_fragments_lint_and_changelog_is_generated_from_them(tmp_path):
    rc, out = run([BIN / "antsibull-changelog", "lint"])
    assert rc == 0 and out.strip() == "", out
    # CHANGELOG.md is what antsibull-changelog renders from changelogs/changelog.yaml, not edited by hand.
    copy = tmp_path / "nat"
    for rel in ("galaxy.yml", "CHANGELOG.md", "changelogs/config.yaml", "changelogs/changelog.yaml"):
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, copy / rel)
    rc, out = run([BIN / "antsibull-changelog", "generate"], cwd=copy)
    assert rc == 0, out
    assert filecmp.cmp(copy / "CHANGELOG.md", ROOT / "CHANGELOG.md", shallow=False), "CHANGELOG.md is stale"
    # The version the tarball gets has its entry in the changelog.
    releases = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())["releases"]
    assert yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"] in releases
