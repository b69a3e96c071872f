"""The IO layer: the IO thread, its outbox, the heartbeat, and CurveZMQ socket options.

This is the only package that imports ``zmq``. Everything above it sends
through ``Outbox.put`` and schedules work with ``Outbox.call_soon``.
"""

from threadline.io.curve import curve_available, curve_problem, new_key_pair
from threadline.io.doorbell import Doorbell
from threadline.io.heartbeat import Heartbeat
from threadline.io.iothread import IOThread, IOThreadError
from threadline.io.outbox import Outbox, OutboxClosed
from threadline.io.sender import Sender

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
