"""The IO thread: it receives on the kernel's ZeroMQ sockets and sends what is queued.

Theory of operation
-------------------
ZeroMQ sockets are not thread-safe: two threads must never use one at the same
time (a multipart message sent from two threads interleaves). Here each of the
shell, control, stdin and iopub sockets has a lock, and whoever uses a socket
holds its lock for that one operation (libzmq allows a socket to move between
threads behind a full memory barrier, which a lock is). The IO thread does all
the receiving and sends everything that is queued in the outbox. Any other
thread may send a message itself, at once, when nothing is queued ahead of it
(``send_now``; ``Outbox.put`` tries it first) -- so a reply leaves from the
thread that produced it, without waking the IO thread and waiting for it to
get the GIL: the two thread hops that dominated a short request's round trip
(measured: ~200 us each on a 2-core VM, where a reply waited for the GIL
until the main thread went back to sleep). When something is queued, when
the socket is full, or when the IO thread is using that socket just then, the
message is queued behind the rest, as before, so each thread's messages keep
their order and causally ordered messages keep theirs.

The IO thread never blocks inside ZeroMQ holding a socket: it waits in a plain
``poll`` on each socket's notification descriptor (``ZMQ_FD``) and on the
outbox's doorbell. That descriptor is edge-triggered: it fires when the
socket's state may have changed, and any operation on the socket -- a send
from another thread included -- can consume the edge. So a socket is drained
until ``EAGAIN`` whenever it fires; after the IO thread's own sends it checks
``ZMQ_EVENTS`` before it sleeps; and a thread that sent directly checks it
too and has the IO thread look if input is waiting. No message is stranded.

Receiving can be lent the same way (``lend``, ``receive_here``, ``reclaim``):
the main thread, while it waits for its next request, watches the shell
socket itself and receives and dispatches what arrives, so a request reaches
the thread that runs it with one wake-up, not two (the IO thread's, then the
main thread's, which then waited for the GIL). Meanwhile the IO thread does
not watch that socket, so the two are not both woken for one message. The
IO thread may still receive from it (after sending on it, say): whoever
receives holds the socket's receive lock from the receive through the
dispatch, so messages are dispatched in the order they arrived. Lending needs
``epoll``, whose watch list can change while the IO thread waits in it; where
there is none the IO thread keeps receiving everything.

Its loop polls, then in this order:

1. receives everything readable (control first, so an interrupt or shutdown is
   never stuck behind a burst of shell traffic), decodes it and hands each
   message to the kernel's dispatcher, which must not block;
2. takes the batch of items other threads queued in the outbox and sends them
   (or runs them, for calls) in order;
3. runs due timers (stream flushes, shutdown deadlines);
4. calls the readers other layers registered for plain file descriptors
   (``add_reader``: the kernel's signal wake-up fd), which must not block.

Every socket is polled and then drained until it would block, so the
edge-triggered nature of ZeroMQ's own file descriptor never strands a message.

Sends never block, and never hand the GIL away mid-message (see ``zsend``:
pyzmq would, once per frame). When a socket cannot take a message (iopub at its
high-water mark with a slow subscriber; ``XPUB_NODROP`` makes ZeroMQ say so
instead of dropping), the IO thread stops taking from the outbox and retries
the waiting message on a short timer, backing off to a few milliseconds. (It
cannot wait for POLLOUT: an XPUB always reports it, and a ROUTER does as soon
as any one peer has room.) What waited is retried before anything new is taken,
so the outbox fills, producer threads wait, and memory stays bounded -- with
nothing dropped anywhere.

ZeroMQ's high-water mark counts messages, not bytes: a thousand 64 kB stream
messages held for a slow subscriber were 64 MB. So iopub also counts as full
while ``MAX_LENT_BYTES`` of large frames (sent zero-copy, ``zsend``) are still
held by ZeroMQ: their trackers say when it has let go of them. (The other
sockets carry replies, a few at a time; they are not tracked.) Small messages do
not count (lowering the mark instead cut comm throughput to a seventh: small
messages met it constantly). With the outbox's own bound in bytes, a flood to a
slow client holds about 2 MB of messages; measured, the kernel's resident
growth during the benchmarks' 200 MB flood went from 86-90 MB to ~10 MB.

The IO thread blocks every asynchronous signal, so none can interrupt it
mid-send (which lets ``zsend`` hand libzmq a whole message in one call) and
a process-directed signal is always taken by some other thread; the kernel
sees each one on its wake-up fd (``add_reader``) and makes sure it lands.

With a Curve key pair in the connection file every socket is a CurveZMQ
server before it binds (``io/curve.py``); libzmq encrypts below everything
here, so nothing else in this loop knows or cares. A channel the launcher
already listens on (``io/listening.py``) binds by taking that listening
descriptor (``ZMQ_USE_FD``), with the connections already queued on it.

Incoming messages that fail to decode are counted by reason, logged at a
limited rate, and dropped; the loop goes on. An exception that escapes the loop
itself is a bug: it is logged with its traceback and reported to ``on_fatal``
so the kernel can exit cleanly instead of hanging.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import heapq
import itertools
import logging
import os
import select
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import zmq

from threadline.io.curve import make_curve_server
from threadline.io.listening import close_all
from threadline.io.outbox import CALL, DEFAULT_MAX_BYTES, SIDE_CALL, Item, Outbox
from threadline.io.zsend import ASYNC_SIGNALS, FrameSender, SendError
from threadline.protocol import ConnectionInfo, Frame, Message, RemoteProtocolError, Session

log = logging.getLogger("threadline.io")

#: Channels in the order they are served on every wake-up.
RECEIVING_CHANNELS = ("control", "shell", "stdin")

Dispatcher = Callable[[str, Message], None]

#: How soon a send that found its socket full is retried: doubling from the
#: first to the last value while the socket stays full (seconds).
STALL_RETRY_FIRST = 0.001
STALL_RETRY_LAST = 0.016
#: How many bytes of large frames iopub may hold unsent before the IO thread
#: waits as for a full socket (see above).
MAX_LENT_BYTES = 1024 * 1024


class IOThreadError(RuntimeError):
    """A method was called from the wrong thread, or the IO thread failed to start."""


class IOThread:
    """Owns the sockets; receives, decodes, dispatches; sends what the outbox holds.

    Thread rules: ``start``, ``flush`` and ``stop`` are called from other threads;
    ``outbox.put`` and ``outbox.call_soon`` from any thread; ``call_later`` and
    ``add_reader`` only on the IO thread itself (they raise elsewhere).
    """

    def __init__(
        self,
        connection: ConnectionInfo,
        session: Session,
        dispatch: Dispatcher,
        *,
        on_subscribe: Callable[[bytes], None] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        outbox_capacity: int = 4096,
        outbox_max_bytes: int = DEFAULT_MAX_BYTES,
        max_lent_bytes: int = MAX_LENT_BYTES,
        iopub_hwm: int = 1000,
        linger_ms: int = 2000,
        listeners: dict[str, int] | None = None,
    ) -> None:
        self.connection = connection
        #: Channel -> a listening descriptor to bind with (``io/listening.py``); taken by ``_bind``.
        self._listeners = dict(listeners or {})
        self.session = session
        self.outbox = Outbox(outbox_capacity, outbox_max_bytes)
        self._max_lent_bytes = max_lent_bytes
        self.dropped: Counter[str] = Counter()
        self._dispatch = dispatch
        self._on_subscribe = on_subscribe
        self._on_fatal = on_fatal
        self._iopub_hwm = iopub_hwm
        self._linger_ms = linger_ms
        self._context = zmq.Context()
        self._sockets: dict[str, zmq.Socket[bytes]] = {}
        self._senders: dict[str, FrameSender] = {}
        #: Held by whichever thread uses the socket, for one operation (see above).
        self._locks: dict[str, threading.Lock] = {}
        #: Held by whichever thread receives from the socket, through the dispatch.
        self._receive_locks: dict[str, threading.Lock] = {}
        #: Held while items move from the outbox to ``_ready``, and by ``send_now``
        #: while it checks that nothing is queued: no message can slip past
        #: another in between.
        self._order_lock = threading.Lock()
        #: A receive found another thread receiving: look again soon.
        self._receive_busy = False
        #: Each socket's notification descriptor (``ZMQ_FD``).
        self._fds: dict[str, int] = {}
        #: Sockets the IO thread sent on since it last looked for input on them.
        self._touched: set[str] = set()
        self._closed = False
        self._ready: deque[Item] = deque()
        self._processing = False
        self._stalled: zmq.Socket[bytes] | None = None
        self._retry_at = 0.0
        self._retry_delay = STALL_RETRY_FIRST
        self._timers: list[tuple[float, int, Callable[[], object]]] = []
        self._readers: dict[int, Callable[[], object]] = {}
        self._poller: _Poller | None = None
        self._timer_seq = itertools.count()
        self._stop_deadline: float | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._flushed_cleanly = True
        self._thread = threading.Thread(target=self._main, name="threadline-io", daemon=True)

    # -- lifecycle (other threads) ---------------------------------------------------

    def start(self, timeout: float = 10.0) -> ConnectionInfo:
        """Bind the sockets on the IO thread and start serving.

        Returns the connection info with the ports actually bound (a port of 0
        in the input means "pick a free one").
        """
        self._thread.start()
        if not self._started.wait(timeout):
            raise IOThreadError("the IO thread did not start in time")
        if self._start_error is not None:
            raise IOThreadError(f"could not bind the kernel's sockets: {self._start_error}") from (
                self._start_error
            )
        return self.connection

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def is_io_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call was handed to ZeroMQ.

        Returns False (and logs) if that did not happen within ``timeout``.
        Refuses to run on the IO thread, where waiting would deadlock.
        """
        if self.is_io_thread():
            raise IOThreadError("flush() would deadlock on the IO thread")
        if not self._thread.is_alive() or self.outbox.closed:
            return not self.outbox
        done = threading.Event()
        self.outbox.call_soon(done.set)
        if done.wait(timeout):
            return True
        log.warning("flush gave up after %.1fs with %d messages still queued", timeout, len(self.outbox))
        return False

    def stop(self, timeout: float = 5.0) -> bool:
        """Send everything queued, then close the sockets. Returns whether all went out.

        After this, ``outbox.put`` raises ``OutboxClosed``.
        """
        if self.is_io_thread():
            raise IOThreadError("stop() must be called from another thread")
        if not self._thread.is_alive():
            self.outbox.close()
            return not self.outbox
        deadline = time.monotonic() + timeout
        with contextlib.suppress(RuntimeError):  # already closing
            self.outbox.call_soon(lambda: self._begin_stop(deadline))
        self.outbox.close()
        self._thread.join(max(0.0, deadline - time.monotonic()) + self._linger_ms / 1000 + 1.0)
        return self._flushed_cleanly and not self._thread.is_alive()

    # -- IO thread only ------------------------------------------------------------------

    def call_later(self, delay: float, function: Callable[[], object]) -> None:
        """Run ``function`` on the IO thread after ``delay`` seconds. IO thread only."""
        if not self.is_io_thread():
            raise IOThreadError("call_later() is for the IO thread; use outbox.call_soon()")
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), function))

    def add_reader(self, fd: int, on_readable: Callable[[], object]) -> None:
        """Call ``on_readable`` on the IO thread whenever ``fd`` is readable. IO thread only.

        The poll is level-triggered for plain descriptors: ``on_readable`` must
        read what is there (without blocking), or it is called again at once.
        """
        if not self.is_io_thread() or self._poller is None:
            raise IOThreadError("add_reader() is for the running IO thread; use outbox.call_soon()")
        self._readers[fd] = on_readable
        self._poller.register(fd)

    def replace_handlers(
        self,
        dispatch: Dispatcher,
        *,
        on_subscribe: Callable[[bytes], None] | None,
        on_fatal: Callable[[BaseException], None] | None,
    ) -> None:
        """Hand incoming messages, subscriptions and a fatal error to new handlers
        from now on (the kernel taking over from its boot). IO thread only."""
        if not self.is_io_thread():
            raise IOThreadError("replace_handlers() is for the IO thread; use outbox.call_soon()")
        self._dispatch, self._on_subscribe, self._on_fatal = dispatch, on_subscribe, on_fatal

    def receive_now(self, channel: str) -> None:
        """Read and dispatch everything ``channel`` holds right now. IO thread only."""
        if not self.is_io_thread():
            raise IOThreadError("receive_now() is for the IO thread")
        with self._receive_locks[channel]:  # everything, even if another thread is at it
            self._receive_locked(channel)

    def _begin_stop(self, deadline: float) -> None:
        self._stop_deadline = deadline

    def _main(self) -> None:
        # Signals go to other threads (the kernel watches them on a wake-up
        # fd): none can interrupt a send here, which the one-call send needs.
        signal.pthread_sigmask(signal.SIG_BLOCK, ASYNC_SIGNALS)
        try:
            self._bind()
        except BaseException as exc:  # reported to start(), which raises
            self._start_error = exc
            self._close_sockets(linger=0)
            close_all(self._listeners)
            self._started.set()
            return
        self.outbox.bind_io_thread(self._send_direct, self.send_now, self.send_all_now)
        self._started.set()
        try:
            self._loop()
        except BaseException as exc:
            log.critical("the IO thread failed; the kernel cannot go on", exc_info=True)
            self._flushed_cleanly = False
            self.outbox.close()
            if self._on_fatal is not None:
                try:
                    self._on_fatal(exc)
                except Exception:
                    log.exception("the fatal-error handler failed")
        finally:
            linger = self._linger_ms
            if self._stop_deadline is not None:
                linger = max(0, min(linger, int((self._stop_deadline - time.monotonic()) * 1000) + linger))
            self._close_sockets(linger=linger)

    def _bind(self) -> None:
        info = self.connection
        kinds = {"shell": zmq.ROUTER, "control": zmq.ROUTER, "stdin": zmq.ROUTER, "iopub": zmq.XPUB}
        ports: dict[str, int] = {}
        for channel, kind in kinds.items():
            sock: zmq.Socket[bytes] = self._context.socket(kind)
            sock.linger = 0
            if kind == zmq.ROUTER:
                # Unroutable replies raise instead of vanishing; a full pipe
                # says EAGAIN instead of dropping.
                sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            else:
                sock.setsockopt(zmq.SNDHWM, self._iopub_hwm)
                sock.setsockopt(zmq.XPUB_NODROP, 1)  # never drop: say EAGAIN
                sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, for welcomes
            make_curve_server(sock, info)  # before bind: see io/curve.py
            self._sockets[channel] = sock
            # Only iopub is bounded in bytes (see above): a flood goes there.
            self._senders[channel] = FrameSender(sock, track_lent=kind == zmq.XPUB)
            self._locks[channel] = threading.Lock()
            self._receive_locks[channel] = threading.Lock()
            ports[channel] = bind_socket(sock, info, channel, self._listeners.pop(channel, None))
        self.connection = info.with_ports(ports)
        # Ready before ``start`` returns, so that ``lend`` works from then on.
        poller = self._poller = _Poller()
        for channel, sock in self._sockets.items():
            fd = self._fds[channel] = int(sock.getsockopt(zmq.FD))
            poller.register(fd)
        poller.register(self.outbox.fileno())

    def _loop(self) -> None:
        poller = self._poller
        assert poller is not None
        fd_channel = {fd: channel for channel, fd in self._fds.items()}
        bell = self.outbox.fileno()
        bell_on = True
        # Sockets to drain on this pass: all of them at first (messages may have
        # arrived before the poll started).
        pending: set[str] = {*RECEIVING_CHANNELS, "iopub"}

        while True:
            # While a socket is full, stop listening to the doorbell, so the
            # outbox fills and producers wait; the poll timeout covers the retry.
            if bell_on != (self._stalled is None):
                bell_on = self._stalled is None
                poller.modify(bell, bell_on)

            # Sending may have consumed a socket's edge: look before sleeping.
            pending |= self._input_waiting()
            timeout = 0 if pending else self._poll_timeout()
            if self._receive_busy:
                self._receive_busy = False
                timeout = 1 if timeout is None else min(timeout, 1)
            events = poller.poll(timeout)
            pending.update(fd_channel[fd] for fd in events if fd in fd_channel)

            for channel in RECEIVING_CHANNELS:
                if channel in pending:
                    self._receive_all(channel)
            if "iopub" in pending:
                self._receive_subscriptions()
            pending.clear()
            if self._stalled is not None and time.monotonic() >= self._retry_at:
                self._stalled = None
                self._process_ready()  # what waited goes first, before anything new is taken
                if self._stalled is None:
                    self._retry_delay = STALL_RETRY_FIRST
                    self.outbox.stalled = False
            if self._stalled is None:
                self._take_batch()
            self._process_ready()
            self._run_due_timers()
            if self._readers:
                for fd, on_readable in list(self._readers.items()):
                    if fd in events:
                        self._run_call(on_readable)

            if self._stop_deadline is not None:
                if not self._ready and not self.outbox and self._stalled is None:
                    return
                if time.monotonic() >= self._stop_deadline:
                    self._flushed_cleanly = False
                    log.warning(
                        "closing with %d messages unsent (a client is not reading)",
                        len(self._ready) + len(self.outbox),
                    )
                    return

    def _input_waiting(self) -> set[str]:
        """The sockets the IO thread sent on since it last drained them that hold input now."""
        waiting: set[str] = set()
        for channel in self._touched:
            with self._locks[channel]:
                if _events(self._sockets[channel]) & _POLLIN:
                    waiting.add(channel)
        self._touched.clear()
        return waiting

    def _poll_timeout(self) -> int | None:
        """Milliseconds until the next timer (or stop deadline); None for no limit."""
        nearest = self._timers[0][0] if self._timers else None
        if self._stalled is not None and (nearest is None or self._retry_at < nearest):
            nearest = self._retry_at
        if self._stop_deadline is not None and (nearest is None or self._stop_deadline < nearest):
            nearest = self._stop_deadline
        if self._stop_deadline is not None and self._stalled is None and not self._ready and not self.outbox:
            return 0
        if nearest is None:
            return None
        return max(0, int((nearest - time.monotonic()) * 1000) + 1)

    def _run_due_timers(self) -> None:
        timers = self._timers
        if not timers:
            return
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, function = heapq.heappop(timers)
            self._run_call(function)

    # -- receiving -----------------------------------------------------------------

    def _receive_all(self, channel: str) -> None:
        receiving = self._receive_locks[channel]
        if not receiving.acquire(blocking=False):
            # Another thread is receiving (a lent socket): it reads until the
            # socket is empty. Look again shortly, in case it stopped just before
            # a message arrived.
            self._receive_busy = True
            return
        try:
            self._receive_locked(channel)
        finally:
            receiving.release()

    def receive_here(self, channel: str) -> int:
        """Receive and dispatch, on the calling thread, everything ``channel`` holds now.

        For a thread that was lent the socket (``lend``), when its descriptor
        is readable. If another thread is receiving from it just then, that
        thread reads it empty, and this returns at once. Returns how many
        messages were dispatched here.
        """
        if self.is_io_thread():
            raise IOThreadError("receive_here() is for the thread the socket was lent to")
        receiving = self._receive_locks[channel]
        if not receiving.acquire(blocking=False):
            return 0
        try:
            return 0 if self._closed else self._receive_locked(channel)
        finally:
            receiving.release()

    def lend(self, channel: str) -> int | None:
        """Let the calling thread receive ``channel`` while it waits; the IO thread stops watching it.

        Returns the socket's descriptor to watch (readable: call ``receive_here``),
        or None when receiving cannot be lent here (no ``epoll``, not running).
        Safe from any thread; undo with ``reclaim``.
        """
        poller = self._poller
        fd = self._fds.get(channel)
        if poller is None or not poller.can_change_while_waiting or fd is None or self._closed:
            return None
        try:
            poller.modify(fd, False)
        except OSError:  # the sockets closed just now
            return None
        return fd

    def reclaim(self, channel: str) -> None:
        """The IO thread watches ``channel`` again (after ``lend``). Safe from any thread."""
        poller, fd = self._poller, self._fds[channel]
        assert poller is not None
        with self._locks[channel]:
            if self._closed:
                return
            poller.modify(fd, True)
            # The lender's own receives and sends may have consumed the descriptor's
            # edge: if input is waiting, have the IO thread look.
            waiting = bool(_events(self._sockets[channel]) & _POLLIN)
        if waiting:
            self._look_at(channel)

    def _look_at(self, channel: str) -> None:
        """From another thread: make the IO thread check ``channel`` for input."""
        with contextlib.suppress(RuntimeError):  # closed: nothing more is received
            self.outbox.call_soon(functools.partial(self._touched.add, channel))

    def _receive_locked(self, channel: str) -> int:
        """Receive and dispatch until ``channel`` is empty; how many messages were dispatched."""
        session, sock, lock = self.session, self._sockets[channel], self._locks[channel]
        dispatched = 0
        first = True
        while True:
            # The socket lock is held for the receive only: dispatching may send on it.
            with lock:
                if self._closed:
                    return dispatched
                # After a message, look before receiving again: the receive that
                # finds nothing raises zmq.Again, whose construction costs more
                # than the look (4.5 us against 1.9 in a loop; it was 8 % of the
                # main thread's samples answering kernel_info).
                if not first and not _events(sock) & _POLLIN:
                    return dispatched
                first = False
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return dispatched
            try:
                message = session.decode(frames)
            except RemoteProtocolError as exc:
                self._note_dropped(channel, exc)
                continue
            dispatched += 1
            try:
                self._dispatch(channel, message)
            except Exception:
                log.exception("dispatching %s on %s failed", message.msg_type, channel)

    def _receive_subscriptions(self) -> None:
        sock, lock = self._sockets["iopub"], self._locks["iopub"]
        while True:
            with lock:
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    return
            if frame[:1] == b"\x01" and self._on_subscribe is not None:
                try:
                    self._on_subscribe(frame[1:])
                except Exception:
                    log.exception("the subscription handler failed")

    def _note_dropped(self, channel: str, exc: RemoteProtocolError) -> None:
        """Count every drop; log the first of each reason, then every 1000th."""
        key = f"{channel}:{exc.reason}"
        self.dropped[key] += 1
        count = self.dropped[key]
        if count == 1 or count % 1000 == 0:
            log.warning("dropped an invalid message on %s (%s; %d so far)", channel, exc, count)

    # -- sending -------------------------------------------------------------------

    def _send_direct(self, channel: str, frames: list[Frame]) -> None:
        """A send made on the IO thread: at once, unless something is ahead of it."""
        if not self._ready and not self.outbox and self._stalled is None:
            if self._try_send(channel, frames):
                return
            self._ready.append((channel, frames))
            return
        # Messages queued before this one must go first.
        if self._stalled is not None:
            # The outbox holds messages queued before this one, and stays
            # untaken until the socket has room: queue behind them.
            self.outbox.append_from_io_thread((channel, frames))
            return
        self._take_batch()
        self._ready.append((channel, frames))
        self._process_ready()

    def _process_ready(self) -> None:
        if self._processing:
            return  # a call running inside this loop sent something; it is queued
        self._processing = True
        ready = self._ready
        try:
            while ready and self._stalled is None:
                kind, payload = ready[0]
                if kind in (CALL, SIDE_CALL):
                    ready.popleft()
                    self._run_call(payload)  # type: ignore[arg-type]
                elif self._try_send(kind, payload):  # type: ignore[arg-type]
                    ready.popleft()
        finally:
            self._processing = False
        self.outbox.signal_room()

    def _try_send(self, channel: str, frames: list[Frame]) -> bool:
        """True when ZeroMQ took the message (or it can never be delivered)."""
        self._touched.add(channel)
        sender = self._senders[channel]
        if sender.lent_bytes >= self._max_lent_bytes and sender.still_lent() >= self._max_lent_bytes:
            self._stall(channel)  # full, in bytes
            return False
        try:
            with self._locks[channel]:
                sender.send(frames)
        except SendError as exc:
            if exc.errno == errno.EAGAIN:
                self._stall(channel)  # full, in messages
                return False
            self._note_undeliverable(channel, exc)
        return True

    def _stall(self, channel: str) -> None:
        """``channel`` cannot take the next message: stop, and retry on a timer."""
        self._stalled = self._sockets[channel]
        self.outbox.stalled = True
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(2 * self._retry_delay, STALL_RETRY_LAST)

    def _note_undeliverable(self, channel: str, exc: SendError) -> None:
        if exc.errno == errno.EHOSTUNREACH:
            # The client this reply is for has gone away.
            self.dropped[f"{channel}:unroutable"] += 1
            log.debug("dropped a %s message for a client that is gone", channel)
        else:
            self.dropped[f"{channel}:send-error"] += 1
            log.error("could not send on %s: %s", channel, exc)

    def _take_batch(self) -> None:
        with self._order_lock:
            self._ready.extend(self.outbox.take_batch())

    def send_now(self, channel: str, frames: list[Frame]) -> bool:
        """Send from any thread but the IO thread, at once, if nothing stands in the way.

        True when the message is dealt with (sent, or undeliverable and counted);
        False when it must be queued instead: something is queued or waiting
        ahead of it (it must not overtake), the socket is full, the IO thread
        is using the socket this moment, or the message does not fit one call
        (``FrameSender.send_atomically``).
        """
        with self._order_lock:
            # Items leave ``_ready`` only once sent: if both are empty, everything
            # queued before this message is already on its way.
            if self._ready or self._stalled is not None or self.outbox.ahead or self._closed:
                return False
        lock = self._locks.get(channel)
        if lock is None or not lock.acquire(blocking=False):
            return False
        try:
            if self._closed:
                return False
            sock = self._sockets[channel]
            try:
                if not self._senders[channel].send_atomically(frames):
                    return False
            except SendError as exc:
                if exc.errno == errno.EAGAIN:
                    return False  # full: the IO thread waits for room, in order
                self._note_undeliverable(channel, exc)
            # The send may have consumed the edge that would wake the IO thread.
            input_waiting = bool(_events(sock) & _POLLIN)
        finally:
            lock.release()
        if input_waiting:
            self._look_at(channel)
        return True

    def send_all_now(self, items: list[tuple[str, list[Frame]]]) -> int:
        """``send_now`` for several messages, in order, handed over together: one look
        at what is queued, one signal mask for all (a request answered on the spot
        sends busy, its reply and idle). Returns how many of the first were dealt
        with (sent, or undeliverable and counted); the caller queues the rest.
        """
        with self._order_lock:
            if self._ready or self._stalled is not None or self.outbox.ahead or self._closed:
                return 0
        channels = list(dict.fromkeys(channel for channel, _ in items))
        held: list[threading.Lock] = []
        waiting: list[str] = []
        try:
            for channel in channels:
                lock = self._locks.get(channel)
                if lock is None or not lock.acquire(blocking=False):
                    return 0
                held.append(lock)
            if self._closed:
                return 0
            senders = self._senders
            pairs = [(senders[channel], frames) for channel, frames in items]
            dealt, refused = pairs[0][0].send_all_atomically(pairs)
            for index, error in refused:
                self._note_undeliverable(items[index][0], SendError(error))
            for channel in channels:
                # A send may have consumed the edge that would wake the IO thread.
                if _events(self._sockets[channel]) & _POLLIN:
                    waiting.append(channel)
        finally:
            for lock in held:
                lock.release()
        for channel in waiting:
            self._look_at(channel)
        return dealt

    def _run_call(self, function: Callable[[], object]) -> None:
        try:
            function()
        except Exception:
            log.exception("a call on the IO thread failed")

    def _close_sockets(self, linger: int) -> None:
        self._closed = True
        for channel, sock in self._sockets.items():
            lock = self._locks.get(channel)
            with lock if lock is not None else contextlib.nullcontext():
                sock.close(linger=linger)
        self._context.term()
        self.outbox.release()


