"""The IO thread: the only code that touches the kernel's ZeroMQ sockets.

Theory of operation
-------------------
One thread owns the shell, control, stdin and iopub sockets. Its loop polls the
sockets and the outbox's doorbell, then in this order:

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

The IO thread blocks every asynchronous signal, so none can interrupt it
mid-send (which lets ``zsend`` hand libzmq a whole message in one call) and
a process-directed signal is always taken by some other thread; the kernel
sees each one on its wake-up fd (``add_reader``) and makes sure it lands.

With a Curve key pair in the connection file every socket is a CurveZMQ
server before it binds (``io/curve.py``); libzmq encrypts below everything
here, so nothing else in this loop knows or cares.

Incoming messages that fail to decode are counted by reason, logged at a
limited rate, and dropped; the loop goes on. An exception that escapes the loop
itself is a bug: it is logged with its traceback and reported to ``on_fatal``
so the kernel can exit cleanly instead of hanging.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import zmq

from threadline.io.curve import make_curve_server
from threadline.io.outbox import CALL, Item, Outbox
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
        iopub_hwm: int = 1000,
        linger_ms: int = 2000,
    ) -> None:
        self.connection = connection
        self.session = session
        self.outbox = Outbox(outbox_capacity)
        self.dropped: Counter[str] = Counter()
        self._dispatch = dispatch
        self._on_subscribe = on_subscribe
        self._on_fatal = on_fatal
        self._iopub_hwm = iopub_hwm
        self._linger_ms = linger_ms
        self._context = zmq.Context()
        self._sockets: dict[str, zmq.Socket[bytes]] = {}
        self._senders: dict[str, FrameSender] = {}
        self._ready: deque[Item] = deque()
        self._processing = False
        self._stalled: zmq.Socket[bytes] | None = None
        self._retry_at = 0.0
        self._retry_delay = STALL_RETRY_FIRST
        self._timers: list[tuple[float, int, Callable[[], object]]] = []
        self._readers: dict[int, Callable[[], object]] = {}
        self._poller: zmq.Poller | None = None
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
        self._poller.register(fd, zmq.POLLIN)

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
        self._receive_all(self._sockets[channel], channel)

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
            self._started.set()
            return
        self.outbox.bind_io_thread(self._send_direct)
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
            self._senders[channel] = FrameSender(sock)
            ports[channel] = _bind_socket(sock, info, channel)
        self.connection = info.with_ports(ports)

    def _loop(self) -> None:
        poller = self._poller = zmq.Poller()
        receivers = [self._sockets[name] for name in RECEIVING_CHANNELS]
        channel_of = {id(self._sockets[name]): name for name in RECEIVING_CHANNELS}
        iopub = self._sockets["iopub"]
        for sock in receivers:
            poller.register(sock, zmq.POLLIN)
        poller.register(iopub, zmq.POLLIN)
        bell = self.outbox.fileno()
        poller.register(bell, zmq.POLLIN)
        bell_on = True

        while True:
            # While a socket is full, stop listening to the doorbell, so the
            # outbox fills and producers wait; the poll timeout covers the retry.
            if bell_on != (self._stalled is None):
                bell_on = self._stalled is None
                poller.modify(bell, zmq.POLLIN if bell_on else 0)

            events = dict(poller.poll(self._poll_timeout()))

            for sock in receivers:
                if sock in events:
                    self._receive_all(sock, channel_of[id(sock)])
            if iopub in events:
                self._receive_subscriptions(iopub)
            if self._stalled is not None and time.monotonic() >= self._retry_at:
                self._stalled = None
                self._process_ready()  # what waited goes first, before anything new is taken
                if self._stalled is None:
                    self._retry_delay = STALL_RETRY_FIRST
                    self.outbox.stalled = False
            if self._stalled is None:
                self._ready.extend(self.outbox.take_batch())
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

    def _receive_all(self, sock: zmq.Socket[bytes], channel: str) -> None:
        session = self.session
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                message = session.decode(frames)
            except RemoteProtocolError as exc:
                self._note_dropped(channel, exc)
                continue
            try:
                self._dispatch(channel, message)
            except Exception:
                log.exception("dispatching %s on %s failed", message.msg_type, channel)

    def _receive_subscriptions(self, sock: zmq.Socket[bytes]) -> None:
        while True:
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
        self._ready.extend(self.outbox.take_batch())
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
                if kind == CALL:
                    ready.popleft()
                    self._run_call(payload)  # type: ignore[arg-type]
                elif self._try_send(kind, payload):  # type: ignore[arg-type]
                    ready.popleft()
        finally:
            self._processing = False
        self.outbox.signal_room()

    def _try_send(self, channel: str, frames: list[Frame]) -> bool:
        """True when ZeroMQ took the message (or it can never be delivered)."""
        try:
            self._senders[channel].send(frames)
        except SendError as exc:
            if exc.errno == errno.EAGAIN:
                self._stalled = self._sockets[channel]
                self.outbox.stalled = True
                self._retry_at = time.monotonic() + self._retry_delay
                self._retry_delay = min(2 * self._retry_delay, STALL_RETRY_LAST)
                return False
            if exc.errno == errno.EHOSTUNREACH:
                # The client this reply is for has gone away.
                self.dropped[f"{channel}:unroutable"] += 1
                log.debug("dropped a %s message for a client that is gone", channel)
            else:
                self.dropped[f"{channel}:send-error"] += 1
                log.error("could not send on %s: %s", channel, exc)
        return True

    def _run_call(self, function: Callable[[], object]) -> None:
        try:
            function()
        except Exception:
            log.exception("a call on the IO thread failed")

    def _close_sockets(self, linger: int) -> None:
        for sock in self._sockets.values():
            sock.close(linger=linger)
        self._context.term()
        self.outbox.release()


def _bind_socket(sock: zmq.Socket[Any], info: ConnectionInfo, channel: str) -> int:
    port = info.port(channel)
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
