"""The IO thread and its outbox with real ZeroMQ sockets on 127.0.0.1.

Every test binds an ``IOThread`` on port 0 with a fresh key and talks to it
with plain pyzmq client sockets (DEALER for shell and control, SUB for iopub,
REQ for the heartbeat). What arrives is decoded with ``jupyter_client``'s
``Session``, so every test also proves the wire format and the signatures.

Nothing here sleeps to synchronise. Tests wait for the subscription to be live
(``on_subscribe``), for producers to block (a watched stand-in for the outbox's
"room" event), for messages (``poll`` with a deadline) and for dispatches (a
queue). The deadlines are safety nets only. Client sockets close with
``linger=0`` and their context must terminate, so a leaked socket fails fast.
"""

from __future__ import annotations

import logging
import queue
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import zmq
from jupyter_client.session import Session as JupyterSession

from tests.test_outbox import WatchedRoom
from threadline.io import Heartbeat, IOThread, IOThreadError, OutboxClosed, Sender
from threadline.protocol import DELIMITER, ConnectionInfo, Message, Session

#: Safety-net timeout for any single wait (seconds). Never reached when things work.
DEADLINE = 20.0


# -- fixtures and helpers ----------------------------------------------------------------


class Clients:
    """The test's own client sockets, in a context that must terminate cleanly."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.sockets: list[zmq.Socket[bytes]] = []

    def connect(self, kind: int, url: str, **options: int | bytes) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.context.socket(kind)
        self.sockets.append(sock)
        sock.linger = 0
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name), value)
        sock.connect(url)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        terminate = threading.Thread(target=self.context.term, daemon=True)
        terminate.start()
        terminate.join(5.0)
        assert not terminate.is_alive(), "the client context did not terminate: a socket leaked"


@dataclass
class Harness:
    """A running IOThread, the test's view of it, and its clients."""

    io: IOThread
    info: ConnectionInfo
    sender: Sender
    key: bytes
    clients: Clients
    subscribed: threading.Event
    topics: list[bytes]
    dispatched: queue.Queue[tuple[str, Message]] = field(default_factory=queue.Queue)

    def client_session(self) -> JupyterSession:
        return JupyterSession(key=self.key, signature_scheme="hmac-sha256", username="test-client")

    def subscribe(self, **options: int | bytes) -> zmq.Socket[bytes]:
        """A SUB socket on iopub, returned once the IO thread has seen it subscribe."""
        self.subscribed.clear()
        sub = self.clients.connect(zmq.SUB, self.info.url("iopub"), SUBSCRIBE=b"", **options)
        assert self.subscribed.wait(DEADLINE), "the subscription never reached the IO thread"
        return sub

    def dealer(self, channel: str, identity: bytes = b"") -> zmq.Socket[bytes]:
        options: dict[str, int | bytes] = {"IDENTITY": identity} if identity else {}
        return self.clients.connect(zmq.DEALER, self.info.url(channel), **options)

    def next_dispatch(self) -> tuple[str, Message]:
        return self.dispatched.get(timeout=DEADLINE)


