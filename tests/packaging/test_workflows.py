"""The GitHub workflows: linted with actionlint, and wired as the project needs.

actionlint checks syntax, expressions, runner labels, action inputs and, with
shellcheck on PATH, every ``run:`` script. The other tests pin the few facts a
lint cannot know: which workflow runs what, and that publishing is done by
trusted publishing from tags only.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from shipping_support import ROOT, run, venv_tool

pytestmark = pytest.mark.packaging

WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def steps(workflow: dict, job: str) -> list:
    return workflow["jobs"][job]["steps"]


def scripts(workflow: dict, job: str) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow, job))


def uses(workflow: dict, job: str) -> list:
    return [
        step["uses"].split("@")[0] for step in steps(workflow, job) if "uses" in step
    ]


def test_actionlint_finds_nothing() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail(
            "shellcheck is missing, so actionlint would skip the run: scripts; "
            "it is in tools/debian-packages.txt (run tools/bootstrap)",
            pytrace=False,
        )
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert files, f"no workflows in {WORKFLOWS}"

    run([venv_tool("actionlint"), "-shellcheck", shutil.which("shellcheck"), *files])


def test_every_push_runs_the_suite_and_the_patch_queue_check() -> None:
    tests = load("tests.yml")

    assert "push" in tests[True]
    assert "pull_request" in tests[True]
    assert "bash .ci/run" in scripts(tests, "suite")
    assert "tools/patchq check" in scripts(tests, "patch-queue")


def test_tags_publish_by_trusted_publishing_only() -> None:
    wheels = load("wheels.yml")
    pypi = wheels["jobs"]["pypi"]

    assert wheels[True]["push"]["tags"] == ["v*"]
    assert pypi["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert pypi["permissions"] == {"id-token": "write"}
    assert "pypa/gh-action-pypi-publish" in uses(wheels, "pypi")
    # Trusted publishing needs no token: none may be passed in.
    for step in steps(wheels, "pypi"):
        assert "password" not in step.get("with", {})
    # The FreeBSD wheel goes to the GitHub release, never to PyPI.
    (download,) = [s for s in steps(wheels, "pypi") if "download" in s["uses"]]
    assert download["with"]["pattern"] == "dist-*"
    (upload,) = [s for s in steps(wheels, "freebsd") if "upload" in s.get("uses", "")]
    assert not upload["with"]["name"].startswith("dist-")


def test_wheels_are_built_from_the_sdist_on_native_runners() -> None:
    wheels = load("wheels.yml")
    job = wheels["jobs"]["wheels"]

    assert "pypa/cibuildwheel" in uses(wheels, "wheels")
    (cibw,) = [s for s in job["steps"] if "cibuildwheel" in s.get("uses", "")]
    assert "sdist" in cibw["with"]["package-dir"]
    archs = {entry["arch"] for entry in job["strategy"]["matrix"]["include"]}
    assert archs == {"x86_64", "aarch64", "arm64", "AMD64", "ARM64"}
    assert "vmactions/freebsd-vm" in uses(wheels, "freebsd")


def test_packages_workflow_builds_debian_and_fedora_from_the_sdist() -> None:
    packages = load("packages.yml")

    assert packages["jobs"]["debian"]["container"]["image"] == "debian:bookworm"
    assert "tests/packaging/debbuild.py" in scripts(packages, "debian")
    assert packages["jobs"]["fedora"]["container"]["image"].startswith("fedora:")
    fedora = scripts(packages, "fedora")
    assert "rpmbuild -ba" in fedora
    assert "rpmlint" in fedora
    assert "pyproject-rpm-macros" in fedora
