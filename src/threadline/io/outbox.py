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

A lock guards only the closed flag and the room check together with the append,
so a put is either queued before the close (and then flushed) or refused with
``OutboxClosed`` -- it is never silently lost -- and producers racing for the
last free slot cannot overfill the queue.

On the IO thread itself ``put`` does not queue at all: it calls the IO thread's
direct-send function, which first sends whatever is already queued, so "what
happened before" is always sent before. On any other thread, ``put`` first
offers the message to the IO thread's ``send_now``, which sends it from the
calling thread when nothing is queued ahead of it (see ``io/iothread.py``);
only what it declines is queued.

The queue is bounded twice: in messages (``capacity``) and in bytes
(``max_bytes``: each item's size is computed once, by its producer, and
recorded with it under the same lock as the append). A producer that finds it full waits until the IO
thread has drained it below half of both (never the IO thread itself, which
must not block). A single message larger than ``max_bytes`` still goes, alone.
Memory therefore stays bounded under any flood, and nothing is dropped.

``congested`` tells producers that may defer work (the stream flush timer) to
do so: the queue is full, or the IO thread is waiting for a full socket.

The doorbell (``io/doorbell.py``) is rung and drained without giving up the
GIL: a thread that printed one line and rang must not lose the GIL to the IO
thread mid-``print``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Final

from threadline.io.doorbell import Doorbell
from threadline.protocol import Frame

#: A queued item: (channel, frames) to send, or (CALL, function) to run.
CALL: Final = "call"
#: A call that later messages need not wait for (``call_soon(..., ordered=False)``).
SIDE_CALL: Final = "side-call"
Item = tuple[str, "list[Frame] | Callable[[], object]"]

DEFAULT_CAPACITY = 4096
DEFAULT_MAX_BYTES = 1024 * 1024


def _size(item: Item) -> int:
    """Bytes a queued item holds (a call holds none worth counting)."""
    kind, payload = item
    if kind == CALL or callable(payload):
        return 0
    if len(payload) <= 6:  # an iopub message without buffers: six bytes frames
        return sum(map(len, payload))
    total = 0
    for frame in payload:
        total += frame.nbytes if isinstance(frame, memoryview) else len(frame)
    return total


class OutboxClosed(RuntimeError):
    """Raised by ``put`` and ``call_soon`` after the outbox was closed."""