def receive(sock: zmq.Socket[bytes], count: int, session: JupyterSession) -> list[dict[str, Any]]:
    """``count`` messages from ``sock``, verified and decoded by jupyter_client."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + DEADLINE
    while len(messages) < count:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        assert remaining_ms > 0 and sock.poll(remaining_ms), f"only {len(messages)} of {count} arrived"
        _, rest = session.feed_identities(sock.recv_multipart(), copy=True)
        messages.append(session.deserialize(rest, content=True, copy=True))  # raises on a bad HMAC
    return messages


def on_io_thread(harness: Harness, function: Callable[[], object]) -> object:
    """Run ``function`` on the IO thread; return its result or the exception it raised."""
    result: queue.Queue[object] = queue.Queue()

    def run() -> None:
        try:
            result.put(function())
        except Exception as exc:
            result.put(exc)

    harness.io.outbox.call_soon(run)
    return result.get(timeout=DEADLINE)


@pytest.fixture
def clients() -> Iterator[Clients]:
    owned = Clients()
    try:
        yield owned
    finally:
        owned.close()


@pytest.fixture
def start_io(clients: Clients) -> Iterator[Callable[..., Harness]]:
    """Factory: start an IOThread (stopped, and checked stopped, at teardown)."""
    started: list[IOThread] = []

    def start(dispatch: Callable[[Harness, str, Message], None] | None = None, **options: Any) -> Harness:
        key = secrets.token_hex(16).encode()
        subscribed = threading.Event()
        topics: list[bytes] = []
        harness_box: list[Harness] = []

        def on_subscribe(topic: bytes) -> None:
            topics.append(topic)
            subscribed.set()

        def on_message(channel: str, message: Message) -> None:
            harness = harness_box[0]
            if dispatch is not None:
                dispatch(harness, channel, message)
            harness.dispatched.put((channel, message))

        session = Session(key)
        io = IOThread(
            ConnectionInfo(key=key.decode()), session, on_message, on_subscribe=on_subscribe, **options
        )
        info = io.start()
        started.append(io)
        harness = Harness(io, info, Sender(session, io.outbox), key, clients, subscribed, topics)
        harness_box.append(harness)
        return harness

    yield start
    for io in started:
        io.stop()
        assert not io.is_alive(), "the IO thread did not stop"


# -- basics --------------------------------------------------------------------------


def test_start_binds_every_channel_and_subscription_is_reported(start_io: Callable[..., Harness]) -> None:
    h = start_io()
    assert all(h.info.port(channel) > 0 for channel in ("shell", "iopub", "stdin", "control"))
    sub = h.subscribe()
    assert h.topics == [b""]
    h.sender.publish("status", {"execution_state": "idle"})
    [msg] = receive(sub, 1, h.client_session())
    assert msg["msg_type"] == "status" and msg["content"] == {"execution_state": "idle"}


def test_start_reports_a_port_already_in_use(clients: Clients) -> None:
    taken = clients.context.socket(zmq.ROUTER)
    clients.sockets.append(taken)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    io = IOThread(ConnectionInfo(shell_port=port, key="k"), Session(b"k"), lambda c, m: None)
    with pytest.raises(IOThreadError, match="could not bind"):
        io.start()
    io.stop()
    assert not io.is_alive()


def test_request_is_dispatched_and_reply_routed_back(start_io: Callable[..., Harness]) -> None:
    """A dispatcher on the IO thread replies directly, to the identity it got."""

    def reply(h: Harness, channel: str, msg: Message) -> None:
        h.sender.send(
            channel,
            "kernel_info_reply",
            {"status": "ok", "on_io_thread": h.io.is_io_thread()},
            parent=msg.header,
            identities=msg.identities,
        )

    h = start_io(dispatch=reply)
    client = h.client_session()
    for channel in ("shell", "control"):
        dealer = h.dealer(channel, identity=f"client-{channel}".encode())
        request = client.msg("kernel_info_request", content={})
        dealer.send_multipart(client.serialize(request))
        got_channel, got = h.next_dispatch()
        assert (got_channel, got.msg_id, got.identities) == (channel, request["msg_id"], (dealer.IDENTITY,))
        [answer] = receive(dealer, 1, client)
        assert answer["parent_header"]["msg_id"] == request["msg_id"]
        assert answer["content"] == {"status": "ok", "on_io_thread": True}


def test_reply_to_a_client_that_is_gone_is_counted_not_fatal(start_io: Callable[..., Harness]) -> None:
    h = start_io()
    h.sender.send("shell", "execute_reply", {"status": "ok"}, identities=[b"nobody-here"])
    assert h.io.flush(DEADLINE)
    assert h.io.dropped["shell:unroutable"] == 1
    assert h.io.is_alive()


# -- incoming garbage ------------------------------------------------------------------------


def test_invalid_incoming_messages_are_counted_and_dropped(start_io: Callable[..., Harness]) -> None:
    """Garbage, forgeries and replays never reach the dispatcher; a valid message after them does."""
    h = start_io()
    client = h.client_session()
    dealer = h.dealer("shell", identity=b"fuzzer")
    rng = random.Random(20240601)
    garbage: list[list[bytes]] = []
    for _ in range(40):
        frames = [rng.randbytes(rng.randrange(0, 40)) for _ in range(rng.randrange(1, 9))]
        if rng.random() < 0.5:
            frames.insert(rng.randrange(len(frames) + 1), DELIMITER)
        garbage.append(frames)
    valid = client.serialize(client.msg("execute_request", content={"code": "1"}))
    forged = [*valid[:1], b"0" * 64, *valid[2:]]
    unsigned = [DELIMITER, b"", *valid[2:]]
    wrong_key = JupyterSession(key=b"wrong key").serialize(client.msg("status", content={}))
    for frames in [*garbage, forged, unsigned, wrong_key, valid, valid]:  # the second `valid` is a replay
        dealer.send_multipart(frames)
    last = client.msg("execute_request", content={"code": "2"})
    dealer.send_multipart(client.serialize(last))

    channel, first = h.next_dispatch()
    assert (channel, first.content) == ("shell", {"code": "1"})
    channel, second = h.next_dispatch()
    assert (channel, second.msg_id) == ("shell", last["msg_id"])
    assert h.dispatched.empty()
    dropped = h.io.dropped
    assert dropped["shell:replay"] == 1
    assert dropped["shell:signature"] >= 3  # forged, unsigned, wrong key (+ any signed-looking garbage)
    assert sum(dropped.values()) == len(garbage) + 4
    assert set(dropped) <= {"shell:framing", "shell:signature", "shell:replay"}
    assert h.io.is_alive()


def test_a_failing_dispatcher_does_not_stop_the_loop(
    start_io: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    def explode(h: Harness, channel: str, msg: Message) -> None:
        if msg.content.get("explode"):
            raise ValueError("handler bug")

    h = start_io(dispatch=explode)
    client = h.client_session()
    dealer = h.dealer("shell")
    with caplog.at_level(logging.ERROR, logger="threadline.io"):
        dealer.send_multipart(client.serialize(client.msg("execute_request", content={"explode": True})))
        dealer.send_multipart(client.serialize(client.msg("execute_request", content={"explode": False})))
        _, after = h.next_dispatch()
    assert after.content == {"explode": False}
    assert any("handler bug" in (record.exc_text or "") for record in caplog.records)


# -- many threads ---------------------------------------------------------------------------


def test_stress_many_threads_publish_on_iopub(start_io: Callable[..., Harness]) -> None:
    """8 threads x 5,000 messages each, all through ``Sender.publish`` at once.

    Invariant: all 40,000 arrive; each is HMAC-valid and whole when jupyter_client
    decodes it (nothing interleaved or corrupt); no (thread, seq) arrives twice or
    goes missing; and each thread's messages arrive in the order it sent them.
    """
    threads_n, per_thread = 8, 5000
    h = start_io()
    sub = h.subscribe()
    start = threading.Barrier(threads_n)
    failures: list[BaseException] = []

    def produce(thread_id: int) -> None:
        try:
            start.wait(DEADLINE)
            for seq in range(per_thread):
                h.sender.publish("stream", {"name": "stdout", "text": f"{thread_id}:{seq}\n"})
        except BaseException as exc:
            failures.append(exc)

    producers = [threading.Thread(target=produce, args=(i,)) for i in range(threads_n)]
    for thread in producers:
        thread.start()
    messages = receive(sub, threads_n * per_thread, h.client_session())
    for thread in producers:
        thread.join(DEADLINE)
    assert not failures

    seen: dict[int, list[int]] = {i: [] for i in range(threads_n)}
    for msg in messages:
        thread_id, seq = map(int, msg["content"]["text"].split(":"))
        seen[thread_id].append(seq)
    assert all(seqs == list(range(per_thread)) for seqs in seen.values())
    assert len({msg["msg_id"] for msg in messages}) == threads_n * per_thread
    assert h.io.flush(DEADLINE)
    assert not sub.poll(0), "more messages arrived than were sent"


# -- back-pressure -------------------------------------------------------------------------


def test_back_pressure_blocks_producers_and_loses_nothing(start_io: Callable[..., Harness]) -> None:
    """3 producers x 80 messages of 64 KiB through an outbox of capacity 8 to a slow reader.

    The reader reads only while producers are blocked for room, a few messages at
    a time. Invariants: producers block (more than once) rather than anything being
    dropped; the outbox never holds more than its capacity and the IO thread's own
    pending batch never more than one batch (so memory stays bounded while the
    subscriber is slow); every message arrives, in each producer's order.
    """
    capacity, producers_n, per_producer, burst = 8, 3, 80, 5
    total = producers_n * per_producer
    h = start_io(outbox_capacity=capacity, iopub_hwm=4)
    room = WatchedRoom()
    h.io.outbox._room = room  # white box: the event producers wait on for room
    sub = h.subscribe(RCVHWM=4, RCVBUF=64 * 1024)
    payload = secrets.token_bytes(64 * 1024)
    queue_lengths: list[int] = []
    finished: list[int] = []

    def produce(producer: int) -> None:
        try:
            for seq in range(per_producer):
                h.sender.publish("display_data", {"producer": producer, "seq": seq}, buffers=[payload])
                queue_lengths.append(len(h.io.outbox))
        finally:
            with room.changed:
                finished.append(producer)
                room.changed.notify_all()

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers_n)]
    for thread in threads:
        thread.start()

    client = h.client_session()
    messages: list[dict[str, Any]] = []
    stalls = 0
    pending_samples: list[int] = []
    while len(messages) < total:
        with room.changed:
            assert room.changed.wait_for(lambda: room.waiting > 0 or len(finished) == producers_n, DEADLINE)
            if room.waiting > 0:
                stalls += 1
                queue_lengths.append(len(h.io.outbox))
                pending_samples.append(len(h.io._ready))  # white box: the IO thread's pending batch
        messages += receive(sub, min(burst, total - len(messages)), client)
    for thread in threads:
        thread.join(DEADLINE)

    assert stalls > 1, "the producers never had to wait: the test did not exercise back-pressure"
    assert max(queue_lengths) <= capacity
    assert max(pending_samples) <= capacity
    order: dict[int, list[int]] = {i: [] for i in range(producers_n)}
    for msg in messages:
        order[msg["content"]["producer"]].append(msg["content"]["seq"])
        assert bytes(msg["buffers"][0]) == payload
    assert all(seqs == list(range(per_producer)) for seqs in order.values())
    assert not h.io.dropped


def test_a_slow_subscriber_holds_large_frames_to_a_bound_in_bytes(start_io: Callable[..., Harness]) -> None:
    """64 messages with a 256 KiB buffer each (16 MiB) to a subscriber that does not
    read, far below iopub's high-water mark in messages: the IO thread stops once
    ZeroMQ holds ``max_lent_bytes`` of them, the producer waits for room in the
    outbox, and when the subscriber reads, every message arrives, intact and in order.
    (Without the bound ZeroMQ takes all 64 and the producer never waits.)"""
    limit, size, count = 512 * 1024, 256 * 1024, 64
    h = start_io(max_lent_bytes=limit, outbox_max_bytes=limit)
    room = WatchedRoom()
    h.io.outbox._room = room  # white box: the event producers wait on for room
    sub = h.subscribe(RCVHWM=1, RCVBUF=64 * 1024)
    payloads = [secrets.token_bytes(size) for _ in range(count)]
    done = threading.Event()

    def produce() -> None:
        for seq, payload in enumerate(payloads):
            h.sender.publish("display_data", {"seq": seq}, buffers=[payload])
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    with room.changed:
        # White box: the IO thread stopped for a full socket. (A waiting producer
        # looks again at least every second: its wait's safety net.)
        stalled = room.changed.wait_for(lambda: room.waiting > 0 and h.io._stalled is not None, DEADLINE)
        assert stalled, "the IO thread never stopped for iopub"
    # White box: bytes ZeroMQ held when the IO thread last looked (it looks before each
    # send, and does not send once they reach the bound): one message past it at most.
    assert limit <= h.io._senders["iopub"].lent_bytes <= limit + size
    assert not done.is_set()
    messages = receive(sub, count, h.client_session())
    producer.join(DEADLINE)
    assert done.is_set()
    assert [m["content"]["seq"] for m in messages] == list(range(count))
    assert all(bytes(m["buffers"][0]) == payload for m, payload in zip(messages, payloads, strict=True))
    assert not h.io.dropped


# -- sending from the IO thread ---------------------------------------------------------------


def test_direct_send_on_the_io_thread_keeps_order(start_io: Callable[..., Harness]) -> None:
    """On the IO thread a send goes out at once, after what was queued before it."""
    h = start_io()
    sub = h.subscribe()
    ran_on_io_thread: list[bool] = []
    direct_sent = threading.Event()

    def direct() -> None:
        ran_on_io_thread.append(h.io.is_io_thread())
        h.sender.publish("stream", {"text": "direct-0"})
        h.sender.publish("stream", {"text": "direct-1"})
        direct_sent.set()

    for i in range(5):
        h.sender.publish("stream", {"text": f"before-{i}"})
    h.io.outbox.call_soon(direct)
    assert direct_sent.wait(DEADLINE)
    h.sender.publish("stream", {"text": "after"})
    texts = [m["content"]["text"] for m in receive(sub, 8, h.client_session())]
    assert texts == [*(f"before-{i}" for i in range(5)), "direct-0", "direct-1", "after"]
    assert ran_on_io_thread == [True]


def test_direct_send_while_iopub_is_full_goes_after_what_was_queued(start_io: Callable[..., Harness]) -> None:
    """A message the IO thread sends itself while iopub is stalled must not overtake the queue.

    One producer fills the pipeline until it blocks (iopub at its high-water
    mark, the outbox full). Then a shell request makes the dispatcher, on the
    IO thread, publish a marker -- once iopub is really stalled with the outbox
    full, which it checks on its own timer. Every message the producer had queued before
    the marker must arrive before it.
    """
    per_producer = 120
    queued = [0]
    marker_sent = threading.Event()

    def publish_marker(h: Harness, channel: str, msg: Message) -> None:
        def when_stalled() -> None:
            # White box: wait, polling on the IO thread, until iopub is stalled
            # and the outbox is full of messages queued before the marker.
            if h.io._stalled is None or len(h.io.outbox) < h.io.outbox.capacity:
                h.io.call_later(0.002, when_stalled)
                return
            h.sender.publish("status", {"marker": True, "queued_before": queued[0]})
            marker_sent.set()

        when_stalled()

    h = start_io(dispatch=publish_marker, outbox_capacity=8, iopub_hwm=4)
    room = WatchedRoom()
    h.io.outbox._room = room  # white box: see the producer block
    sub = h.subscribe(RCVHWM=4, RCVBUF=64 * 1024)
    payload = secrets.token_bytes(64 * 1024)

    def produce() -> None:
        for seq in range(per_producer):
            h.sender.publish("display_data", {"seq": seq}, buffers=[payload])
            queued[0] = seq + 1

    producer = threading.Thread(target=produce)
    producer.start()
    with room.changed:
        assert room.changed.wait_for(lambda: room.waiting > 0, DEADLINE), "the producer never blocked"
    client = h.client_session()
    h.dealer("shell").send_multipart(client.serialize(client.msg("execute_request", content={})))
    assert marker_sent.wait(DEADLINE)
    messages = receive(sub, per_producer + 1, client)
    producer.join(DEADLINE)

    [marker_at] = [i for i, m in enumerate(messages) if m["content"].get("marker")]
    queued_before = messages[marker_at]["content"]["queued_before"]
    assert queued_before > 0
    seqs = [m["content"]["seq"] for m in messages if "seq" in m["content"]]
    assert seqs == list(range(per_producer))
    arrived_before_marker = {m["content"]["seq"] for m in messages[:marker_at]}
    assert set(range(queued_before)) <= arrived_before_marker


# -- flush, stop, thread rules ------------------------------------------------------------


def test_flush_returns_once_everything_queued_was_sent(start_io: Callable[..., Harness]) -> None:
    h = start_io()
    sub = h.subscribe()
    for i in range(50):
        h.sender.publish("stream", {"text": str(i)})
    assert h.io.flush(DEADLINE)
    assert len(h.io.outbox) == 0
    assert [m["content"]["text"] for m in receive(sub, 50, h.client_session())] == [str(i) for i in range(50)]


def test_stop_delivers_what_was_queued_then_refuses(start_io: Callable[..., Harness]) -> None:
    h = start_io()
    sub = h.subscribe()
    for i in range(200):
        h.sender.publish("stream", {"text": str(i)})
    assert h.io.stop(DEADLINE) is True
    assert not h.io.is_alive()
    with pytest.raises(OutboxClosed):
        h.sender.publish("stream", {"text": "too late"})
    with pytest.raises(OutboxClosed):
        h.io.outbox.call_soon(lambda: None)
    texts = [m["content"]["text"] for m in receive(sub, 200, h.client_session())]
    assert texts == [str(i) for i in range(200)]
    assert h.io.flush() is True  # nothing left; does not wait


def test_put_after_stop_is_refused_on_every_thread(start_io: Callable[..., Harness]) -> None:
    """Threads started after the stop may reuse the dead IO thread's ident; they are refused too."""
    h = start_io()
    io_ident = h.io.ident
    assert h.io.stop(DEADLINE)
    outcomes: list[tuple[bool, str]] = []

    def try_put() -> None:
        try:
            h.sender.publish("stream", {"text": "too late"})
            outcomes.append((threading.get_ident() == io_ident, "sent"))
        except OutboxClosed:
            outcomes.append((threading.get_ident() == io_ident, "refused"))

    for _ in range(10):
        thread = threading.Thread(target=try_put)
        thread.start()
        thread.join(DEADLINE)
    assert [outcome for _, outcome in outcomes] == ["refused"] * 10, outcomes


