"""The outbox on its own: the hand-off, the doorbell, the bound, and closing.

No sockets or IO thread here: the test's own thread plays the IO thread
(``bind_io_thread`` makes it one), so every step of the protocol between
producers and the consumer can be driven and observed exactly. Producers are
real threads. Nothing sleeps: the consumer waits on the doorbell itself (with a
deadline), and blocked producers are seen through a watched stand-in for the
outbox's "room" event.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable
from typing import Any

import pytest

from threadline.io import Outbox, OutboxClosed
from threadline.io import doorbell as doorbell_module
from threadline.io.outbox import CALL
from threadline.protocol import Frame

DEADLINE = 20.0


class WatchedRoom(threading.Event):
    """Stands in for an outbox's "room" event, to see producers block on it.

    ``waiting`` is how many producers are blocked right now; ``changed`` is
    notified whenever it changes, and may be notified by the test's own code.
    """

    def __init__(self) -> None:
        super().__init__()
        self.set()
        self.changed = threading.Condition()
        self.waiting = 0
        self.blocks = 0

    def wait(self, timeout: float | None = None) -> bool:
        with self.changed:
            self.waiting += 1
            self.blocks += 1
            self.changed.notify_all()
        try:
            return super().wait(timeout)
        finally:
            with self.changed:
                self.waiting -= 1
                self.changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, DEADLINE), "timed out waiting for the producers"


def watch(outbox: Outbox) -> WatchedRoom:
    room = WatchedRoom()
    outbox._room = room  # white box: the event producers wait on for room
    return room


def bell_rings(outbox: Outbox, timeout: float = 0.0) -> bool:
    readable, _, _ = select.select([outbox.fileno()], [], [], timeout)
    return bool(readable)


def in_thread(function: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=function, daemon=True)
    thread.start()
    return thread


def outcome_of(function: Callable[[], object]) -> str:
    """Run ``function`` on a new thread; "ok" or the name of what it raised."""
    result: list[str] = []

    def run() -> None:
        try:
            function()
            result.append("ok")
        except Exception as exc:
            result.append(type(exc).__name__)

    in_thread(run).join(DEADLINE)
    return result[0]


class Consumer:
    """The test thread as the IO thread; direct sends are recorded."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.direct: list[tuple[str, list[Frame]]] = []
        outbox.bind_io_thread(lambda channel, frames: self.direct.append((channel, frames)))


