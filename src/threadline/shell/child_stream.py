"""A child process's ``sys.stdout``/``sys.stderr``: whole lines to the kernel's pipe.

What runs inside a child; the theory of operation, and how a child comes to
use these, is in ``threadline.shell.children``. In short: each write that ends
a line sends the complete lines as one record (``kind + parent header + NUL +
text``) to the kernel's named pipe, in frames of at most ``PIPE_BUF`` bytes,
each written whole (``frames``); a partial line waits for its newline, a
``flush()`` or the process's exit. A write blocks while the pipe is full:
nothing is dropped. Once the kernel is gone, text goes to the file descriptor
instead.

Nothing here takes a lock (each thread's partial line lives under its own key
of a dict only that thread changes, and each thread's frames carry their own
writer key), so nothing can be found held after a fork or by a signal handler.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import struct
import threading
from collections.abc import Iterable

from threadline import routing

# ``typing`` only for the type checker (see ``threadline.routing``).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

#: A record: kind, parent header JSON, NUL, UTF-8 text. The kind names the stream.
RECORD_KINDS: Final = {"stdout": b"1", "stderr": b"2"}
#: Text per record at most: a longer line goes in several records, which another
#: writer's may come between. (Frames carry a record of any size; this bounds what
#: the kernel holds of each writer's unfinished record: 4 MiB, UTF-8 being at most
#: 4 bytes a character. A datagram socket limited records to 16 Ki characters.)
MAX_RECORD_CHARS: Final = 1024 * 1024
#: A parent header longer than this is not sent (the record goes to the latest cell).
MAX_HEADER: Final = 8 * 1024

#: A frame: its size, the writer's key (process id, thread id), where it falls in
#: its record (``FIRST``, ``LAST``, both or neither), then a piece of the record.
#: A pipe takes a write of at most ``PIPE_BUF`` bytes whole, never mixed with
#: another writer's, so each frame is one ``write``; a record that does not fit in
#: one frame is sent in several, which other writers' frames may come between
#: (``ChildOutput`` joins them by key).
FRAME_HEAD: Final = struct.Struct("<HIQB")
FRAME_SIZE: Final = select.PIPE_BUF
FIRST: Final = 1
LAST: Final = 2
_HEAD: Final = FRAME_HEAD.size
_ROOM: Final = FRAME_SIZE - FRAME_HEAD.size  # record bytes a frame holds


def frames(record: bytes, pid: int, thread: int) -> list[bytes]:
    """``record`` (never empty) as the frames one writer sends: one for a line, as a rule."""
    if len(record) <= _ROOM:
        return [FRAME_HEAD.pack(_HEAD + len(record), pid, thread, FIRST | LAST) + record]
    pieces = [record[start : start + _ROOM] for start in range(0, len(record), _ROOM)]
    return [
        FRAME_HEAD.pack(
            _HEAD + len(piece), pid, thread, (FIRST if i == 0 else 0) | (LAST if i == len(pieces) - 1 else 0)
        )
        + piece
        for i, piece in enumerate(pieces)
    ]


class KernelLink:
    """A child's end of the kernel's pipe (``ChildOutput``; opened once per process, on first use)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._fd = -1
        self._pid = 0
        self._lost = False

    def send(self, kind: bytes, fd: int, text: str) -> None:
        parent = routing.current_parent()
        header = parent.header_json if parent is not None else b""
        if len(header) > MAX_HEADER:
            header = b""
        for piece in (text,) if len(text) <= MAX_RECORD_CHARS else _pieces(text):
            record = kind + header + b"\0" + piece.encode("utf-8", "replace")
            if not self._send_record(record):
                _write_fd(fd, piece)

    def _send_record(self, record: bytes) -> bool:
        if self._lost:
            return False
        try:
            pid = os.getpid()
            if self._pid != pid:  # first use, or a forked child: a descriptor of its own
                # O_NONBLOCK for the open only: with no reader (the kernel is gone) it
                # fails at once instead of waiting for one.
                self._fd = os.open(self.address, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                os.set_blocking(self._fd, True)
                self._pid = pid
            for frame in frames(record, pid, threading.get_ident()):
                os.write(self._fd, frame)  # whole (<= PIPE_BUF); blocks while the pipe is full
        except OSError:  # the kernel is gone: what is left goes to the descriptor
            self._lost = True
            return False
        return True


def _pieces(text: str) -> Iterable[str]:
    """``text`` in records of at most ``MAX_RECORD_CHARS``, cut after a newline where possible."""
    while len(text) > MAX_RECORD_CHARS:
        end = text.rfind("\n", 0, MAX_RECORD_CHARS) + 1 or MAX_RECORD_CHARS
        yield text[:end]
        text = text[end:]
    if text:
        yield text


def _write_fd(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, text.encode("utf-8", "replace"))


class ChildStream(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` of a child process: whole lines to the kernel.

    Each thread's partial line is kept under its own key of a dict that only
    that thread changes (atomic dict operations; no lock, so nothing a fork or
    a signal handler could find held).
    """

    def __init__(self, name: str, fd: int, link: KernelLink) -> None:
        super().__init__()
        self.name = name
        self._fd = fd
        self._kind = RECORD_KINDS[name]
        self._link = link
        self._partial: dict[int, str] = {}

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        ident = threading.get_ident()
        pending = self._partial.pop(ident, "") + text
        end = pending.rfind("\n") + 1
        if end < len(pending):
            self._partial[ident] = pending[end:]
        if end:
            self._link.send(self._kind, self._fd, pending[:end])
        return len(text)

    def flush(self) -> None:
        """Send this thread's partial line now."""
        pending = self._partial.pop(threading.get_ident(), "")
        if pending:
            self._link.send(self._kind, self._fd, pending)

    def flush_all(self) -> None:
        """Send every thread's partial line (at the process's exit)."""
        for ident in list(self._partial):
            pending = self._partial.pop(ident, "")
            if pending:
                self._link.send(self._kind, self._fd, pending)

    def forget_partial_lines(self) -> None:
        """In a new child: the partial lines are the parent's, which sends them itself."""
        self._partial.clear()