def test_blocking_and_stopping_calls_refuse_the_io_thread(start_io: Callable[..., Harness]) -> None:
    h = start_io()
    assert isinstance(on_io_thread(h, h.io.flush), IOThreadError)
    assert isinstance(on_io_thread(h, h.io.stop), IOThreadError)
    assert h.io.is_alive()


def test_call_later_only_on_the_io_thread(start_io: Callable[..., Harness]) -> None:
    h = start_io()
    with pytest.raises(IOThreadError):
        h.io.call_later(0.0, lambda: None)
    with pytest.raises(IOThreadError):
        h.io.receive_now("shell")
    fired = threading.Event()
    on_thread: list[bool] = []

    def timer() -> None:
        on_thread.append(h.io.is_io_thread())
        fired.set()

    assert on_io_thread(h, lambda: h.io.call_later(0.01, timer)) is None
    assert fired.wait(DEADLINE)
    assert on_thread == [True]


# -- heartbeat ---------------------------------------------------------------------------------


def test_heartbeat_echoes_pings(clients: Clients) -> None:
    heartbeat = Heartbeat(ConnectionInfo())
    heartbeat.start()
    try:
        ping = clients.connect(zmq.REQ, f"tcp://127.0.0.1:{heartbeat.port}")
        for payload in (b"ping", b"", secrets.token_bytes(100)):
            ping.send(payload)
            assert ping.poll(int(DEADLINE * 1000)), "no echo"
            assert ping.recv() == payload
    finally:
        heartbeat.stop()


