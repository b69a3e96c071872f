"""Output of child processes: whole lines, in the cell that started the child.

Theory of operation
-------------------
A child process has no IO thread and must never touch the kernel's ZeroMQ
sockets or outbox (a forked child inherits them, but only the forking thread
survives a fork, and the sockets belong to the parent). So children send their
``sys.stdout`` / ``sys.stderr`` text to the kernel through a pipe of their own:

* The kernel makes a **named pipe** (FIFO) in a private directory (mode
  0700, so only the user's own processes can open it) and reads it; each child
  opens it for writing. A write of at most ``PIPE_BUF`` bytes goes into a pipe
  whole, never mixed with another writer's, so a record -- ``kind + parent
  header (JSON) + NUL + text``, naming its cell -- travels in frames of that
  size (``child_stream.frames``), each one ``write``: one frame for a line, a
  few for a long one, joined again by writer (process and thread). One pipe is
  one queue, so records arrive in the order they were written, across all the
  children: a line a child wrote before it signalled another child comes before
  that child's. A writer blocks while the pipe is full, so a child that writes
  faster than the kernel reads waits: nothing is dropped, and memory stays
  bounded (the pipe holds ``PIPE_CAPACITY`` bytes where the system allows it).
  It was a Unix datagram socket until 2026-12-04, whose queue the system
  limits to ``net.unix.max_dgram_qlen`` records (10 here) whatever their size:
  4 spawned pool workers printing 200 lines each took turns at it, a wake-up
  per record, and spent 7-8 ms each printing them (1.2-2.2 ms through the
  pipe, 1.1-1.6 under ipykernel), which the kernel sent as ~60 stream
  messages (4-5 now).
* ``ChildOutput`` (kernel side) reads the pipe on a small thread of its own,
  never the IO thread, and publishes each record as a ``stream`` message with
  the record's parent through the outbox; when the outbox is full it waits,
  the pipe fills, and the children wait in turn. Before a request's reply the
  kernel calls ``sync()``, which moves what the pipe already holds on the
  calling thread: a child's line written before the cell joined the child is
  shown before the cell's idle. A lock makes the thread and ``sync`` take turns.
* In the child, ``ChildStream`` replaces ``sys.stdout``/``sys.stderr``. It is
  line-buffered per thread: every write that ends a line sends the complete
  lines at once (one record, one ``send``); a partial line waits for its end,
  an explicit ``flush()``, or the child's exit (``atexit``, and the flush that
  ``multiprocessing`` does after a child's target returns or raises -- which is
  how a child's traceback arrives). So a line is only ever split by its own
  process's explicit flush, exactly as for threads in ``streams``. A line
  longer than ``MAX_RECORD_CHARS`` is sent in pieces.
* Which cell? The child asks ``routing.current_parent()`` at each write: a
  forked child inherits the forking thread's context, so it writes to the cell
  that forked it, even after that cell has ended and another runs. A pool's
  workers outlive the cell that made them and serve later cells, so
  ``ProcessPoolExecutor.submit`` and ``multiprocessing.Pool``'s task methods
  wrap the function in a ``RoutedCall`` that carries the submitting cell's
  header into the worker for the task's duration. (These wrappers, and the
  spawn preparation below, are put in place when the user's code first
  imports those modules -- ``threadline.after_import`` -- so that a kernel that
  never starts a process never imports multiprocessing.)

How a child gets its ``ChildStream``:

* forked (``os.fork``, multiprocessing's fork, a forked pool): an
  ``os.register_at_fork`` hook. It also turns the kernel's own ``OutStream``
  objects, which code in the child may still hold (a logging handler made in
  a cell), into forwarders to the child streams, by shadowing their ``write``
  and ``flush`` on the instance, so the parent's buffers are never sent twice.
* spawned by multiprocessing (spawn, forkserver, and their pools):
  ``multiprocessing.spawn.get_preparation_data`` is wrapped to add one entry
  whose unpickling in the child, before anything else of the child runs, calls
  ``start_spawned_child`` with the pipe's path and the starting cell.
  The entry unpickles to a guarded ``exec``, so a child interpreter that
  cannot import threadline simply starts without it.

The child's side is in two modules: ``child_process`` (what every process of the
kernel's family runs: the hooks above, ``start_spawned_child``, ``RoutedCall``)
and ``child_stream`` (``ChildStream`` and its end of the pipe). A spawned child imports
only those, not this module, which is the kernel's receiving end.
* programs started with ``subprocess.Popen`` (``run``, asyncio's too) by the
  kernel process, whose stdout or stderr would be the kernel's own (not given,
  or the kernel's stream object): ``Popen.__init__`` gives each such stream a
  pipe of its own, which ``ChildOutput``'s thread reads (one pipe per program,
  so lines are assembled per program, whatever size its writes have), routed
  to the cell that created the ``Popen``. A partial line goes out at the end of
  the pipe, or once the pipe has been quiet for ``PARTIAL_LINE_DELAY``.
  ``Popen.wait`` reads the program's pipes on the waiting thread before it
  returns, so the program's text comes before what the cell prints next.
* everything else (``os.system``, C code, the programs a child starts) writes
  to file descriptors 1 and 2, the kernel's capture pipes (``fdcapture``):
  writes of up to ``PIPE_BUF`` bytes are atomic, and they go to the cell that
  is running.

Before a child is born (fork, spawn, pool submit) the starting thread's own
stream text is flushed, so what a cell printed before starting a child is
shown before the child's output.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import functools
import io
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from threadline import routing
from threadline.shell import child_process
from threadline.shell.child_stream import FIRST, FRAME_HEAD, LAST, RECORD_KINDS
from threadline.shell.peek import InputWatch, has_input

if TYPE_CHECKING:  # only its type: the kernel hands the sender in
    from threadline.io import Sender

_KINDS: Final = {kind: name for name, kind in RECORD_KINDS.items()}
#: The pipe's size, where the system allows it (Linux: ``fs.pipe-max-size``, 1 MiB by
#: default; otherwise the pipe keeps its 64 KiB). A line with its cell's header is a
#: frame of ~300-600 bytes: a 1 MiB pipe holds some 2,000 before a writer waits.
PIPE_CAPACITY: Final = 1024 * 1024
#: Bytes read from the pipe at a time.
_READ_SIZE: Final = 256 * 1024
#: Reads ``sync`` makes at most (children may be writing all the while).
_SYNC_LIMIT: Final = 8
#: Reads the receiving thread makes before it publishes them (and lets ``sync`` in).
_BATCH: Final = 1
#: A subprocess's partial line is shown once its pipe has been quiet this long (seconds).
PARTIAL_LINE_DELAY: Final = 0.1


# -- kernel side -------------------------------------------------------------------------------


class _ProgramPipe:
    """One subprocess's stdout or stderr: its own pipe, read into whole lines for its cell."""

    __slots__ = ("decoder", "fd", "header", "name", "partial", "since")

    def __init__(self, fd: int, name: str, header: bytes) -> None:
        self.fd = fd
        self.name = name
        self.header = header
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.partial = ""
        self.since = 0.0  # when the partial line was last extended