class _Poller:
    """``select.epoll`` where there is one, else ``select.poll``: descriptors, readable or not.

    Only an epoll's watch list may be changed by another thread while the IO
    thread waits in it (``can_change_while_waiting``): ``lend`` relies on that.
    """

    def __init__(self) -> None:
        epoll = getattr(select, "epoll", None)
        self.can_change_while_waiting = epoll is not None
        self._epoll = epoll() if epoll is not None else None
        self._poll = select.poll() if epoll is None else None

    def register(self, fd: int) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            assert self._poll is not None
            self._poll.register(fd, select.POLLIN)

    def modify(self, fd: int, readable: bool) -> None:
        """Watch ``fd`` for readability, or keep it registered but ignore it."""
        if self._epoll is not None:
            self._epoll.modify(fd, select.EPOLLIN if readable else 0)
        else:
            assert self._poll is not None
            self._poll.modify(fd, select.POLLIN if readable else 0)

    def poll(self, timeout_ms: int | None) -> set[int]:
        """The descriptors that are ready; waits up to ``timeout_ms`` (None: no limit)."""
        if self._epoll is not None:
            return {fd for fd, _ in self._epoll.poll(-1 if timeout_ms is None else timeout_ms / 1000)}
        assert self._poll is not None
        return {fd for fd, _ in self._poll.poll(-1 if timeout_ms is None else timeout_ms)}


