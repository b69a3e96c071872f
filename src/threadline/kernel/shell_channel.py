"""Serving the shell channel: one request at a time, on the thread that owns its loop.

Theory of operation
-------------------
Each channel belongs to one thread (the main thread for the main shell, a
thread of its own for a subshell or the comm worker) and to that thread's
asyncio loop. The IO thread decodes shell requests and posts them, in arrival
order, to the channel (``post``: an append to a deque, plus a ring of the
channel's doorbell only when the serving thread is waiting for work).
``ShellChannel.serve`` takes them one by one. For each it makes the request
the origin of all output (``routing.set_origin``), publishes ``busy``, runs the
handler, flushes every thread's stream text for this request, sends the reply,
and publishes ``idle``.

An execute request that finds the channel idle (nothing queued, nothing
running) is announced by the thread that posts it, right after it wakes the
serving thread: ``busy`` and ``execute_input`` leave while the serving thread
wakes up. They are the same messages in the same order as when the serving
thread sends them (nothing of this channel can come between, and the serving
thread waits for the announcement to finish before it sends anything).

The main shell receives its own requests while it waits for them: the kernel
lends it the shell socket (``InputLender``, see ``IOThread.lend``), its loop
watches the socket, and what arrives is dispatched right there -- its own
requests are posted to itself, others (comms, subshells) go where they
belong. So a request reaches an idle main thread with one wake-up instead of
two. While it handles a request the IO thread receives, as always.

Requests that come back to back meet a thread that is still awake: when the
previous request came within the lender's poll window (``poll_window``, 1 ms)
of its wait's start, the next wait first *polls* the lent descriptor for up
to that long -- a zero-timeout ``poll`` per round, which hands the GIL to any
thread that wants it -- and sleeps in the loop only after. Waking a sleeping
thread costs more than the work of a short request on a small VM (its vCPU
goes idle, and the wake-up goes through the host): measured, 8 fresh kernels
each way with xeus-python's interleaved, twice, a ``pass`` round trip 0.746
-> 0.571 and 0.894 -> 0.630 ms median (1.04x -> 0.80x and 0.98x -> 0.69x
xeus-python's), ``kernel_info`` 0.390 -> 0.347 and 0.471 -> 0.366 ms, for 6 %
more CPU time over the whole run. Adaptive, as spin-then-block locks are: a
request after a quiet spell (a person typing) costs no polling at all; a
stream of them (a notebook run by nbclient, a test suite, a widget's
requests) costs at most the window after each. The poll gives way to
anything else the loop should do (a callback or timer on it: the loop then
runs), and the lender offers no window while a GUI toolkit's loop needs the
wait or when the process may use only one CPU. And it backs off when it does
not pay: on a busy machine the next request does not come while this thread
polls, because the poll holds a CPU the client needs to send it. Two windows
in a row that ran out with nothing caught stop the polling for 1 ms, doubled
after each further miss up to a second and halved after each catch (see
``_POLL_BACKOFF``). With a CPU-bound process beside kernel and client on 2
cores, 10 fresh kernels each way, interleaved: kernel CPU time per ``pass``
round trip 665 -> 512 us, its p99 2.07 -> 1.68 ms, ``kernel_info``'s p99
1.91 -> 0.76 ms; on the idle machine the same within noise (median 0.446 ->
0.468 ms, p99 1.23 -> 1.24).

A cell that raises with ``stop_on_error`` aborts the execute requests that were
queued before its reply (other requests are answered as usual). To know exactly
which, the kernel asks the IO thread -- before the error reply goes out -- to
read everything the shell socket holds and then post an ``ABORT_END`` marker;
every execute request dequeued before the marker gets an ``aborted`` reply.

Interrupts: SIGINT lands on the main thread (``kernel.interrupts`` makes sure
it does). While a synchronous cell runs (a plain one, ``asyncio.run`` inside
it included, or a trio cell), the handler raises ``KeyboardInterrupt`` in it;
while an asynchronous cell is awaited on the loop, it cancels that cell's task
instead (raising inside the event loop would stop the loop itself); between
cells it does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import nullcontext
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Final, Protocol

from IPython.core.async_helpers import _asyncio_runner, _trio_runner
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell

from threadline import routing
from threadline.io import Doorbell, Outbox, Sender
from threadline.kernel import requests
from threadline.kernel.comms import CommManager, comm_info, handle_comm_message
from threadline.kernel.interrupts import InterruptDelivery
from threadline.kernel.stdin import wait as stdin_wait
from threadline.kernel.trio_cells import TrioCell
from threadline.protocol import Message, error_content, reply_type
from threadline.routing import Parent
from threadline.shell.interactive import ThreadlineShell

log = logging.getLogger("threadline.kernel")

#: Seconds between an ``exit`` cell's reply and the kernel shutting itself down.
EXIT_GRACE_PERIOD: Final = 2.0
ABORT_END: Final = "abort-end"
STOP: Final = "stop"
QueueItem = Message | str

COMM_TYPES: Final = frozenset({"comm_open", "comm_msg", "comm_close"})


class InputLender(Protocol):
    """Lends a channel's thread the socket its requests arrive on, while it waits for them."""

    def lend(self) -> int | None:
        """The descriptor to watch while waiting (None: not now; the IO thread receives)."""

    def receive(self) -> int:
        """The descriptor is readable: receive and dispatch on this thread; how many came."""

    def reclaim(self) -> None:
        """The wait is over: the IO thread receives again."""

    def poll_window(self) -> float:
        """Seconds a wait after a quick request may poll the descriptor before it sleeps (0: none)."""


