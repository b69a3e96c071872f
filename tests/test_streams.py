"""OutStream in isolation: ordering against a consumer caught mid-send, and whole lines."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from typing import Any

from threadline import routing
from threadline.routing import Parent
from threadline.shell.streams import OutStream

DEADLINE = 10.0


class RecordingSender:
    """Records what is published; can freeze one publish to expose races."""

    class _Outbox:
        congested = False
        ahead = 1  # something queued: every line waits for the timer (the timer path is tested)

    def __init__(self) -> None:
        self.outbox = self._Outbox()
        self.published: list[str] = []
        self.lock = threading.Lock()
        self.freeze_next = False
        self.frozen = threading.Event()
        self.thaw = threading.Event()

    def publish(self, msg_type: str, content: dict[str, Any], **_: Any) -> None:
        if self.freeze_next:
            self.freeze_next = False
            self.frozen.set()
            self.thaw.wait(DEADLINE)
        with self.lock:
            self.published.append(content.get("text", msg_type))


def make_stream(sender: RecordingSender) -> OutStream:
    return OutStream("stdout", sender, lambda delay, function: None)  # type: ignore[arg-type]


def test_the_cell_end_flush_waits_for_text_the_io_thread_holds() -> None:
    """Text taken out by the timer but not yet queued must still precede the idle."""
    sender = RecordingSender()
    stream = make_stream(sender)
    cell = Parent({"msg_id": "cell", "msg_type": "execute_request"})

    def write() -> None:
        with routing.route_to(cell):
            stream.write("from a thread\n")

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(DEADLINE)
    sender.freeze_next = True
    timer = threading.Thread(target=stream._on_timer)  # the IO thread's flush, frozen mid-publish
    timer.start()
    assert sender.frozen.wait(DEADLINE)

    def end_of_cell() -> None:
        stream.flush_parent(cell)
        sender.publish("status", {})  # then the kernel sends idle

    ending = threading.Thread(target=end_of_cell)
    ending.start()
    ending.join(0.5)  # a bounded look: with the bug it finishes at once, with the fix it waits
    sender.thaw.set()
    for thread in (timer, ending):
        thread.join(DEADLINE)
    assert sender.published == ["from a thread\n", "status"]


def test_many_writers_and_a_concurrent_consumer_keep_every_line_whole() -> None:
    """4 threads x 20,000 lines against a consumer looping on the timer path:
    every line once, whole, in each thread's order."""
    sender = RecordingSender()
    stream = OutStream("stdout", sender, lambda d, f: None, chunk_size=4096)  # type: ignore[arg-type]
    routing.note_execute_started(Parent({"msg_id": "cell", "msg_type": "execute_request"}))
    n = 20_000
    done = threading.Event()

    def consume() -> None:
        while not done.is_set():
            stream._on_timer()

    def write(t: int) -> None:
        for i in range(n):
            print(f"thread {t} line {i} end", file=stream)

    consumer = threading.Thread(target=consume)
    consumer.start()
    writers = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    done.set()
    consumer.join(DEADLINE)
    stream.flush_all()
    seen: dict[int, list[int]] = defaultdict(list)
    for text in sender.published:
        for line in text.splitlines():
            match = re.fullmatch(r"thread (\d) line (\d+) end", line)
            assert match, f"broken line {line!r}"
            seen[int(match[1])].append(int(match[2]))
    assert dict(seen) == {t: list(range(n)) for t in range(4)}


class _EmptyOutbox:
    """An outbox with nothing queued: a line may leave at once."""

    congested = False
    ahead = 0


def test_the_first_line_after_a_quiet_spell_leaves_at_once_and_a_burst_waits_for_the_timer() -> None:
    """From a thread other than the main thread (whose lines keep waiting for the timer
    or the request's end); what child processes wrote before goes first."""
    sender = RecordingSender()
    sender.outbox = _EmptyOutbox()  # type: ignore[assignment]
    timers: list[Any] = []
    stream = OutStream("stdout", sender, lambda delay, function: timers.append(function))  # type: ignore[arg-type]
    stream.before_direct = lambda: sender.publish("stream", {"text": "child\n"})
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            with routing.route_to(Parent({"msg_id": "cell", "msg_type": "execute_request"})):
                stream.write("first")
                assert sender.published == []  # a partial line waits
                stream.write("\n")  # print() writes the newline separately
                assert sender.published == ["child\n", "first\n"]  # at once: no timer has run
                stream.write("second\n")
                stream.write("third\n")
                assert sender.published == ["child\n", "first\n"]  # the burst waits for the timer
                assert len(timers) == 1
                timers.pop()()  # the timer: the burst as one message, and one more look
                assert sender.published[2:] == ["second\nthird\n"]
                stream.write("fourth\n")
                assert sender.published[2:] == ["second\nthird\n"]  # not quiet yet
                timers.pop()()
                timers.pop()()  # finds nothing: quiet
                assert timers == []
                stream.write("fifth\n")
                assert sender.published[2:] == ["second\nthird\n", "fourth\n", "child\n", "fifth\n"]
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(DEADLINE)
    if failures:
        raise failures[0]


def test_the_main_threads_lines_wait_for_the_timer() -> None:
    sender = RecordingSender()
    sender.outbox = _EmptyOutbox()  # type: ignore[assignment]
    timers: list[Any] = []
    stream = OutStream("stdout", sender, lambda delay, function: timers.append(function))  # type: ignore[arg-type]
    with routing.route_to(Parent({"msg_id": "cell", "msg_type": "execute_request"})):
        stream.write("on the main thread\n")
        assert sender.published == []
        timers.pop()()
        assert sender.published == ["on the main thread\n"]
