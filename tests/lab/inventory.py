#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible script inventory of the running lab (what `lab.py up` wrote); molecule's scenarios link it."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402

if __name__ == "__main__":
    if "--host" in sys.argv:
        print("{}")
    else:
        print(json.dumps(lab.script_inventory(), indent=2))
