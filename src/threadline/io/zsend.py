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
path, copied into ZeroMQ's message. Frames of ``ZERO_COPY_MIN`` bytes or more
(a user's binary buffer, a large image's JSON) are not copied: they go through
pyzmq's zero-copy send, which lends the buffer to libzmq and lets pyzmq's
helper thread drop the reference once libzmq has sent it. A copy there would
double the kernel's memory for the moment of the send (50 MB more for a
50 MB buffer; ipykernel sends zero-copy too). pyzmq's helper is stopped by an
atexit hook; that hook is registered when ``zmq.utils.garbage`` is imported,
which this module does on import, so it runs after the kernel's own final
flush (atexit runs hooks last-in, first-out). Should a send come later still,
pyzmq refuses it and the frame is copied instead. Smaller frames and other
buffer types are copied, as before.

One call per message
--------------------
A ctypes call costs about half a microsecond in argument conversion alone,
and a message is six calls or more: under a comm flood the ``zmq_send`` line
was 30 % of all the kernel's samples (py-spy). libzmq's ``zmq_sendiov`` sends
a whole multipart message from an array of ``struct iovec`` in one call,
copying each frame just as ``zmq_send`` does. The array is packed with
``struct`` from each frame's address and length; in CPython the address of a
``bytes`` object's data is ``id(frame)`` plus a fixed offset, which is checked
against a probe at import (the path is off wherever it does not hold).

``zmq_sendiov`` gives up at the first frame that fails and does not say
which. That is safe only because a failure can come at the first frame
alone: ZeroMQ checks the high-water mark and the route when a message
starts, and accepts the rest of it unconditionally -- except that a signal
can interrupt any frame (EINTR). So the one-call path is used only on a
thread that blocks asynchronous signals, as the IO thread does
(``IOThread._main``); elsewhere frames go one by one, and an interrupted
frame is retried alone.

