"""Booting: the sockets are bound and kernel_info is answered before IPython is imported.

Theory of operation
-------------------
What a user waits for when a kernel starts is set by the client, not by the
kernel alone. jupyter_client connects its sockets at once, before any kernel
can listen; a refused connection is retried after 100-200 ms (ZeroMQ's
reconnect interval plus its random jitter, see ``io/listening.py``).
``wait_for_ready`` then wants a kernel_info reply plus an iopub message, and
reads iopub until it has been quiet for 0.2 s. So the launcher listens on the
ports first of all (``io/listening.py``), and a kernel that answers as soon as
the client's second attempts arrive is as fast as any kernel can be on this
path -- the shell's imports and construction then overlap the client's own
0.2 s wait instead of preceding it. (Measured: the client's kernel_info is
accepted at a median ~200 ms after it spawned the kernel, for threadline and
xeus-python alike: the slower of two random retries plus the answer.)

So ``Boot`` is the first thing the kernel builds: the session and the IO
thread (``threadline.io`` and ``threadline.protocol`` only: zmq, orjson,
hmac), which it starts with the heartbeat, binding by taking the launcher's
listening descriptors. It builds the kernel_info content first: ~1 ms
alone, 10 ms and more once the main thread's imports compete for the GIL.
While the main thread goes on to import IPython and build the shell (with a
short GIL switch interval, ``app.BOOT_SWITCH_INTERVAL``, so the IO thread
gets the GIL soon when it asks), the IO thread, through ``Boot``'s dispatcher:

* answers kernel_info at once (its content does not depend on the shell,
  ``kernel.info``): on control always; on shell once iopub has its first
  subscriber and no other shell request is waiting before it -- the same rules
  the built kernel follows (``Kernel._hold_or_route_shell`` and answering
  kernel_info on the IO thread when the shell is idle);
* welcomes each iopub subscriber (JEP 65);
* holds every other message, in order of arrival.

When the kernel is built, ``hand_over`` passes the IO thread's handlers to it
-- on the IO thread, so no message can slip between the two -- and the held
messages are dispatched to it in their order of arrival. The IO thread
is simply started first (how threads share the sockets: ``io/iothread.py``).

``marks`` records when each phase of the start-up ended (``time.perf_counter``,
the same clock in every process on Linux); the kernel exposes them as
``Kernel.startup_marks`` and the benchmarks read them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from threadline.io import Heartbeat, IOThread, Sender, curve_problem
from threadline.kernel import info
from threadline.protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    ConnectionInfo,
    Message,
    Session,
    reply_type,
)

log = logging.getLogger("threadline.kernel")

Dispatcher = Callable[[str, Message], None]


class KernelConfigError(ValueError):
    """The kernel cannot start with this configuration."""


def answer_at_once(sender: Sender, channel: str, message: Message, reply: dict[str, Any]) -> None:
    """Busy, reply, idle -- for requests answered without a shell (on the IO thread,
    or on the thread the shell socket is lent to), handed over together."""
    parent = message.parent_part
    sender.send_together(
        [
            sender.build("iopub", "status", {"execution_state": "busy"}, parent=parent),
            sender.build(
                channel,
                reply_type(message.msg_type),
                reply,
                parent=parent,
                identities=message.identities,
                metadata={"status": reply["status"]},
            ),
            sender.build("iopub", "status", {"execution_state": "idle"}, parent=parent),
        ]
    )


class Boot:
    """The session, the IO thread and the heartbeat, serving before the kernel exists."""

    def __init__(
        self,
        connection: ConnectionInfo,
        *,
        allow_empty_key: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        listeners: dict[str, int] | None = None,
    ) -> None:
        """``listeners``: channel -> the descriptor the launcher already listens on for it
        (``io/listening.py``); the sockets bind by taking them."""
        listeners = dict(listeners or {})
        self._hb_listener = listeners.pop("hb", None)
        if not connection.key and not allow_empty_key:
            raise KernelConfigError(
                "the connection file has an empty key: messages would not be authenticated. "
                "Pass --allow-empty-key to run without message signing."
            )
        encryption_problem = curve_problem(connection)  # never run in plain text when asked not to
        if encryption_problem is not None:
            raise KernelConfigError(encryption_problem)
        self.marks: dict[str, float] = {}
        self.session = Session(
            connection.key.encode(),
            connection.signature_scheme,
            max_message_size=max_message_size,
            username=os.environ.get("USER", "threadline"),
        )
        self.io = IOThread(
            connection,
            self.session,
            self._dispatch,
            on_subscribe=self._on_subscribe,
            on_fatal=self._on_fatal,
            listeners=listeners,
        )
        self.sender = Sender(self.session, self.io.outbox)
        self.heartbeat: Heartbeat | None = None
        self.connection: ConnectionInfo | None = None
        self.failure: BaseException | None = None
        self._held: list[tuple[str, Message]] = []
        self._subscribed = False
        self._handed_over = threading.Event()

    def mark(self, phase: str, at: float | None = None) -> None:
        """Note that ``phase`` of the start-up ended now (or ``at``)."""
        self.marks[phase] = time.perf_counter() if at is None else at

    def start(self) -> ConnectionInfo:
        """Bind the sockets, start the IO and heartbeat threads; the bound ports. Idempotent."""
        if self.connection is None:
            # Built now, uncontended (~1 ms: it looks for debugpy and IPython's
            # version on sys.path), not when the first request arrives, while the
            # main thread's imports hold the GIL (10 ms and more, measured).
            info.kernel_info()
            connection = self.io.start()
            self.heartbeat = Heartbeat(connection, listener=self._hb_listener)
            self.heartbeat.start()
            self.connection = connection.with_ports({"hb": self.heartbeat.port})
            self.mark("sockets_bound")
        return self.connection

    def hand_over(
        self,
        dispatch: Dispatcher,
        on_subscribe: Callable[[bytes], None],
        on_fatal: Callable[[BaseException], None],
        *,
        first_subscriber_seen: Callable[[], None],
        timeout: float = 10.0,
    ) -> None:
        """Give the IO thread's handlers to the built kernel, then the held messages, in order.

        ``first_subscriber_seen`` is called first if iopub already has a
        subscriber (the kernel's own hold for the first subscriber is then over).
        """

        def on_io_thread() -> None:
            self.io.replace_handlers(dispatch, on_subscribe=on_subscribe, on_fatal=on_fatal)
            if self._subscribed:
                first_subscriber_seen()
            held, self._held = self._held, []
            for channel, message in held:
                try:
                    dispatch(channel, message)
                except Exception:
                    log.exception("dispatching %s on %s failed", message.msg_type, channel)
            self._handed_over.set()

        if self.failure is not None:
            on_fatal(self.failure)
            return
        self.io.outbox.call_soon(on_io_thread)
        if not self._handed_over.wait(timeout):
            log.warning("the IO thread did not take the kernel's handlers within %.0fs", timeout)

    # -- the IO thread's side, until the hand-over -----------------------------------------

    def _dispatch(self, channel: str, message: Message) -> None:
        if message.msg_type == "kernel_info_request" and (
            channel == "control" or (channel == "shell" and self._may_answer_shell())
        ):
            answer_at_once(self.sender, channel, message, info.kernel_info())
        else:
            self._held.append((channel, message))

    def _may_answer_shell(self) -> bool:
        return self._subscribed and not any(channel == "shell" for channel, _ in self._held)

    def _on_subscribe(self, topic: bytes) -> None:
        self.sender.publish("iopub_welcome", {"subscription": topic.decode("utf-8", "replace")})
        if self._subscribed:
            return
        self._subscribed = True
        # kernel_info requests that waited for this subscriber, and only those
        # with no other shell request before them, are answered now.
        keep: list[tuple[str, Message]] = []
        blocked = False
        for channel, message in self._held:
            if channel == "shell" and not blocked and message.msg_type == "kernel_info_request":
                answer_at_once(self.sender, channel, message, info.kernel_info())
                continue
            blocked = blocked or channel == "shell"
            keep.append((channel, message))
        self._held = keep

    def _on_fatal(self, exc: BaseException) -> None:
        self.failure = exc
