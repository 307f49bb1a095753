# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every lvs.nat module shares: its main() (run_module) and the one runner for external commands."""
from __future__ import annotations

import gc

from ansible_collections.lvs.nat.plugins.module_utils._errors import CommandError, LvsNatError

# Where the tools live on the hosts the collection supports; get_bin_path also searches the module's PATH.
SBIN = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
ENV = {"LC_ALL": "C", "LANG": "C"}


def run_module(build_module, run):
    """main() of every module: build the AnsibleModule, run(module) -> result dict (with its "diff", which is
    returned only in diff mode), exit; an LvsNatError is the
    task's failure with its message and details (errno, rc/stdout/stderr, applied/rolled_back, ...).

    Python's cycle collector is off meanwhile (on again after, for a caller that goes on, such as a test): a module
    run lives seconds and what little garbage it leaves in cycles goes with its process, while the collector's full
    passes over everything alive grow with the table (a 50,000-destination ipvs_table run paid 2 of them and about 200
    young ones: 13 % of its work on a host, 0.2-0.5 s on the emulated lab director, 2026-12-05)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        module = build_module()
        try:
            result = run(module)
        except LvsNatError as e:
            module.fail_json(msg=str(e), **e.details)
        except (IOError, OSError) as e:  # a file the module owns could not be read or written
            module.fail_json(msg="Failed to write %s: %s" % (getattr(e, "filename", "") or "a file", e.strerror or e),
                             errno=e.errno)
        if not module._diff:  # modules always say their diff; ansible-core shows it only with --diff
            result.pop("diff", None)
        module.exit_json(**result)
    finally:
        if collecting:
            gc.enable()


def bin_path(module, name):
    """The absolute path of a tool, or CommandError naming it."""
    path = module.get_bin_path(name, opt_dirs=SBIN)
    if not path:
        raise CommandError("%s is not installed (searched PATH and %s)" % (name, ", ".join(SBIN)), cmd=[name])
    return path


def run_command(module, argv, data=None, ok=(0,), what=None):
    """The one way a module runs a tool: argv[0] resolved with get_bin_path, LC_ALL=C, stdin `data` (text, given
    exactly: no newline added), arguments passed as they are (no `~` or `$VAR` expansion, no shell).

    Returns (rc, stdout, stderr). An rc outside `ok` (pass ok=None to accept any) raises CommandError whose result
    carries cmd, rc, stdout and stderr; its message starts with `what` (default: the command line).
    """
    argv = [bin_path(module, argv[0])] + [str(a) for a in argv[1:]]
    rc, out, err = module.run_command(argv, data=data, binary_data=True, environ_update=ENV, expand_user_and_vars=False)
    if ok is not None and rc not in ok:
        raise CommandError("%s failed (rc=%d): %s" % (what or " ".join(argv), rc, (err or out).strip()),
                           cmd=argv, rc=rc, stdout=out, stderr=err)
    return rc, out, err