class ChildOutput:
    """The kernel's receiving end of its children's output."""

    def __init__(
        self, sender: Sender, kernel_streams: Iterable[io.TextIOBase], *, pipe_programs: bool = True
    ) -> None:
        self._sender = sender
        self._kernel_streams = tuple(kernel_streams)
        self._pipe_programs = pipe_programs
        self._pipes: dict[int, _ProgramPipe] = {}  # read fd -> pipe; changed under the lock
        self._buffer = bytearray(_READ_SIZE)
        self._leftover = b""  # the start of a frame whose rest is still in the pipe
        self._unfinished: dict[tuple[int, int], bytearray] = {}  # writer -> its record's frames so far
        self._lock = threading.Lock()
        self._closing = False
        self._started = False
        #: Called before a program starts (set by the kernel): what the process
        #: wrote below Python (``os.system``, C code; see fdcapture) and other
        #: threads' lines for the cell go out first, ahead of the program's text,
        #: which comes through a pipe of its own.
        self.before_program: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._serve, name="threadline-children", daemon=True)

    def start(self) -> None:
        """Make the pipe, start reading it, and make children of this process write to it."""
        import tempfile  # here: IPython's shell has imported it by now

        self._directory = tempfile.mkdtemp(prefix="threadline-")  # mode 0700
        self.address = os.path.join(self._directory, "children")
        os.mkfifo(self.address, 0o600)
        self._fd = os.open(self.address, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # A write end of the kernel's own: with no child writing, the pipe is empty
        # rather than at its end (which would wake the reading thread over and over).
        self._own_write_end = os.open(self.address, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
        if set_size is not None:
            with contextlib.suppress(OSError):  # above the system's limit: 64 KiB it is
                fcntl.fcntl(self._fd, set_size, PIPE_CAPACITY)
        self._pipe_has_input = InputWatch(self._fd)
        self._wake_read, self._wake_write = os.pipe()
        self._started = True
        self._thread.start()
        child_process.become_kernel(self.address, self._kernel_streams, (self._fd, self._own_write_end))
        if self._pipe_programs:
            _pipe_subprocesses(self)

    def sync(self) -> None:
        """Publish what children have already sent, on the calling thread."""
        if not self._started or self._closing:
            return  # closing: ``close`` delivers the rest (and the pipe's descriptors go)
        if not child_process.children_started() and not self._pipes:
            return  # no child yet: nothing can be waiting (see ``child_process._children_started``)
        if (
            not self._pipe_has_input()
            and not (self._pipes and any(has_input(fd) for fd in list(self._pipes)))
            and not self._lock.locked()
        ):
            # The usual case, found without giving up the GIL (see peek). The
            # lock is looked at last: the receiving thread holds it from taking
            # records out of the pipe until they are published, so a pipe that
            # looks empty may be records taken out and not yet sent.
            return
        with self._lock:
            self._receive(reads=_SYNC_LIMIT)
            for pipe in list(self._pipes.values()):
                self._read_pipe(pipe)

    def pipe_for_program(self, name: str, header: bytes) -> tuple[_ProgramPipe, int]:
        """A new pipe whose text goes to ``name`` of cell ``header``: the pipe, and its
        write end, which the caller gives to one subprocess and then closes."""
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        pipe = _ProgramPipe(read_end, name, header)
        with self._lock:
            self._pipes[read_end] = pipe
        os.write(self._wake_write, b"p")  # watch it from now on
        return pipe, write_end

    def sync_programs(self, pipes: Iterable[_ProgramPipe]) -> None:
        """Publish what these programs wrote, on the calling thread (after a ``wait``)."""
        with self._lock:
            for pipe in pipes:
                self._read_pipe(pipe)

    def close(self, timeout: float = 1.0) -> None:
        """Deliver what is still queued; stop receiving. Idempotent."""
        if self._closing or not self._started:
            return
        self._closing = True
        os.write(self._wake_write, b"x")
        self._thread.join(timeout)
        with self._lock:
            self._receive(reads=_SYNC_LIMIT)
            # A writer stopped in the middle of a record (a signal's exception): what came.
            unfinished = [_record(bytes(frames)) for frames in self._unfinished.values()]
            self._publish([record for record in unfinished if record is not None])
            self._unfinished.clear()
            os.close(self._fd)
            os.close(self._own_write_end)
            for pipe in list(self._pipes.values()):
                self._read_pipe(pipe)
                if self._pipes.get(pipe.fd) is pipe:  # still open: a program that outlives us
                    self._end_pipe(pipe)
        os.close(self._wake_read)
        os.close(self._wake_write)
        for remove, path in ((os.unlink, self.address), (os.rmdir, self._directory)):
            with contextlib.suppress(OSError):  # the directory holds the pipe alone
                remove(path)

    def _serve(self) -> None:
        pipe_fd = self._fd
        while not self._closing:
            poller = select.poll()
            poller.register(pipe_fd, select.POLLIN)
            poller.register(self._wake_read, select.POLLIN)
            with self._lock:
                pipes = list(self._pipes.values())
            for pipe in pipes:
                poller.register(pipe.fd, select.POLLIN)
            waiting = any(pipe.partial for pipe in pipes)
            ready = {fd for fd, _ in poller.poll(PARTIAL_LINE_DELAY * 500 if waiting else None)}
            if self._wake_read in ready:
                os.read(self._wake_read, 4096)
            while pipe_fd in ready and not self._closing:
                with self._lock:
                    if not self._receive(reads=_BATCH):
                        break
            with self._lock:
                if self._closing:
                    return
                now = time.monotonic()
                for pipe in pipes:
                    if pipe.fd in ready:
                        self._read_pipe(pipe)
                    elif pipe.partial and now - pipe.since >= PARTIAL_LINE_DELAY:
                        self._publish_text(pipe.name, pipe.header, pipe.partial)
                        pipe.partial = ""

    def _read_pipe(self, pipe: _ProgramPipe) -> None:
        """Publish the complete lines a program's pipe holds; at its end, the rest. Lock held."""
        if self._pipes.get(pipe.fd) is not pipe:
            return  # ended already (its descriptor may have a new owner)
        while True:
            try:
                data = os.read(pipe.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._end_pipe(pipe)
                return
            text = pipe.partial + pipe.decoder.decode(data)
            end = text.rfind("\n") + 1
            pipe.partial, pipe.since = text[end:], time.monotonic()
            if end:
                self._publish_text(pipe.name, pipe.header, text[:end])

    def _end_pipe(self, pipe: _ProgramPipe) -> None:
        """The program closed its end: the partial line goes too. Lock held."""
        rest = pipe.partial + pipe.decoder.decode(b"", final=True)
        pipe.partial = ""
        if rest:
            self._publish_text(pipe.name, pipe.header, rest)
        del self._pipes[pipe.fd]
        os.close(pipe.fd)

    def _receive(self, reads: int) -> bool:
        """Read the pipe up to ``reads`` times; publish the whole records. Lock held.

        Returns whether the pipe may hold more (the last read filled the buffer).
        """
        records: list[tuple[str, bytes, str]] = []
        more = False
        for _ in range(reads):
            try:
                size = os.readv(self._fd, [self._buffer])
            except OSError:  # empty (BlockingIOError), or closed during shutdown
                size = 0
            if size:
                self._take_frames(memoryview(self._buffer)[:size], records)
            more = size == len(self._buffer)
            if not more:
                break
        self._publish(records)
        return more

    def _take_frames(self, data: memoryview, records: list[tuple[str, bytes, str]]) -> None:
        """Append the records that ``data``'s frames complete to ``records``. Lock held."""
        if self._leftover:
            data = memoryview(self._leftover + bytes(data))
        head, end, position = FRAME_HEAD.size, len(data), 0
        while end - position >= head:
            size, pid, thread, flags = FRAME_HEAD.unpack_from(data, position)
            if size < head:  # not a frame of ours: nothing after it can be trusted
                position = end
                break
            if end - position < size:
                break  # the rest of this frame is still in the pipe
            piece = data[position + head : position + size]
            position += size
            key = (pid, thread)
            if flags & FIRST and self._unfinished and (interrupted := self._unfinished.pop(key, None)):
                record = _record(bytes(interrupted))  # its writer gave up on it: what came
                if record is not None:
                    records.append(record)
            if flags == FIRST | LAST:  # the usual: a record in one frame
                if record := _record(bytes(piece)):
                    records.append(record)
                continue
            frames = self._unfinished.setdefault(key, bytearray())
            frames += piece
            if flags & LAST and (record := _record(bytes(self._unfinished.pop(key)))):
                records.append(record)
        self._leftover = bytes(data[position:])

    def _publish(self, records: list[tuple[str, bytes, str]]) -> None:
        """One ``stream`` message per run of whole lines for the same cell and stream.

        Records are joined only after a record that ends its line, so a
        flushed partial line is never glued to another process's text.
        """
        index = 0
        while index < len(records):
            name, header, text = records[index]
            parts = [text]
            index += 1
            while (
                index < len(records)
                and parts[-1].endswith("\n")
                and records[index][0] == name
                and records[index][1] == header
            ):
                parts.append(records[index][2])
                index += 1
            self._publish_text(name, header, "".join(parts))

    def _publish_text(self, name: str, header: bytes, text: str) -> None:
        parent = header or _latest_header()
        if parent is None:
            return  # no cell has run yet: nowhere to show it
        with contextlib.suppress(RuntimeError):  # the outbox closed: shutting down
            self._sender.publish("stream", {"name": name, "text": text}, parent=parent)


def _record(record: bytes) -> tuple[str, bytes, str] | None:
    """A child's record as (stream name, parent header, text); None if it is not one."""
    name = _KINDS.get(record[:1])
    header, nul, data = record[1:].partition(b"\0")
    if name is None or not nul:
        return None
    return name, header, data.decode("utf-8", "replace")


def _latest_header() -> bytes | None:
    latest = routing.latest_execute()
    return latest.header_json if latest is not None else None


def _pipe_subprocesses(output: ChildOutput) -> None:
    """``subprocess.Popen`` in the kernel process: a child whose stdout or stderr would be
    the kernel's own (not given, or the kernel's stream object) gets a pipe of its own."""
    original_init = subprocess.Popen.__init__
    if getattr(original_init, "_threadline_patched", False):
        return
    kernel_pid = os.getpid()

    @functools.wraps(original_init)
    def __init__(self: subprocess.Popen[Any], args: Any, *more: Any, **kwargs: Any) -> None:
        if more or os.getpid() != kernel_pid:  # positional options, or a forked child
            original_init(self, args, *more, **kwargs)
            return
        child_process.flush_std_streams()
        if output.before_program is not None:
            output.before_program()
        header = child_process.current_header()
        pipes: list[_ProgramPipe] = []
        opened: list[int] = []
        for key in ("stdout", "stderr"):
            value = kwargs.get(key)
            name = key if value is None else getattr(value, "name", None)
            own = value is None or any(value is stream for stream in output._kernel_streams)
            if own and isinstance(name, str):
                pipe, write_end = output.pipe_for_program(name, header)
                pipes.append(pipe)
                opened.append(write_end)
                kwargs[key] = write_end
        self._threadline_pipes = pipes  # type: ignore[attr-defined]
        try:
            original_init(self, args, **kwargs)
        finally:
            for fd in opened:  # the child has its copy; a child that failed to start: EOF
                os.close(fd)

    original_wait = subprocess.Popen.wait

    @functools.wraps(original_wait)
    def wait(self: subprocess.Popen[Any], timeout: float | None = None) -> int:
        """The program has ended: what it wrote is shown before the caller goes on."""
        code = original_wait(self, timeout)
        pipes = getattr(self, "_threadline_pipes", None)
        if pipes:
            output.sync_programs(pipes)
        return code

    __init__._threadline_patched = True  # type: ignore[attr-defined]
    subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]
    subprocess.Popen.wait = wait  # type: ignore[method-assign]
