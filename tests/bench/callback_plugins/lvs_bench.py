# SPDX-License-Identifier: GPL-3.0-or-later
"""Counts, per host, the tasks that ran (not skipped) and the module runs they made (one per loop item), and
times each task; writes JSON to $LVS_BENCH_OUT when the playbook ends. For the benchmarks only."""
from __future__ import annotations

import collections
import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: lvs_bench
type: aggregate
short_description: Task and module-run counts per host, and task times, for lvs.nat's benchmarks
description: Writes them as JSON to the file named by the environment variable LVS_BENCH_OUT.
"""

# Actions that run on the controller only: no module reaches the host.
CONTROLLER_ONLY = {"set_fact", "assert", "debug", "fail", "meta", "include_tasks", "import_tasks", "include_role",
                   "import_role", "include_vars", "add_host", "group_by", "set_stats", "pause", "validate_argument_spec"}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "lvs_bench"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.tasks = collections.Counter()
        self.module_runs = collections.Counter()
        self.times = {}
        self._start = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start[task._uuid] = time.perf_counter()

    def _count(self, result):
        host = result._host.get_name()
        action = result._task.action.rsplit(".", 1)[-1]
        items = result._result.get("results")
        if items is not None:
            runs = sum(1 for r in items if not r.get("skipped"))
        else:
            runs = 0 if result._result.get("skipped") else 1
        if runs:
            self.tasks[host] += 1
            if action not in CONTROLLER_ONLY:
                self.module_runs[host] += runs
        name = result._task.get_name()
        self.times[name] = round(time.perf_counter() - self._start.get(result._task._uuid, time.perf_counter()), 3)

    def v2_runner_on_ok(self, result):
        self._count(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result)

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("LVS_BENCH_OUT")
        if path:
            with open(path, "w") as fh:
                json.dump({"tasks": self.tasks, "module_runs": self.module_runs, "times": self.times}, fh, indent=1)
