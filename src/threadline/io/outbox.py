"""The outbox: the one thread-safe way to hand work to the IO thread.

Theory of operation
-------------------
Any thread may call ``Outbox.put`` (a message for a socket) or
``Outbox.call_soon`` (a function to run on the IO thread). Both append one item
to a ``collections.deque`` -- an atomic operation in CPython, so an item is
always handed over whole and each thread's items stay in the order it made them
-- and then ring the doorbell unless a ring is already pending. The doorbell is
a non-blocking socket pair: one byte wakes the IO thread for a whole batch, no
matter how many threads put how many items before it wakes.

The IO thread (``Outbox.take_batch``) first clears the "ring pending" flag and
then takes exactly the items queued at that moment. An item appended after the
flag was cleared rings again; an item appended before is in the batch. So no
item is ever left without a wake-up, and producers cannot starve the consumer.

A lock guards only the closed flag together with the append, so a put is either
queued before the close (and then flushed) or refused with ``OutboxClosed``;
it is never silently lost.

On the IO thread itself ``put`` does not queue at all: it calls the IO thread's
direct-send function, which first sends whatever is already queued, so "what
happened before" is always sent before.

The queue is bounded. A producer that finds it at capacity waits until the IO
thread has drained it below the low-water mark (never the IO thread itself,
which must not block). Memory therefore stays bounded under any flood, and
nothing is dropped.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Final

from threadline.protocol import Frame

#: A queued item: (channel, frames) to send, or (CALL, function) to run.
CALL: Final = "call"
Item = tuple[str, "list[Frame] | Callable[[], object]"]

DEFAULT_CAPACITY = 4096


class OutboxClosed(RuntimeError):
    """Raised by ``put`` and ``call_soon`` after the outbox was closed."""


class Outbox:
    """A bounded, thread-safe hand-off of messages and calls to the IO thread.

    ``put`` and ``call_soon`` are the only methods that may be called from any
    thread. Every other method belongs to the IO thread.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError("outbox capacity must be at least 2")
        self.capacity = capacity
        self._low_water = capacity // 2
        self._queue: deque[Item] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._ring_pending = False
        self._room = threading.Event()
        self._room.set()
        # The doorbell. Tiny buffers: if the send buffer is full, a wake-up is
        # already pending and the byte is not needed.
        self._bell_recv, self._bell_send = socket.socketpair()
        for end in (self._bell_recv, self._bell_send):
            end.setblocking(False)
        self._bell_send.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        self._bell_recv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        # Set by the IO thread when it starts: its thread id and its direct send.
        self._io_ident: int | None = None
        self._send_direct: Callable[[str, list[Frame]], None] | None = None

    # -- any thread -------------------------------------------------------------

    def put(self, channel: str, frames: list[Frame]) -> None:
        """Send ``frames`` on ``channel``. THE thread-safe way to send a message.

        On the IO thread the message goes out at once (after anything queued).
        On any other thread it is queued whole; if the queue is full the caller
        waits for room. Raises ``OutboxClosed`` after ``close``.
        """
        if threading.get_ident() == self._io_ident and self._send_direct is not None:
            self._send_direct(channel, frames)
            return
        self._append((channel, frames))

    def call_soon(self, function: Callable[[], object]) -> None:
        """Run ``function`` on the IO thread, after everything queued before it.

        Never waits for room: calls are few and small, and the IO thread's own
        bookkeeping (timers, flushes, close) must not deadlock behind a flood.
        """
        self._append((CALL, function), wait_for_room=False)

    def fileno(self) -> int:
        """The doorbell's readable end, for the IO thread's poller."""
        return self._bell_recv.fileno()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._queue)

    def _append(self, item: Item, *, wait_for_room: bool = True) -> None:
        if wait_for_room and len(self._queue) >= self.capacity:
            self._wait_for_room()
        with self._lock:
            if self._closed:
                raise OutboxClosed("the outbox is closed; the kernel is shutting down")
            self._queue.append(item)
        if not self._ring_pending:
            self._ring_pending = True
            try:
                self._bell_send.send(b"\x00")
            except (BlockingIOError, InterruptedError):
                pass  # the buffer is full: a wake-up is already on its way
            except OSError:
                if not self._closed:
                    raise

    def _wait_for_room(self) -> None:
        if threading.get_ident() == self._io_ident:
            return  # the IO thread never blocks on itself
        while len(self._queue) >= self.capacity and not self._closed:
            self._room.clear()
            if len(self._queue) < self.capacity:
                break
            # The timeout is only a safety net; the IO thread sets the event.
            self._room.wait(1.0)

    # -- IO thread only -----------------------------------------------------------

    def bind_io_thread(self, send_direct: Callable[[str, list[Frame]], None]) -> None:
        """Called once, on the IO thread, before it polls."""
        self._io_ident = threading.get_ident()
        self._send_direct = send_direct

    def _require_io_thread(self) -> None:
        if threading.get_ident() != self._io_ident:
            raise RuntimeError("this Outbox method must run on the IO thread")

    def take_batch(self) -> list[Item]:
        """Everything queued now, in order; clears the doorbell first."""
        self._require_io_thread()
        try:
            while self._bell_recv.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._ring_pending = False
        queue = self._queue
        return [queue.popleft() for _ in range(len(queue))]

    def push_back(self, items: list[Item]) -> None:
        """Return unsent items to the head of the queue, keeping their order."""
        self._require_io_thread()
        self._queue.extendleft(reversed(items))

    def append_from_io_thread(self, item: Item) -> None:
        """Queue behind what is waiting (when a socket cannot take more yet)."""
        self._require_io_thread()
        self._queue.append(item)

    def signal_room(self) -> None:
        """Wake producers waiting for room, once the queue is below low water."""
        if len(self._queue) <= self._low_water and not self._room.is_set():
            self._room.set()

    def close(self) -> None:
        """Refuse further puts; items already queued are still delivered."""
        with self._lock:
            self._closed = True
        self._room.set()

    def release(self) -> None:
        """Close the doorbell sockets (after the IO thread has stopped)."""
        self._bell_recv.close()
        self._bell_send.close()