# -- sends and receives made by other threads ------------------------------------------------


def _hold_io_thread(h: Harness) -> tuple[threading.Event, threading.Event]:
    """Park the IO thread in a call until the returned ``release`` is set."""
    held, release = threading.Event(), threading.Event()

    def park() -> None:
        held.set()
        release.wait(DEADLINE)

    h.io.outbox.call_soon(park)
    assert held.wait(DEADLINE)
    return held, release


def test_a_send_with_nothing_queued_leaves_from_the_sending_thread(start_io: Callable[..., Harness]) -> None:
    """With the IO thread parked, a message with nothing queued ahead still arrives:
    the producing thread sent it itself (``send_now``)."""
    h = start_io()
    sub = h.subscribe()
    _, release = _hold_io_thread(h)
    try:
        h.sender.publish("stream", {"text": "direct"})
        [message] = receive(sub, 1, h.client_session())  # while the IO thread is still parked
        assert message["content"]["text"] == "direct"
    finally:
        release.set()


def test_a_send_behind_queued_work_waits_for_it(start_io: Callable[..., Harness]) -> None:
    """What is queued goes first: a message put behind a queued item is sent by the
    IO thread after that item, never directly past it, and each thread's order holds."""
    h = start_io()
    sub = h.subscribe()
    _, release = _hold_io_thread(h)
    ran: list[str] = []
    try:
        h.io.outbox.call_soon(lambda: ran.append("queued call"))  # queued: the outbox is not empty
        h.sender.publish("stream", {"text": "behind"})
        h.sender.publish("stream", {"text": "behind-2"})
        assert not sub.poll(200), "a message overtook the queued call"  # bounded look, not a sync
    finally:
        release.set()
    texts = [m["content"]["text"] for m in receive(sub, 2, h.client_session())]
    assert texts == ["behind", "behind-2"]
    assert ran == ["queued call"]


