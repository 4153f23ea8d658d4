"""systemd's sd_notify protocol (READY=1, STATUS=..., WATCHDOG=1, STOPPING=1) without libsystemd.

Does nothing when not started by systemd with Type=notify (no $NOTIFY_SOCKET).
"""
from __future__ import annotations

import os
import socket


def notify(*lines: str) -> bool:
    """Send state lines to systemd; True if a socket was there to send to."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto("\n".join(lines).encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when no watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
