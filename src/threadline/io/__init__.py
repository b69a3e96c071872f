"""The IO layer: the IO thread, its outbox, the heartbeat, and CurveZMQ socket options.

This is the only package that imports ``zmq``. Everything above it sends
through ``Outbox.put`` and schedules work with ``Outbox.call_soon``.

The names below are imported from their modules on first use: the launcher
imports ``threadline.io.listening`` before anything else, and that must not
import pyzmq (see that module).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from threadline.io.curve import curve_available, curve_problem, new_key_pair
    from threadline.io.doorbell import Doorbell
    from threadline.io.heartbeat import Heartbeat
    from threadline.io.iothread import IOThread, IOThreadError
    from threadline.io.outbox import Outbox, OutboxClosed
    from threadline.io.sender import Sender

#: Each public name -> the module that defines it.
_HOMES = {
    "Doorbell": "doorbell",
    "Heartbeat": "heartbeat",
    "IOThread": "iothread",
    "IOThreadError": "iothread",
    "Outbox": "outbox",
    "OutboxClosed": "outbox",
    "Sender": "sender",
    "curve_available": "curve",
    "curve_problem": "curve",
    "new_key_pair": "curve",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'threadline.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"threadline.io.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = [
    "Doorbell",
    "Heartbeat",
    "IOThread",
    "IOThreadError",
    "Outbox",
    "OutboxClosed",
    "Sender",
    "curve_available",
    "curve_problem",
    "new_key_pair",
]
