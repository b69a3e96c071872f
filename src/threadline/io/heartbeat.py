"""The heartbeat: echo every ping, on a thread and socket of its own.

The heartbeat must answer even while the IO thread is busy, so it does not
share the IO thread's loop. It owns exactly one socket, in its own ZeroMQ
context, and spends its life inside ``zmq.proxy`` (which runs in C without the
GIL). ``stop`` terminates the context, which makes the proxy return. With a
Curve key pair in the connection file the socket is a Curve server like the
others (``io/curve.py``): jupyter_client's heartbeat client connects with the
kernel's public key as its server key.
"""

from __future__ import annotations

import threading

import zmq

from threadline.io.curve import make_curve_server
from threadline.io.iothread import bind_socket
from threadline.protocol import ConnectionInfo


class Heartbeat:
    """Echoes heartbeat pings until stopped."""

    def __init__(self, connection: ConnectionInfo, *, listener: int | None = None) -> None:
        """``listener``: a listening descriptor on the hb port to bind with (``io/listening.py``)."""
        self._context = zmq.Context()
        self._socket: zmq.Socket[bytes] = self._context.socket(zmq.ROUTER)
        self._socket.linger = 0
        make_curve_server(self._socket, connection)  # before bind
        self.port = bind_socket(self._socket, connection, "hb", listener)
        self._thread = threading.Thread(target=self._echo, name="threadline-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _echo(self) -> None:
        try:
            zmq.proxy(self._socket, self._socket)
        except zmq.ContextTerminated:
            pass
        finally:
            self._socket.close(linger=0)

    def stop(self) -> None:
        self._context.term()
        self._thread.join(2.0)
