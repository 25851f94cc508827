"""Compile small C harnesses against a fork's sources.

The regression tests for the patch queues live here. Each one builds a harness
together with the library sources it exercises, by default from the patched
tree in ``vendor/<lib>/tree``. Point ``NATFWD_FORK_TREE_<LIB>`` (for example
``NATFWD_FORK_TREE_MINIUPNPC``) at another tree, such as a pristine unpack, to
watch the same test fail without the queue.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import miniupnpc_support
import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS_DIR = Path(__file__).resolve().parent / "c"


def fork_tree(lib: str) -> Path:
    override = os.environ.get(f"NATFWD_FORK_TREE_{lib.upper()}")
    tree = Path(override) if override else ROOT / "vendor" / lib / "tree"
    if not tree.is_dir():
        pytest.skip(f"no {lib} tree at {tree}: run 'tools/patchq apply {lib}'")
    return tree


class Compiler:
    """Builds one executable per call, in a per-test temporary folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cc = os.environ.get("CC", "cc")
        if shutil.which(self.cc) is None:
            pytest.skip(f"no C compiler {self.cc!r}")

    def build(
        self,
        lib: str,
        harness: str,
        sources: list[str],
        *,
        include_dirs: list[str] = (),
        defines: list[str] = (),
        sanitize: bool = True,
        extra: list[str] = (),
    ) -> Path:
        tree = fork_tree(lib)
        out = self.workdir / Path(harness).stem
        cmd = [self.cc, "-g", "-O1", "-Wall", "-o", str(out)]
        if sanitize:
            cmd += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        cmd += [f"-I{tree / d}" for d in (".", *include_dirs)]
        cmd += [f"-D{d}" for d in defines]
        cmd += [str(HARNESS_DIR / harness)]
        cmd += [str(tree / s) for s in sources]
        cmd += list(extra)
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return out


@pytest.fixture
def cc(tmp_path: Path) -> Compiler:
    return Compiler(tmp_path)


@pytest.fixture(scope="module")
def cc_module(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    """Like ``cc``, for harnesses built once and run by many tests."""
    return Compiler(tmp_path_factory.mktemp("cc"))


@pytest.fixture(scope="module")
def replies(cc_module: Compiler) -> Path:
    """The miniupnpc harness that makes one action call and prints its
    result (c/miniupnpc_replies.c), built once per module."""
    return miniupnpc_support.build(
        cc_module, "miniupnpc_replies.c", miniupnpc_support.CLIENT_SOURCES
    )