Sending from other threads
--------------------------
A thread other than the IO thread may send a message itself when nothing is
queued ahead of it (``IOThread.send_now``, under the socket's lock). Such a
thread does not block signals, so ``send_atomically`` blocks them itself for
the one call -- two ``pthread_sigmask`` calls through libc with prebuilt
masks, a microsecond -- and takes only messages that fit the one-call path
whole: nothing can interrupt it between frames, not even a Python signal
handler (no bytecode runs inside the call). Anything else is refused, and
the caller queues the message for the IO thread.
"""

from __future__ import annotations

import ctypes
import errno
import signal
import struct
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
import zmq.utils.garbage  # now: its atexit hook must run after the kernel's (see above)

from threadline.protocol import Frame

_MORE = int(zmq.SNDMORE | zmq.DONTWAIT)
_LAST = int(zmq.DONTWAIT)

#: Frames at least this large are sent zero-copy (pyzmq's own default threshold).
ZERO_COPY_MIN = 64 * 1024


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

#: Signals a thread must block for the one-call path: any that can arrive
#: asynchronously (the synchronous ones -- faults -- cannot be blocked usefully).
_SYNCHRONOUS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT}
ASYNC_SIGNALS = frozenset(signal.valid_signals() - _SYNCHRONOUS - {signal.SIGKILL, signal.SIGSTOP})
#: The most frames the one-call path packs (more go frame by frame).
_MAX_IOV_FRAMES = 16


def _bytes_data_offset() -> int | None:
    """Where a ``bytes`` object's data starts, relative to ``id()``; None if unknown here."""
    if sys.implementation.name != "cpython":
        return None
    offset: int = bytes.__basicsize__ - 1  # PyBytesObject ends in ob_sval[1]
    probe = b"threadline: where do the bytes start?"
    try:
        if ctypes.string_at(id(probe) + offset, len(probe)) != probe:
            return None
    except (OSError, ValueError):
        return None
    return offset


_DATA_OFFSET = _bytes_data_offset()


def _load_zmq_sendiov() -> Callable[..., int] | None:
    if _C_SEND is None or _DATA_OFFSET is None:
        return None
    try:
        from zmq.backend.cython import _zmq

        sendiov = ctypes.PyDLL(_zmq.__file__).zmq_sendiov
    except (ImportError, OSError, AttributeError):
        return None
    # The iovec array is passed as the bytes it was packed into.
    sendiov.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    sendiov.restype = ctypes.c_int
    function: Callable[..., int] = sendiov
    return function


_C_SENDIOV = _load_zmq_sendiov()


class _SignalMask:
    """Block every asynchronous signal on the calling thread, and restore its mask, via libc.

    ``signal.pthread_sigmask`` builds a Python set of enum members for the
    old mask on every call (tens of microseconds); this passes prebuilt
    ``sigset_t`` buffers instead.
    """

    def __init__(self) -> None:
        libc = ctypes.PyDLL(None, use_errno=True)
        self._sigmask = libc.pthread_sigmask
        self._sigmask.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self._sigmask.restype = ctypes.c_int
        self._block = ctypes.create_string_buffer(_SIGSET_BYTES)
        if libc.sigemptyset(self._block) != 0:
            raise OSError("sigemptyset failed")
        for number in ASYNC_SIGNALS:
            if libc.sigaddset(self._block, int(number)) != 0:
                raise OSError(f"sigaddset({number}) failed")

    @staticmethod
    def new_buffer() -> ctypes.Array[ctypes.c_char]:
        """Room for a mask, for ``block`` to keep the previous one in."""
        return ctypes.create_string_buffer(_SIGSET_BYTES)

    def block(self, previous: ctypes.Array[ctypes.c_char]) -> None:
        """Block; the previous mask goes into ``previous`` (pass it to ``restore``)."""
        if self._sigmask(signal.SIG_BLOCK, self._block, previous) != 0:
            raise OSError(ctypes.get_errno(), "pthread_sigmask failed")

    def restore(self, previous: ctypes.Array[ctypes.c_char]) -> None:
        self._sigmask(signal.SIG_SETMASK, previous, None)


#: Larger than any platform's ``sigset_t`` (glibc's is 128 bytes, macOS's 4).
_SIGSET_BYTES = 256


def _load_signal_mask() -> _SignalMask | None:
    try:
        return _SignalMask()
    except (OSError, AttributeError):
        return None


_SIGNAL_MASK = _load_signal_mask() if _C_SENDIOV is not None else None
#: struct iovec { void *iov_base; size_t iov_len; }, native layout, n of them.
_PACK_IOVECS = [struct.Struct("PN" * n).pack for n in range(_MAX_IOV_FRAMES + 1)]


def signals_blocked_here() -> bool:
    """Whether the calling thread blocks every asynchronous signal (no EINTR can reach it)."""
    return ASYNC_SIGNALS.issubset(signal.pthread_sigmask(signal.SIG_BLOCK, []))


class SendError(Exception):
    """ZeroMQ refused a frame; ``errno`` says why (EAGAIN: full, EHOSTUNREACH: no such peer)."""

    def __init__(self, error: int) -> None:
        super().__init__(errno.errorcode.get(error, str(error)))
        self.errno = error


def _pack_iovecs(frames: list[Frame]) -> bytes | None:
    """``frames`` as the ``struct iovec`` array ``zmq_sendiov`` takes, or None when they
    cannot go in one call (too many, or one is not ``bytes`` or is sent zero-copy).
    Only where the one-call path exists (``_DATA_OFFSET`` known)."""
    if len(frames) > _MAX_IOV_FRAMES:
        return None
    offset = _DATA_OFFSET or 0
    fields: list[int] = []
    for frame in frames:
        if type(frame) is not bytes or len(frame) >= ZERO_COPY_MIN:
            return None
        fields.append(id(frame) + offset)
        fields.append(len(frame))
    return _PACK_IOVECS[len(frames)](*fields)


class FrameSender:
    """Sends whole multipart messages on one socket, non-blocking."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        *,
        use_ctypes: bool = True,
        one_call: bool = True,
        track_lent: bool = False,
    ) -> None:
        """``one_call``: use ``zmq_sendiov`` when possible -- only if this thread
        (the one that will send) blocks asynchronous signals; see the module's docstring.
        ``track_lent``: keep count of the large frames libzmq still holds (``still_lent``)."""
        self._sock = sock
        self._track_lent = track_lent
        self._handle = ctypes.c_void_p(sock.underlying)
        self._c = _C_SEND if use_ctypes else None
        self._sendiov = _C_SENDIOV if use_ctypes and one_call and signals_blocked_here() else None
        #: The sending thread's own mask, kept during ``send_atomically`` (which
        #: runs under the socket's lock: one caller at a time).
        self._previous_mask = _SIGNAL_MASK.new_buffer() if _SIGNAL_MASK is not None else None
        #: Large frames sent zero-copy, oldest first, with their sizes; and their total
        #: (an upper bound between looks: ``still_lent``).
        self._lent: deque[tuple[zmq.MessageTracker, int]] = deque()
        self.lent_bytes = 0

    @property
    def holds_gil(self) -> bool:
        return self._c is not None

    @property
    def one_call(self) -> bool:
        return self._sendiov is not None

    def send(self, frames: list[Frame]) -> None:
        """Send all frames, or none: raises ``SendError`` if the first is refused.

        ZeroMQ accepts or refuses a multipart message as a whole at its first
        frame, so a refusal never leaves half a message behind.
        """
        sendiov = self._sendiov
        if sendiov is not None:
            iovecs = _pack_iovecs(frames)  # None: a user's buffer or a large frame
            if iovecs is not None:
                # ``frames`` keeps every frame alive for the duration of the call.
                if sendiov(self._handle, iovecs, len(frames), _MORE) < 0:
                    assert self._c is not None
                    raise SendError(self._c[1]())
                return
        last = len(frames) - 1
        c_send = self._c[0] if self._c is not None else None
        handle = self._handle
        for index, frame in enumerate(frames):
            flags = _LAST if index == last else _MORE
            large = (
                len(memoryview(frame)) >= ZERO_COPY_MIN
                if type(frame) is not bytes
                else len(frame) >= ZERO_COPY_MIN
            )
            if c_send is not None and type(frame) is bytes and not large:
                # The hot path: one C call, no method call around it.
                if c_send(handle, frame, len(frame), flags) < 0:
                    self._send_c(frame, flags)  # look at errno; retry after EINTR
                continue
            try:
                if large:
                    self._send_lent(frame, flags)
                else:
                    self._sock.send(frame, flags, copy=True)
            except zmq.ZMQError as exc:
                raise SendError(exc.errno or errno.EIO) from None

    def _send_lent(self, frame: Frame, flags: int) -> None:
        """A large frame, lent to libzmq (zero-copy); in the ledger until released, if tracked."""
        try:
            tracker = self._sock.send(frame, flags, copy=False, track=self._track_lent)
        except RuntimeError:  # pyzmq's zero-copy helper has shut down: copy
            self._sock.send(frame, flags, copy=True)
            return
        if tracker is not None and self._track_lent:
            size = frame.nbytes if isinstance(frame, memoryview) else len(frame)
            self._lent.append((tracker, size))
            self.lent_bytes += size

    def still_lent(self) -> int:
        """Bytes of large frames libzmq has not finished with (it holds them until
        they are written to every peer's connection); forgets those it has."""
        lent = self._lent
        while lent and lent[0][0].done:
            self.lent_bytes -= lent.popleft()[1]
        return self.lent_bytes

    def send_atomically(self, frames: list[Frame]) -> bool:
        """From a thread that does not block signals: the whole message in one C call.
        The caller holds the socket's lock.

        Returns False, having sent nothing, when the message cannot go that way
        (a large or non-``bytes`` frame, too many frames, no ``zmq_sendiov`` or
        libc signal masks here). Raises ``SendError`` when ZeroMQ refuses it
        (as a whole: see the module's docstring).
        """
        sendiov, mask, previous = _C_SENDIOV, _SIGNAL_MASK, self._previous_mask
        if sendiov is None or mask is None or previous is None:
            return False
        iovecs = _pack_iovecs(frames)
        if iovecs is None:
            return False
        mask.block(previous)
        try:
            failed = sendiov(self._handle, iovecs, len(frames), _MORE) < 0
            error = self._c[1]() if failed and self._c is not None else errno.EIO
        finally:
            mask.restore(previous)
        if failed:
            raise SendError(error)
        return True

    def send_all_atomically(
        self, others: list[tuple[FrameSender, list[Frame]]]
    ) -> tuple[int, list[tuple[int, int]]]:
        """``send_atomically`` for several messages, in order, under one signal mask
        (this sender's buffer keeps the thread's own). ``others``: (sender, frames)
        pairs, each sender's socket locked by the caller, as this one's.

        Returns (how many were dealt with, [(index, errno) of those ZeroMQ refused
        for good]). It stops at the first message that cannot go in one call, or
        that ZeroMQ refuses for now (EAGAIN): that one and the rest are not sent.
        """
        sendiov, mask, previous = _C_SENDIOV, _SIGNAL_MASK, self._previous_mask
        refused: list[tuple[int, int]] = []
        if sendiov is None or mask is None or previous is None or self._c is None:
            return 0, refused
        get_errno = self._c[1]
        dealt = 0
        mask.block(previous)
        try:
            for sender, frames in others:
                iovecs = _pack_iovecs(frames)
                if iovecs is None:
                    break
                if sendiov(sender._handle, iovecs, len(frames), _MORE) < 0:
                    error = get_errno()
                    if error == errno.EAGAIN:
                        break
                    refused.append((dealt, error))
                dealt += 1
        finally:
            mask.restore(previous)
        return dealt, refused

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
