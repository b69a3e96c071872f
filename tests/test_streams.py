"""OutStream in isolation: ordering against a consumer caught mid-send, and whole lines."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from threadline import routing
from threadline.routing import Parent
from threadline.shell import streams
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


class _Clock:
    """The stream's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _timed_stream(monkeypatch: pytest.MonkeyPatch) -> tuple[OutStream, RecordingSender, list[Any], _Clock]:
    """A stream with nothing queued ahead, whose ticks are kept as (delay, tick) to run by hand."""
    sender = RecordingSender()
    sender.outbox = _EmptyOutbox()  # type: ignore[assignment]
    ticks: list[Any] = []
    stream = OutStream("stdout", sender, lambda delay, tick: ticks.append((delay, tick)))  # type: ignore[arg-type]
    clock = _Clock()
    monkeypatch.setattr(streams, "monotonic", clock)
    return stream, sender, ticks, clock


def _on_a_thread(body: Callable[[], None]) -> None:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with routing.route_to(Parent({"msg_id": "cell", "msg_type": "execute_request"})):
                body()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(DEADLINE)
    if failures:
        raise failures[0]


def test_the_first_line_after_a_quiet_spell_leaves_at_once_and_a_burst_waits_for_the_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From a thread other than the main thread (whose lines keep waiting for the timer
    or the request's end); what child processes wrote before goes first."""
    stream, sender, ticks, clock = _timed_stream(monkeypatch)
    stream.before_direct = lambda: sender.publish("stream", {"text": "child\n"})

    def writer() -> None:
        stream.write("first")
        assert sender.published == []  # a partial line waits...
        assert [delay for delay, _ in ticks] == [stream.watch_interval]  # ...for a watch tick
        stream.write("\n")  # print() writes the newline separately
        assert sender.published == ["child\n", "first\n"]  # at once: no tick has run
        stream.write("second\n")
        stream.write("third\n")
        assert sender.published == ["child\n", "first\n"]  # the burst waits for a short tick
        assert [delay for delay, _ in ticks] == [stream.watch_interval, stream.flush_interval]
        ticks.pop()[1]()  # the short tick: the burst as one message, and one more look
        assert sender.published[2:] == ["second\nthird\n"]
        ticks.pop(0)[1]()  # the watch tick armed first is stale: it does nothing
        stream.write("fourth\n")
        assert sender.published[2:] == ["second\nthird\n"]  # a short tick is pending: it waits
        ticks.pop()[1]()
        assert sender.published[2:] == ["second\nthird\n", "fourth\n"]
        clock.now += stream.flush_interval
        ticks.pop()[1]()  # finds nothing: quiet, and a watch tick follows
        assert [delay for delay, _ in ticks] == [stream.watch_interval]
        stream.write("fifth\n")
        assert sender.published[2:] == ["second\nthird\n", "fourth\n", "child\n", "fifth\n"]

    _on_a_thread(writer)


def test_a_thread_printing_now_and_then_arms_no_tick_while_a_watch_tick_is_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line every 20 ms from a thread: each goes out at once, and no print arms a tick
    (arming one costs a wake-up of the IO thread before the line is sent); the watch
    ticks go on while lines come, and stop once the stream has been quiet for ``watch_for``."""
    stream, sender, ticks, clock = _timed_stream(monkeypatch)

    def writer() -> None:
        print("line 0", file=stream)
        assert [delay for delay, _ in ticks] == [stream.watch_interval]
        for i in range(1, 200):
            clock.now += 0.02
            print(f"line {i}", file=stream)
            assert sender.published[-1] == f"line {i}\n"  # at once
            if i % 3 == 0:  # the watch tick, about every 50 ms, finds the stream quiet
                assert [delay for delay, _ in ticks] == [stream.watch_interval]  # no print armed one
                ticks.pop()[1]()
                assert [delay for delay, _ in ticks] == [stream.watch_interval]  # lines came: it goes on
        assert sender.published == [f"line {i}\n" for i in range(200)]
        quiet_ticks = 0
        while ticks:
            clock.now += stream.watch_interval
            ticks.pop()[1]()
            quiet_ticks += 1
            assert quiet_ticks <= stream.watch_for / stream.watch_interval + 2
        assert quiet_ticks >= stream.watch_for / stream.watch_interval - 1  # it watched, then stopped

    _on_a_thread(writer)


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
