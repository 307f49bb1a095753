#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_health
short_description: Install and configure lvs-nat-healthd, the service that health-checks real servers and writes their services
version_added: 0.4.0
description:
  - Installs C(lvs-nat-healthd), the collection's health checker, on the director and hands it the declaration of the
    services it checks. From then on the service is the one writer of those services in the kernel; a real server
    takes new connections only while it is declared with a weight above 0 B(and) healthy (C(rise) checks passed in a
    row). A weight of 0 drains the real server whatever its health.
  - "What it installs, each file carrying the header C(Managed by lvs.nat): the service's code (the collection's own
    C(module_utils), the same version as this module) under C(/usr/lib/lvs-nat/ansible_collections/), the launcher
    C(/usr/lib/lvs-nat/lvs-nat-healthd), the systemd unit C(/etc/systemd/system/lvs-nat-healthd.service) (C(Type=notify)
    with a watchdog, restarted on failure, started after the IPVS restore unit C(lvs-nat-ipvs.service) that
    M(lvs.nat.ipvs_save) installs; enabled for C(multi-user.target)) and the declaration C(/etc/lvs-nat/director.json)."
  - When the code or the unit changed, the service is restarted (after C(systemctl daemon-reload)); when only the
    declaration changed, it is reloaded (C(SIGHUP)); when it is not running, it is started. Then, with O(wait), the
    module waits until the service has run a check round and reconciled the kernel with the new declaration.
  - Every entry of O(services) is checked before any file is written; an error names the field, as in
    C(services[2].check.interval=0 ...).
  - The service's state, C(/run/lvs-nat/health.json), holds each real server's health; M(lvs.nat.ipvs_info) returns it.
  - The result's C(changed) is true only when a file changed or the service had to be started, restarted, reloaded or
    stopped. Health transitions are runtime state, never a change.
  - Stopping the service, its death, or O(state=absent) leave the kernel's table as it is.
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lvs.nat.ipvs_options
attributes:
  check_mode:
    support: full
    details: Reads the files, the service's state and the kernel, and reports what would change.
  diff_mode:
    support: full
    details: Before and after of each file the module owns.
  platform:
    platforms: linux
