# SPDX-License-Identifier: GPL-3.0-or-later
"""ipvs_timeouts' run() against a fake kernel Session: check mode predicts and sets nothing, the diff shows the
timeouts before and after, where ip_vs is not loaded the kernel's defaults are the before, bad values change nothing."""
from __future__ import annotations

import functools

import module_fakes
import pytest

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_args import IPVS_TIMEOUTS_SPEC
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import KERNEL_TIMEOUTS
from ansible_collections.lvs.nat.plugins.modules import ipvs_timeouts

FakeModule = functools.partial(module_fakes.FakeModule, IPVS_TIMEOUTS_SPEC)
Exited = module_fakes.Exited


class FakeSession(module_fakes.FakeSession):
    """_ipvs.Session holding timeouts; set_timeouts() changes them as the kernel does (0 leaves one as it is)."""

    def __init__(self, timeouts=None, error=None):
        self.loaded = timeouts is not None
        self.held, self.error, self.opened, self.set = dict(timeouts or KERNEL_TIMEOUTS), error, 0, []

    def timeouts(self):
        return dict(self.held)

    def set_timeouts(self, tcp, tcp_fin, udp):
        self.set.append((tcp, tcp_fin, udp))
        if self.error:
            raise self.error
        self.held.update((k, v) for k, v in dict(tcp=tcp, tcp_fin=tcp_fin, udp=udp).items() if v)


def test_where_ip_vs_is_not_loaded_the_kernels_defaults_are_the_before_and_check_mode_sets_nothing(monkeypatch):
    kernel = FakeSession()
    monkeypatch.setattr(_ipvs, "Session", kernel)
    result = ipvs_timeouts.run(FakeModule({"tcp": 60}, check_mode=True))
    after = dict(KERNEL_TIMEOUTS, tcp=60)
    assert result == dict(changed=True, timeouts=after, diff=dict(before=KERNEL_TIMEOUTS, after=after))
    assert kernel.set == []
    assert ipvs_timeouts.run(FakeModule({"tcp": 60})) == result  # the kernel then holds what check mode predicted
    assert kernel.set == [(60, 0, 0)]  # 0: the others left as they are


def test_timeouts_as_held_are_no_change(monkeypatch):
    kernel = FakeSession({"tcp": 60, "tcp_fin": 10, "udp": 30})
    monkeypatch.setattr(_ipvs, "Session", kernel)
    result = ipvs_timeouts.run(FakeModule({"tcp": 60, "udp": 30}, diff=False))
    assert result.pop("diff")["before"] == result["timeouts"]  # run_module returns the diff only with --diff
    assert result == dict(changed=False, timeouts={"tcp": 60, "tcp_fin": 10, "udp": 30})
    assert kernel.set == []


@pytest.mark.parametrize("args, message", [
    ({"tcp": 0}, "tcp=0 is out of range: it must be between 1 and 2147483 seconds"),
    ({"tcp": 60, "udp": 2147484}, "udp=2147484 is out of range: it must be between 1 and 2147483 seconds"),
])
def test_a_value_out_of_range_fails_before_the_kernel_is_opened(monkeypatch, args, message):
    kernel = FakeSession()
    monkeypatch.setattr(_ipvs, "Session", kernel)
    monkeypatch.setattr(ipvs_timeouts, "build_module", lambda: FakeModule(args))
    with pytest.raises(Exited) as e:
        ipvs_timeouts.main()
    assert e.value.args[0] == dict(failed=True, msg=message) and kernel.opened == 0


def test_a_kernel_refusal_reaches_the_failure(monkeypatch):
    kernel = FakeSession(error=_ipvs.IPVSError("Failed to set the IPVS timeouts: Operation not permitted (errno 1)", 1))
    monkeypatch.setattr(_ipvs, "Session", kernel)
    monkeypatch.setattr(ipvs_timeouts, "build_module", lambda: FakeModule({"udp": 30}))
    with pytest.raises(Exited) as e:
        ipvs_timeouts.main()
    assert e.value.args[0] == dict(failed=True, msg="Failed to set the IPVS timeouts: Operation not permitted (errno 1)", errno=1)