class ShellChannel:
    """Handles shell requests on the thread running its event loop."""

    def __init__(
        self,
        shell: ThreadlineShell,
        sender: Sender,
        comm_manager: CommManager,
        *,
        flush_streams: Callable[[Parent | None], None],
        request_abort_marker: Callable[[ShellChannel], None],
        on_exit_requested: Callable[[], None],
        supported_features: list[str],
        subshell_id: str | None = None,
    ) -> None:
        self.shell = shell
        self.sender = sender
        self.comm_manager = comm_manager
        self._flush_streams = flush_streams
        self._request_abort_marker = request_abort_marker
        self._on_exit_requested = on_exit_requested
        self._supported_features = supported_features
        #: None for the main shell (and the comm worker); a subshell keeps its own count.
        self.subshell_id = subshell_id
        self._own_count = 1
        #: Posted requests and markers, oldest first (appended by any thread).
        self._queue: deque[QueueItem] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: True only while the serving thread waits in ``_next_request`` (its loop running).
        self._waiting = False
        #: Rung by ``post`` to wake that wait (a reader on the loop; see io/doorbell.py).
        self._bell = Doorbell()
        #: Set by the kernel for the main shell (see the module's docstring).
        self.input_lender: InputLender | None = None
        #: The lent descriptor the loop has a reader on (kept from one wait to the next).
        self._reading: int | None = None
        #: Polls the lent descriptor and the doorbell without waiting (``_poll_lent``;
        #: made with the first lent descriptor: lending needs epoll, so poll is there).
        self._polling: select.poll | None = None
        #: When this thread last became free for a request (``perf_counter``), and
        #: whether the last request came within the poll window of that.
        self._free_since = 0.0
        self._quick = False
        #: No polling before this ``perf_counter`` time: the back-off after windows
        #: that ran out with nothing caught (``_poll_lent``), its current length,
        #: and how many windows in a row have run out.
        self._poll_after = 0.0
        self._poll_backoff = 0.0
        self._poll_misses = 0
        self._serving_ident: int | None = None
        #: The request the IO thread announced (busy, execute_input) as it posted it,
        #: and the lock it holds while it does (the serving thread waits for it).
        self._announced: Message | None = None
        self._announcing = threading.Lock()
        self._aborting = False
        self._sync_cell_running = False
        #: An execute request is under way whose cell has not started yet (set as
        #: its ``execute_input`` goes out), and whether a SIGINT came meanwhile:
        #: the cell then starts interrupted (see ``on_sigint``).
        self._cell_on_its_way = False
        self._interrupted_on_its_way = False
        #: Taken by ``_starts_interrupted`` and by ``interrupt_before_start`` (an
        #: interrupt from another thread). Never by the SIGINT handler.
        self._start_lock = threading.Lock()
        self._interrupt_deferrals = 0
        #: Cells started, and which of them an interrupt sent again is for (one
        #: that arrives after its cell ended is dropped).
        self._cells_started = 0
        self._resent_for: int | None = None
        # Requests posted (written by the posting thread only) and finished
        # (written by the serving thread only): equal means nothing is queued
        # or running, so a request answered elsewhere now cannot overtake one.
        self._posted = 0
        self._finished = 0
        self._async_cell: asyncio.Future[Any] | None = None
        self._trio_cell: TrioCell | None = None
        #: Set by the kernel for the main shell: makes every SIGINT reach ``on_sigint``.
        self.interrupt_delivery: InterruptDelivery | None = None
        #: Asked first by the SIGINT handler, with the interrupted frame: True means
        #: "not here" (the debugger has this thread stopped; it resumes the thread and
        #: delivers the interrupt again).
        self.defer_interrupt: Callable[[FrameType | None], bool] | None = None
        #: Called by the SIGINT handler when no cell runs here (the kernel then
        #: interrupts its background cells). Must be signal-safe.
        self.on_idle_interrupt: Callable[[], None] | None = None
        #: Called after each comm message this channel handled (the kernel wakes the
        #: main loop: see ``Kernel._wake_main_loop``).
        self.after_comm: Callable[[], None] | None = None

    @property
    def cell_running(self) -> bool:
        return self._sync_cell_running or self._async_cell is not None

    @property
    def loop_running(self) -> bool:
        """Whether this channel's loop runs now: waiting for a request, or for an await cell."""
        return self._waiting or self._async_cell is not None

    @property
    def sync_cell_running(self) -> bool:
        return self._sync_cell_running

    def interrupt_async_cell(self) -> bool:
        """Cancel the running async cell, if there is one. Safe from any thread."""
        trio_cell = self._trio_cell
        if trio_cell is not None:
            self.shell.interrupting_async_cell = True
            return trio_cell.cancel()
        cell = self._async_cell
        if cell is None or self._loop is None:
            return False
        self.shell.interrupting_async_cell = True
        self._loop.call_soon_threadsafe(cell.cancel)
        return True

    # -- feeding (IO thread) -------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop of the thread that will call ``serve`` (set once, before any post).

        ``asyncio.get_event_loop()`` in a plain cell is this loop, and a script's
        closing ``loop.close()`` must not close the loop the kernel waits in: it
        is made to warn instead (``close_loop`` really closes it, at the end).
        """
        self._loop = loop
        loop.close = _keep_open  # type: ignore[method-assign]
        loop.add_reader(self._bell.fileno(), self._on_bell)

    def close_loop(self) -> None:
        """Really close the bound loop, and the doorbell (when the serving thread ends)."""
        loop = self._loop
        assert loop is not None
        self._stop_reading()
        loop.remove_reader(self._bell.fileno())
        type(loop).close(loop)
        self._bell.close()

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing running, no abort under way (read by the IO thread)."""
        return self._posted == self._finished and not self._aborting

    def post_request(self, message: Message) -> None:
        """Queue a request for the shell. Called by the IO thread only (it counts them)."""
        if message.msg_type != "execute_request" or not self.idle:
            self._posted += 1
            self.post(message)
            return
        # The serving thread is woken first, so that its wake-up overlaps the
        # announcement; it waits for ``_announcing`` before it sends anything.
        with self._announcing:
            self._announced = message
            self._posted += 1
            self.post(message)
            self._announce(message)

    def _announce(self, message: Message) -> None:
        """Channel idle: publish the request's ``busy`` and ``execute_input`` now.

        Exactly what ``_handle`` and ``_execute`` would publish first (see the
        module's docstring); the execution count is read here, where nothing
        can change it: no cell runs on this channel.
        """
        parent = message.header_json
        self._cell_on_its_way = True
        self.sender.publish("status", {"execution_state": "busy"}, parent=parent)
        content = message.content
        code = content.get("code", "")
        if isinstance(code, str) and not content.get("silent", False):
            count = self._own_count if self.subshell_id is not None else self.shell.execution_count
            self.sender.publish("execute_input", {"code": code, "execution_count": count}, parent=parent)

    def post(self, item: QueueItem) -> None:
        """Queue a request (or marker) for the shell. Safe from any thread.

        The serving thread is woken only if it is waiting for work: a request
        that arrives while a cell runs costs an append, nothing more. (It sets
        ``_waiting`` before it looks at the queue a last time, and this looks
        at ``_waiting`` after appending, so one of the two always sees the
        other; a wake-up that comes late is harmless, see ``_next_request``.)
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("the shell channel has no event loop yet")
        self._queue.append(item)
        if self._waiting:
            if threading.get_ident() == self._serving_ident:
                self._wake()  # received here, inside the wait
            else:
                self._bell.ring()

    def _on_bell(self) -> None:
        self._bell.drain()
        self._wake()

    def _wake(self) -> None:
        """On the serving thread, inside its loop: end the wait for a request (a late
        wake-up, after the wait ended -- during an awaiting cell, say -- does nothing)."""
        if self._waiting and self._loop is not None and self._loop.is_running():
            self._loop.stop()  # (not while ``_poll_lent`` runs: it sees the queue itself)

    # -- serving (the channel's own thread) ------------------------------------------------

    def serve(self) -> None:
        """Handle requests until a STOP marker arrives. Call with the loop not running."""
        self._serving_ident = threading.get_ident()
        while True:
            item = self._next_request()
            if item == STOP:
                return
            if item == ABORT_END:
                self._aborting = False
                continue
            assert isinstance(item, Message)
            try:
                self._handle(item)
            except Exception:
                log.exception("handling %s failed", item.msg_type)
            finally:
                self._finished += 1

    def _next_request(self) -> QueueItem:
        """The wait between requests: run the loop until something is posted.

        This is the channel's only idle wait, and with ``_run_on_loop`` the only
        place its loop runs: tasks that cells started make progress here. (A
        GUI integration that runs a toolkit's loop while the kernel is idle does
        so inside this ``run_forever``, through the loop's selector.) ``post``
        stops the loop (``_wake``). A request that is here before the loop ran
        (queued already, posted just as the wait began, or polled for) is
        taken after one turn of the loop, if it has anything to do
        (``_turn_loop``).
        """
        queue = self._queue
        loop = self._loop
        assert loop is not None
        lender = self.input_lender
        self._free_since = time.perf_counter()
        turned = False
        while not queue:
            self._waiting = True
            lent = lender.lend() if lender is not None else None
            if lent != self._reading:  # so during a wait, a reader means this wait was lent it
                self._stop_reading()
                if lent is not None:
                    loop.add_reader(lent, self._receive_lent)
                    self._watch(lent)
                    self._reading = lent
            try:
                if lent is not None and self._quick and not queue:
                    assert lender is not None
                    self._poll_lent(lender)
                if not queue:  # a post that came before ``_waiting`` was set did not wake us
                    turned = True
                    loop.run_forever()
            except (Exception, KeyboardInterrupt, SystemExit):
                # A task that raised SystemExit or KeyboardInterrupt ends the
                # loop's run, not the kernel.
                log.exception("a task stopped the event loop between cells")
            finally:
                self._waiting = False
                if lent is not None:
                    assert lender is not None
                    lender.reclaim()
        if lender is not None:
            self._quick = self._came_quickly(lender, time.perf_counter())
        if not turned and _loop_has_work(loop):
            self._turn_loop(loop)
        return queue.popleft()

    def _turn_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """One turn of the loop, without waiting: what is ready runs, then the next request.

        So tasks that cells started go on across a run of queued cells ("Run
        All"), one step between two cells, as under ipykernel (measured: a
        task counting its steps advanced by one between each of ten cells sent
        at once; here it did not advance at all before). Not a wait: the loop
        is not lent the socket, and a post does not stop it (``_waiting`` is
        False); it stops itself after one turn.
        """
        try:
            loop.call_soon(loop.stop)
            loop.run_forever()
        except (Exception, KeyboardInterrupt, SystemExit):
            log.exception("a task stopped the event loop between cells")

    def _poll_lent(self, lender: InputLender) -> None:
        """Before sleeping: poll the lent descriptor for the next request, for up to
        the lender's window after this thread became free.

        Each round is a zero-timeout ``poll`` (the GIL is free meanwhile: a
        thread that wants it takes it). A readable descriptor is received
        from at once, as the loop's reader would; a request answered right
        there (``kernel_info``) starts the window again. A ring of the
        doorbell (a post from another thread) is drained here, since the
        loop will not run for it. Ends as soon as the loop has anything to do
        -- a callback scheduled from any thread, a timer -- so that it runs.
        """
        now = time.perf_counter
        if now() < self._poll_after:
            return
        polling, queue, loop = self._polling, self._queue, self._loop
        assert polling is not None and loop is not None
        bell = self._bell.fileno()
        window = lender.poll_window()
        while self._quick and not queue and now() < self._free_since + window and not _loop_has_work(loop):
            for fd, _ in polling.poll(0):
                if fd == bell:
                    self._bell.drain()
                elif self._receive(lender) or queue:  # caught one: polling pays, back off less
                    halved = self._poll_backoff / 2
                    self._poll_backoff = halved if halved >= _POLL_BACKOFF else 0.0
                    self._poll_misses = 0
        if self._quick and not queue and not _loop_has_work(loop):  # the window ran out: a miss
            self._poll_misses += 1
            if self._poll_misses >= _MISSES_TO_BACK_OFF:
                self._poll_backoff = min(2 * self._poll_backoff or _POLL_BACKOFF, _MAX_POLL_BACKOFF)
                self._poll_after = now() + self._poll_backoff

    def _receive(self, lender: InputLender) -> bool:
        """Receive what the lent descriptor holds; whether a request was answered right here.

        Then (nothing queued) this thread is free again now: note when, and
        whether the request came quickly.
        """
        came = time.perf_counter()
        if not lender.receive() or self._queue:
            return False
        self._quick = self._came_quickly(lender, came)
        self._free_since = time.perf_counter()
        return True

    def _came_quickly(self, lender: InputLender, came: float) -> bool:
        """Whether a request that came at ``came`` came within the lender's poll
        window of this thread becoming free (then the next wait polls first)."""
        return came - self._free_since < lender.poll_window()

    def _watch(self, lent: int) -> None:
        """Poll ``lent`` (and the doorbell) in ``_poll_lent`` from now on."""
        if self._polling is None:
            self._polling = select.poll()
            self._polling.register(self._bell.fileno(), select.POLLIN)
        self._polling.register(lent, select.POLLIN)

    def _receive_lent(self) -> None:
        """The lent descriptor is readable: receive here, if this is the wait it was lent to.

        The reader stays on the loop from one wait to the next (adding and
        removing it around every cell cost 2 % of a ``pass`` round trip: 0.551
        -> 0.538 ms, A/B with 8 fresh kernels each way, twice): a plain cell
        does not run the loop, so it cannot fire then. When the loop runs
        outside the wait -- an awaiting cell -- the IO thread receives; the
        reader then removes itself, and the next wait adds it again.
        """
        if self._waiting:
            assert self.input_lender is not None
            if self._receive(self.input_lender) and self._quick and self._loop is not None:
                self._loop.stop()  # a request answered here came quickly: poll for the next
        else:
            self._stop_reading()

    def _stop_reading(self) -> None:
        if self._reading is not None and self._loop is not None:
            self._loop.remove_reader(self._reading)
            if self._polling is not None:
                self._polling.unregister(self._reading)
        self._reading = None

    def _handle(self, message: Message) -> None:
        allow_stdin = message.msg_type == "execute_request" and bool(message.content.get("allow_stdin", True))
        parent = Parent(
            message.header, message.identities, allow_stdin=allow_stdin, header_json=message.header_json
        )
        token = routing.set_origin(parent)
        announced = self._announced is message
        if announced:
            self._announced = None
            with self._announcing:
                pass  # the IO thread has published busy and execute_input
        try:
            if not announced:
                self._cell_on_its_way = message.msg_type == "execute_request" and not self._aborting
                self._status("busy", parent)
            if self._aborting and message.msg_type == "execute_request":
                # Only executions are aborted: kernel_info, completion, inspection...
                # queued behind a failed cell are answered as usual (as in ipykernel).
                # The cell never ran, so it has no count: null, which front ends
                # show as a blank prompt (see docs/compatibility.md).
                self._reply(message, {"status": "aborted", "execution_count": None})
            elif message.msg_type == "execute_request":
                self._execute(message, parent, announced=announced)  # flushes every stream before its reply
            else:
                if message.msg_type in COMM_TYPES:
                    handle_comm_message(self.comm_manager, message)
                    if self.after_comm is not None:
                        self.after_comm()
                else:
                    self._answer(message)
                self._flush_streams(parent)
            self._status("idle", parent)
        finally:
            self._cell_on_its_way = self._interrupted_on_its_way = False
            routing.reset_origin(token)

    def _answer(self, message: Message) -> None:
        """Reply to a request that is not an execution."""
        shell, content, kind = self.shell, message.content, message.msg_type
        try:
            if kind == "kernel_info_request":
                reply = requests.kernel_info(shell, self._supported_features)
            elif kind == "complete_request":
                reply = requests.complete(shell, content)
            elif kind == "inspect_request":
                reply = requests.inspect(shell, content)
            elif kind == "history_request":
                reply = requests.history(shell, content)
            elif kind == "is_complete_request":
                reply = requests.is_complete(shell, content)
            elif kind == "comm_info_request":
                target = content.get("target_name")
                reply = comm_info(self.comm_manager, target if isinstance(target, str) else None)
            else:
                log.warning("unknown shell request %r; not answered", kind)
                return
        except Exception as exc:
            log.exception("%s failed", kind)
            reply = _error_content(exc)
        self._reply(message, reply)

    # -- execution ---------------------------------------------------------------------------

    def _execute(self, message: Message, parent: Parent, *, announced: bool) -> None:
        shell = self.shell
        content = message.content
        started = _utc_now()
        code = content.get("code", "")
        if not isinstance(code, str):
            self._reply(
                message,
                {
                    **_error_content(TypeError("code must be a string")),
                    "execution_count": shell.execution_count - 1,
                },
            )
            return
        silent = bool(content.get("silent", False))
        store_history = bool(content.get("store_history", not silent))
        stop_on_error = bool(content.get("stop_on_error", True))
        user_expressions = content.get("user_expressions") or {}

        # A subshell counts its own executions and keeps them out of IPython's
        # history, whose numbering belongs to the main shell.
        own_count = self.subshell_id is not None
        count = self._own_count if own_count else shell.execution_count
        if not silent and not announced:
            self.sender.publish(
                "execute_input",
                {"code": code, "execution_count": count},
                parent=parent.header_json,
            )
        routing.note_execute_started(parent)
        try:
            result = self._run_cell(code, store_history=store_history and not own_count, silent=silent)
        finally:
            routing.note_execute_finished(parent)
        if self._interrupted_on_its_way and store_history and not silent and not own_count:
            # Interrupted before IPython saw it (see ``on_sigint``): the cell still
            # takes the number its execute_input showed, as every failed cell does.
            shell.execution_count += 1

        error = shell.take_last_error()
        failed = result.error_before_exec is not None or result.error_in_exec is not None
        # A result that could not be shown (its formatter raised) fails the cell too.
        failed = shell.take_displayhook_failure() or failed
        reply: dict[str, Any]
        if failed:
            if error is None:
                exc = result.error_before_exec or result.error_in_exec
                error = {"ename": type(exc).__name__, "evalue": str(exc), "traceback": []}
            # engine_info: the ipyparallel-era field ipykernel still puts in error replies.
            engine = {"engine_uuid": self.sender.session.session_id, "engine_id": -1, "method": "execute"}
            reply = {"status": "error", **error, "engine_info": engine}
        else:
            reply = {"status": "ok"}
        if own_count:
            reply["execution_count"] = count
            if store_history:
                self._own_count += 1
        else:
            # The count of the last cell that stored history (this one, if it did): a
            # front end shows ``execution_count + 1`` as its next prompt.
            reply["execution_count"] = shell.execution_count - 1
        try:
            reply["user_expressions"] = shell.user_expressions(user_expressions) if not failed else {}
        except Exception as exc:  # a bad user_expressions dict, not a bad expression
            reply["user_expressions"] = {}
            log.warning("user_expressions failed: %s", exc)
        reply["payload"] = shell.payload_manager.read_payload()
        shell.payload_manager.clear_payload()

        if failed and stop_on_error and not silent:
            # Before the reply leaves: everything already sent to us is aborted.
            self._aborting = True
            self._request_abort_marker(self)
        self._flush_streams(parent)
        self._reply(message, reply, started=started)
        if shell.exit_now:
            shell.exit_now = False
            # The front end acts on the ask_exit payload first: jupyter console reads
            # this reply, exits and shuts the kernel down itself -- but stops reading
            # replies once the kernel process is gone. So the kernel ends itself only
            # if the front end has not done so within a grace period.
            # The loop runs the timer in the wait after this reply.
            assert self._loop is not None
            self._loop.call_later(EXIT_GRACE_PERIOD, self._on_exit_requested)

    def _run_cell(self, code: str, *, store_history: bool, silent: bool) -> ExecutionResult:
        shell = self.shell
        try:
            transformed = shell.transform_cell(code)
            preprocessing_error = None
        except Exception:
            transformed = code
            preprocessing_error = sys.exc_info()
        runner = shell.loop_runner
        if runner in (_asyncio_runner, _trio_runner) and shell.should_run_async(
            code, transformed_cell=transformed, preprocessing_exc_tuple=preprocessing_error
        ):
            cell = shell.run_cell_async(
                code,
                store_history=store_history,
                silent=silent,
                transformed_cell=transformed,
                preprocessing_exc_tuple=preprocessing_error,
            )
            run = self._on_loop if runner is _asyncio_runner else self._under_trio
            return self._run_async_cell(cell, run, code, store_history, silent)
        # A plain cell runs with no loop running, as in a script (and a cell with
        # top-level await under ``%autoawait curio`` or a custom runner: IPython's
        # runner starts that library's loop here).
        self._interrupt_deferrals = 0
        self._cells_started += 1
        self._sync_cell_running = True
        try:
            if self._starts_interrupted():
                return _failed_result(shell, code, store_history, KeyboardInterrupt())
            # IPython's run_cell transforms the cell again: reuse ours (unless it
            # failed, so that IPython meets and reports the error itself).
            once = shell.transformed_once(code, transformed) if preprocessing_error is None else nullcontext()
            with once:
                result: ExecutionResult = shell.run_cell(code, store_history=store_history, silent=silent)
        finally:
            self._sync_cell_running = False
            # ``asyncio.run()`` in the cell leaves this thread with no current
            # loop; ``asyncio.get_event_loop()`` in the next cell finds ours.
            asyncio.set_event_loop(self._loop)
        return result

    def _run_async_cell(
        self,
        cell: Coroutine[Any, Any, ExecutionResult],
        runner: Callable[[Coroutine[Any, Any, ExecutionResult]], ExecutionResult | None],
        code: str,
        store_history: bool,
        silent: bool,
    ) -> ExecutionResult:
        """Run a cell with top-level ``await`` (``cell``, from IPython's ``run_cell_async``)."""
        shell = self.shell
        result: ExecutionResult | None = None
        try:
            result = runner(cell)
        except (asyncio.CancelledError, KeyboardInterrupt):
            pass  # interrupted outside the cell's own code: shown as interrupted below
        except Exception as exc:  # the runner itself failed (trio's internal error, say)
            result = _failed_result(shell, code, store_history, exc)
        finally:
            if result is None:
                result = _failed_result(shell, code, store_history, KeyboardInterrupt())
            shell.interrupting_async_cell = False
            shell.events.trigger("post_execute")
            if not silent:
                shell.events.trigger("post_run_cell", result)
        return result

    def _on_loop(self, cell: Coroutine[Any, Any, ExecutionResult]) -> ExecutionResult:
        """Run ``cell`` as a task on this thread's loop (tasks it starts go on after it)."""
        loop = self._loop
        assert loop is not None
        task = loop.create_task(cell)  # the task copies this context: its output goes to this cell
        self._cells_started += 1
        self._async_cell = task
        if self._starts_interrupted():
            self.shell.interrupting_async_cell = True
            task.cancel()  # before its first step: none of the cell runs
        try:
            return loop.run_until_complete(task)
        finally:
            self._async_cell = None

    def _under_trio(self, cell: Coroutine[Any, Any, ExecutionResult]) -> ExecutionResult | None:
        """Run ``cell`` under ``trio.run`` (``%autoawait trio``), no asyncio loop running."""
        trio_cell = TrioCell()
        self._trio_cell = trio_cell
        self._interrupt_deferrals = 0
        self._cells_started += 1
        self._sync_cell_running = True
        try:
            if self._starts_interrupted():
                cell.close()
                return None  # shown as interrupted
            result: ExecutionResult | None = trio_cell.run(cell)
            return result
        finally:
            self._sync_cell_running = False
            self._trio_cell = None

    def _starts_interrupted(self) -> bool:
        """Right after a cell is marked running: whether an interrupt came before.

        The order matters. Once the cell counts as running, an interrupt
        reaches it the usual way; until then it is noted in
        ``_interrupted_on_its_way`` (kept until the request ends), so each
        interrupt is seen by exactly one of the two. ``on_sigint`` runs on this
        thread, between two bytecodes, and needs no lock (nor may it take
        one); ``interrupt_before_start`` runs on another thread and takes
        ``_start_lock``, as this does.
        """
        with self._start_lock:
            self._cell_on_its_way = False
            return self._interrupted_on_its_way

    def interrupt_before_start(self) -> bool:
        """From another thread (a subshell's interrupt): if an execute request is
        under way whose cell has not started, have the cell start interrupted.
        True if so; False means no cell is on its way (it may be running)."""
        with self._start_lock:
            if not self._cell_on_its_way:
                return False
            self._interrupted_on_its_way = True
            return True

    def on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT handler (main thread): interrupt whatever cell is running.

        ``KeyboardInterrupt`` is raised only in the user's code. Raised inside
        the kernel's own code -- say between taking a stream buffer's lock and
        entering the ``with`` block that releases it -- it could leave a lock
        held and hang the kernel after the cell. So when the main thread is in
        kernel code, the interrupt is delivered again a moment later (as
        ``InterruptDelivery.again_signal``, handled here too), until it lands
        in user code (bounded; then it is raised wherever it lands). This
        handler takes no lock and starts no thread: it may have interrupted
        code that holds one (``threading.Thread.start`` does).
        """
        delivery = self.interrupt_delivery
        if delivery is not None:
            delivery.handler_started(signum)
            if signum == delivery.again_signal:
                # An interrupt deferred (below, or by the debugger) lands again; why
                # it is not SIGINT: kernel/interrupts.py.
                resent_for, self._resent_for = self._resent_for, None
                if resent_for != self._cells_started or not self.cell_running:
                    return  # its cell has ended
        if self._deferred_to_debugger(frame):
            return
        if self._sync_cell_running:
            can_resend = delivery is not None and self._interrupt_deferrals < _MAX_INTERRUPT_DEFERRALS
            trio_cell = self._trio_cell
            if trio_cell is not None:
                self.shell.interrupting_async_cell = True  # a cancellation shows as the interrupt
                if trio_cell.interrupt_here():
                    # Landed in trio's own code: the cell is cancelled at its next
                    # await. If it never awaits again (a loop right after one), the
                    # interrupt sent again lands in its code and raises there.
                    if can_resend:
                        self._resend(delivery)
                    return
            if can_resend and _in_kernel_code(frame):
                self._resend(delivery)
                return
            self._interrupt_deferrals = 0
            raise KeyboardInterrupt
        if self.interrupt_async_cell():
            return
        if self._cell_on_its_way:
            # Between a cell's execute_input and its first line (the front end
            # shows it running): it starts interrupted, and fails with
            # KeyboardInterrupt. (ipykernel 7.4 raises it in the code that sets
            # the cell up, and then sends no reply: docs/compatibility.md.)
            self._interrupted_on_its_way = True
            return
        if self.on_idle_interrupt is not None:
            self.on_idle_interrupt()

    def _deferred_to_debugger(self, frame: FrameType | None) -> bool:
        """From a signal handler: whether the debugger takes the interrupt (it has this
        thread stopped); it then resumes the thread and delivers the interrupt
        again, for the cell running now."""
        if self.defer_interrupt is None or not self.defer_interrupt(frame):
            return False
        self._resent_for = self._cells_started
        return True

    def _resend(self, delivery: InterruptDelivery | None) -> None:
        """From a signal handler: have the interrupt delivered again shortly, for this cell only."""
        assert delivery is not None
        self._interrupt_deferrals += 1
        self._resent_for = self._cells_started
        delivery.resend_soon()

    # -- sending ------------------------------------------------------------------------------

    def _status(self, state: str, parent: Parent) -> None:
        self.sender.publish("status", {"execution_state": state}, parent=parent.header_json)

    def _reply(self, message: Message, content: dict[str, Any], *, started: str | None = None) -> None:
        metadata = {"status": content.get("status", "ok")}
        if started is not None:
            # When the execution began: JupyterLab records it as the cell's
            # ``shell.execute_reply.started`` timing, as ipykernel sends it.
            metadata["started"] = started
        self.sender.send(
            "shell",
            reply_type(message.msg_type),
            content,
            parent=message.parent_part,
            identities=message.identities,
            metadata=metadata,
        )


def _utc_now() -> str:
    """Now, in UTC, as ISO 8601 with a ``Z`` (how jupyter_client writes dates)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _loop_has_work(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether callbacks or timers wait on ``loop`` (then it should run, not be polled past).

    asyncio's own loops keep them in ``_ready`` and ``_scheduled``; a loop
    that has neither is taken to have work, so nothing is ever held up by
    polling on a loop this cannot see into.
    """
    ready = getattr(loop, "_ready", None)
    scheduled = getattr(loop, "_scheduled", None)
    return ready is None or scheduled is None or bool(ready) or bool(scheduled)


def _keep_open() -> None:
    warnings.warn(
        "the kernel's event loop stays open: it runs the tasks of every cell", RuntimeWarning, stacklevel=2
    )


def _error_content(exc: BaseException) -> dict[str, Any]:
    return error_content(type(exc).__name__, str(exc))


def _failed_result(
    shell: ThreadlineShell, code: str, store_history: bool, exc: BaseException
) -> ExecutionResult:
    """The result of an async cell that ended with ``exc`` outside its own code (an
    interrupt's ``KeyboardInterrupt``, say), with its traceback shown."""
    from IPython.core.interactiveshell import ExecutionInfo

    shell.showtraceback((type(exc), exc, exc.__traceback__))
    result = ExecutionResult(ExecutionInfo(code, store_history, False, True, None))
    result.error_in_exec = exc
    return result


#: After two poll windows in a row ran out with nothing caught, no polling for
#: this long, doubled after each further miss up to the maximum, halved after
#: each catch. Polling pays when the client's next request comes while this
#: thread is still on its CPU. On a busy machine (another process computing,
#: the hypervisor taking CPU time) it does not come: the poll itself holds a
#: CPU the client needs to send it. Measured with one CPU-bound process beside
#: a 2-core VM's kernel and client: 55-60 % of windows ran their whole 1 ms
#: with nothing caught (1-3 % on the idle machine, where a single miss is
#: chance, hence two in a row).
_POLL_BACKOFF = 0.001
_MAX_POLL_BACKOFF = 1.0
_MISSES_TO_BACK_OFF = 2
_MAX_INTERRUPT_DEFERRALS = 500  # x 2 ms: give up deferring after about a second
_THREADLINE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_RUN_CODE = InteractiveShell.run_code.__code__  # the frame that runs a cell's code
#: Kernel code that waits holding no lock: an interrupt may land there at once.
_SAFE_WAITS = frozenset({stdin_wait.__code__, Outbox.wait_for_room.__code__})


def _in_kernel_code(frame: FrameType | None) -> bool:
    """Whether the main thread is in threadline's code rather than the cell's.

    Walks outwards from the interrupted frame: reaching IPython's ``run_code``
    first means the user's code (or a library it called) was running; reaching
    a threadline frame first means kernel code was (called from the cell, like
    a stream flush, or around it, like the shell channel).
    """
    while frame is not None:
        code = frame.f_code
        if code is _RUN_CODE or code in _SAFE_WAITS:
            return False
        if code.co_filename.startswith(_THREADLINE_DIR):
            return True
        frame = frame.f_back
    return False
