# -*- coding: utf-8 -*-
# Copyright: lvs.nat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one exception family of the collection's module_utils. Imports nothing, so pure code can raise it."""
from __future__ import annotations


class LvsNatError(Exception):
    """A failure the module reports as its task's failure: msg, and details that go into the result.

    Every module's main() is _module.run_module, which turns this into module.fail_json(msg=..., **details).
    """

    def __init__(self, msg, **details):
        super(LvsNatError, self).__init__(msg)
        self.details = details


class KernelError(LvsNatError):
    """A kernel or environment failure, with the errno where the kernel gave one (details: errno)."""

    def __init__(self, msg, code=None, **details):
        if code is not None:
            details.setdefault("errno", code)
        super(KernelError, self).__init__(msg, **details)
        self.code = code


class CommandError(LvsNatError):
    """A command that failed: its result carries rc, stdout and stderr (and cmd, the argv run)."""
