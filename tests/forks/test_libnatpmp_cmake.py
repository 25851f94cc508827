"""libnatpmp's CMake build must serve CMake 4, installs and parent projects.

natfwd builds the fork through its CMake file, as a static, position
independent library inside its own C-only project, and packagers install it
for others to find with ``find_package(natpmp CONFIG)``. Each test here runs
the machine's real CMake and compiler on the fork tree, out of source.

Tests other than the first pass ``CMAKE_POLICY_VERSION_MINIMUM`` so that, run
against a pristine tree, each one fails for the problem it is about rather
than on the first line of the file.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from libnatpmp_support import TIMEOUT, tree

CMAKE = shutil.which("cmake")
MINGW_CC = "x86_64-w64-mingw32-gcc"
# Only for the pristine file, which also asks for C++.
MINGW_CXX = "x86_64-w64-mingw32-g++"

pytestmark = pytest.mark.skipif(CMAKE is None, reason="no cmake on PATH")

# Makes a missing prototype (strnatpmperr() without its macro) a build error.
STRICT = "-Werror=implicit-function-declaration"

# Lets CMake 4 read a file that declares an older minimum (the pristine one).
OLD_MINIMUM = "-DCMAKE_POLICY_VERSION_MINIMUM=3.5"


def cmake(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CMAKE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    return proc


def consumer_source(path: Path) -> Path:
    """A C file that uses natpmp.h's declarations, strnatpmperr() included."""
    path.write_text(
        "#include <stdio.h>\n"
        "#include <natpmp.h>\n"
        "const char *consumer_describe(int code)\n"
        "{\n"
        "\treturn strnatpmperr(code);\n"
        "}\n"
        "int consumer_close_null(void)\n"
        "{\n"
        "\treturn closenatpmp(NULL);\n"
        "}\n"
    )
    return path


def test_configures_and_builds_with_this_cmake(tmp_path):
    build = tmp_path / "build"

    proc = cmake("-Werror=deprecated", "-S", tree(), "-B", build)

    ok(proc)
    ok(cmake("--build", build))
    assert (build / "libnatpmp.a").is_file()


def test_needs_no_cxx_compiler(tmp_path):
    missing = tmp_path / "no-such-c++"

    proc = cmake(
        OLD_MINIMUM, f"-DCMAKE_CXX_COMPILER={missing}", "-S", tree(), "-B", tmp_path
    )

    ok(proc)


