# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-ins for unit tests of a module's run() and main(): the AnsibleModule a module builds and the kernel Session
it opens. tests/ is on sys.path (pytest.ini): `import module_fakes`."""
from __future__ import annotations

import copy
import errno

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import (
    CMD_DEL_DEST,
    CMD_DEL_SERVICE,
    CMD_NEW_SERVICE,
    DAEMON_ORDER,
    KERNEL_TIMEOUTS,
    SERVICE_FIELDS,
    daemon_strerror,
    default_max_len,
    describe_daemon,
    dest_id,
    service_id,
)


class Exited(Exception):
    """exit_json or fail_json ended the run; args[0] is the result (failed=True from fail_json)."""


class FakeModule:
    """What run() and run_module use of an AnsibleModule: params validated by the module's own argument spec (the
    test fails on arguments the module would refuse), check_mode, _diff; exit_json and fail_json raise Exited."""

    def __init__(self, spec, args, check_mode=False, diff=True, **relations):
        validated = ArgumentSpecValidator(spec, **relations).validate(args)
        assert not validated.error_messages, validated.error_messages
        self.params, self.check_mode, self._diff = validated.validated_parameters, check_mode, diff

    def exit_json(self, **result):
        raise Exited(result)

    def fail_json(self, **result):
        raise Exited(dict(result, failed=True))


class FakeSession:
    """The context-manager face of _ipvs.Session. Patched in place of the class, the instance is what the module
    gets when it calls _ipvs.Session(module); opened counts those calls. Subclasses hold the kernel."""

    opened = 0
    # The real Session's reconcile over the fake's timeouts() and set_timeouts().
    reconcile_timeouts = _ipvs.Session.reconcile_timeouts

    def __call__(self, module):
        self.opened += 1
        self._module = module
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class TableSession(FakeSession):
    """_ipvs.Session over an in-memory table (services with their real servers) that apply() changes as the kernel
    would; applied records each apply(ops, before, schedulers) and each set_timeouts(tcp, tcp_fin, udp) (the global
    timeouts read as the kernel's defaults); error, when set, is raised by apply() after recording."""

    def __init__(self, table, loaded=True, error=None):
        self.held, self.loaded, self.error, self.applied = table, loaded, error, []

    def table(self, counters=True):
        return copy.deepcopy(self.held) if self.loaded else []

    def service(self, key, counters=True):
        return copy.deepcopy(next((s for s in self.held if service_id(s) == service_id(key)), None))

    def timeouts(self):
        return dict(KERNEL_TIMEOUTS)

    def set_timeouts(self, tcp, tcp_fin, udp):
        self.applied.append(("set_timeouts", (tcp, tcp_fin, udp)))

    def apply(self, ops, before=(), schedulers=()):
        self.applied.append((ops, list(before), list(schedulers)))
        if self.error:
            raise self.error
        for cmd, svc, dest in ops:
            cur = next((s for s in self.held if service_id(s) == service_id(svc)), None)
            if cmd == CMD_NEW_SERVICE:
                self.held.append(dict(svc, real_servers=[]))
            elif cmd == CMD_DEL_SERVICE:
                self.held.remove(cur)
            elif dest is None:
                cur.update((k, svc[k]) for k in SERVICE_FIELDS)
            else:
                others = [d for d in cur["real_servers"] if dest_id(d) != dest_id(dest)]
                cur["real_servers"] = others + ([] if cmd == CMD_DEL_DEST else [dict(dest)])


class DaemonSession(FakeSession):
    """_ipvs.Session over in-memory sync daemons (mode -> daemon), started and stopped as the kernel would: EEXIST
    where the mode runs, ESRCH where it does not, ENODEV for an interface not in interfaces (name -> MTU), max_len
    chosen as the kernel chooses it. refuse: (verb, mode) -> errno for a refusal to simulate; calls records each
    start (daemon) and stop (mode) the kernel saw."""

    def __init__(self, daemons=(), interfaces=None, loaded=True, refuse=None):
        self.held = dict((d["mode"], dict(d)) for d in daemons)
        self.interfaces = {"eth1": 1500, "eth2": 1500} if interfaces is None else interfaces
        self.loaded, self.refuse, self.calls, self.applied = loaded, dict(refuse or {}), [], []

    def daemons(self):
        return [dict(self.held[m]) for m in DAEMON_ORDER if m in self.held] if self.loaded else []

    def interface_mtu(self, name):
        return self.interfaces.get(name)

    def _refused(self, what, code):
        return _ipvs.IPVSError("Failed to %s: %s (errno %d)" % (what, daemon_strerror(code), code), code)

    def start_daemon(self, daemon):
        self.calls.append(("start", dict(daemon)))
        what = "start the %s" % describe_daemon(daemon)
        code = self.refuse.get(("start", daemon["mode"]))
        if code is None and daemon["mode"] in self.held:
            code = errno.EEXIST
        if code is None and daemon["interface"] not in self.interfaces:
            code = errno.ENODEV
        if code:
            raise self._refused(what, code)
        held = dict(daemon)
        if held.get("max_len") is None:
            held["max_len"] = default_max_len(held["mode"], held["group"], self.interfaces[held["interface"]])
        self.held[daemon["mode"]] = held
        self.loaded = True

    def stop_daemon(self, mode):
        self.calls.append(("stop", mode))
        code = self.refuse.get(("stop", mode)) or (None if mode in self.held else errno.ESRCH)
        if code:
            raise self._refused("stop the %s sync daemon" % mode, code)
        del self.held[mode]

    def apply_daemons(self, ops, before=()):
        self.applied.append(list(ops))
        if ops and not self._module.check_mode:
            _ipvs.run_daemon_ops(ops, before, self.start_daemon, self.stop_daemon)
