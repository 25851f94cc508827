"""Where natfwd keeps what must outlive one process."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["state_dir"]


def state_dir() -> Path | None:
    """natfwd's state folder, or None where there is no place for one.

    systemd's $STATE_DIRECTORY first, then /var/lib/natfwd for root, then
    $XDG_STATE_HOME/natfwd (~/.local/state/natfwd). A process started with
    an empty environment and no home (as Tor starts its helper) has none.
    """
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/natfwd")
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "natfwd"
    home = os.environ.get("HOME")
    if home:
        return Path(home) / ".local" / "state" / "natfwd"
    return None
