"""Emit the C source of one natfwd cffi module (API, out-of-line mode).

CMake runs this at build time::

    python bindings/build_ffi.py miniupnpc OUTPUT.c

The declarations come from ``bindings/<name>.h`` and the shims from
``bindings/<name>_shim.c``; compiling and linking the emitted file against the
library is CMake's job, so nothing about libraries or flags is said here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

MODULES = {
    "miniupnpc": "natfwd._miniupnpc",
    "natpmp": "natfwd._natpmp",
}


def make_ffi(name: str) -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef((HERE / f"{name}.h").read_text(encoding="utf-8"))
    ffi.set_source(MODULES[name], (HERE / f"{name}_shim.c").read_text("utf-8"))
    return ffi


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in MODULES:
        print(f"usage: build_ffi.py {{{'|'.join(MODULES)}}} OUTPUT.c", file=sys.stderr)
        return 2
    name, output = argv

    make_ffi(name).emit_c_code(output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
