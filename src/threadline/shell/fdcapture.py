"""Output written below Python: file descriptors 1 and 2.

C extensions, ``os.write(1, ...)``, ``os.system`` and child processes write to
the process's file descriptors, not to ``sys.stdout``. ``FdCapture`` points
the descriptor at a pipe and pumps what arrives into the matching
``OutStream`` from a small thread of its own.

Before a request's reply the kernel calls ``sync()``: it flushes C stdio
buffers and moves whatever the pipe already holds into the stream on the
calling thread, so C-level output of a cell is shown in that cell, before its
idle. A lock makes the pump and ``sync`` take turns, so bytes are never
reordered.

``sync`` runs for every request, and almost always finds nothing to do. It
looks before it acts, without letting go of the GIL: ``fflush`` and ``read``
release the GIL, and a release in the middle of a request hands it to the IO
thread, which the request's thread must then wait out -- four such hand-overs
were 42 % of the main thread's samples in an execute round trip (py-spy).
So it asks ``threadline.shell.peek`` first, which looks at C's ``stdout``
buffer and at the pipe without giving up the GIL.

Text that arrives from the pump belongs to no cell of its own and follows the
stream's routing fallback (the most recent execute request).

At shutdown ``close`` delivers what the pipe holds and stops the pump with a
ring of its doorbell (``threadline.io.doorbell``); it does not wait for end
of file. The pipe's write
end is inherited by every child process, and one may outlive the kernel: with
the ``spawn`` or ``forkserver`` start method multiprocessing starts a
resource tracker that holds stderr until its parent exits (a notebook that
ran a dask ``LocalCluster`` has one), so end of file would come only after
the kernel had gone -- each such shutdown waited for the pump's next poll
timeout (up to half a second).
What such a process writes after the kernel has closed is not delivered,
as with the child-output pipe (``threadline.shell.children``).

The kernel's own log must not go into the pipe: ``original`` is a text file on
a duplicate of the original descriptor, for logging and for last-resort output.

``faulthandler`` is the one writer that must not use the pipe by default: it
writes a fatal error's traceback as the process dies, and the pump dies with
it, so the pipe's content would be lost. ``default_faulthandler_to`` makes
``faulthandler.enable()`` and ``register()`` without a file write to the
kernel's log (the terminal or the server's log, which outlive the kernel), as
ipykernel does; ``dump_traceback()`` keeps its default, ``sys.stderr``, whose
``fileno()`` is the pipe, so a traceback dumped on purpose shows in the cell.
"""

from __future__ import annotations

import codecs
import faulthandler
import os
import select
import threading
from typing import Any, TextIO

from threadline.io import Doorbell
from threadline.shell.peek import c_stdio_pending, flush_c_stdio, has_input
from threadline.shell.streams import OutStream


def default_faulthandler_to(file: TextIO) -> None:
    """``faulthandler.enable()``/``register()`` without a ``file`` write to ``file``."""
    enable, register = faulthandler.enable, getattr(faulthandler, "register", None)

    def enable_to_log(file: Any = file, all_threads: bool = True) -> None:
        enable(file=file, all_threads=all_threads)

    faulthandler.enable = enable_to_log
    if register is not None:

        def register_to_log(
            signum: int, file: Any = file, all_threads: bool = True, chain: bool = False
        ) -> None:
            register(signum, file=file, all_threads=all_threads, chain=chain)

        faulthandler.register = register_to_log


class FdCapture:
    """Redirects one file descriptor into an ``OutStream``."""

    def __init__(self, fd: int, stream: OutStream) -> None:
        self.fd = fd
        self._stream = stream
        self._saved = os.dup(fd)
        self.original: TextIO = os.fdopen(os.dup(self._saved), "w", buffering=1, encoding="utf-8")
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        os.set_blocking(read_end, False)
        self._read_end = read_end
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._lock = threading.Lock()
        self._open = True
        self._bell = Doorbell()
        self._thread = threading.Thread(target=self._pump, name=f"threadline-fd{fd}", daemon=True)
        self._thread.start()

    def sync(self) -> None:
        """Flush C stdio and move what the pipe holds into the stream, now."""
        if c_stdio_pending():
            flush_c_stdio()
        # The lock is looked at after the pipe: the pump holds it from reading
        # until the text is in the stream, so an empty pipe may be text the
        # pump has read and not yet handed over; waiting for it keeps the order.
        if has_input(self._read_end) or self._lock.locked():
            self._drain()

    def close(self, timeout: float = 1.0) -> None:
        """Restore the descriptor and deliver what the pipe holds (see the module's docstring)."""
        if not self._open:
            return
        self._open = False
        flush_c_stdio()
        os.dup2(self._saved, self.fd)  # this process writes to the pipe no more
        self._bell.ring()
        self._thread.join(timeout)
        self._drain()
        os.close(self._read_end)
        os.close(self._saved)
        self._bell.close()

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self._read_end, select.POLLIN | select.POLLHUP)
        bell = self._bell.fileno()
        poller.register(bell, select.POLLIN)
        while True:
            ready = poller.poll()
            if not self._drain() or any(fd == bell for fd, _ in ready):
                return

    def _drain(self) -> bool:
        """Read until the pipe would block; False once the pipe is closed and empty."""
        with self._lock:
            while True:
                try:
                    data = os.read(self._read_end, 65536)
                except BlockingIOError:
                    return True
                except OSError:
                    return False  # closed under us during shutdown
                if not data:
                    tail = self._decoder.decode(b"", final=True)
                    if tail:
                        self._stream.write(tail)
                    return False
                text = self._decoder.decode(data)
                if text:
                    self._stream.write(text)
