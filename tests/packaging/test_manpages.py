"""The manual pages in docs/man keep up with the command-line parsers.

The pages are written by hand; these tests fail when a command, an option,
an option's choice or an exit status is added to the parser without being
described, or when the version in the page header falls behind the
package's.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess

import pytest
from shipping_support import ROOT

import natfwd
import natfwd._tor
import natfwd.cli

pytestmark = pytest.mark.packaging

MAN = ROOT / "docs" / "man"


@pytest.fixture(scope="module")
def natfwd_modules():
    """natfwd as installed (the parsers need no compiled module to be built)."""
    return natfwd


def roff_text(name: str) -> str:
    """The page's source with roff's escaped hyphens made plain."""
    return (MAN / name).read_text().replace("\\-", "-")


def option_strings(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name
                yield from option_strings(sub)
        else:
            yield from action.option_strings
            yield from action.choices or ()


def test_natfwd_page_describes_every_command_and_option(natfwd_modules) -> None:
    page = roff_text("natfwd.1")

    missing = sorted(
        {o for o in option_strings(natfwd_modules.cli.build_parser()) if o not in page}
    )
    assert not missing, f"docs/man/natfwd.1 does not describe {missing}"


def test_natfwd_page_lists_every_exit_status(natfwd_modules) -> None:
    page = roff_text("natfwd.1")
    section = page[page.index(".SH EXIT STATUS") : page.index(".SH EXAMPLES")]

    documented = {int(n) for n in re.findall(r"^\.B (\d+)$", section, re.MULTILINE)}
    assert documented == set(natfwd_modules.cli.EXIT_CODES)


def test_tor_helper_page_describes_every_option(natfwd_modules) -> None:
    page = roff_text("natfwd-tor-helper.1")

    missing = sorted(
        {o for o in option_strings(natfwd_modules._tor._parser()) if o not in page}
    )
    assert not missing, f"docs/man/natfwd-tor-helper.1 does not describe {missing}"


@pytest.mark.parametrize("name", ["natfwd.1", "natfwd-tor-helper.1"])
def test_page_header_has_the_package_version(natfwd_modules, name: str) -> None:
    header = roff_text(name).splitlines()[0]

    assert f'"natfwd {natfwd_modules.__version__}"' in header, header


@pytest.mark.parametrize("name", ["natfwd.1", "natfwd-tor-helper.1"])
def test_page_renders_without_warnings(name: str) -> None:
    if shutil.which("man") is None:
        pytest.skip("man(1) is not installed")
    proc = subprocess.run(
        ["man", "--warnings", "-l", str(MAN / name)],
        capture_output=True,
        text=True,
        check=False,
        env={"LC_ALL": "C.UTF-8", "MANWIDTH": "80", "PATH": "/usr/bin:/bin"},
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
