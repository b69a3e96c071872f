"""Sending a multipart message without giving up the GIL between frames.

pyzmq releases the GIL around every frame it sends. On the IO thread that is
costly exactly when it matters: while another thread is CPU-bound (a cell
running a pure-Python loop), every release hands the GIL away and getting it
back can take a full switch interval (5 ms) -- per frame, and a Jupyter
message has at least six. Output from threads would crawl out.

A non-blocking ``zmq_send`` only copies the frame into ZeroMQ's pipe (and may
poke ZeroMQ's own IO thread), so it is safe to call with the GIL held. This
module calls libzmq's ``zmq_send`` through ``ctypes.PyDLL`` (which keeps the
GIL), resolved through pyzmq's own extension module, so it is always the very
libzmq copy that owns the socket. Where that is not possible (pyzmq built
with a private libzmq) it falls back to pyzmq, frame by frame with integer
flags, which is still cheaper than ``send_multipart``.

``bytes`` frames -- everything the kernel itself serialises -- take the C
path, whatever their size. Other buffers (users' binary payloads) go through
pyzmq, copied: zero-copy sends depend on a pyzmq helper thread that its own
atexit hook stops, possibly before the kernel's final flush at exit.

Like the sockets it sends on, a ``FrameSender`` belongs to the IO thread.
"""

from __future__ import annotations

import ctypes
import errno
from typing import Any

import zmq

from threadline.protocol import Frame

_MORE = int(zmq.SNDMORE | zmq.DONTWAIT)
_LAST = int(zmq.DONTWAIT)


def _load_zmq_send() -> tuple[Any, Any] | None:
    try:
        from zmq.backend.cython import _zmq

        library = ctypes.PyDLL(_zmq.__file__)  # dlsym searches its dependencies: pyzmq's libzmq
        send, get_errno = library.zmq_send, library.zmq_errno
    except (ImportError, OSError, AttributeError):
        return None
    send.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    send.restype = ctypes.c_int
    get_errno.argtypes = []
    get_errno.restype = ctypes.c_int
    return send, get_errno


_C_SEND = _load_zmq_send()


class SendError(Exception):
    """ZeroMQ refused a frame; ``errno`` says why (EAGAIN: full, EHOSTUNREACH: no such peer)."""

    def __init__(self, error: int) -> None:
        super().__init__(errno.errorcode.get(error, str(error)))
        self.errno = error


class FrameSender:
    """Sends whole multipart messages on one socket, non-blocking."""

    def __init__(self, sock: zmq.Socket[Any], *, use_ctypes: bool = True) -> None:
        self._sock = sock
        self._handle = ctypes.c_void_p(sock.underlying)
        self._c = _C_SEND if use_ctypes else None

    @property
    def holds_gil(self) -> bool:
        return self._c is not None

    def send(self, frames: list[Frame]) -> None:
        """Send all frames, or none: raises ``SendError`` if the first is refused.

        ZeroMQ accepts or refuses a multipart message as a whole at its first
        frame, so a refusal never leaves half a message behind.
        """
        last = len(frames) - 1
        c_send = self._c[0] if self._c is not None else None
        handle = self._handle
        for index, frame in enumerate(frames):
            flags = _LAST if index == last else _MORE
            if c_send is not None and type(frame) is bytes:
                # The hot path: one C call, no method call around it.
                if c_send(handle, frame, len(frame), flags) < 0:
                    self._send_c(frame, flags)  # look at errno; retry after EINTR
                continue
            # Copied, never zero-copy: pyzmq's zero-copy bookkeeping thread is
            # stopped by its own atexit hook, which may run before the kernel's
            # last flush -- and a zero-copy send then raises on the IO thread.
            try:
                self._sock.send(frame, flags, copy=True)
            except zmq.ZMQError as exc:
                raise SendError(exc.errno or errno.EIO) from None

    def _send_c(self, data: bytes, flags: int) -> None:
        """After a failed send: raise for the error, or retry after EINTR."""
        assert self._c is not None
        send, get_errno = self._c
        error = get_errno()
        while error == errno.EINTR:
            if send(self._handle, data, len(data), flags) >= 0:
                return
            error = get_errno()
        raise SendError(error)
