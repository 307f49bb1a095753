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
  - lvs.nat.ipvs
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
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_plan import run_module

NAMES = ("tcp", "tcp_fin", "udp")
# The kernel stores timeouts in jiffies and refuses values whose jiffies overflow an int.
MAX_SECONDS = 2147483


def build_module():
    return AnsibleModule(
        argument_spec=dict((n, dict(type="int")) for n in NAMES),
        required_one_of=[NAMES],
        supports_check_mode=True,
    )


def run(module):
    wanted = dict((n, module.params[n]) for n in NAMES if module.params[n] is not None)
    for name, value in wanted.items():
        if not 1 <= value <= MAX_SECONDS:
            module.fail_json(msg="%s=%s is out of range: it must be between 1 and %d seconds" % (name, value, MAX_SECONDS))
    with _ipvs.Session(["ip_vs"]) as kernel:
        # Where ip_vs is not loaded yet, loading it brings the kernel's defaults.
        before = kernel.ipvs.timeouts() if kernel.ipvs else dict(_ipvs.KERNEL_TIMEOUTS)
        after = dict(before, **wanted)
        changed = after != before
        if changed and not module.check_mode:
            ipvs = kernel.writer(["ip_vs"])
            ipvs.set_timeouts(*[wanted.get(n, 0) for n in NAMES])  # 0 leaves a timeout as it is
            after = ipvs.timeouts()
    result = dict(changed=changed, timeouts=after)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    return result


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