def test_installed_package_is_found_by_a_consumer(tmp_path):
    prefix = tmp_path / "prefix"
    ok(cmake(OLD_MINIMUM, "-S", tree(), "-B", tmp_path / "build"))
    ok(cmake("--build", tmp_path / "build"))
    ok(cmake("--install", tmp_path / "build", "--prefix", prefix))

    for name in ("include/natpmp.h", "include/natpmp_declspec.h", "bin/natpmpc"):
        assert (prefix / name).is_file(), f"{name} not installed"

    project = tmp_path / "consumer"
    project.mkdir()
    consumer_source(project / "consumer.c")
    (project / "main.c").write_text(
        "#include <stdio.h>\n"
        "#include <natpmp.h>\n"
        "const char *consumer_describe(int code);\n"
        "int consumer_close_null(void);\n"
        "int main(void)\n"
        "{\n"
        '\tprintf("%d %s\\n", consumer_close_null(),\n'
        "\t       consumer_describe(NATPMP_ERR_INVALIDARGS));\n"
        "\treturn 0;\n"
        "}\n"
    )
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.5...3.31)\n"
        "project(consumer C)\n"
        "find_package(natpmp CONFIG REQUIRED)\n"
        "add_executable(consumer main.c consumer.c)\n"
        f"target_compile_options(consumer PRIVATE {STRICT})\n"
        "target_link_libraries(consumer PRIVATE natpmp::natpmp)\n"
    )
    build = tmp_path / "consumer-build"
    ok(cmake("-S", project, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}"))
    ok(cmake("--build", build))

    run = subprocess.run(
        [build / "consumer"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert run.stdout == "-1 invalid arguments\n"


def test_add_subdirectory_builds_a_pic_module(tmp_path):
    project = tmp_path / "parent"
    project.mkdir()
    consumer_source(project / "ext.c")
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.5...3.31)\n"
        "project(parent C)\n"
        "set(CMAKE_POSITION_INDEPENDENT_CODE ON)\n"
        f'add_subdirectory("{tree()}" natpmp EXCLUDE_FROM_ALL)\n'
        "add_library(ext MODULE ext.c)\n"
        f"target_compile_options(ext PRIVATE {STRICT})\n"
        "target_link_libraries(ext PRIVATE natpmp::natpmp -Wl,--no-undefined)\n"
        "install(TARGETS ext LIBRARY DESTINATION lib)\n"
    )
    build = tmp_path / "build"
    ok(
        cmake(
            OLD_MINIMUM,
            "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
            "-S",
            project,
            "-B",
            build,
        )
    )
    ok(cmake("--build", build))
    ok(cmake("--install", build, "--prefix", tmp_path / "prefix"))

    commands = json.loads((build / "compile_commands.json").read_text())
    natpmp_c = [c["command"] for c in commands if c["file"].endswith("/natpmp.c")]
    assert natpmp_c, "natpmp.c was not compiled"
    assert "-fPIC" in natpmp_c[0].split()

    installed = sorted(p.name for p in (tmp_path / "prefix").rglob("*") if p.is_file())
    assert installed == ["libext.so"], "the parent installs natpmp's files"

    ext = ctypes.CDLL(str(build / "libext.so"))
    ext.consumer_describe.restype = ctypes.c_char_p
    assert ext.consumer_describe(-1) == b"invalid arguments"
    assert ext.consumer_close_null() == -1


def mingw_args() -> list[str]:
    if shutil.which(MINGW_CC) is None:
        pytest.skip(f"no {MINGW_CC}: install the Debian package mingw-w64")
    return [
        "-DCMAKE_SYSTEM_NAME=Windows",
        f"-DCMAKE_C_COMPILER={MINGW_CC}",
        f"-DCMAKE_CXX_COMPILER={MINGW_CXX}",
    ]


@pytest.mark.windows
def test_cross_builds_for_windows_with_mingw(tmp_path):
    build = tmp_path / "build"
    ok(cmake(OLD_MINIMUM, *mingw_args(), "-S", tree(), "-B", build))

    proc = cmake("--build", build)

    ok(proc)
    assert (build / "natpmpc.exe").is_file()


@pytest.mark.windows
def test_windows_consumer_links_against_the_installed_package(tmp_path):
    # Links only if the package passes on NATPMP_STATICLIB (else natpmp.h
    # asks for DLL imports) and the socket libraries the library needs.
    prefix = tmp_path / "prefix"
    ok(cmake(OLD_MINIMUM, *mingw_args(), "-S", tree(), "-B", tmp_path / "build"))
    ok(cmake("--build", tmp_path / "build"))
    ok(cmake("--install", tmp_path / "build", "--prefix", prefix))

    project = tmp_path / "consumer"
    project.mkdir()
    consumer_source(project / "consumer.c")
    (project / "main.c").write_text(
        "#include <natpmp.h>\n"
        "const char *consumer_describe(int code);\n"
        "int main(void)\n"
        "{\n"
        "\tnatpmp_t natpmp;\n"
        "\tconsumer_describe(initnatpmp(&natpmp, 0, 0));\n"
        "\treturn 0;\n"
        "}\n"
    )
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.5...3.31)\n"
        "project(consumer C)\n"
        "find_package(natpmp CONFIG REQUIRED)\n"
        "add_executable(consumer main.c consumer.c)\n"
        f"target_compile_options(consumer PRIVATE {STRICT})\n"
        "target_link_libraries(consumer PRIVATE natpmp::natpmp)\n"
    )
    build = tmp_path / "consumer-build"
    ok(
        cmake(
            *mingw_args(),
            f"-DCMAKE_PREFIX_PATH={prefix}",
            "-DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=BOTH",
            "-S",
            project,
            "-B",
            build,
        )
    )

    ok(cmake("--build", build))
    assert (build / "consumer.exe").is_file()