class Outbox:
    """A bounded, thread-safe hand-off of messages and calls to the IO thread.

    ``put`` and ``call_soon`` are the only methods that may be called from any
    thread. Every other method belongs to the IO thread.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if capacity < 2:
            raise ValueError("outbox capacity must be at least 2")
        if max_bytes < 1:
            raise ValueError("outbox max_bytes must be positive")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._low_water = capacity // 2
        self._bytes = 0  # bytes queued; changed only under the lock
        self._ahead = 0  # queued messages and ordered calls; changed only under the lock
        # The size of each queued item, in queue order: computed once, by the
        # producer, and appended with the item under the lock.
        self._sizes: deque[int] = deque()
        #: Set by the IO thread while a socket is full and it cannot send.
        self.stalled = False
        self._queue: deque[Item] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._ring_pending = False
        self._room = threading.Event()
        self._room.set()
        self._bell = Doorbell()
        # Set by the IO thread when it starts: its thread id and its direct sends.
        self._io_ident: int | None = None
        self._send_direct: Callable[[str, list[Frame]], None] | None = None
        self._send_now: Callable[[str, list[Frame]], bool] | None = None
        self._send_all_now: Callable[[list[tuple[str, list[Frame]]]], int] | None = None

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
        send_now = self._send_now
        if send_now is not None and not self._ahead and not self._closed and send_now(channel, frames):
            return
        self._append((channel, frames))

    def put_all(self, messages: list[tuple[str, list[Frame]]]) -> None:
        """``put`` for several messages, in order. From a thread other than the IO
        thread they are offered to ``send_all_now`` together first (one look at
        what is queued, one signal mask for all); what it leaves goes through
        ``put``, one by one, in order."""
        send_all_now = self._send_all_now
        if (
            send_all_now is not None
            and threading.get_ident() != self._io_ident
            and not self._ahead
            and not self._closed
        ):
            messages = messages[send_all_now(messages) :]
        for channel, frames in messages:
            self.put(channel, frames)

    def call_soon(self, function: Callable[[], object], *, ordered: bool = True) -> None:
        """Run ``function`` on the IO thread, after everything queued before it.

        Never waits for room: calls are few and small, and the IO thread's own
        bookkeeping (timers, flushes, close) must not deadlock behind a flood.

        ``ordered``: messages put after this call are sent after it ran (they
        are queued behind it, not sent directly). Pass False for bookkeeping
        that sends nothing a caller's later message must follow -- arming the
        stream flush timer -- so that it does not hold up direct sends.
        """
        self._append((CALL if ordered else SIDE_CALL, function), wait_for_room=False)

    def fileno(self) -> int:
        """The doorbell's readable end, for the IO thread's poller."""
        return self._bell.fileno()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def ahead(self) -> int:
        """Queued items a new message must not overtake (all but ``ordered=False`` calls)."""
        return self._ahead

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def congested(self) -> bool:
        """Whether producers that can wait should: full, or the IO thread is stalled."""
        return self.stalled or len(self._queue) >= self.capacity or self._bytes >= self.max_bytes

    def _append(self, item: Item, *, wait_for_room: bool = True) -> None:
        # The IO thread never blocks on itself.
        wait_for_room = wait_for_room and threading.get_ident() != self._io_ident
        size = _size(item)
        while True:
            # Room is checked under the lock, with the append: checked outside,
            # many producers could see one free slot and all take it.
            with self._lock:
                if self._closed:
                    raise OutboxClosed("the outbox is closed; the kernel is shutting down")
                if not wait_for_room or self._has_room(size):
                    self._queue.append(item)
                    self._sizes.append(size)
                    self._bytes += size
                    self._ahead += item[0] != SIDE_CALL
                    break
                self._room.clear()
                # Cleared first, then checked: a drain in between is not missed.
                if self._has_room(size):
                    continue
            self.wait_for_room()
        if not self._ring_pending:
            self._ring_pending = True
            self._bell.ring()

    def wait_for_room(self) -> None:
        """Block until the IO thread has drained some of the queue. Holds no lock,
        so the kernel lets an interrupt land here."""
        # The timeout is only a safety net; the IO thread sets the event.
        self._room.wait(1.0)

    def _has_room(self, size: int) -> bool:
        if len(self._queue) >= self.capacity:
            return False
        return self._bytes == 0 or self._bytes + size <= self.max_bytes

    # -- IO thread only -----------------------------------------------------------

    def bind_io_thread(
        self,
        send_direct: Callable[[str, list[Frame]], None],
        send_now: Callable[[str, list[Frame]], bool] | None = None,
        send_all_now: Callable[[list[tuple[str, list[Frame]]]], int] | None = None,
    ) -> None:
        """Called once, on the IO thread, before it polls: its direct send (for puts on
        the IO thread) and ``send_now`` (offered every put from another thread first)."""
        self._io_ident = threading.get_ident()
        self._send_direct = send_direct
        self._send_now = send_now
        self._send_all_now = send_all_now

    def _require_io_thread(self) -> None:
        if threading.get_ident() != self._io_ident:
            raise RuntimeError("this Outbox method must run on the IO thread")

    def take_batch(self) -> list[Item]:
        """Everything queued now, in order; clears the doorbell first."""
        self._require_io_thread()
        self._bell.drain()
        self._ring_pending = False
        queue = self._queue
        batch = [queue.popleft() for _ in range(len(queue))]
        if batch:
            sizes = self._sizes
            ahead = sum([kind != SIDE_CALL for kind, _ in batch])
            with self._lock:
                self._bytes -= sum([sizes.popleft() for _ in range(len(batch))])
                self._ahead -= ahead
        return batch

    def push_back(self, items: list[Item]) -> None:
        """Return unsent items to the head of the queue, keeping their order."""
        self._require_io_thread()
        with self._lock:
            self._queue.extendleft(reversed(items))
            sizes = [_size(item) for item in items]
            self._sizes.extendleft(reversed(sizes))
            self._bytes += sum(sizes)
            self._ahead += sum([kind != SIDE_CALL for kind, _ in items])

    def append_from_io_thread(self, item: Item) -> None:
        """Queue behind what is waiting (when a socket cannot take more yet)."""
        self._require_io_thread()
        with self._lock:
            size = _size(item)
            self._queue.append(item)
            self._sizes.append(size)
            self._bytes += size
            self._ahead += item[0] != SIDE_CALL

    def signal_room(self) -> None:
        """Wake producers waiting for room, once the queue is below low water."""
        if (
            len(self._queue) <= self._low_water
            and self._bytes <= self.max_bytes // 2
            and not self._room.is_set()
        ):
            self._room.set()

    def close(self) -> None:
        """Refuse further puts; items already queued are still delivered."""
        with self._lock:
            self._closed = True
        self._room.set()

    def forget_after_fork(self, on_put: Callable[[], None]) -> None:
        """In a forked child: take nothing more, touching nothing shared.

        The queue, the doorbell and the IO thread belong to the parent (the
        child has no IO thread, and a lock another thread held at the fork
        stays held in the child). ``put``, ``put_all`` and ``call_soon`` are shadowed on
        this instance -- the parent's hot path pays nothing for it -- by a
        function that calls ``on_put`` (the kernel warns once) and drops the
        item, as ipykernel drops messages sent from a fork.
        """

        def refuse(*_: object) -> None:
            on_put()

        self.put = refuse  # type: ignore[method-assign, assignment]
        self.put_all = refuse  # type: ignore[method-assign, assignment]
        self.call_soon = refuse  # type: ignore[method-assign, assignment]

    def release(self) -> None:
        """Close the doorbell sockets (after the IO thread has stopped)."""
        # A thread started later may get the dead IO thread's ident: it must
        # be refused like any other, not "send directly" on closed sockets.
        self._io_ident = None
        self._send_direct = None
        self._send_now = None
        self._send_all_now = None
        self._bell.close()