def test_messages_sent_together_leave_from_the_sending_thread_in_order(
    start_io: Callable[..., Harness],
) -> None:
    """``send_together`` (busy, a reply, idle: a request answered on the spot): with the
    IO thread parked they all arrive, in order; a reply whose client is gone is counted,
    and what follows it still goes."""
    h = start_io()
    sub = h.subscribe()
    _, release = _hold_io_thread(h)
    try:
        h.sender.send_together(
            [
                h.sender.build("iopub", "stream", {"text": "first"}),
                h.sender.build("shell", "kernel_info_reply", {"status": "ok"}, identities=[b"nobody-here"]),
                h.sender.build("iopub", "stream", {"text": "last"}),
            ]
        )
        texts = [m["content"]["text"] for m in receive(sub, 2, h.client_session())]  # the IO thread is parked
        assert texts == ["first", "last"]
        assert h.io.dropped["shell:unroutable"] == 1
    finally:
        release.set()
    assert h.io.flush(DEADLINE)
    assert not sub.poll(200), "a message was sent twice"  # bounded look, after the flush


def test_messages_sent_together_behind_queued_work_wait_for_it(start_io: Callable[..., Harness]) -> None:
    h = start_io()
    sub = h.subscribe()
    _, release = _hold_io_thread(h)
    ran: list[str] = []
    try:
        h.io.outbox.call_soon(lambda: ran.append("queued call"))
        h.sender.send_together([h.sender.build("iopub", "stream", {"text": t}) for t in ("a", "b", "c")])
        assert not sub.poll(200), "a message overtook the queued call"  # bounded look, not a sync
    finally:
        release.set()
    assert [m["content"]["text"] for m in receive(sub, 3, h.client_session())] == ["a", "b", "c"]
    assert ran == ["queued call"]


