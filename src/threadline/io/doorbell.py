"""A doorbell: one byte on a socket pair wakes a thread that waits in a poll.

Theory of operation
-------------------
A thread that waits for work polls the bell's readable end (``fileno``) along
with its other descriptors; any thread that has queued work for it calls
``ring``. The buffers are tiny on purpose: when the send buffer is full a
wake-up is already pending and the byte is not needed, so ``ring`` never
blocks. The woken thread calls ``drain`` before it looks at its queue, so a
ring that comes after the drain wakes it again and none is missed.

The bell is rung and drained without giving up the GIL (libc's ``write`` and
``read`` through ``ctypes.PyDLL``, on non-blocking descriptors; the socket
methods where libc cannot be loaded). A Python socket call hands the GIL
away, and getting it back competes with the very thread just woken: the
ringer could then wait for the woken thread's whole run, or, while a cell is
CPU-bound, for a whole switch interval (5 ms). Measured on the outbox's bell:
thread output latency 6 or 11 ms median, run to run, before; and for a shell
request posted to an idle main thread through asyncio's own self-pipe (a
socket ``send``), the IO thread lost the GIL to the thread it had just woken.

Used by the outbox (other threads -> the IO thread) and by the shell channels
(the IO thread -> a channel's thread waiting between requests).
"""

from __future__ import annotations

import ctypes
import errno
import socket
from collections.abc import Callable


def _load_libc_io() -> tuple[Callable[..., int], Callable[..., int]] | None:
    """libc's ``write`` and ``read``, called with the GIL held; None where unavailable."""
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        write, read = libc.write, libc.read
    except (OSError, AttributeError):
        return None
    write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    write.restype = ctypes.c_ssize_t
    read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    read.restype = ctypes.c_ssize_t
    return write, read


_LIBC_IO = _load_libc_io()


class Doorbell:
    """Wakes one polling thread; ``ring`` is safe from any thread and never blocks."""

    def __init__(self) -> None:
        self._recv, self._send = socket.socketpair()
        for end in (self._recv, self._send):
            end.setblocking(False)
        self._send.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        self._recv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        self._buffer = ctypes.create_string_buffer(4096)
        self._closed = False

    def fileno(self) -> int:
        """The readable end, for the waiting thread's poll."""
        return self._recv.fileno()

    def ring(self) -> None:
        """One byte, keeping the GIL (see the module's docstring)."""
        if _LIBC_IO is None:
            try:
                self._send.send(b"\x00")
            except (BlockingIOError, InterruptedError):
                pass  # the buffer is full: a wake-up is already on its way
            except OSError:
                if not self._closed:
                    raise
            return
        # The GIL is held from here to the end of the write, so the socket cannot
        # be closed (and its descriptor reused) in between.
        fd = self._send.fileno()
        if fd < 0:
            return  # closed
        while _LIBC_IO[0](fd, b"\x00", 1) < 0:
            error = ctypes.get_errno()
            if error == errno.EINTR:
                continue
            if error in (errno.EAGAIN, errno.EWOULDBLOCK):
                return  # the buffer is full: a wake-up is already on its way
            if not self._closed:
                raise OSError(error, "cannot ring the doorbell")
            return

    def drain(self) -> None:
        """Take every pending ring (the waiting thread, before it looks for work)."""
        if _LIBC_IO is None:
            try:
                while self._recv.recv(4096):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
            return
        read, fd, buffer = _LIBC_IO[1], self._recv.fileno(), self._buffer
        if fd < 0:
            return
        while read(fd, buffer, 4096) > 0:
            pass  # until EAGAIN (or EINTR: a ring after that wakes the poll again)

    def close(self) -> None:
        self._closed = True
        self._recv.close()
        self._send.close()