options:
  state:
    description:
      - V(present) installs, configures and (re)starts the service; V(absent) stops and disables it and removes its
        unit, launcher, code and declaration. The IPVS table is left as it is either way.
    type: str
    choices: [present, absent]
    default: present
  services:
    description:
      - The services the health service checks and writes; required with O(state=present).
      - Each entry is an entry of O(lvs.nat.ipvs_table#module:services) (the same keys, options and real servers), with
        O(services[].check) and optionally O(services[].sorry_server) and O(services[].quorum). Its real servers must
        be listed.
      - The services that O(services) does not list are not touched by the health service; a service removed from the
        list is left in the kernel as it is (remove it with M(lvs.nat.ipvs_table) or M(lvs.nat.ipvs_service)).
    type: list
    elements: dict
    suboptions:
      protocol:
        description:
          - V(tcp) (the default with O(services[].address)), V(udp) or V(sctp). Not used with O(services[].fwmark).
          - A V(udp) service needs O(services[].check.type=exec) or an explicit O(services[].check.port) (a TCP check).
        type: str
        choices: [sctp, tcp, udp]
      address:
        description:
          - Virtual IP address, IPv4 or IPv6. One of O(services[].address) (with O(services[].port)) or
            O(services[].fwmark) is required.
        type: str
      port:
        description:
          - Service port, 0 to 65535.
        type: int
      fwmark:
        description:
          - Firewall mark of a fwmark service, instead of protocol, address and port.
        type: int
      family:
        description:
          - Address family; follows O(services[].address), V(ipv4) by default for a fwmark service.
        type: str
        choices: [ipv4, ipv6]
      scheduler:
        description:
          - Scheduling algorithm, as O(lvs.nat.ipvs_service#module:scheduler); V(wlc) on creation.
        type: str
        choices: [rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf, twos]
      scheduler_flags:
        description:
          - Scheduler flags, as O(lvs.nat.ipvs_service#module:scheduler_flags).
        type: list
        elements: str
        choices: [mh-fallback, mh-port, sh-fallback, sh-port]
      persistence_timeout:
        description:
          - Persistence timeout in seconds, V(0) (the creation default) for none, at most V(2678400).
        type: int
      persistence_prefix:
        description:
          - Prefix length grouping clients for persistence, as O(lvs.nat.ipvs_service#module:persistence_prefix).
        type: int
      one_packet:
        description:
          - One-packet scheduling, for UDP and fwmark services; V(false) on creation.
        type: bool
      real_servers:
        description:
          - The service's real servers, as O(lvs.nat.ipvs_table#module:services[].real_servers) takes them (dicts or
            compact text C(ADDRESS:PORT:WEIGHT)); required. The health service keeps exactly the healthy ones in the
            kernel (and removes real servers the list does not name).
          - A real server with C(weight) V(0) is drained (kept at weight 0) whatever its health.
        type: raw
      check:
        description:
          - How each real server of the service is checked.
        type: dict
        required: true
        suboptions:
          type:
            description:
              - V(tcp) connects; V(http) and V(https) send C(GET) O(services[].check.path) and compare the answer's
                status (V(https) does not verify the certificate); V(exec) runs O(services[].check.command).
            type: str
            required: true
            choices: [tcp, http, https, exec]
          port:
            description:
              - The port checked, 1 to 65535; each real server's own port by default. Always a TCP port.
            type: int
          path:
            description:
              - The path that V(http) and V(https) ask for; V(/) by default. It starts with C(/) and holds printable
                ASCII without spaces.
            type: str
          expect_status:
            description:
              - The statuses (100 to 599) that count as healthy; V([200]) by default.
            type: list
            elements: int
          expect_body:
            description:
              - A Python regular expression searched in the first 64 KiB of the body; the body is not looked at
                by default.
            type: str
          host:
            description:
              - The C(Host) header sent, a host name or an IP address; the real server's address by default.
            type: str
          command:
            description:
              - The command that V(exec) runs (required there), as a list of arguments without a shell, the first an
                absolute path; a string is the command without arguments. Exit status 0 is healthy.
              - It gets the real server in the environment variables C(LVS_NAT_RS_ADDRESS) and C(LVS_NAT_RS_PORT), and
                the service's name (C(TCP 198.51.100.10:80)) in C(LVS_NAT_SERVICE). It is killed at the timeout.
            type: raw
          interval:
            description:
              - Seconds between the starts of two checks of a real server, above 0 and at most 3600; V(2) by default.
            type: float
          timeout:
            description:
              - Seconds a check may take before it fails, above 0 and at most the interval; V(1) by default.
            type: float
          rise:
            description:
              - Checks passed in a row that make an unhealthy real server healthy, at least 1; V(2) by default.
            type: int
          fall:
            description:
              - Checks failed in a row that make a healthy real server unhealthy, at least 1; V(3) by default.
            type: int
          on_failure:
            description:
              - What happens to an unhealthy real server; V(remove) (the default) takes it out of the kernel's table,
                V(quiesce) sets its weight to 0 so that its existing connections finish.
            type: str
            choices: [remove, quiesce]
      sorry_server:
        description:
          - C(ADDRESS) or C(ADDRESS:PORT) (an IPv6 address in brackets) that takes the service's new connections while
            fewer than O(services[].quorum) real servers are healthy with a weight above 0. Its port is the real
            servers' port by default. None by default.
        type: str
      quorum:
        description:
          - The number of healthy real servers (with a weight above 0) below which the sorry server is used, at
            least 1; V(1) by default.
        type: int
  wait:
    description:
      - After a change, wait until the service's state reports a check round done with the new declaration, then
        report the real servers' health and compare the kernel with the declaration and the health.
      - Without it the module returns once systemd started, restarted or reloaded the service, and RV(health) and
        RV(differences) may still show the previous declaration's round.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds O(wait) waits at most; the task then fails with what the state showed and the unit's
        C(systemctl status).
    type: float
    default: 30
notes:
  - The unit's C(ExecStart=) runs the launcher with the Python interpreter that runs this module
    (C(ansible_python_interpreter)), which must import pyroute2; its path must be plain (ASCII letters, digits and
    C(_./+,@=:-)).
  - Needs a running systemd outside check mode with O(state=present).
seealso:
  - module: lvs.nat.ipvs_table
  - module: lvs.nat.ipvs_info
  - module: lvs.nat.ipvs_save
"""

EXAMPLES = r"""
- name: Health-check the web service; a real server that stops answering leaves the table within seconds
  lvs.nat.ipvs_health:
    services:
      - address: 198.51.100.10
        port: 80
        scheduler: wrr
        real_servers:
          - {address: 198.51.100.101, port: 8080, weight: 3}
          - {address: 198.51.100.102, port: 8080}
        check:
          type: http
          path: /healthz
          expect_status: [200, 204]
          interval: 1
          timeout: 1
          rise: 2
          fall: 2
        sorry_server: 198.51.100.200:8080
  register: health

- name: A UDP service checked by a command
  lvs.nat.ipvs_health:
    services:
      - address: 198.51.100.10
        port: 53
        protocol: udp
        real_servers: ["198.51.100.101", "198.51.100.102"]
        check:
          type: exec
          command: [/usr/local/bin/check-dns, --quick]
          on_failure: quiesce

- name: Stop and remove the health service (the IPVS table is left as it is)
  lvs.nat.ipvs_health:
    state: absent
"""

RETURN = r"""
config_generation:
  description: The generation of the declaration (the first 16 hex digits of its hash); null with O(state=absent).
  returned: always
  type: str
  sample: 3f2a9c0d51e4b7a8
action:
  description: What the module asked systemd to do (in check mode, would ask), or V(none).
  returned: always
  type: str
  choices: [none, start, restart, reload, stop]
  sample: reload
health:
  description:
    - The services of the health service's state (C(/run/lvs-nat/health.json)), each with its real servers' health;
      empty when there is no state (the service never ran, or O(state=absent)).
  returned: always
  type: list
  elements: dict
  sample:
    - service: TCP 198.51.100.10:80
      sorry_server_active: false
      real_servers:
        - {address: 198.51.100.101, port: 8080, healthy: true, since: 1733190000.5, last_result: ok, reason: ok, checks: 42}
        - {address: 198.51.100.102, port: 8080, healthy: false, since: 1733190030.1, last_result: fail,
           reason: connection refused, checks: 42}
differences:
  description:
    - What the kernel holds otherwise than the declaration and the real servers' health require, as the operations
      the health service would make to converge (C(add real server 198.51.100.101:8080 to TCP 198.51.100.10:80));
      empty when the kernel holds exactly what it should.
    - A real server that the state does not report counts as unhealthy. Empty with O(state=absent).
  returned: always
  type: list
  elements: str
  sample: []
"""

import importlib
import os
import sys
import time

from ansible.module_utils.basic import AnsibleModule

# _healthd: imported so that AnsiballZ ships it, and every module_utils it imports, with this module; their sources
# are then read back through the module's own loader (source()) and installed on the director.
from ansible_collections.lvs.nat.plugins.module_utils import (
    _health,
    _healthd,
    _ipvs,
    _ipvs_args,
    _ipvs_names,
    _ipvs_plan,
    _persist,
)
from ansible_collections.lvs.nat.plugins.module_utils._errors import LvsNatError
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module

# Where the service lives (_health's names); module constants, so that the unit tests point them at a tmp dir.
CONFIG_PATH = _health.CONFIG_PATH
STATE_PATH = _health.STATE_PATH
CODE_DIR = _health.CODE_DIR
LAUNCHER = _health.LAUNCHER
UNIT_NAME = _health.UNIT_NAME
UNIT_PATH = "/etc/systemd/system/" + _health.UNIT_NAME
# The IPVS restore at boot (lvs.nat.ipvs_save's unit): the health service starts after it.
RESTORE_UNIT = "lvs-nat-ipvs.service"
PACKAGE = "ansible_collections.lvs.nat.plugins.module_utils"
POLL = 0.1
HEADER = "# Managed by lvs.nat.ipvs_health: edits here are overwritten.\n"

CHECK_SPEC = dict(
    type=dict(type="str", required=True, choices=["tcp", "http", "https", "exec"]),
    port=dict(type="int"),
    path=dict(type="str"),
    expect_status=dict(type="list", elements="int"),
    expect_body=dict(type="str"),
    host=dict(type="str"),
    # A list of arguments, or one string: raw, as the list type would split a string at its commas.
    command=dict(type="raw"),
    interval=dict(type="float"),
    timeout=dict(type="float"),
    rise=dict(type="int"),
    fall=dict(type="int"),
    on_failure=dict(type="str", choices=["remove", "quiesce"]),
)
HEALTH_SPEC = dict(
    state=_ipvs_args.STATE_SPEC,
    services=dict(type="list", elements="dict", options=dict(
        _ipvs_args.SERVICE_SPEC,
        # As ipvs_table: checked by _ipvs_plan.parse_dests (through _health.check_services) in one pass.
        real_servers=dict(type="raw"),
        check=dict(type="dict", required=True, options=CHECK_SPEC),
        sorry_server=dict(type="str"),
        quorum=dict(type="int"),
    ), **_ipvs_args.SERVICE_KEY_RELATIONS),
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="float", default=30),
)


def build_module():
    return AnsibleModule(argument_spec=HEALTH_SPEC, supports_check_mode=True,
                         required_if=[("state", "present", ["services"])])


def _given(entry):
    """An entry as the user wrote it: the options AnsibleModule filled with None left out, in check too, so that
    _health fills its own defaults."""
    out = dict((k, v) for k, v in entry.items() if v is not None)
    if isinstance(out.get("check"), dict):
        out["check"] = dict((k, v) for k, v in out["check"].items() if v is not None)
    return out


def declaration(services):
    """The config document for services, every entry checked first (InvalidInput naming services[i]...)."""
    return _health.config_document(_health.check_services([_given(entry) for entry in services]))


def check_paths(python):
    """The words of the unit's ExecStart=, each a plain absolute path (else InvalidInput naming it)."""
    for what, path in (("the module's Python interpreter (ansible_python_interpreter)", python),
                       ("the launcher", LAUNCHER), ("the declaration", CONFIG_PATH), ("the state file", STATE_PATH),
                       ("the code directory", CODE_DIR), ("the unit", UNIT_PATH)):
        problem = _persist.path_problem(path, what)
        if problem:
            raise _ipvs_plan.InvalidInput(problem)


def launcher_text(python):
    """The launcher: the service's code from CODE_DIR only, no bytecode written there (so that absent leaves no
    __pycache__ behind)."""
    return ("#!%s\n%s"
            "\"\"\"lvs-nat-healthd: lvs.nat's real-server health checks, from the code installed next to this file.\"\"\"\n"
            "import sys\n\n"
            "sys.dont_write_bytecode = True\n"
            "sys.path.insert(0, %r)\n"
            "from ansible_collections.lvs.nat.plugins.module_utils import _healthd  # noqa: E402\n\n"
            "raise SystemExit(_healthd.main())\n") % (python, HEADER, CODE_DIR)


def unit_text(python, kill):
    """The service's unit. Every word was checked with path_problem (check_paths, tool_path): systemd keeps it as
    written."""
    return (HEADER + "[Unit]\n"
            "Description=lvs.nat real-server health checks (lvs-nat-healthd)\n"
            "Wants=network-online.target\n"
            "After=network-online.target %s\n"
            "[Service]\n"
            "Type=notify\n"
            "NotifyAccess=main\n"
            "ExecStart=%s %s --config %s --state %s\n"
            "ExecReload=%s -HUP $MAINPID\n"
            "WatchdogSec=10\n"
            "Restart=on-failure\n"
            "RestartSec=1\n"
            "[Install]\n"
            "WantedBy=multi-user.target\n") % (RESTORE_UNIT, python, LAUNCHER, CONFIG_PATH, STATE_PATH, kill)


def code_dir():
    return os.path.join(CODE_DIR, *PACKAGE.split("."))


def source(name):
    """The source of one of the collection's module_utils, as this run loaded it: from AnsiballZ's zip on the managed
    host (zipimporter), from the collection's directory elsewhere. Through the module's own loader: pkgutil.get_data
    on the package finds nothing where module_utils is a namespace package (no __init__.py), as in a checkout."""
    module = importlib.import_module("%s.%s" % (PACKAGE, name))
    return module.__loader__.get_data(module.__file__).decode("utf-8")


def code_files(present):
    """(path, text) of each code file: the module_utils the service needs (_healthd.CODE_MODULES), read from this
    module's own package, so the service runs the code of the same version; files of an earlier version that are no
    longer needed (ours: with the header) are removed. With present false, all of them are removed."""
    directory = code_dir()
    files = []
    if present:
        for name in _healthd.CODE_MODULES:
            files.append((os.path.join(directory, name + ".py"), HEADER + source(name)))
    wanted = set(path for path, _text in files)
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if path not in wanted and name.endswith(".py") and _persist.managed(_persist.read_file(path) or ""):
                files.append((path, None))
    return files


def owned(module, doc):
    """The files and the unit as they should be: doc None removes them. Reads them and changes nothing; a file that
    is not ours fails here (PersistError)."""
    python, present = sys.executable, doc is not None
    kill = _persist.tool_path(module, "kill", "/bin/kill")
    files = [("config", CONFIG_PATH, _health.render_config(doc) if present else None, 0o644),
             ("launcher", LAUNCHER, launcher_text(python) if present else None, 0o755)]
    files += [("code", path, text, 0o644) for path, text in code_files(present)]
    return _persist.Owned(files=files, units=[("unit", UNIT_PATH, unit_text(python, kill) if present else None)])


def action(files, present, active):
    """What systemd has to do once the files are as they should be: new code or unit -> restart, a new declaration
    only -> reload (SIGHUP), not running -> start; absent -> stop when running. None: nothing."""
    if not present:
        return "stop" if active else None
    if not active:
        return "start"
    if any(e["before"] != e["text"] for e in files.plan if e["path"] != CONFIG_PATH):
        return "restart"
    if any(e["before"] != e["text"] for e in files.plan if e["path"] == CONFIG_PATH):
        return "reload"
    return None


def status_text(module):
    if not _persist.systemd_running():
        return "systemd does not run this host"
    rc, out, err = _persist.systemctl(module, "status", "--no-pager", "--full", "--lines=20", UNIT_NAME, ok=None)
    return (out or err).strip()


def _seen(state):
    if state is None:
        return "no state file %s" % STATE_PATH
    return "the state of generation %s (round %s, pid %s, updated %s)" % (
        state.get("generation"), state.get("round"), state.get("pid"), state.get("updated"))


def wait_for(module, generation, since, timeout):
    """The state once the service reports a round done with generation, written at or after since (a unix time,
    or None when nothing was started); LvsNatError after timeout seconds, with what was seen and the unit's status."""
    deadline = time.monotonic() + timeout
    while True:
        state = _health.read_state(STATE_PATH)
        if state is not None and state.get("generation") == generation and (
                since is None or (state.get("updated") or 0) >= since):
            return state
        if time.monotonic() >= deadline:
            raise LvsNatError("%s did not report a check round with the declaration of generation %s within %g s: "
                              "%s" % (UNIT_NAME, generation, timeout, _seen(state)),
                              state=state, status=status_text(module))
        time.sleep(POLL)


def differences(module, doc, state):
    """The operations that would make the kernel hold the checked services as the declaration and the health want
    them: lvs-nat-healthd's own plan (purge_real_servers: it owns these services whole). Empty when converged.

    Health may change between reading the state and reading the kernel (the service applies a transition, then
    writes the state), so a difference counts only when it is still there after two of the longest check intervals
    (at least 3 s), each comparison made with the state read anew."""
    settle = max([2 * svc["check"]["interval"] for svc in doc["services"]] + [3])
    with _ipvs.Session(module) as kernel:
        # From the first comparison: opening the session (importing pyroute2) may itself take longer than settle.
        deadline = time.monotonic() + settle
        while True:
            wanted = _health.wanted_services(doc, _health.state_health(state))
            current = kernel.table(counters=False)
            ops = _ipvs_plan.plan_table(current, wanted, purge_services=False, purge_real_servers=True, predict=False)[0]
            if not ops or time.monotonic() >= deadline:
                return [_ipvs_names.describe_op(op) for op in ops]
            time.sleep(POLL)
            state = _health.read_state(STATE_PATH)


def remove_empty_dirs():
    """After absent: the code's directories, deepest first up to CODE_DIR, as long as they are empty (nothing of
    another owner is removed)."""
    directory = code_dir()
    while True:
        try:
            os.rmdir(directory)
        except OSError:
            return
        if directory == CODE_DIR:
            return
        directory = os.path.dirname(directory)


def apply(module, files, todo, present):
    """Outside check mode: the service stopped before its files go; else the files first, then the service started,
    restarted or reloaded. Returns the unix time before systemd was asked (None when it was not)."""
    if module.check_mode:
        return None
    since = time.time() if todo else None
    if todo == "stop":
        _persist.systemctl(module, "stop", UNIT_NAME)
    files.install(module)
    if not present:
        remove_empty_dirs()
    if todo in ("start", "restart", "reload"):
        _persist.systemctl(module, todo, UNIT_NAME)
    return since


def run(module):
    p = module.params
    present = p["state"] == "present"
    # Everything checked before anything is read or written.
    doc = declaration(p["services"]) if present else None
    check_paths(sys.executable)
    with _persist.lock("ipvs_health"):
        files = owned(module, doc)
        if present and not module.check_mode and not _persist.systemd_running():
            raise LvsNatError("%s cannot run here: systemd does not run this host (no %s)" % (
                UNIT_NAME, _persist.SYSTEMD_RUNNING))
        todo = action(files, present, _persist.active_state(module, UNIT_NAME) in _persist.ACTIVE)
        since = apply(module, files, todo, present)
        state = None
        if present and p["wait"] and not module.check_mode:
            state = wait_for(module, doc["generation"], since, p["wait_timeout"])
        elif present:
            state = _health.read_state(STATE_PATH)
    result = files.result()
    return dict(changed=result["changed"] or todo is not None, action=todo or "none",
                config_generation=doc["generation"] if present else None,
                health=(state or {}).get("services") or [],
                differences=differences(module, doc, state) if present else [], diff=result["diff"])


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
