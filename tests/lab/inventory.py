#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible script inventory of the running lab (what `lab.py up` wrote); molecule's scenarios link it.

lab.py sits beside this file: Python puts the script's own directory first on sys.path, following symlinks
such as molecule's link to this file, so `import lab` needs no path set up."""
import json
import sys

import lab

if __name__ == "__main__":
    if "--host" in sys.argv:
        print("{}")
    else:
        print(json.dumps(lab.script_inventory(), indent=2))
