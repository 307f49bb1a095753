# SPDX-License-Identifier: GPL-3.0-or-later
"""The test harness (tests/harness.py), without the lab: a streamed ansible-playbook hands each line over as the
play prints it, keeps the whole output, and its PLAY RECAP is parsed; the environment every run gets."""
from __future__ import annotations

import sys
import time

import harness
import yaml

SLOW = 3  # seconds the middle task takes


def test_a_streamed_play_shows_each_line_as_it_runs(tmp_path):
    book = tmp_path / "slow.yml"
    book.write_text(yaml.safe_dump([{"name": "Slow", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Before the slow task", "ansible.builtin.debug": {"msg": "before"}},
        {"name": "The slow task", "ansible.builtin.command": f"sleep {SLOW}"},
        {"name": "After the slow task", "ansible.builtin.debug": {"msg": "after"}},
    ]}], sort_keys=False))
    seen = []
    started = time.monotonic()
    run = harness.playbook("-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", book, inventory="localhost,",
                           cwd=tmp_path, stream=True, echo=lambda line: seen.append((time.monotonic(), line)))
    ended = time.monotonic()
    assert run.returncode == 0, run.output
    before = next(t for t, line in seen if line.startswith("TASK [Before the slow task]"))
    after = next(t for t, line in seen if line.startswith("TASK [After the slow task]"))
    # The first task's lines came while the play ran, the slow task's length before the play ended; not all at the end.
    assert after - before >= SLOW - 0.5, [(round(t - started, 2), line) for t, line in seen]
    assert ended - before >= SLOW - 0.5
    # Everything echoed is kept, stderr merged into stdout, and the summary parses from it.
    assert run.stdout == "".join(line for _t, line in seen) and run.stderr == ""
    assert run.recap == {"localhost": {"ok": 3, "changed": 1, "unreachable": 0, "failed": 0, "skipped": 0, "rescued": 0,
                                       "ignored": 0}}


def test_a_captured_play_and_its_failure_counts(tmp_path):
    book = tmp_path / "fail.yml"
    book.write_text(yaml.safe_dump([{"name": "Fails", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Ignored", "ansible.builtin.fail": {"msg": "ignored"}, "ignore_errors": True},
        {"name": "Fails", "ansible.builtin.fail": {"msg": "stop here"}},
    ]}], sort_keys=False))
    run = harness.playbook("-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", book, inventory="localhost,",
                           cwd=tmp_path)
    assert run.returncode == 2
    assert run.argv[:3] == [str(harness.BIN / "ansible-playbook"), "-i", "localhost,"]
    assert run.recap["localhost"] == {"ok": 1, "changed": 0, "unreachable": 0, "failed": 1, "skipped": 0, "rescued": 0,
                                      "ignored": 1}
    assert "stop here" in run.output and run.output == run.stdout + run.stderr


def test_recap_parses_every_host_and_nothing_before_the_recap():
    text = ("TASK [x] ***\nnot-a-host : ok=9 changed=9\n"
            "PLAY RECAP *********************************************************************\n"
            "director1                  : ok=12   changed=3    unreachable=0    failed=0    skipped=2    rescued=0    ignored=0   \n"
            "rs1                        : ok=7    changed=0    unreachable=1    failed=1    skipped=0    rescued=1    ignored=2   \n")
    assert harness.recap(text) == {
        "director1": {"ok": 12, "changed": 3, "unreachable": 0, "failed": 0, "skipped": 2, "rescued": 0, "ignored": 0},
        "rs1": {"ok": 7, "changed": 0, "unreachable": 1, "failed": 1, "skipped": 0, "rescued": 1, "ignored": 2},
    }
    assert tuple(harness.recap(text)["rs1"]) == harness.RECAP_KEYS
    assert harness.recap("ERROR! the playbook could not be found\n") == {}


def test_the_environment_every_run_gets():
    env = harness.ansible_env({"PATH": "/bin", "ANSIBLE_PIPELINING": "0"}, ANSIBLE_TIMEOUT=60)
    assert env == {"PATH": "/bin", **harness.ANSIBLE_SETTINGS, "ANSIBLE_TIMEOUT": "60"}
    # None: the harness does not set it, what the caller's environment holds stays.
    assert harness.ansible_env({"ANSIBLE_PIPELINING": "0"}, ANSIBLE_PIPELINING=None)["ANSIBLE_PIPELINING"] == "0"
    assert "ANSIBLE_PIPELINING" not in harness.ansible_env({}, ANSIBLE_PIPELINING=None)


def test_demo_streams_the_play_then_prints_its_summary(monkeypatch, capsys, tmp_path):
    """./run demo's script with the lab and the site play stood in for: the play's lines, then the hosts' counters."""
    import demo

    book = tmp_path / "site.yml"
    book.write_text(yaml.safe_dump([{"name": "Stand-in for lvs.nat.site", "hosts": "localhost", "gather_facts": False,
                                     "tasks": [{"name": "Configure", "ansible.builtin.debug": {"msg": "configured"}}]}]))
    calls = []

    def site(*args, **kwargs):
        calls.append((args, kwargs))
        return harness.ansible("ansible-playbook", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", book,
                               inventory="localhost,", stream=kwargs["stream"])

    monkeypatch.setattr(demo.harness, "playbook", site)
    monkeypatch.setattr(demo.lab, "up", lambda: tmp_path / "inventory.yml")
    monkeypatch.setattr(demo.lab, "exec_on", lambda host, command: type("Done", (), {
        "stdout": "IP Virtual Server table\n" if host == "director" else "rs1\nrs2\n" * (demo.REQUESTS // 2)}))
    assert demo.main() == 0
    assert calls == [(("lvs.nat.site",), {"inventory": tmp_path / "inventory.yml", "stream": True})]
    out = capsys.readouterr().out
    assert out.index("TASK [Configure]") < out.index("PLAY RECAP") < out.index("== hosts configured")
    assert "  localhost  ok=1 changed=0\n" in out
    assert "IP Virtual Server table" in out and "rs1: 4, rs2: 4" in out