def test_a_lent_socket_is_received_on_the_borrowing_thread(start_io: Callable[..., Harness]) -> None:
    """``lend``: the borrowing thread receives and dispatches the shell socket's requests
    while it waits on the descriptor; after ``reclaim`` the IO thread does again."""
    threads: list[int | None] = []
    h = start_io(dispatch=lambda h, channel, msg: threads.append(threading.get_ident()))
    client = h.client_session()
    shell = h.dealer("shell")
    # Before lending: one request through the IO thread, so the connection's own
    # wake-ups (the pipe being attached) are over, then a pass of its loop to be sure
    # it is asleep again; a lent socket is then the borrower's alone.
    shell.send_multipart(client.serialize(client.msg("kernel_info_request", content={"n": -1})))
    assert h.next_dispatch()[1].content["n"] == -1
    assert h.io.flush(DEADLINE)
    threads.clear()
    fd = h.io.lend("shell")
    assert fd is not None
    poller = zmq.Poller()
    poller.register(fd, zmq.POLLIN)
    for n in range(3):
        shell.send_multipart(client.serialize(client.msg("kernel_info_request", content={"n": n})))
    received: list[int] = []
    deadline = time.monotonic() + DEADLINE
    while len(received) < 3 and time.monotonic() < deadline:
        if poller.poll(100):
            h.io.receive_here("shell")
        while not h.dispatched.empty():
            received.append(h.dispatched.get_nowait()[1].content["n"])
    assert received == [0, 1, 2]
    assert set(threads) == {threading.get_ident()}
    h.io.reclaim("shell")
    shell.send_multipart(client.serialize(client.msg("kernel_info_request", content={"n": 3})))
    _, message = h.next_dispatch()
    assert message.content["n"] == 3
    assert threads[-1] == h.io.ident


