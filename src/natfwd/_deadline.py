"""One overall deadline for a whole operation, and calls bounded by it.

miniupnpc's calls block with timeouts of their own (seconds each). To keep
an operation within the caller's deadline, such calls run in a worker thread
and the caller stops waiting when the deadline passes. The C call finishes on
its own afterwards; whatever it holds is released only then (see
``natfwd.upnp.IGD``), so giving up never frees memory a call still uses.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

from natfwd._exceptions import GatewayTimeout
from natfwd._validate import check_timeout

__all__ = ["Deadline", "run_bounded"]

T = TypeVar("T")


class Deadline:
    """A point in monotonic time by which an operation must be done."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    @classmethod
    def at(cls, end: float) -> Deadline:
        deadline = cls(0)
        deadline._end = end
        return deadline

    @classmethod
    def given(
        cls, deadline: Deadline | None, timeout: float | None, default: float
    ) -> Deadline:
        """The caller's *deadline* if there is one, else one *timeout*
        seconds from now (*default* when that is None), checked."""
        if deadline is not None:
            return deadline
        return cls(check_timeout(default if timeout is None else timeout))

    @property
    def end(self) -> float:
        return self._end

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self._end

    def within(self, seconds: float) -> Deadline:
        """A deadline *seconds* from now, but no later than this one."""
        return Deadline.at(min(self._end, time.monotonic() + seconds))

    def reserve(self, seconds: float) -> Deadline:
        """A deadline that leaves *seconds* of this one unused, for clean-up."""
        return Deadline.at(max(time.monotonic(), self._end - seconds))

    def cancel(self) -> None:
        """Make the deadline pass now, for whatever still works to it."""
        self._end = float("-inf")


def run_bounded(
    call: Callable[[], T],
    deadline: Deadline,
    what: str,
    *,
    gateway: str | None = None,
) -> T:
    """Run *call* in a worker thread; give up waiting at *deadline*.

    Raises GatewayTimeout when the deadline passes first. Exceptions from
    *call* are re-raised here.
    """
    outcome: list = []
    done = threading.Event()

    def worker() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed back to the waiting thread
            outcome.append((False, exc))
        finally:
            done.set()

    if deadline.expired():
        raise GatewayTimeout(
            f"{what}: no time left before the deadline", gateway=gateway
        )
    thread = threading.Thread(target=worker, name=f"natfwd: {what}", daemon=True)
    thread.start()
    if not done.wait(deadline.remaining()):
        raise GatewayTimeout(f"{what}: no answer before the deadline", gateway=gateway)

    ok, value = outcome[0]
    if not ok:
        raise value
    return value
