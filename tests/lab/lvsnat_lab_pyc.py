# SPDX-License-Identifier: GPL-3.0-or-later
"""The lvs.nat lab's directors only: keep the code Python compiles from zip archives (AnsiballZ payloads).

zipimport compiles every module in a zip from its source at each import: under TCG that is about 1.5 s of each
module run (ansible.module_utils.basic and what it imports, and the collection's module_utils). The same source
compiles to the same code, so the code is kept in CACHE, keyed by Python's magic number, the module's path inside
the zip and the hash of its source, and given the archive's path again when read back (as importlib does for
.pyc files). tests/lab/lab.py installs this file and a .pth line importing it on each emulated director it
boots (README: The lab); the collection never installs it, and `./run bench` removes it so that its figures are
what a director without it pays.
"""
import _imp
import marshal
import os
import sys
import zipimport

CACHE = "/var/cache/lvsnat-lab-pyc"
_compile_source = zipimport._compile_source


def _cached_compile_source(pathname, source):
    import hashlib  # only when a zip is imported from: every other Python start on the director stays as it was

    inner = pathname.rsplit(".zip" + os.sep, 1)[-1]
    magic = sys.modules["_frozen_importlib_external"].MAGIC_NUMBER
    path = os.path.join(CACHE, hashlib.sha256(magic + inner.encode() + b"\0" + source).hexdigest())
    try:
        with open(path, "rb") as f:
            code = marshal.loads(f.read())
        _imp._fix_co_filename(code, pathname)
        return code
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = _compile_source(pathname, source)
    try:
        os.makedirs(CACHE, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(marshal.dumps(code))
        os.replace(tmp, path)
    except OSError:
        pass
    return code


zipimport._compile_source = _cached_compile_source
