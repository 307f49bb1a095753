# SPDX-License-Identifier: GPL-3.0-or-later
"""Every condition in the collection's task files is a string (or a list of strings, or a boolean): YAML reads an
unquoted `- x.startswith('a: b')` as a mapping, which ansible-core refuses only when the task runs ("Conditional
expressions must be strings"; a lab-only integration target failed so in the CI run of 2026-12-05 02:09 UTC)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(p for top in ("roles", "playbooks", "molecule", "tests/integration") for p in (ROOT / top).rglob("*.yml"))
CONDITIONS = ("when", "changed_when", "failed_when", "until")
ASSERTS = ("ansible.builtin.assert", "assert")


def tasks(node):
    """Every task (a mapping in a list), blocks' and plays' included."""
    if isinstance(node, list):
        for item in node:
            yield from tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            yield from tasks(node.get(key))


def bad_conditions(task):
    found = []
    for key in CONDITIONS:
        value = task.get(key)
        for item in value if isinstance(value, list) else [value]:
            if item is not None and not isinstance(item, (str, bool)):
                found.append((key, item))
    for key in ASSERTS:
        args = task.get(key)
        if isinstance(args, dict):
            that = args.get("that")
            for item in that if isinstance(that, list) else [that]:
                if not isinstance(item, (str, bool)):
                    found.append(("that", item))
    return found


def test_task_files_are_found():
    assert len(FILES) > 40
    assert ROOT / "tests/integration/targets/keepalived_vrrp/tasks/main.yml" in FILES


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_condition_is_a_string(path):
    doc = yaml.safe_load(path.read_text())
    assert [bad for task in tasks(doc) for bad in bad_conditions(task)] == []


def test_an_unquoted_colon_in_a_condition_is_found():
    doc = yaml.safe_load("- ansible.builtin.assert:\n    that:\n      - x.startswith('a: b')\n")
    assert bad_conditions(doc[0]) == [("that", {"x.startswith('a": "b')"})]
