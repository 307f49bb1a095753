# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for the get-pip.py that ansible-test downloads from ci-files.testing.ansible.com.

That host is not reachable from every network (it is not from the lab machine); ansible-test's own
message says to save a bootstrap script in its cache instead. This one installs the pip version that
ansible-test asks for from the package index pip is configured with, starting from the pip that
ships with Python (ensurepip).
"""
from __future__ import annotations

import subprocess
import sys

# get-pip.py's own options; everything else is for 'pip install'.
OWN = ("--no-setuptools", "--no-wheel")

args = [a for a in sys.argv[1:] if a not in OWN]
# ensurepip in its own process: it sets PIP_CONFIG_FILE=/dev/null in its environment, and the
# install below needs pip's configuration (index, certificates).
subprocess.check_call([sys.executable, "-m", "ensurepip"])
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
