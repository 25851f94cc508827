"""SSDP replies with NUL bytes in their fields must not reach the device list.

Discovery drops a reply that repeats a device it already has. The check
compared LOCATION, ST and USN with strncmp() and then looked at the byte
after each in the stored device: a reply whose LOCATION holds a NUL byte
and runs on past the stored one made it read past the device's heap block.
Any host on the LAN can send such a reply; such replies are now dropped.

The harness runs discovery in a network namespace of its own, holding only
a loopback interface; its child sends the replies from 127.0.0.1.
"""

from __future__ import annotations

import pytest
from miniupnpc_support import CLIENT_SOURCES, build, run

FIRST = "http://127.0.0.1:1/a"


@pytest.fixture(scope="module")
def harness(cc_module):
    return build(cc_module, "miniupnpc_ssdp.c", CLIENT_SOURCES, extra=["-O0"])


def discover(harness, location2: str) -> list[str]:
    proc = run(harness, location2, timeout=60)
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip())

    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [
        line.removeprefix("device ")
        for line in proc.stdout.splitlines()
        if line.startswith("device ")
    ]


def test_repeated_reply_is_one_device(harness):
    assert discover(harness, FIRST) == [FIRST]


def test_two_locations_are_two_devices(harness):
    assert sorted(discover(harness, "http://127.0.0.1:1/b")) == [
        FIRST,
        "http://127.0.0.1:1/b",
    ]


def test_location_with_nul_byte(harness):
    # The harness turns the two characters backslash, zero into a NUL byte.
    devices = discover(harness, FIRST + "\\0" + "B" * 300)

    # A field with a NUL byte cannot be used as a C string: dropped.
    assert devices == [FIRST]
