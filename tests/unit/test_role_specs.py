# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' structure, read from their files (and from ansible-playbook's own --list-hosts):

- each default is written in defaults/main.yml; meta/argument_specs.yml documents every variable (required ones have
  no default) with the same default, since ansible-doc shows `default: null` for an option without one; a service's
  options (scheduler, weight, ...) carry no default in the role at all: the filter fills them with the modules';
- every tag carries the role's name (director_install, ...), so that it never collides with another role's;
- a condition shared by adjacent tasks is a block's, not repeated on each task;
- the director saves the IPVS state in one task (no handler besides);
- the pyroute2 variables' form is checked in one place (the preflight's lvs.nat.director_plan);
- site.yml targets the configurable groups."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import harness
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir())
BLOCK_KEYS = ("block", "rescue", "always")


def load(path):
    return yaml.safe_load(path.read_text())


def task_lists(tasks):
    """Every list of tasks in a task file: the file's own, then each block's, rescue's and always' (recursively)."""
    yield tasks
    for task in tasks:
        for key in BLOCK_KEYS:
            if task.get(key):
                yield from task_lists(task[key])


def all_tasks(tasks):
    for tasks_list in task_lists(tasks):
        yield from tasks_list


def role_tasks(role, subdir="tasks"):
    """(file name, task) of every task, block included, of the role's task (or handler) files."""
    for path in sorted((ROLES / role / subdir).glob("*.yml")):
        for task in all_tasks(load(path) or []):
            yield path.name, task


def specs_with_default(options, where):
    """Where a sub-option of an argument spec carries a default."""
    for name, spec in options.items():
        sub = spec.get("options") or {}
        yield from (f"{where}{name}.{s}" for s, sub_spec in sub.items() if "default" in sub_spec)
        yield from specs_with_default(sub, f"{where}{name}.")


def undescribed(options, where):
    for name, spec in options.items():
        if not spec.get("description"):
            yield f"{where}{name}"
        yield from undescribed(spec.get("options") or {}, f"{where}{name}.")


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_argument_specs_match_defaults(role):
    specs = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    defaults = load(ROLES / role / "defaults" / "main.yml") or {}
    assert all(name.startswith(f"{role}_") for name in [*options, *defaults])
    assert set(defaults) <= set(options), f"undocumented defaults: {set(defaults) - set(options)}"
    for name, spec in options.items():
        if spec.get("required"):
            assert name not in defaults and "default" not in spec, f"{name} is required and has a default"
        else:
            assert name in defaults, f"{name} has no default in defaults/main.yml"
            assert spec.get("default") == defaults[name], f"{name}: {spec.get('default')!r} != {defaults[name]!r}"
    for entry, spec in specs.items():
        assert list(specs_with_default(spec["options"], f"{entry}: ")) == [], "the modules' defaults are not repeated"
        assert list(undescribed(spec["options"], f"{entry}: ")) == []


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_tag_carries_the_role_name(role):
    tags = {(name, tag) for name, task in role_tasks(role) for tag in task.get("tags") or []}
    assert tags, "the role has tags"
    assert sorted((name, tag) for name, tag in tags if tag not in ("always", role) and not tag.startswith(f"{role}_")) == []
    # Each phase file is imported with the tag role_<phase>.
    imports = {task["ansible.builtin.import_tasks"]: task["tags"] for _name, task in role_tasks(role)
               if "ansible.builtin.import_tasks" in task}
    assert imports, "main.yml imports the phases"
    assert {f: t for f, t in imports.items() if t != [role, f"{role}_{Path(f).stem}"]} == {}


