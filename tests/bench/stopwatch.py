# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs on the lab director: time one command, wall clock, from exec to exit.

    python3 stopwatch.py OUT ARGV...   prints {"seconds": s, "rc": rc}; the command's stdout goes to OUT. When that is a
                                    module's JSON result, its changed, failed, msg and number of operations (changes) are added.
A command's stdin is /dev/null unless it is `ipvsadm-restore FILE` (the file is its stdin)."""
from __future__ import annotations

import json
import subprocess
import sys
import time


def main():
    out, argv = sys.argv[1], sys.argv[2:]
    stdin = subprocess.DEVNULL
    if argv[0] == "ipvsadm-restore":
        stdin, argv = open(argv[1], "rb"), argv[:1]
    with open(out, "wb") as fh:
        start = time.perf_counter()
        rc = subprocess.call(argv, stdin=stdin, stdout=fh)
        seconds = time.perf_counter() - start
    summary = {"seconds": seconds, "rc": rc}
    try:
        with open(out) as fh:
            result = json.load(fh)
        summary.update((k, result.get(k)) for k in ("changed", "failed", "msg"))
        # ipvs_table's operations; its compact result counts them by kind in changes.
        summary["changes"] = result["operations"] if "operations" in result else len(result.get("changes", []))
        summary["kinds"] = result.get("changes") if "operations" in result and len(result.get("changes", [])) < 10 else None
    except ValueError:
        pass
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
