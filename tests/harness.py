# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way the tests, the demo and the benchmarks run Ansible's commands: the environment, the inventory,
the command line and working directory, output captured or streamed line by line, and the PLAY RECAP parsed.

Importable as `harness` under pytest (pytest.ini's pythonpath, also when molecule's verifier runs pytest from
molecule/default) and from the scripts ./run starts (it sets the same PYTHONPATH).
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.prefix) / "bin"

# What every run of ansible-playbook or ansible in the tests sets: plain text to parse, no prompts, no leftovers.
ANSIBLE_SETTINGS = {
    "ANSIBLE_PIPELINING": "1",
    "ANSIBLE_HOST_KEY_CHECKING": "0",
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_FORCE_COLOR": "0",
    "ANSIBLE_RETRY_FILES_ENABLED": "0",
    "ANSIBLE_DEPRECATION_WARNINGS": "0",
}
# The counters of a PLAY RECAP line, in ansible-core's order.
RECAP_KEYS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
_RECAP_LINE = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.M)


def ansible_env(base=None, **settings):
    """os.environ (or `base`) with ANSIBLE_SETTINGS and `settings` on top; a setting given as None is not set
    (what `base` holds for it stays)."""
    env = dict(os.environ if base is None else base)
    env.update({key: str(value) for key, value in {**ANSIBLE_SETTINGS, **settings}.items() if value is not None})
    return env


def recap(text):
    """host -> its PLAY RECAP counters ({"ok": 3, "changed": 1, "unreachable": 0, ...}); {} without a recap."""
    _head, marker, tail = text.rpartition("PLAY RECAP")
    if not marker:
        return {}
    return {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))} for m in _RECAP_LINE.finditer(tail)}


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished ansible-playbook (or ansible) run. Streamed runs have stderr merged into stdout."""

    argv: list
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self):
        return self.stdout + self.stderr

    @property
    def recap(self):
        return recap(self.stdout)


def ansible(tool, *args, inventory=None, cwd=None, env=None, prefix=(), bindir=None, stream=False, echo=None):
    """Run an Ansible command (`tool`: ansible-playbook, ansible, ...) and wait for it.

    inventory adds `-i inventory`; env defaults to ansible_env(); prefix goes before the command (e.g. `ip netns exec
    NS`); bindir is where the command lives (this virtualenv's bin by default). stream=True passes each line of the
    output (stderr merged) to echo (default: print to this process's stdout) as it comes, and keeps it all."""
    argv = [str(a) for a in (*prefix, Path(bindir or BIN) / tool, *(("-i", inventory) if inventory else ()), *args)]
    env = ansible_env() if env is None else env
    if not stream:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, check=False)
        return Run(argv, proc.returncode, proc.stdout, proc.stderr)
    echo = echo or _print
    lines = []
    # Python buffers stdout into a pipe; unbuffered, each line comes as printed (ansible-core also flushes its own).
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env=dict(env, PYTHONUNBUFFERED="1"), cwd=cwd) as proc:
        for line in proc.stdout:
            lines.append(line)
            echo(line)
    return Run(argv, proc.returncode, "".join(lines), "")


def playbook(*args, **kwargs):
    """ansible-playbook *args: see ansible()."""
    return ansible("ansible-playbook", *args, **kwargs)


def _print(line):
    sys.stdout.write(line)
    sys.stdout.flush()