def condition(task):
    when = task.get("when")
    return json.dumps(when if isinstance(when, list) else [when]) if when is not None else None


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_a_boolean_role_variable_in_a_condition_goes_through_the_bool_filter(role):
    # The preflight takes "false", "yes" or 0 for a bool variable (as -e gives them); a bare `when: VARIABLE` is an
    # error for ansible-core 2.19 when the value is not a real boolean, and it comes after other tasks changed the host.
    options = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    booleans = [name for name, spec in options.items() if spec.get("type") == "bool"]
    assert booleans, "the role has boolean variables"
    bare = []
    for name, task in role_tasks(role):
        for when in task.get("when") if isinstance(task.get("when"), list) else [task.get("when")]:
            text = str(when or "")
            bare += [(name, task.get("name"), var) for var in booleans
                     if re.search(r"\b%s\b(?!\s*\|\s*bool\b)" % var, text)]
    assert bare == []


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_a_condition_shared_by_adjacent_tasks_is_a_block(role):
    repeated = []
    for path in sorted((ROLES / role / "tasks").glob("*.yml")):
        for tasks in task_lists(load(path) or []):
            repeated += [(path.name, a["name"], b["name"], a["when"]) for a, b in zip(tasks, tasks[1:])
                         if condition(a) is not None and condition(a) == condition(b)]
    assert repeated == []


def test_the_director_saves_the_ipvs_state_in_one_task():
    """The table's run saves it (ipvs_table's save); the persist phase's ipvs_save only when that run did not happen
    or failed."""
    saves = [(name, task["name"], task.get("when")) for name, task in role_tasks("director")
             if "lvs.nat.ipvs_save" in task or "save" in task.get("lvs.nat.ipvs_table", {})]
    assert saves == [("configure.yml", "Virtual services with their real servers and the global timeouts, the whole table "
                      "in one run, saved for the boot", None),
                     ("persist.yml", "Save the IPVS state for the next boot (when the table's run did not)",
                      "_director_table.saved is not defined")]
    (table,) = [task for _name, task in role_tasks("director") if "lvs.nat.ipvs_table" in task]
    assert table["register"] == "_director_table"
    assert not (ROLES / "director" / "handlers").exists(), "no handler saves it a second time"
    assert [task["name"] for _name, task in role_tasks("director") if "notify" in task] == []
    # The persist phase runs after the configure phase, also when it failed (the kernel may hold part of it).
    (block,) = [t for t in load(ROLES / "director" / "tasks" / "main.yml") if "block" in t]
    assert [t["ansible.builtin.import_tasks"] for t in block["block"]] == ["configure.yml"]
    assert [t["ansible.builtin.import_tasks"] for t in block["always"]] == ["persist.yml"]


def test_the_pyroute2_variables_are_checked_in_one_place():
    """The preflight's filter checks their form (tests/unit/plugins/filter); no task checks it a second time."""
    checks = [(name, task["name"]) for name, task in role_tasks("director")
              if "ansible.builtin.assert" in task and "regex" in json.dumps(task)]
    assert checks == []
    preflight = (ROLES / "director" / "tasks" / "preflight.yml").read_text()
    assert "lvs.nat.director_plan" in preflight
    assert all(f"{v}:" in preflight for v in ("director_pyroute2", "director_pyroute2_wheel", "director_pyroute2_sha256"))


INVENTORY = {"all": {"children": {
    "director": {"hosts": {"lvs1": {}}}, "lb": {"hosts": {"lvs2": {}}},
    "realservers": {"hosts": {"web1": {}}}, "web": {"hosts": {"web2": {}, "web3": {}}},
}}}


