"""natfwd._gateway._Race: finding the gateway by several protocols at once.

The finders here are plain functions; nothing is sent anywhere.
"""

from __future__ import annotations

import threading
import time

import pytest

from natfwd import GatewayNotFound, _gateway
from natfwd._deadline import Deadline


class FakeGateway:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()


def answers(gateway: FakeGateway, after: float = 0.0):
    def finder():
        time.sleep(after)
        return gateway

    return finder


def fails(message: str, after: float = 0.0):
    def finder():
        time.sleep(after)
        raise GatewayNotFound(message)

    return finder


@pytest.fixture
def never():
    """A finder that asks until the test ends, as one whose protocol the
    gateway drops without a word."""
    release = threading.Event()

    def finder():
        release.wait(30)
        raise GatewayNotFound("the test is over")

    yield finder
    release.set()


def race(finders: dict, seconds: float = 10.0):
    return _gateway._Race().run(finders, Deadline(seconds))


def test_the_preferred_protocol_wins_when_it_answers_within_the_grace(monkeypatch):
    monkeypatch.setattr(_gateway, "PREFERENCE_GRACE", 2.0)
    preferred, other = FakeGateway("NAT-PMP"), FakeGateway("UPnP")
    winner = race({"NAT-PMP": answers(preferred, 0.3), "UPnP": answers(other)})
    assert winner is preferred
    assert other.closed.wait(5)  # the loser is let go
    assert not preferred.closed.is_set()


def test_a_failed_preferred_protocol_costs_no_wait(monkeypatch):
    monkeypatch.setattr(_gateway, "PREFERENCE_GRACE", 30.0)
    other = FakeGateway("UPnP")
    started = time.monotonic()
    winner = race({"NAT-PMP": fails("no NAT-PMP", 0.1), "UPnP": answers(other)})
    assert winner is other
    assert time.monotonic() - started < 15  # far from the 30 s grace


def test_the_grace_runs_from_the_start_not_from_the_first_answer(monkeypatch, never):
    # The preferred finder never answers; the other one answers only when
    # the grace is over. Waiting a grace more after its answer would be
    # waiting for nothing.
    monkeypatch.setattr(_gateway, "PREFERENCE_GRACE", 1.0)
    other = FakeGateway("UPnP")
    started = time.monotonic()
    winner = race({"NAT-PMP": never, "UPnP": answers(other, 1.0)})
    elapsed = time.monotonic() - started
    assert winner is other
    assert elapsed < 1.9, f"decided {elapsed:.2f} s after the start"


def test_a_gateway_found_after_the_race_was_decided_is_closed(monkeypatch):
    monkeypatch.setattr(_gateway, "PREFERENCE_GRACE", 0.0)
    late, first = FakeGateway("NAT-PMP"), FakeGateway("UPnP")
    winner = race({"NAT-PMP": answers(late, 0.5), "UPnP": answers(first)})
    assert winner is first
    assert late.closed.wait(5)


def test_when_every_finder_fails_the_errors_say_why():
    with pytest.raises(GatewayNotFound) as caught:
        race({"NAT-PMP": fails("no NAT-PMP"), "UPnP": fails("no IGD")})
    assert "NAT-PMP" in str(caught.value) or "IGD" in str(caught.value)


def test_the_deadline_ends_the_race(never):
    started = time.monotonic()
    with pytest.raises(GatewayNotFound):
        race({"NAT-PMP": never, "UPnP": never}, seconds=0.5)
    assert time.monotonic() - started < 5
