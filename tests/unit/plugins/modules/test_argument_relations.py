# SPDX-License-Identifier: GPL-3.0-or-later
"""Argument relations live in the argument specs: checked before a module touches the kernel."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.lvs.nat.plugins.modules import ipvs_real_server, ipvs_service, ipvs_timeouts


def fail_message(module, args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.build_module()
    return json.loads(capsys.readouterr().out)["msg"]


@pytest.mark.parametrize("args, message", [
    ({"fwmark": 1, "address": "198.51.100.10", "port": 80}, "parameters are mutually exclusive: fwmark|address"),
    ({"fwmark": 1, "protocol": "udp"}, "parameters are mutually exclusive: fwmark|protocol"),
    ({"address": "198.51.100.10"}, "parameters are required together: address, port"),
    ({"scheduler": "rr"}, "one of the following is required: address, fwmark"),
    ({"address": "198.51.100.10", "port": 80, "scheduler": "fifo"}, "value of scheduler must be one of"),
    ({"address": "198.51.100.10", "port": 80, "scheduler_flags": ["sh-typo"]}, "scheduler_flags must be one or more of"),
    ({"address": "198.51.100.10", "port": 80, "real_servers": [{"port": 80}]}, "missing required arguments: address found in real_servers"),
    ({"address": "198.51.100.10", "port": "http"}, "port"),
])
def test_ipvs_service_relations(args, message, capsys):
    assert message in fail_message(ipvs_service, args, capsys)


@pytest.mark.parametrize("args, message", [
    ({"address": "198.51.100.101"}, "missing required arguments: service"),
    ({"service": {"fwmark": 1, "port": 80}, "address": "198.51.100.101"}, "mutually exclusive: fwmark|port found in service"),
    ({"service": {"address": "198.51.100.10", "port": 80}}, "missing required arguments: address"),
    ({"service": {"address": "198.51.100.10", "port": 80}, "address": "198.51.100.101", "forwarding": "dr"},
     "value of forwarding must be one of: masq, route, tunnel"),
])
def test_ipvs_real_server_relations(args, message, capsys):
    assert message in fail_message(ipvs_real_server, args, capsys)


def test_ipvs_timeouts_needs_one(capsys):
    assert "one of the following is required: tcp, tcp_fin, udp" in fail_message(ipvs_timeouts, {}, capsys)
