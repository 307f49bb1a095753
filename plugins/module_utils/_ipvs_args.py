# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The IPVS modules' argument specs, for their build_module() and for the role's filter, which checks the role's
variables with them on the controller. Data only: the relations live here, the defaults in _ipvs_names."""
from __future__ import annotations

from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import (
    ALL_SCHED_FLAGS,
    FORWARDING_CHOICES,
    PROTOCOLS,
    SAVED_PATH,
    SAVED_UNIT_PATH,
    SCHEDULERS,
    TIMEOUT_NAMES,
)

SERVICE_KEY_SPEC = dict(
    protocol=dict(type="str", choices=sorted(PROTOCOLS)),
    address=dict(type="str"),
    port=dict(type="int"),
    fwmark=dict(type="int"),
    family=dict(type="str", choices=["ipv4", "ipv6"]),
)
SERVICE_KEY_RELATIONS = dict(
    required_one_of=[("address", "fwmark")],
    mutually_exclusive=[("fwmark", "address"), ("fwmark", "port"), ("fwmark", "protocol")],
    required_together=[("address", "port")],
)
SERVICE_SPEC = dict(
    SERVICE_KEY_SPEC,
    scheduler=dict(type="str", choices=list(SCHEDULERS)),
    scheduler_flags=dict(type="list", elements="str", choices=ALL_SCHED_FLAGS),
    persistence_timeout=dict(type="int"),
    persistence_prefix=dict(type="int"),
    one_packet=dict(type="bool"),
)
REAL_SERVER_SPEC = dict(
    address=dict(type="str", required=True),
    port=dict(type="int"),
    forwarding=dict(type="str", choices=list(FORWARDING_CHOICES)),
    weight=dict(type="int"),
    upper_threshold=dict(type="int"),
    lower_threshold=dict(type="int"),
)
STATE_SPEC = dict(type="str", default="present", choices=["present", "absent"])

# lvs.nat.ipvs_service (with SERVICE_KEY_RELATIONS).
IPVS_SERVICE_SPEC = dict(
    SERVICE_SPEC,
    state=STATE_SPEC,
    real_servers=dict(type="list", elements="dict", options=REAL_SERVER_SPEC),
    purge_real_servers=dict(type="bool", default=False),
)
# lvs.nat.ipvs_table (with IPVS_TABLE_RELATIONS): each service entry takes SERVICE_KEY_RELATIONS.
IPVS_TABLE_SPEC = dict(
    # real_servers: a list of dicts or compact text, checked by _ipvs_plan.parse_dests in one pass (AnsibleModule's
    # sub-option validation of 10,000 dicts took longer than reading and comparing the kernel's table; as raw, it
    # does not visit each entry either).
    services=dict(type="list", elements="dict", required=True, options=dict(
        SERVICE_SPEC,
        real_servers=dict(type="raw"),
    ), **SERVICE_KEY_RELATIONS),
    purge_real_servers=dict(type="bool", default=False),
    purge_services=dict(type="bool", default=False),
    owned=dict(type="dict", options=dict(
        addresses=dict(type="list", elements="str", default=[]),
        path=dict(type="path", default="/etc/lvs-nat/ipvs-owned-fwmarks"),
        skip=dict(type="list", elements="dict", default=[], options=SERVICE_KEY_SPEC, **SERVICE_KEY_RELATIONS),
    )),
    compact=dict(type="bool", default=False),
    timeouts=dict(type="dict", options=dict((n, dict(type="int")) for n in TIMEOUT_NAMES)),
    save=dict(type="dict", options=dict(
        path=dict(type="path", default=SAVED_PATH),
        unit_path=dict(type="path", default=SAVED_UNIT_PATH),
    )),
)
IPVS_TABLE_RELATIONS = dict(mutually_exclusive=[("purge_services", "owned")])
# lvs.nat.ipvs_real_server.
IPVS_REAL_SERVER_SPEC = dict(
    REAL_SERVER_SPEC,
    service=dict(type="dict", required=True, options=SERVICE_KEY_SPEC, **SERVICE_KEY_RELATIONS),
    state=STATE_SPEC,
)
# lvs.nat.ipvs_timeouts (with required_one_of=[TIMEOUT_NAMES]).
IPVS_TIMEOUTS_SPEC = dict((n, dict(type="int")) for n in TIMEOUT_NAMES)
