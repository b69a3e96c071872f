"""Looking at C's stdio buffer and at file descriptors without giving up the GIL.

``fflush`` and ``read`` release the GIL; called in the middle of a request,
each release hands the GIL to the IO thread, which the request's thread must
then wait out. The kernel's per-request syncs (``FdCapture.sync``,
``ChildOutput.sync``) almost always find nothing to do, so they look first:

* ``c_stdio_pending`` reads glibc's ``stdout`` write-buffer pointers (the
  start of ``struct _IO_FILE`` is part of glibc's ABI). Elsewhere it answers
  "maybe", and ``fflush`` runs as before. C's ``stderr`` is unbuffered.
* ``has_input`` asks ``poll`` with a zero timeout through ``ctypes.PyDLL``,
  which keeps the GIL (a zero-timeout poll never blocks).

This module imports only the standard library: child processes import the
modules that use it.
"""

from __future__ import annotations

import ctypes
import os

_libc: ctypes.CDLL | None
_libc_gil: ctypes.PyDLL | None  # the same C library, called without releasing the GIL
try:
    _libc = ctypes.CDLL(None)
    _libc_gil = ctypes.PyDLL(None)
except OSError:  # no C library to flush
    _libc = _libc_gil = None


class _PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


class _GlibcFileHead(ctypes.Structure):
    """The start of glibc's ``struct _IO_FILE`` (stable ABI): the write buffer's pointers."""

    _fields_ = [
        ("flags", ctypes.c_int),
        ("read_ptr", ctypes.c_void_p),
        ("read_end", ctypes.c_void_p),
        ("read_base", ctypes.c_void_p),
        ("write_base", ctypes.c_void_p),
        ("write_ptr", ctypes.c_void_p),
    ]


def _glibc_stdout() -> ctypes.c_void_p | None:
    """glibc's ``stdout`` variable (a ``FILE *``), or None elsewhere."""
    if _libc is None:
        return None
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return None
        return ctypes.c_void_p.in_dll(_libc, "stdout")
    except (ValueError, OSError):  # not glibc
        return None


_STDOUT = _glibc_stdout()
_POLLIN = 0x001


def c_stdio_pending() -> bool:
    """Whether C's ``stdout`` buffer may hold text (``stderr`` is unbuffered in C)."""
    if _STDOUT is None:
        return True  # cannot tell: flush
    address = _STDOUT.value
    if not address:
        return False
    head = _GlibcFileHead.from_address(address)
    return bool(head.write_ptr and head.write_base and head.write_ptr != head.write_base)


def has_input(fd: int) -> bool:
    """Whether ``fd`` is readable now; never blocks and keeps the GIL where it can."""
    return InputWatch(fd)()


class InputWatch:
    """``has_input`` for one descriptor, asked often: its ``pollfd`` is built once
    (a thread's line sent at once asks it first; see ``ChildOutput.sync``)."""

    def __init__(self, fd: int) -> None:
        self._poll = _PollFd(fd, _POLLIN, 0)
        self._pointer = ctypes.byref(self._poll)

    def __call__(self) -> bool:
        if _libc_gil is None:
            return True  # cannot tell cheaply: let the caller try a read
        return bool(_libc_gil.poll(self._pointer, 1, 0) > 0 and self._poll.revents)


def flush_c_stdio() -> None:
    """``fflush(NULL)``: push out what C code left in stdio buffers."""
    if _libc is not None:
        _libc.fflush(None)