def play_hosts(tmp_path, *extra):
    """play name -> its hosts, as ansible-playbook --list-hosts lists them for site.yml."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(INVENTORY))
    proc = harness.playbook(ROOT / "playbooks" / "site.yml", "--list-hosts", *extra, inventory=inventory, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plays, current = {}, None
    for line in proc.stdout.splitlines():
        if line.strip().startswith("play #"):
            current = line.split(": ", 1)[1].split("\t")[0].strip()
            plays[current] = []
        elif current and line.startswith("      ") and line.strip():
            plays[current].append(line.strip())
    return {play: sorted(hosts) for play, hosts in plays.items()}


def test_site_targets_the_default_groups(tmp_path):
    defaults = load(ROLES / "director" / "defaults" / "main.yml")
    assert defaults["director_realservers_group"] == "realservers"
    assert play_hosts(tmp_path) == {
        "LVS-NAT preflight, every host before any change": ["lvs1", "web1"],
        "LVS-NAT director": ["lvs1"],
        "LVS-NAT real servers": ["web1"],
    }


def test_site_targets_the_groups_its_variables_name(tmp_path):
    plays = play_hosts(tmp_path, "-e", "lvs_nat_director_group=lb", "-e", "director_realservers_group=web")
    assert plays == {
        "LVS-NAT preflight, every host before any change": ["lvs2", "web2", "web3"],
        "LVS-NAT director": ["lvs2"],
        "LVS-NAT real servers": ["web2", "web3"],
    }
    # The preflight picks each host's checks by the same variables.
    site = (ROOT / "playbooks" / "site.yml").read_text()
    assert "groups[lvs_nat_director_group | default('director')]" in site
    assert "groups[director_realservers_group | default('realservers')]" in site


def test_the_preflight_probe_names_the_sysctl_keys_the_kernel_lacks():
    """A misspelt key of director_sysctl passed the preflight (only the director's kernel knows its keys) and failed in
    the configure phase, after the install phase had installed packages and site.yml's real server play went on. The
    probe, in the preflight phase (site.yml's first play, any_errors_fatal), looks for each key's /proc/sys path (a
    key of a kernel module not loaded is left to sysctl_forwarding, which loads it first) and the assert after it
    stops the run. The probe's script runs here, on this host's kernel."""
    from ansible_collections.lvs.nat.plugins.filter.director import sysctl_paths

    tasks = load(ROLES / "director" / "tasks" / "probe.yml")
    (probe,) = [t for t in tasks if "ansible.builtin.raw" in t]
    assert "(_director_plan | default({})).sysctl_paths | default([]) | to_json | quote" in probe["ansible.builtin.raw"]
    # A misspelt key of ip_vs is the probe's to find only where ip_vs is loaded (/sys/module/ip_vs), else sysctl_forwarding's:
    # either way the answer is known on this host.
    keys = {"net.ipv4.tcp_fin_timeout": 30, "net.ipv4.tcp_fin_timout": 30, "net.ipv4.vs.conntrack": 1,
            "net.ipv4.vs.conntrak": 1}
    assert Path("/proc/sys/net/ipv4/tcp_fin_timeout").exists()
    ipvs_here = Path("/sys/module/ip_vs").exists()
    proc = subprocess.run([sys.executable, "-c", probe["vars"]["_director_probe_script"], json.dumps(sysctl_paths(keys))],
                          capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(proc.stdout)["sysctl_missing"] == ["net.ipv4.tcp_fin_timout"] + ["net.ipv4.vs.conntrak"] * ipvs_here
    assert [t["name"] for t in tasks] == [probe["name"], "What is missing", "The kernel has every parameter of director_sysctl"]
    # The preflight includes it, after the variables are checked, for every tag; the install phase only when it runs
    # without the preflight (tasks_from: install).
    preflight = load(ROLES / "director" / "tasks" / "preflight.yml")
    names = [t["name"] for t in preflight]
    (include,) = [t for t in preflight if "ansible.builtin.include_tasks" in t]
    assert names.index("Every role variable is valid") < names.index(include["name"])
    assert include["ansible.builtin.include_tasks"] == {"file": "probe.yml", "apply": {"tags": ["always"]}}
    assert all(t.get("tags") == ["always"] for t in preflight)
    (again,) = [t for t in load(ROLES / "director" / "tasks" / "install.yml") if "ansible.builtin.include_tasks" in t]
    assert again["ansible.builtin.include_tasks"] == "probe.yml" and again["when"] == "_director_probe is not defined"
    assert [name for name, t in role_tasks("director") if "_director_probe_script" in t.get("vars", {})] == [
        "probe.yml"]  # the one probe
    first = load(ROOT / "playbooks" / "site.yml")[0]
    assert first["any_errors_fatal"] is True
    assert first["tasks"][0]["ansible.builtin.include_role"] == {"name": "lvs.nat.director", "tasks_from": "preflight"}
