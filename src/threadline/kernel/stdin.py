"""``input()`` and ``getpass()`` from any thread, over the stdin channel.

Theory of operation
-------------------
A thread that asks for input sends an ``input_request`` tagged with its own
parent (so the prompt appears under that thread's cell) to the identity of the
client that sent that cell, then waits on a private slot. The IO thread
matches each ``input_reply`` to its slot by the reply's parent ``msg_id`` and
wakes exactly that thread.

Front ends show one prompt at a time, so requests are served one at a time,
first come first served, through a ticket queue. A wait is interruptible: an
interrupt raises ``KeyboardInterrupt`` in the waiting main thread, and the
slot is withdrawn so a late reply is ignored.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from IPython.core.error import StdinNotImplementedError

from threadline import routing
from threadline.io import Sender
from threadline.protocol import Message


class _Slot:
    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.value = ""


class StdinRouter:
    """Sends input requests and routes the replies back to the asking thread."""

    def __init__(self, sender: Sender, flush_thread_streams: Callable[[], None]) -> None:
        self._sender = sender
        self._flush = flush_thread_streams
        self._slots: dict[str, _Slot] = {}
        self._line: deque[threading.Event] = deque()
        self._line_lock = threading.Lock()
        #: Replies that found no request waiting (IO thread only), for diagnosis and tests.
        self.ignored_replies = 0

    def input(self, prompt: object = "") -> str:
        """Replacement for ``builtins.input``."""
        return self.request(str(prompt), password=False)

    def getpass(self, prompt: str = "Password: ", stream: object = None) -> str:
        """Replacement for ``getpass.getpass``."""
        return self.request(prompt, password=True)

    def request(self, prompt: str, *, password: bool) -> str:
        parent = routing.current_parent()
        if parent is None or not parent.allow_stdin:
            raise StdinNotImplementedError(
                "raw_input was called, but this frontend does not support input requests."
            )
        self._flush()
        turn = threading.Event()
        with self._line_lock:
            self._line.append(turn)
            if len(self._line) == 1:
                turn.set()
        try:
            wait(turn)
            slot = _Slot()
            header = self._sender.session.new_header("input_request")
            self._slots[header["msg_id"]] = slot
            try:
                self._sender.send(
                    "stdin",
                    "input_request",
                    {"prompt": prompt, "password": password},
                    parent=parent.header_json,
                    identities=parent.identities,
                    header=header,
                )
                wait(slot.event)
            except KeyboardInterrupt:
                # The prompt is withdrawn (a late reply is ignored); the message is ipykernel's.
                raise KeyboardInterrupt("Interrupted by user") from None
            finally:
                self._slots.pop(header["msg_id"], None)
            return slot.value
        finally:
            with self._line_lock:
                self._line.remove(turn)
                if self._line:
                    self._line[0].set()

    def on_reply(self, message: Message) -> None:
        """IO thread: hand an ``input_reply`` to the thread that asked."""
        # jupyter_client's input() replies without a parent header. Requests are
        # served one at a time, so such a reply is for the one outstanding.
        parent_id = message.parent_header.get("msg_id")
        slot = self._slots.get(str(parent_id)) if parent_id else next(iter(self._slots.values()), None)
        if slot is None:
            self.ignored_replies += 1
            return  # a reply to a request that was interrupted, or a stray
        value = message.content.get("value", "")
        slot.value = value if isinstance(value, str) else str(value)
        slot.event.set()


def wait(event: threading.Event) -> None:
    """Wait for ``event``, interruptibly (an interrupt may land here: no lock is held)."""
    # Short timed waits keep the main thread responsive to SIGINT on every
    # platform; the loop is not synchronisation, the event is.
    while not event.wait(0.1):
        pass