#: Plain ints: ``events & zmq.POLLIN`` would build a ``PollEvent`` flag through
#: the enum machinery on every look (1 us of the 2.9 a look cost; it runs after
#: every message sent from a thread other than the IO thread).
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def _events(sock: zmq.Socket[bytes]) -> int:
    """The socket's ``ZMQ_EVENTS`` (which also processes its pending commands)."""
    events = sock.getsockopt(_EVENTS)
    assert isinstance(events, int)
    return events


def bind_socket(sock: zmq.Socket[Any], info: ConnectionInfo, channel: str, listener: int | None) -> int:
    """Bind ``sock`` for ``channel``; with ``listener``, by taking that listening descriptor."""
    port = info.port(channel)
    if listener is not None:
        if hasattr(zmq, "USE_FD"):  # libzmq >= 4.2
            sock.setsockopt(zmq.USE_FD, listener)  # libzmq owns it from here on
        else:
            os.close(listener)
    if info.transport == "tcp" and port == 0:
        return sock.bind_to_random_port(f"tcp://{info.ip}")
    if info.transport == "ipc" and port == 0:
        # As jupyter_client does: the first "ip-N" path not yet taken.
        candidate = 1
        while os.path.exists(f"{info.ip}-{candidate}"):
            candidate += 1
        sock.bind(f"ipc://{info.ip}-{candidate}")
        return candidate
    sock.bind(info.url(channel))
    return port
