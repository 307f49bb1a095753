# SPDX-License-Identifier: GPL-3.0-or-later
"""Every integration target has an `aliases` file saying what it needs (root, the lab or network namespaces the
pytest wrappers make: `unsupported` for ansible-test's own hosts), and `ansible-test integration --list-targets`
lists the targets from them. The netns targets are listed as ansible-test would list them in targets/."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import harness
import pytest

INTEGRATION = Path(__file__).parent
KINDS = ["targets", "netns_targets"]
MODULES = {p.stem for p in (harness.ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__"}
NEEDED = {"context/target", "needs/root", "destructive", "unsupported"}
# ansible-test's aliases without a slash that are not module names.
KEYWORDS = {"destructive", "unsupported", "disabled", "unstable", "hidden"}


def target_dirs(kind):
    return sorted(p for p in (INTEGRATION / kind).iterdir() if p.is_dir())


def aliases(target):
    """The aliases as ansible-test reads them: a `#` starts a comment, blank lines do not count."""
    lines = [line.split("#", 1)[0].strip() for line in (target / "aliases").read_text().splitlines()]
    return [line for line in lines if line]


@pytest.mark.parametrize("kind", KINDS)
def test_every_target_has_aliases_naming_what_it_needs(kind):
    targets = target_dirs(kind)
    assert targets
    for target in targets:
        assert (target / "tasks" / "main.yml").is_file(), target
        assert (target / "aliases").is_file(), f"{target} has no aliases file"
        names = aliases(target)
        assert NEEDED <= set(names), (target.name, NEEDED - set(names))
        assert len(names) == len(set(names)), target.name
        for name in names:
            if name.startswith("needs/file/"):
                assert (harness.ROOT / name.removeprefix("needs/file/")).is_file(), (target.name, name)
            elif "/" not in name and name not in KEYWORDS:
                assert name in MODULES, f"{target.name}: {name} is not a module of the collection"
        # A target that includes a file outside itself says so.
        uses = {"tests/integration/read_kernel.yml"} if any("read_kernel.yml" in p.read_text() for p in target.rglob("*.yml")) else set()
        assert uses == {n.removeprefix("needs/file/") for n in names if n.startswith("needs/file/")}, target.name


def list_targets(tree, *flags):
    return harness.ansible("ansible-test", "integration", "--list-targets", *flags, cwd=tree,
                           env=harness.ansible_env(PATH=f"{harness.BIN}:{os.environ['PATH']}"))


@pytest.mark.parametrize("kind", KINDS)
def test_ansible_test_lists_the_targets(kind, tmp_path):
    # ansible-test needs the collection at .../ansible_collections/NAMESPACE/NAME; its targets in tests/integration/targets.
    tree = tmp_path / "ansible_collections" / "lvs" / "nat"
    shutil.copytree(INTEGRATION / kind, tree / "tests" / "integration" / "targets")
    names = [t.name for t in target_dirs(kind)]
    run = list_targets(tree, "--allow-unsupported", "--allow-destructive", "--allow-root")
    assert run.returncode == 0, run.output
    assert run.stdout.split() == names
    # Without being allowed, every target is left out: ansible-test read the aliases.
    run = list_targets(tree)
    assert run.stdout.split() == []
    excluded = 'Excluding target tests marked "unsupported" which require --allow-unsupported or prefixing with "unsupported/": '
    assert excluded + ", ".join(names) in run.stderr, run.output
