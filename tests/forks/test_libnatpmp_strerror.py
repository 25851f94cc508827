"""strnatpmperr() has a text for every code natpmp.h defines.

Callers print the text of whatever code a function returned. The codes are
read from the header of the tree under test, so a code added without its
text fails here.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from libnatpmp_support import DEFINES, LIB, SOURCES, TIMEOUT, assert_clean, tree

UNKNOWN = "Unknown libnatpmp error"
CODE = re.compile(r"^#define\s+(NATPMP_(?:ERR_\w+|TRYAGAIN))\s+\((-\d+)\)", re.M)


@pytest.fixture(scope="module")
def texts(cc_module):
    codes = {
        int(v): name for name, v in CODE.findall((tree() / "natpmp.h").read_text())
    }
    assert len(codes) >= 19, f"found only {sorted(codes.values())} in natpmp.h"
    exe = cc_module.build(LIB, "libnatpmp_strerror.c", SOURCES, defines=DEFINES)

    proc = subprocess.run(
        [exe, *map(str, codes), "1", "-13"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert_clean(proc)

    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    return {codes.get(int(k), k): v for k, v in lines.items()}


def test_every_defined_code_has_a_text(texts):
    unknown = sorted(name for name, text in texts.items() if text == UNKNOWN)

    assert unknown == ["-13", "1"]


def test_texts_are_distinct(texts):
    named = [text for name, text in texts.items() if name.startswith("NATPMP_")]
    repeated = sorted({text for text in named if named.count(text) > 1})

    assert repeated == []
