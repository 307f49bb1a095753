#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_table
short_description: Reconcile many IPVS virtual services and their real servers in one run
version_added: 0.2.0
description:
  - Declares a list of IPVS virtual services, each with its real servers, and makes the kernel hold them in one module
    run. The whole table is read once and compared with the declaration entry by entry; only what differs is sent,
    many operations per netlink batch.
  - Each entry of O(services) means what the same options mean to M(lvs.nat.ipvs_service) with O(lvs.nat.ipvs_service#module:state=present);
    options left out keep what the kernel holds, or take the creation defaults. Use M(lvs.nat.ipvs_service) for one
    service, this module for a table that is large or owned as a whole.
  - Nothing that the task does not name is removed, unless O(purge_real_servers=true) (real servers of a listed service),
    O(purge_services=true) (every service not listed) or O(owned) (the services not listed that the task owns).
  - Every entry is checked before anything is sent. Where the kernel still refuses an operation (a real server on a
    broadcast address of the director's own subnet, for example), everything the run applied is rolled back, so the
    failed task leaves the table as it found it.
author: lvs.nat maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lvs.nat.ipvs_options
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Before and after map each service that the run adds, edits or removes (as C(TCP 198.51.100.10:80)) to its settings and real servers.
      - With O(owned), the diff is a list of two entries, the services as above, then the file O(owned.path). With
        O(save), the saved file and its unit follow (after O(owned.path)'s entry, when O(owned) is set).
  platform:
    platforms: linux
options:
  services:
    description:
      - The virtual services, keyed as in M(lvs.nat.ipvs_service) by O(services[].protocol), O(services[].address) and
        O(services[].port), or by O(services[].fwmark). A service listed twice is an error.
    type: list
    elements: dict
    required: true
    suboptions:
      protocol:
        description:
          - V(tcp) (the default with O(services[].address)), V(udp) or V(sctp). Not used with O(services[].fwmark).
        type: str
        choices: [sctp, tcp, udp]
      address:
        description:
          - Virtual IP address, IPv4 or IPv6. One of O(services[].address) (with O(services[].port)) or
            O(services[].fwmark) is required.
          - Not the unspecified address, a multicast address, V(255.255.255.255), an IPv6 link-local address or an
            address with C(%zone).
        type: str
      port:
        description:
          - Service port, 0 to 65535; V(0) means all ports and needs persistence.
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
          - Persistence timeout in seconds, V(0) (the creation default) for none, at most V(2678400) (31 days, the most
            C(ipvsadm) accepts).
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
          - The service's real servers, a list whose entries are each a dict or compact text. When omitted, the
            service's real servers are not touched.
          - "A dict takes C(address) (required: the real server's IP address, of the service's address family; not the
            unspecified address, a multicast address, V(255.255.255.255), an IPv6 link-local address or an address with
            C(%zone)), C(port) (the service's port by default, V(0) for a fwmark service; another port needs
            masquerading), C(forwarding) (V(masq), V(route) or V(tunnel); V(masq) on creation), C(weight) (0 to 65535;
            V(1) on creation; V(0) drains the server), C(upper_threshold) and C(lower_threshold) (connection thresholds,
            the lower at most the upper; V(0) on creation), as in O(lvs.nat.ipvs_service#module:real_servers)."
          - Compact text C(ADDRESS), C(ADDRESS:PORT) or C(ADDRESS:PORT:WEIGHT), an IPv6 address in brackets
            (C([2001:db8::101]:80:3)), is the dict with those keys. It is the form for large tables; the module checks
            it in one pass of its own.
          - "Options left out keep what the kernel holds, or take the creation defaults. An error names the entry, as in
            C(services[2]: real_servers[7] weight=70000 is out of range)."
        type: raw
  purge_real_servers:
    description:
      - Remove the real servers of each service with O(services[].real_servers) that its list does not name.
    type: bool
    default: false
  purge_services:
    description:
      - Remove the services the kernel holds that O(services) does not list, with their real servers, whoever made
        them. O(owned) removes only the task's own.
      - Mutually exclusive with O(owned).
    type: bool
    default: false
  owned:
    description:
      - What the task owns, so that a service it declared once and no longer lists is removed, and nothing else is.
      - A service that O(services) does not list is removed, with its real servers, when it is on one of
        O(owned.addresses), or when it is a fwmark service whose mark O(services) lists now or listed in an earlier run
        with the same O(owned.path) (a mark is owned in both families). Services of other tools on other addresses, and
        fwmark services of marks the task never listed, are left as they are.
      - Without O(owned) (and without O(purge_services)) no service is removed.
      - Mutually exclusive with O(purge_services).
    type: dict
    suboptions:
      addresses:
        description:
          - The virtual IP addresses (IPv4 or IPv6) the task owns; every service on them is either listed or removed.
        type: list
        elements: str
        default: []
      path:
        description:
          - The file in which the module records the fwmarks that O(services) lists, one a line under the header
            C(# Managed by lvs.nat.ipvs_table); it is removed when no fwmark is listed, and written only after the
            kernel took the run's changes (not in check mode).
          - An absolute path of ASCII letters, digits and the characters C(_./+,@=:-), without C(..).
          - An existing file without the managed header, or with a line that is not a fwmark, fails the task before
            any change.
        type: path
        default: /etc/lvs-nat/ipvs-owned-fwmarks
      skip:
        description:
          - Services another writer holds (C(lvs-nat-healthd), see M(lvs.nat.ipvs_health)), by their key (O(services[].protocol),
            O(services[].address) and O(services[].port), or O(services[].fwmark)), never removed, even on
            O(owned.addresses), and never listed in O(services) (a service listed there too fails the task before any change).
        type: list
        elements: dict
        default: []
        version_added: 0.4.0
        suboptions:
          protocol:
            description: The service's protocol.
            type: str
            choices: [tcp, udp, sctp]
          address:
            description: The service's virtual address.
            type: str
          port:
            description: The service's port.
            type: int
          fwmark:
            description: The firewall mark of a fwmark service, instead of protocol, address and port.
            type: int
          family:
            description: The family of a fwmark service (default ipv4).
            type: str
            choices: [ipv4, ipv6]
  compact:
    description:
      - A small result for large changes. RV(services) and RV(removed) name the services the run touched, as
        C(TCP 198.51.100.10:80), instead of listing their settings and real servers, and RV(changes) counts the
        operations by kind (C(add 10000 real servers)) instead of listing each one. RV(operations) is the number of
        operations either way, and diff mode still shows every touched service in full.
    type: bool
    default: false
    version_added: 0.3.0
  save:
    description:
      - Save, in the same run, the services O(services) lists as the kernel then holds them (in check mode, as it would
        hold them) and the global timeouts, for the next boot, as M(lvs.nat.ipvs_save) saves them - the same file,
        byte for byte, and the same boot unit C(lvs-nat-ipvs.service), which applies each line on its own and never
        flushes. Services the task does not list (other tools', O(owned.skip)'s) are not saved.
      - Written only when the text differs, after the kernel took the run's changes; a run that the kernel refused
        (and that rolled back) saves nothing. The diff shows the file and the unit.
      - With O(owned), the listed services are all the task owns after the run (O(owned) removed the others), so the
        saved file is what M(lvs.nat.ipvs_save) with the owned addresses and marks and O(owned.skip) as its
        O(lvs.nat.ipvs_save#module:skip) writes. The role C(lvs.nat.director) saves its table this way.
    type: dict
    version_added: 0.6.0
    suboptions:
      path:
        description:
          - The saved file, one C(ipvsadm) command a line (M(lvs.nat.ipvs_save)'s O(lvs.nat.ipvs_save#module:path)).
          - An absolute path of ASCII letters, digits and the characters C(_./+,@=:-), without C(..); an existing file
            without the managed header fails the task before any change.
        type: path
        default: /etc/lvs-nat/ipvs.rules
      unit_path:
        description:
          - The boot unit that applies the file (M(lvs.nat.ipvs_save)'s O(lvs.nat.ipvs_save#module:unit_path)), written and
            enabled; the same rules as O(save.path).
        type: path
        default: /etc/systemd/system/lvs-nat-ipvs.service
  timeouts:
    description:
      - The global IPVS connection timeouts in seconds (C(ipvsadm --set)), set in the same run as the table, as
        M(lvs.nat.ipvs_timeouts) sets them; a timeout left out stays as the kernel holds it.
    type: dict
    version_added: 0.3.0
    suboptions:
      tcp:
        description: Timeout of established TCP sessions, 1 to 2147483.
        type: int
      tcp_fin:
        description: Timeout of TCP sessions after a FIN, 1 to 2147483.
        type: int
      udp:
        description: Timeout of UDP entries, 1 to 2147483.
        type: int
seealso:
  - module: lvs.nat.ipvs_timeouts
  - module: lvs.nat.ipvs_service
  - module: lvs.nat.ipvs_info
  - module: lvs.nat.ipvs_save
"""

EXAMPLES = r"""
- name: Two services on the VIP with their real servers, in one run
  lvs.nat.ipvs_table:
    services:
      - address: 198.51.100.10
        port: 80
        scheduler: wrr
        real_servers:
          - {address: 198.51.100.101, weight: 3}
          - {address: 198.51.100.102}
      - address: 198.51.100.10
        port: 8080
        scheduler: rr
        real_servers:
          - {address: 198.51.100.101, port: 80}
          - {address: 198.51.100.102, port: 80}

- name: A large table, real servers in the compact form ADDRESS:PORT:WEIGHT, the result by name only
  lvs.nat.ipvs_table:
    services:
      - address: 198.51.100.10
        port: 443
        scheduler: wrr
        real_servers: ["198.51.100.101:443:3", "198.51.100.102:443:1", "198.51.100.103:8443:1"]
      - address: 2001:db8::10
        port: 443
        real_servers: ["[2001:db8::101]:443:2", "[2001:db8::102]:443"]
    purge_real_servers: true
    compact: true

- name: Exactly this table (other services and real servers are removed)
  lvs.nat.ipvs_table:
    services:
      - address: 198.51.100.10
        port: 80
        scheduler: wrr
        real_servers:
          - {address: 198.51.100.101, weight: 3}
          - {address: 198.51.100.102}
    purge_services: true
    purge_real_servers: true

- name: The director's table, saved for the boot; services it declared before and no longer lists are removed, other tools' are kept
  lvs.nat.ipvs_table:
    services:
      - address: 198.51.100.10
        port: 443
        real_servers:
          - {address: 198.51.100.101}
      - fwmark: 7
        scheduler: sh
        persistence_timeout: 300
        real_servers:
          - {address: 198.51.100.101, port: 0}
    owned:
      addresses: [198.51.100.10]
    purge_real_servers: true
    save: {}
"""

RETURN = r"""
services:
  description:
    - The listed services that the run added or edited (in check mode, would add or edit), as the kernel holds them
      after the run, in the order of O(services), each with its real servers; the same fields as
      RV(lvs.nat.ipvs_service#module:service). Services left as they were are not repeated here (M(lvs.nat.ipvs_info)
      reads the whole table); empty when nothing changed.
    - With O(compact=true), each service's name only (C(TCP 198.51.100.10:80)).
  returned: always
  type: list
  elements: raw
  sample:
    - family: ipv4
      protocol: tcp
      address: 198.51.100.10
      port: 80
      fwmark: 0
      scheduler: wrr
      scheduler_flags: []
      persistence_timeout: 0
      persistence_prefix: 32
      one_packet: false
      real_servers:
        - {address: 198.51.100.101, port: 80, forwarding: masq, weight: 3, upper_threshold: 0, lower_threshold: 0}
removed:
  description:
    - The services removed (in check mode, that would be removed) by O(purge_services) or O(owned), as they were.
    - With O(compact=true), each service's name only.
  returned: always
  type: list
  elements: raw
  sample: []
changes:
  description:
    - The kernel operations made (in check mode, that would be made), in order.
    - The result's C(changed) is also true when only the file O(owned.path), or with O(save) the saved file or its unit,
      changed.
    - With O(timeouts), a change of the timeouts is listed first, as C(set the timeouts tcp=600).
    - With O(compact=true), the operations counted by kind, as C(add 100 services) and C(add 10000 real servers).
  returned: always
  type: list
  elements: str
  sample: ["add service TCP 198.51.100.10:80", "add real server 198.51.100.101:80"]
operations:
  description: The number of kernel operations made (in check mode, that would be made).
  returned: always
  type: int
  version_added: 0.3.0
  sample: 2
saved:
  description:
    - With O(save), whether the saved file or its unit changed (C(changed)) and the services saved (C(services)), as
      the kernel holds them after the run (in check mode, as it would), in the file's order, each as in RV(services)
      (with O(compact=true), by name).
  returned: when O(save) is set
  type: dict
  version_added: 0.6.0
  sample: {changed: false, services: ["TCP 198.51.100.10:80"]}
timeouts:
  description: With O(timeouts), the global timeouts after the run (in check mode, as they would be), in seconds.
  returned: when O(timeouts) is set
  type: dict
  version_added: 0.3.0
  sample: {tcp: 900, tcp_fin: 120, udp: 300}
applied:
  description: When the kernel refused an operation, the operations of the run it had applied, in order.
  returned: on a kernel refusal
  type: list
  elements: str
  sample: ["add service TCP 198.51.100.10:81"]
rolled_back:
  description: When the kernel refused an operation, the applied operations that were undone, the last first.
  returned: on a kernel refusal
  type: list
  elements: str
  sample: ["add service TCP 198.51.100.10:81"]
not_rolled_back:
  description: When the kernel refused an operation, the applied operations that could not be undone (still in the kernel).
  returned: on a kernel refusal
  type: list
  elements: str
  sample: []
"""

import collections
import contextlib
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lvs.nat.plugins.module_utils import _ipvs, _ipvs_args, _ipvs_names, _ipvs_plan, _ipvs_save, _persist
from ansible_collections.lvs.nat.plugins.module_utils._module import run_module

OWNED_HEADER = "# Managed by lvs.nat.ipvs_table: the fwmarks of its services, one a line; it removes them when unlisted.\n"
# A mark as the file holds it: decimal, no sign, no leading zero, ASCII only (full match), 1 to 2**32 - 1.
_MARK = re.compile(r"[1-9][0-9]{0,9}", re.ASCII)


def owned_text(marks):
    """The content of owned.path recording marks: the header, then each mark once in increasing order; None (the
    file absent) for no mark."""
    return OWNED_HEADER + "".join("%d\n" % mark for mark in sorted(set(marks))) if marks else None


def parse_owned(text, path):
    """The marks owned_text wrote (an empty set for None, an absent file). Anything but what owned_text writes (the
    header, marks in increasing order, one a line) raises PersistError naming owned.path, so that a foreign or damaged
    file never decides what is removed."""
    if text is None:
        return set()
    lines = text.split("\n")
    marks = set()
    for number, line in enumerate(lines[1:-1], 2):
        if not _MARK.fullmatch(line) or int(line) > _ipvs_names.MAX_U32:
            raise _persist.PersistError("owned.path: line %d of %s is not a fwmark (1 to %d): %s; move the file away "
                                        "or choose another owned.path" % (number, path, _ipvs_names.MAX_U32,
                                                                          _ipvs_plan._show(line)))
        marks.add(int(line))
    if owned_text(marks) != text:
        raise _persist.PersistError("owned.path: %s is not a list of fwmarks as lvs.nat.ipvs_table writes it (the line "
                                    "%r, then at least one mark a line in increasing order, each line ending with a "
                                    "newline); move it away or choose another owned.path" % (path, OWNED_HEADER.strip()))
    return marks


def owned_file(owned, keys):
    """owned checked before the kernel is read: its addresses, its path, the file (ours, and parsed). Returns
    ((addresses, marks recorded), _persist.Owned for the marks listed now), or (None, None) without owned."""
    if owned is None:
        return None, None
    addresses = _ipvs_plan.owned_addresses(owned["addresses"], "owned.addresses")
    skipped = skipped_services(owned["skip"], keys)
    problem = _persist.path_problem(owned["path"], "owned.path")
    if problem:
        raise _ipvs_plan.InvalidInput(problem)
    listed = [key["fwmark"] for key in keys if key["fwmark"]]
    files = _persist.Owned(files=[("owned.path", owned["path"], owned_text(listed), 0o644)])
    return (addresses, parse_owned(files.plan[0]["before"], owned["path"]), skipped), files


def skipped_services(skip, keys):
    """owned.skip as a set of service ids (_ipvs_plan.owned_keys); a listed service that is also skipped would have
    two writers: InvalidInput naming both."""
    skipped = _ipvs_plan.owned_keys(skip, "owned.skip")
    for j, key in enumerate(keys):
        if _ipvs_names.service_id(key) in skipped:
            raise _ipvs_plan.InvalidInput("services[%d]: %s is also in owned.skip[%d]: a service has one writer" % (
                j, _ipvs_names.describe_service(key), skipped[_ipvs_names.service_id(key)]))
    return frozenset(skipped)


def _by_service(services):
    return dict((_ipvs_names.describe_service(svc), _ipvs_plan.config_view(svc)) for svc in services)


def build_module():
    return AnsibleModule(argument_spec=_ipvs_args.IPVS_TABLE_SPEC, supports_check_mode=True,
                         **_ipvs_args.IPVS_TABLE_RELATIONS)


def reconcile(module, parsed, owned, timeouts, save=False):
    """The timeouts (when given), then the table: read (settings, no counters), plan, apply unless check mode.
    (ops, current, after, removed, (timeouts before, after) or None, the kernel's timeouts after the run or None).
    With save, the touched services are always predicted or read back (the saved file needs their real servers) and
    the kernel's timeouts are read when the run does not set them."""
    p = module.params
    # A compact result names the touched services only: without diff mode or save, their real servers are neither
    # predicted nor read back.
    full = not p["compact"] or module._diff or save
    with _ipvs.Session(module) as kernel:
        times = kernel.reconcile_timeouts(timeouts) if timeouts is not None else None
        current = kernel.table(counters=False)
        # owned.skip: another writer's services are not in the table this run plans, so none of them is removed.
        skipped = owned[2] if owned else ()
        ours = [svc for svc in current if _ipvs_names.service_id(svc) not in skipped] if skipped else current
        ops, after, removed = _ipvs_plan.plan_table(ours, p["services"], p["purge_services"], p["purge_real_servers"],
                                                    owned=owned and owned[:2], parsed=parsed, predict=full)
        if ops and not module.check_mode:
            schedulers = sorted(set(svc["scheduler"] for svc in after))
            # A refusal rolls back what the run applied, so a failed task leaves the table as it found it.
            kernel.apply(ops, before=current, schedulers=schedulers)
            # The result and the diff show the touched services as the kernel then holds them (the kernel applied
            # every operation: a refusal would have raised).
            if full:
                after = read_back(kernel, after)
        held_timeouts = (times[1] if times is not None else kernel.timeouts()) if save else None
    return ops, current, after, removed, times, held_timeouts


def read_back(kernel, touched):
    """The touched services as the kernel holds them now: each on its own when few, else one read of the table."""
    if len(touched) <= 10:
        return [kernel.service(svc, counters=False) for svc in touched]
    held = dict((_ipvs_names.service_id(svc), svc) for svc in kernel.table(counters=False))
    return [held.get(_ipvs_names.service_id(svc)) for svc in touched]


def invocation(p, parsed):
    """The arguments as the result echoes them: the table counted, not repeated (ansible-core echoes, and scans for
    no_log values, the whole arguments of a module that names no invocation of its own)."""
    args = dict(p, services="%d services, %d real servers" % (
        len(parsed), sum(len(entry.dests or ()) for entry in parsed)))
    return dict(module_args=args)


def counted(ops):
    """The operations counted by kind, each kind in the order it first comes: ["delete 1 service", "add 10000 real
    servers"]."""
    counts = collections.OrderedDict()
    for op in ops:
        kind = (_ipvs_names.VERBS[op[0]], "service" if op[2] is None else "real server")
        counts[kind] = counts.get(kind, 0) + 1
    return ["%s %d %s%s" % (verb, n, what, "" if n == 1 else "s") for (verb, what), n in counts.items()]


def checked_timeouts(timeouts):
    """The timeouts option checked (_ipvs_plan.desired_timeouts), errors naming timeouts.<name>; None when not set."""
    if timeouts is None:
        return None
    try:
        return _ipvs_plan.desired_timeouts(timeouts)
    except _ipvs_plan.InvalidInput as e:
        raise _ipvs_plan.InvalidInput("timeouts.%s" % e) from None


def checked_save(save):
    """The save option checked before anything is read or changed (check mode too): paths systemd and sh take as one
    word, files that are absent or ours."""
    if save is None:
        return None
    names = ("save.path", "save.unit_path")
    problems = _ipvs_save.path_problems(save["path"], save["unit_path"], names) or \
        _persist.foreign_problems(tuple(zip(names, (save["path"], save["unit_path"]))))
    if problems:
        raise _persist.PersistError("; ".join(problems))
    return save


def saved_services(parsed, current, after, removed):
    """The listed services as the kernel holds them after the run (in check mode, as it would), in the saved file's
    order: those the run left as they were from current, the touched ones from after, the removed ones gone."""
    held = dict((_ipvs_names.service_id(svc), svc) for svc in current)
    for svc in removed:
        held.pop(_ipvs_names.service_id(svc), None)
    held.update((_ipvs_names.service_id(svc), svc) for svc in after if svc)
    return sorted((held[entry.sid] for entry in parsed if entry.sid in held), key=_ipvs_save.service_order)


def run(module):
    p = module.params
    timeouts = checked_timeouts(p["timeouts"])
    parsed = _ipvs_plan.precheck_table(p["services"])
    save = checked_save(p["save"])
    # owned.path is read, then rewritten after the kernel changed: one run at a time, or a run could forget the
    # marks another recorded. The saved state likewise (the lock lvs.nat.ipvs_save takes): two overlapping runs
    # would save the older table last.
    with _persist.lock("ipvs_table") if p["owned"] is not None else contextlib.nullcontext(), \
            _persist.lock("ipvs_save") if save else contextlib.nullcontext():
        owned, files = owned_file(p["owned"], [entry.key for entry in parsed])
        ops, current, after, removed, times, held_timeouts = reconcile(module, parsed, owned, timeouts, save=bool(save))
        # Written once the kernel took the changes: a refused run still knows the marks it owned before.
        recorded = files.install(module) if files else dict(changed=False, diff=[])
        if save:
            saved = saved_services(parsed, current, after, removed)
            stored = _ipvs_save.owned_files(save["path"], save["unit_path"], _ipvs_save.render(saved, held_timeouts),
                                            options=("save.path", "save.unit_path")).install(module)
        else:
            saved, stored = None, dict(changed=False, diff=[])
    # Only what the run touched: a large table's unchanged services would make every result (and its processing by
    # ansible-core) as large as the table. lvs.nat.ipvs_info reads the whole table.
    view = _ipvs_names.describe_service if p["compact"] else _ipvs_plan.config_view
    set_times = times is not None and times[0] != times[1]
    changes = (["set the timeouts " + " ".join("%s=%d" % (n, times[1][n]) for n in _ipvs_names.TIMEOUT_NAMES
                                               if times[0][n] != times[1][n])] if set_times else [])
    changes += counted(ops) if p["compact"] else [_ipvs_names.describe_op(op) for op in ops]
    result = dict(changed=bool(ops) or set_times or recorded["changed"] or stored["changed"],
                  services=[view(svc) for svc in after if svc], removed=[view(svc) for svc in removed],
                  changes=changes, operations=len(ops), invocation=invocation(p, parsed))
    if times is not None:
        result["timeouts"] = times[1]
    if save:
        result["saved"] = dict(changed=stored["changed"], services=[view(svc) for svc in saved])
    if module._diff:
        # Mappings (service -> its settings and real servers): ansible-core's diff display takes text or a mapping.
        touched = set(_ipvs_names.service_id(op[1]) for op in ops)
        table_diff = dict(before=_by_service(svc for svc in current if _ipvs_names.service_id(svc) in touched),
                          after=_by_service(svc for svc in after if svc))
        if set_times:
            table_diff["before"]["timeouts"], table_diff["after"]["timeouts"] = times
        result["diff"] = [table_diff] + recorded["diff"] + stored["diff"] if files or save else table_diff
    return result


def main():
    run_module(build_module, run)


if __name__ == "__main__":
    main()
