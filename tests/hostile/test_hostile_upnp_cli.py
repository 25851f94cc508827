"""The CLI against IGDs that refuse, lie, stall or break mid-reply.

Whatever the IGD does, natfwd must end within --timeout (plus the start-up
of a fresh Python), with exit 0 and the mapping reported as the IGD holds
it, or with one line on stderr, a documented exit status, and nothing left
in the IGD's table.
"""

from __future__ import annotations

import json

import pytest
from hostile_support import STARTUP_MARGIN
from upnp_responder import (
    Close,
    Drip,
    Hang,
    Send,
    fault_body,
    http,
    success_body,
)

from natfwd._gateway import ALTERNATE_PORT_TRIES

ADD = ("add", "8080", "--internal-address", "127.0.0.1")
OURS = (8080, "TCP")


def mapped(igd) -> set:
    return set(igd.table)


# -- refusals: UPnP error codes ------------------------------------------------------


def test_plain_add_works(igd, upnp_cli):
    run = upnp_cli(igd, *ADD, "--json")

    assert run.code == 0, run.err
    assert run.err == []
    mapping = json.loads(run.out)["mapping"]
    assert (mapping["external_port"], mapping["lease"]) == (8080, 3600)
    assert mapped(igd) == {OURS}


def test_725_maps_permanently_with_a_note(igd, upnp_cli):
    igd.permanent_only = True

    run = upnp_cli(igd, *ADD, "--lease", "600", "--json")

    assert run.code == 0, run.err
    mapping = json.loads(run.out)["mapping"]
    assert mapping["lease"] == 0
    assert any("permanent" in note for note in mapping["notes"])
    assert mapped(igd) == {OURS}
    assert igd.table[OURS].lease == 0
    assert igd.actions().count("AddPortMapping") == 2


def test_718_names_the_holder(igd, upnp_cli):
    igd.hold(8080, "tcp", "127.0.0.9", 80, "web <server> & co")

    run = upnp_cli(igd, *ADD, "--json")

    assert run.code == 4
    assert "127.0.0.9:80" in run.error
    assert "web <server> & co" in run.error
    error = json.loads(run.out)["error"]
    assert (error["type"], error["code"]) == ("PortInUse", 718)
    assert mapped(igd) == {OURS}  # theirs, untouched
    assert igd.table[OURS].client == "127.0.0.9"
    assert "DeletePortMapping" not in igd.actions()


def test_718_holder_unknown_still_says_in_use(igd, upnp_cli):
    igd.hold(8080, "tcp", "127.0.0.9", 80)
    igd.fail("GetSpecificPortMappingEntry", 501, times=None)

    run = upnp_cli(igd, *ADD)

    assert run.code == 4
    assert "8080/tcp is mapped already" in run.error
    assert igd.table[OURS].client == "127.0.0.9"


def test_718_any_port_on_igd2_uses_add_any_port_mapping(igd2, upnp_cli):
    igd2.hold(8080, "tcp", "127.0.0.9", 80)

    run = upnp_cli(igd2, *ADD, "--any-port", "--json")

    assert run.code == 0, run.err
    mapping = json.loads(run.out)["mapping"]
    assert mapping["external_port"] == 8081
    assert any("8081" in note for note in mapping["notes"])
    assert "AddAnyPortMapping" in igd2.actions()
    assert mapped(igd2) == {OURS, (8081, "TCP")}


def test_718_any_port_on_igd1_tries_other_ports(igd, upnp_cli):
    igd.hold(8080, "tcp", "127.0.0.9", 80)

    run = upnp_cli(igd, *ADD, "--any-port", "--json")

    assert run.code == 0, run.err
    port = json.loads(run.out)["mapping"]["external_port"]
    assert port != 8080
    assert mapped(igd) == {OURS, (port, "TCP")}
    assert igd.table[(port, "TCP")].client == "127.0.0.1"


def test_718_any_port_on_igd1_gives_up_after_a_few(igd, upnp_cli):
    igd.fail("AddPortMapping", 718, times=None)

    run = upnp_cli(igd, *ADD, "--any-port")

    assert run.code == 4
    assert f"{ALTERNATE_PORT_TRIES} other ports" in run.error
    assert igd.actions().count("AddPortMapping") == 1 + ALTERNATE_PORT_TRIES
    assert mapped(igd) == set()


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (606, "does not allow mapping ports"),
        (501, "UPnP error 501"),
        (402, "UPnP error 402"),
        (728, "UPnP error 728"),
        (799, "UPnP error 799"),  # unknown to natfwd
        (12345, "UPnP error 12345"),
    ],
)
def test_refusals_exit_4_with_the_code(igd, upnp_cli, code, words):
    igd.fail("AddPortMapping", code)

    run = upnp_cli(igd, *ADD, "--json")

    assert run.code == 4
    assert words in run.error
    assert json.loads(run.out)["error"]["code"] == code
    assert mapped(igd) == set()


