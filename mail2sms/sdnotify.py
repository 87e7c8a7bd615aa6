"""systemd's notify protocol (sd_notify(3)), written here so that mail2sms needs no systemd library.

`Type=notify` units hand the service a datagram socket in `$NOTIFY_SOCKET` (a path, or `@name` for Linux's
abstract namespace). mail2sms sends `READY=1` once its listeners and spool are up, `WATCHDOG=1` from the event
loop every half `$WATCHDOG_USEC` (so a stuck loop gets the service restarted), and `STOPPING=1` when a
graceful shutdown begins. Without `$NOTIFY_SOCKET` every call is a no-op.

Notifications are best effort: a failure is logged once and never stops the service. This module must never
block the event loop for longer than one non-blocking `send()`, and never send anything but these fields.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

from mail2sms.observability import get_logger

log = get_logger("mail2sms.sdnotify")


class Notifier:
    """Sends `KEY=value` lines to systemd's notify socket, if there is one."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send the fields as one datagram; True when it was sent."""
        if self.address is None:
            return False
        if not self.address.startswith(("/", "@")):
            self._warn("unsupported NOTIFY_SOCKET address (only paths and @abstract names)")
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(fields).encode("utf-8"), target)
        except OSError as exc:
            self._warn(f"cannot notify systemd: {exc.strerror or type(exc).__name__}")
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(message)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between `WATCHDOG=1` pings (half of `$WATCHDOG_USEC`), or None when no watchdog is asked for.

    `$WATCHDOG_PID`, when set, names the process the watchdog is meant for; another process must not ping.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000


async def keep_alive(notifier: Notifier, interval: float) -> None:
    """Ping the watchdog every `interval` seconds until cancelled; a ping that runs proves the loop runs."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)