@pytest.fixture(params=["libc", "socket"])
def outbox(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An outbox of capacity 8, its doorbell rung through libc (keeping the GIL) or,
    as where libc cannot be reached, through the socket's own methods."""
    if request.param == "socket":
        monkeypatch.setattr(doorbell_module, "_LIBC_IO", None)
    else:
        assert doorbell_module._LIBC_IO is not None
    box = Outbox(capacity=8)
    yield box
    box.close()
    box.release()


def test_capacity_must_be_at_least_two() -> None:
    with pytest.raises(ValueError):
        Outbox(capacity=1)


def test_items_are_handed_over_whole_and_in_order(outbox: Outbox) -> None:
    consumer = Consumer(outbox)
    messages = [[b"a", b"b"], [bytearray(b"c")], [memoryview(b"d"), b"e", b"f"]]

    def produce() -> None:
        for frames in messages:
            outbox.put("iopub", frames)

    in_thread(produce).join(DEADLINE)
    assert len(outbox) == 3
    assert bell_rings(outbox)
    assert outbox.take_batch() == [("iopub", frames) for frames in messages]
    assert len(outbox) == 0 and not consumer.direct


def test_the_doorbell_rings_once_per_batch_and_again_after_it(outbox: Outbox) -> None:
    Consumer(outbox)
    assert not bell_rings(outbox)
    in_thread(lambda: [outbox.call_soon(lambda: None) for _ in range(50)]).join(DEADLINE)
    assert bell_rings(outbox)
    assert len(outbox.take_batch()) == 50
    assert not bell_rings(outbox), "the doorbell was not drained with the batch"
    in_thread(lambda: outbox.call_soon(lambda: None)).join(DEADLINE)
    assert bell_rings(outbox), "an item queued after a batch must ring again"


def test_put_on_the_io_thread_sends_directly(outbox: Outbox) -> None:
    consumer = Consumer(outbox)
    outbox.put("shell", [b"reply"])
    assert consumer.direct == [("shell", [b"reply"])]
    assert len(outbox) == 0


def test_io_thread_methods_refuse_other_threads(outbox: Outbox) -> None:
    Consumer(outbox)
    assert outcome_of(outbox.take_batch) == "RuntimeError"
    assert outcome_of(lambda: outbox.push_back([])) == "RuntimeError"
    assert outcome_of(lambda: outbox.append_from_io_thread(("iopub", []))) == "RuntimeError"


def test_push_back_returns_items_to_the_head_in_order(outbox: Outbox) -> None:
    Consumer(outbox)
    in_thread(lambda: [outbox.put("iopub", [bytes([i])]) for i in range(4)]).join(DEADLINE)
    batch = outbox.take_batch()
    in_thread(lambda: outbox.put("iopub", [b"later"])).join(DEADLINE)
    outbox.push_back(batch[2:])
    assert [frames for _, frames in outbox.take_batch()] == [[b"\x02"], [b"\x03"], [b"later"]]


def test_close_refuses_new_items_and_keeps_queued_ones(outbox: Outbox) -> None:
    Consumer(outbox)
    in_thread(lambda: outbox.put("iopub", [b"queued"])).join(DEADLINE)
    outbox.close()
    assert outbox.closed
    assert outcome_of(lambda: outbox.put("iopub", [b"late"])) == "OutboxClosed"
    assert outcome_of(lambda: outbox.call_soon(lambda: None)) == "OutboxClosed"
    assert outbox.take_batch() == [("iopub", [b"queued"])]


def test_a_full_outbox_blocks_producers_until_drained(outbox: Outbox) -> None:
    Consumer(outbox)
    room = watch(outbox)
    done = threading.Event()

    def produce() -> None:
        for i in range(outbox.capacity + 3):
            outbox.put("iopub", [bytes([i])])
        done.set()

    producer = in_thread(produce)
    room.wait_until(lambda: room.waiting == 1)
    assert len(outbox) == outbox.capacity
    assert not done.is_set()
    first = outbox.take_batch()
    outbox.signal_room()
    producer.join(DEADLINE)
    assert done.is_set()
    rest = outbox.take_batch()
    assert [frames[0][0] for _, frames in first + rest] == list(range(outbox.capacity + 3))


def test_calls_never_wait_for_room(outbox: Outbox) -> None:
    Consumer(outbox)
    in_thread(lambda: [outbox.put("iopub", [b"x"]) for _ in range(outbox.capacity)]).join(DEADLINE)
    assert outcome_of(lambda: outbox.call_soon(lambda: None)) == "ok"
    assert len(outbox) == outbox.capacity + 1
    assert outbox.take_batch()[-1][0] == CALL


def test_close_releases_a_blocked_producer_with_an_error(outbox: Outbox) -> None:
    """A put is either queued or refused: a producer waiting for room is refused, not lost."""
    Consumer(outbox)
    room = watch(outbox)
    outcomes: list[str] = []

    def produce() -> None:
        try:
            for _ in range(outbox.capacity + 1):
                outbox.put("iopub", [b"x"])
            outcomes.append("ok")
        except OutboxClosed:
            outcomes.append("refused")

    producer = in_thread(produce)
    room.wait_until(lambda: room.waiting == 1)
    outbox.close()
    producer.join(DEADLINE)
    assert outcomes == ["refused"]
    assert len(outbox.take_batch()) == outbox.capacity


class GateLock:
    """Stands in for the outbox's lock; the test holds it to line producers up."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition()
        self.arrived = 0

    def __enter__(self) -> None:
        with self.changed:
            self.arrived += 1
            self.changed.notify_all()
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_producers_racing_for_the_last_slot_do_not_overfill(outbox: Outbox) -> None:
    """Three producers see one free slot at once; one takes it, the others wait.

    White box: the outbox's lock is replaced by a gate the test holds, so all
    three producers are lined up at it before any of them appends.
    """
    Consumer(outbox)
    room = watch(outbox)
    for _ in range(outbox.capacity - 1):
        outbox.append_from_io_thread(("iopub", [b"old"]))
    gate = GateLock()
    outbox._lock = gate
    gate.lock.acquire()
    producers = [in_thread(lambda: outbox.put("iopub", [b"new"])) for _ in range(3)]
    with gate.changed:
        assert gate.changed.wait_for(lambda: gate.arrived >= 3, DEADLINE)
    gate.lock.release()
    room.wait_until(lambda: room.waiting == 2 or not any(p.is_alive() for p in producers))
    assert len(outbox) <= outbox.capacity
    taken = outbox.take_batch()
    outbox.signal_room()
    for producer in producers:
        producer.join(DEADLINE)
    taken += outbox.take_batch()
    assert [frames for _, frames in taken].count([b"new"]) == 3


def test_many_producers_one_consumer(outbox: Outbox) -> None:
    """8 producers x 2,000 items through an outbox of capacity 8, consumed by the doorbell.

    Invariant: the consumer is always woken while items wait (it waits only on
    the doorbell, so a lost wake-up times out); no item is lost or duplicated;
    each producer's items stay in order; the queue never exceeds its capacity.
    """
    producers_n, per_producer = 8, 2000
    Consumer(outbox)
    lengths: list[int] = []

    def produce(producer: int) -> None:
        for seq in range(per_producer):
            outbox.put("iopub", [bytes([producer]), seq.to_bytes(2, "big")])
            lengths.append(len(outbox))

    threads = [in_thread(lambda p=p: produce(p)) for p in range(producers_n)]
    seen: dict[int, list[int]] = {p: [] for p in range(producers_n)}
    received = 0
    while received < producers_n * per_producer:
        assert bell_rings(outbox, DEADLINE), f"no wake-up with {len(outbox)} items queued: lost wake-up"
        batch = outbox.take_batch()
        lengths.append(len(batch))
        for _, frames in batch:
            producer, seq = frames
            seen[producer[0]].append(int.from_bytes(seq, "big"))
        received += len(batch)
        outbox.signal_room()
    for thread in threads:
        thread.join(DEADLINE)
    assert all(seqs == list(range(per_producer)) for seqs in seen.values())
    assert max(lengths) <= outbox.capacity