def test_receiving_on_two_threads_keeps_arrival_order(start_io: Callable[..., Harness]) -> None:
    """The IO thread and a borrowing thread both receive from the shell socket (the IO
    thread keeps watching it here): 2,000 requests are dispatched once each, in order."""
    count = 2000
    order: list[int] = []
    h = start_io(dispatch=lambda h, channel, msg: order.append(msg.content["n"]))
    client = h.client_session()
    shell = h.dealer("shell")
    fd = h.io._fds["shell"]  # white box: watch it without lending, so both threads receive
    stop = threading.Event()

    def borrower() -> None:
        poller = zmq.Poller()
        poller.register(fd, zmq.POLLIN)
        while not stop.is_set():
            if poller.poll(50):
                h.io.receive_here("shell")

    thread = threading.Thread(target=borrower)
    thread.start()
    try:
        for n in range(count):
            shell.send_multipart(client.serialize(client.msg("kernel_info_request", content={"n": n})))
        for _ in range(count):
            h.next_dispatch()
    finally:
        stop.set()
        thread.join(DEADLINE)
    assert order == list(range(count))


def test_an_unordered_call_does_not_hold_up_a_direct_send(start_io: Callable[..., Harness]) -> None:
    """``call_soon(..., ordered=False)`` (the stream timer's arming) is bookkeeping: a
    message put after it may leave at once; an ordered call would hold it back."""
    h = start_io()
    sub = h.subscribe()
    _, release = _hold_io_thread(h)
    ran: list[str] = []
    try:
        h.io.outbox.call_soon(lambda: ran.append("side"), ordered=False)
        h.sender.publish("stream", {"text": "past the side call"})
        [message] = receive(sub, 1, h.client_session())  # while the IO thread is parked
        assert message["content"]["text"] == "past the side call"
        assert ran == []
    finally:
        release.set()
    assert h.io.flush(DEADLINE)
    assert ran == ["side"]
