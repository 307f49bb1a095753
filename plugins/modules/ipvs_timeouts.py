#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_timeouts
short_description: Set the global IPVS connection timeouts
version_added: 0.1.0
description:
  - Sets the kernel's IPVS timeouts for TCP sessions, TCP sessions after a FIN, and UDP packets (C(ipvsadm --set)).
  - A timeout left out stays as the kernel holds it. The kernel's defaults are 900, 120 and 300 seconds.
  - These timeouts are not saved by C(ipvsadm -S); the C(lvs.nat.director) role persists them.
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lvs.nat.ipvs_options
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: linux
options:
  tcp:
    description: Timeout of established TCP sessions in seconds, 1 to 2147483.
    type: int
  tcp_fin:
    description: Timeout of TCP sessions after a FIN in seconds, 1 to 2147483.
    type: int
  udp:
    description: Timeout of UDP entries in seconds, 1 to 2147483.
    type: int
seealso:
  - module: lvs.nat.ipvs_info
"""

EXAMPLES = r"""
- name: Shorter TCP and UDP timeouts
  lvs.nat.ipvs_timeouts:
    tcp: 600
    tcp_fin: 60
    udp: 120
"""

RETURN = r"""
timeouts:
  description: The timeouts after the run (in check mode, as they would be), in seconds.
  returned: always
  type: dict
  sample: {tcp: 600, tcp_fin: 60, udp: 120}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import IPVS_TIMEOUTS_SPEC
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import TIMEOUT_NAMES
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import desired_timeouts
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module


def build_module():
    return AnsibleModule(argument_spec=IPVS_TIMEOUTS_SPEC, required_one_of=[TIMEOUT_NAMES], supports_check_mode=True)


def run(module):
    wanted = desired_timeouts(module.params)
    with _ipvs.Session(module) as kernel:
        before, after = kernel.reconcile_timeouts(wanted)
    return dict(changed=after != before, timeouts=after, diff=dict(before=before, after=after))


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