def test_error_code_that_is_not_a_number(igd, upnp_cli):
    igd.answer("AddPortMapping", http(500, fault_body("seven hundred")), apply=True)

    run = upnp_cli(igd, *ADD)

    assert run.code == 5
    assert "no usable code" in run.error
    assert mapped(igd) == set()  # it had mapped it: taken back


def test_granted_lease_shorter_than_asked(igd, upnp_cli):
    igd.max_lease = 600

    run = upnp_cli(igd, *ADD, "--lease", "7200", "--json")

    assert run.code == 0, run.err
    mapping = json.loads(run.out)["mapping"]
    assert mapping["lease"] == 600
    assert any("600 s instead of 7200 s" in note for note in mapping["notes"])


# -- replies that are not replies ---------------------------------------------------


def _cut(raw: bytes) -> list:
    return [Send(raw[: len(raw) * 2 // 3]), Close()]


def _head_only(raw: bytes) -> list:
    return [Send(raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"), Close()]


def _longer_length(raw: bytes) -> list:
    head, _, body = raw.partition(b"\r\n\r\n")
    head = head.replace(
        f"Content-Length: {len(body)}".encode(),
        f"Content-Length: {len(body) + 5000}".encode(),
    )
    return [Send(head + b"\r\n\r\n" + body), Hang()]


def _shorter_length(raw: bytes) -> list:
    head, _, body = raw.partition(b"\r\n\r\n")
    head = head.replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: 40")
    return [Send(head + b"\r\n\r\n" + body), Close()]


def _chunked(size: int, *, then_hang: bool) -> callable:
    def reply(raw: bytes) -> list:
        head, _, body = raw.partition(b"\r\n\r\n")
        head = b"\r\n".join(
            line for line in head.split(b"\r\n") if b"Content-Length" not in line
        )
        head += b"\r\nTransfer-Encoding: chunked"
        data = head + b"\r\n\r\n" + b"%x\r\n" % size + body
        if then_hang:
            return [Send(data), Hang()]
        return [Send(data + b"\r\n0\r\n\r\n"), Close()]

    return reply


def _replace_body(body: bytes, status: int = 200):
    return lambda raw: [Send(http(status, body))]


REPLIES = {
    "not XML": _replace_body(b"this is not XML at all"),
    "binary": _replace_body(bytes(range(256)) * 4),
    "HTML error page": _replace_body(b"<html><body>Busy</body></html>", 503),
    "HTTP 500 without body": _replace_body(b"", 500),
    "truncated XML": _cut,
    "headers only": _head_only,
    "wrong action": lambda raw: [
        Send(
            http(
                200,
                success_body(
                    "DeletePortMapping",
                    "urn:schemas-upnp-org:service:WANIPConnection:1",
                    {},
                ),
            )
        )
    ],
    "closed before replying": lambda raw: [Close()],
    "Content-Length longer than the body": _longer_length,
    "Content-Length shorter than the body": _shorter_length,
    "chunk larger than sent, then silence": _chunked(0x10000, then_hang=True),
    "chunk smaller than sent": _chunked(5, then_hang=False),
    "chunk size that overflows": _chunked(2**68, then_hang=False),
    "accepts and never answers": lambda raw: [Hang()],
    "one byte a second": lambda raw: [Drip(raw, 1.0)],
}


#: Replies that never end: whether the IGD made the mapping first or not,
#: natfwd sees the same thing, so only the harder case is tried.
STALLS = {
    "Content-Length longer than the body",
    "chunk larger than sent, then silence",
    "accepts and never answers",
    "one byte a second",
}


@pytest.mark.parametrize(
    ("reply", "applied"),
    [(reply, True) for reply in REPLIES]
    + [(reply, False) for reply in REPLIES if reply not in STALLS],
    ids=lambda v: {True: "made", False: "not made"}.get(v, v),
)
def test_broken_reply_to_add_leaves_nothing_unreported(igd, upnp_cli, reply, applied):
    igd.script("AddPortMapping", apply=applied, reply=REPLIES[reply])

    run = upnp_cli(igd, *ADD, "--json", timeout=0.6)

    assert run.elapsed < 0.6 + STARTUP_MARGIN
    if run.code == 0:
        assert run.err == []
        assert json.loads(run.out)["mapping"]["external_port"] == 8080
        assert mapped(igd) == {OURS}, "reported as made, but it is not"
    else:
        assert run.code == 5, run.err
        run.error  # noqa: B018 -- exactly one line
        assert json.loads(run.out)["ok"] is False
        assert mapped(igd) == set(), "failed, but a mapping is left"
    if not applied:
        assert run.code != 0, "reported a mapping the gateway never made"


@pytest.mark.parametrize("timeout", [0.5, 1.5])
def test_silent_gateway_is_bounded_by_timeout(igd, upnp_cli, timeout):
    igd.script("GetStatusInfo", reply=lambda raw: [Hang()], times=None)

    run = upnp_cli(igd, "status", timeout=timeout)

    assert run.code == 5
    assert "no answer before the deadline" in run.error
    assert run.elapsed < timeout + STARTUP_MARGIN


def test_silent_description_is_bounded_by_timeout(igd, upnp_cli):
    igd.get = lambda path: [Hang()]

    run = upnp_cli(igd, "add", "8080", timeout=1.5)

    assert run.code in (3, 5)
    run.error  # noqa: B018
    assert run.elapsed < 1.5 + STARTUP_MARGIN


# -- answers that are not what was asked --------------------------------------------


@pytest.mark.parametrize(
    "address", ["not-an-ip", "999.1.1.1", "<b>1.2.3.4</b>", "1.2.3.4\x1b[2J"]
)
def test_external_address_that_is_not_an_address(igd, upnp_cli, address):
    igd.external_ip = address

    status = upnp_cli(igd, "external-ip")
    add = upnp_cli(igd, *ADD, "--json")

    assert status.code == 5
    assert "not an IP address" in status.error
    assert add.code == 0, add.err  # the mapping itself is fine
    mapping = json.loads(add.out)["mapping"]
    assert mapping["external_address"] is None
    assert mapped(igd) == {OURS}


def test_listing_shows_hostile_text_harmlessly(igd, upnp_cli):
    igd.hold(9000, "udp", "\x1b[31m127.0.0.9", 90, "\x1b]0;pwned\x07 <x>")

    run = upnp_cli(igd, "list")

    assert run.code in (0, 5)
    assert "\x1b" not in run.out
    assert all("\x1b" not in line for line in run.err)


def test_listing_that_never_ends_is_bounded(igd, upnp_cli):
    entry = success_body(
        "GetGenericPortMappingEntry",
        igd.service,
        {
            "NewRemoteHost": "",
            "NewExternalPort": "1",
            "NewProtocol": "TCP",
            "NewInternalPort": "1",
            "NewInternalClient": "127.0.0.9",
            "NewEnabled": "1",
            "NewPortMappingDescription": "again",
            "NewLeaseDuration": "0",
        },
    )
    igd.answer("GetGenericPortMappingEntry", http(200, entry), times=None)

    run = upnp_cli(igd, "list", "--json", timeout=5.0)

    assert run.code in (0, 5)
    assert run.elapsed < 5.0 + STARTUP_MARGIN
    assert igd.actions().count("GetGenericPortMappingEntry") <= 1024


def test_remove_that_the_gateway_only_pretends(igd, upnp_cli):
    igd.hold(8080, "tcp", "127.0.0.1", 8080, "natfwd")
    # A proper answer, and nothing deleted.
    igd.answer(
        "DeletePortMapping",
        http(200, success_body("DeletePortMapping", igd.service, {})),
    )

    run = upnp_cli(igd, "remove", "8080")

    assert run.code == 5
    assert "still" in run.error
    assert mapped(igd) == {OURS}


def test_remove_answered_with_no_soap_at_all(igd, upnp_cli):
    igd.hold(8080, "tcp", "127.0.0.1", 8080, "natfwd")
    igd.answer("DeletePortMapping", http(200, b"OK"))

    run = upnp_cli(igd, "remove", "8080")

    assert run.code == 5
    assert "not a valid SOAP response" in run.error
    assert mapped(igd) == {OURS}


def test_take_back_that_stalls_too_is_bounded_and_said(igd, upnp_cli):
    igd.script("AddPortMapping", reply=lambda raw: [Hang()])
    igd.script("GetSpecificPortMappingEntry", reply=lambda raw: [Hang()], times=None)
    igd.script("DeletePortMapping", reply=lambda raw: [Hang()], times=None)

    run = upnp_cli(igd, *ADD, timeout=1.0)

    assert run.code == 5
    assert "may be left on the gateway" in run.error
    assert run.elapsed < 1.0 + STARTUP_MARGIN


def test_status_shows_hostile_text_harmlessly(igd, upnp_cli):
    igd.connection_status = "Connected\x1b[2J\x07"

    run = upnp_cli(igd, "status")

    assert run.code == 0, run.err
    assert "\x1b" not in run.out
    assert "\x07" not in run.out
    assert "Connected\\x1b[2J\\x07" in run.out


@pytest.mark.parametrize("client", ["", "my-pc.lan", "127.0.0.9"])
def test_read_back_that_names_the_client_oddly(igd, upnp_cli, client):
    entry = success_body(
        "GetSpecificPortMappingEntry",
        igd.service,
        {
            "NewInternalPort": "8080",
            "NewInternalClient": client,
            "NewEnabled": "1",
            "NewPortMappingDescription": "natfwd",
            "NewLeaseDuration": "3600",
        },
    )
    igd.answer("GetSpecificPortMappingEntry", http(200, entry))

    run = upnp_cli(igd, *ADD)

    if client == "127.0.0.9":  # another host's, by the gateway's word
        assert run.code == 4
        assert "127.0.0.9:8080" in run.error
    else:  # ours, as far as anyone can tell
        assert run.code == 0, run.err
    assert set(igd.table) == {OURS}
