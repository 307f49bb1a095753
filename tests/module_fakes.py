# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-ins for unit tests of a module's run() and main(): the AnsibleModule a module builds and the kernel Session
it opens. tests/ is on sys.path (pytest.ini): `import module_fakes`."""
from __future__ import annotations

import copy

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs
from ansible_collections.lvs.nat.plugins.module_utils._ipvs_names import (
    CMD_DEL_DEST,
    CMD_DEL_SERVICE,
    CMD_NEW_SERVICE,
    SERVICE_FIELDS,
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
    would; applied records each apply(ops, before, schedulers); error, when set, is raised by apply() after recording."""

    def __init__(self, table, loaded=True, error=None):
        self.held, self.loaded, self.error, self.applied = table, loaded, error, []

    def table(self, counters=True):
        return copy.deepcopy(self.held) if self.loaded else []

    def service(self, key, counters=True):
        return copy.deepcopy(next((s for s in self.held if service_id(s) == service_id(key)), None))

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
