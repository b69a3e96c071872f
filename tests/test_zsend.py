"""The IO thread's multipart send: libzmq via ctypes (GIL held), one call per message
(zmq_sendiov) on a thread that blocks signals, and the pyzmq fallback.

Every behaviour is checked in the three modes; the one-call mode runs on a
thread of its own that blocks asynchronous signals, as the IO thread does.
"""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import zmq

from threadline.io.zsend import ASYNC_SIGNALS, ZERO_COPY_MIN, FrameSender, SendError

T = TypeVar("T")
MODES = ["one-call", "ctypes", "pyzmq"]

POLL_MS = 10_000


class Sockets:
    """Makes sockets and closes every one of them (linger 0) at the end of the test."""

    def __init__(self) -> None:
        self.context: Sockets = zmq.Context()
        self.made: list[zmq.Socket[bytes]] = []

    def socket(self, kind: int) -> zmq.Socket[bytes]:
        sock = self.context.socket(kind)
        self.made.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.made:
            sock.close(linger=0)
        self.context.term()


@pytest.fixture
def context() -> Iterator[Sockets]:
    sockets = Sockets()
    yield sockets
    sockets.close()


def sender_for(mode: str, sock: zmq.Socket[Any]) -> FrameSender:
    sender = FrameSender(sock, use_ctypes=mode != "pyzmq")
    assert sender.one_call is (mode == "one-call")
    assert sender.holds_gil is (mode != "pyzmq")
    return sender


def in_mode(mode: str, work: Callable[[], T]) -> T:
    """Run ``work`` here, or for "one-call" on a thread that blocks asynchronous signals."""
    if mode != "one-call":
        return work()
    outcome: list[Any] = []

    def run() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, ASYNC_SIGNALS)
        try:
            outcome.append(("ok", work()))
        except BaseException as exc:
            outcome.append(("raised", exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(POLL_MS / 1000)
    kind, value = outcome[0]
    if kind == "raised":
        raise value
    result: T = value
    return result


def test_the_one_call_path_needs_signals_blocked(context: Sockets) -> None:
    push = context.socket(zmq.PUSH)
    assert not FrameSender(push).one_call  # this thread takes signals: EINTR could split a message
    assert in_mode("one-call", lambda: FrameSender(push).one_call)
    assert not in_mode("one-call", lambda: FrameSender(push, one_call=False).one_call)


def test_the_ctypes_path_is_available_here() -> None:
    # pyzmq's wheels link libzmq dynamically; if this fails the kernel still
    # works (through pyzmq), but the latency guarantees of zsend are lost.
    assert FrameSender.__init__  # import works
    from threadline.io import zsend

    assert zsend._C_SEND is not None


@pytest.mark.parametrize("mode", MODES)
def test_multipart_messages_arrive_whole(context: Sockets, mode: str) -> None:
    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push.connect(f"tcp://127.0.0.1:{port}")
    big = bytes(range(256)) * 1024  # 256 KiB
    messages: list[list[Any]] = [
        [b"<IDS|MSG>", b"sig", b"{}", b"{}", b"{}", b'{"a": 1}'],
        [b"only"],
        [b"", b"empty frames too", b""],
        [b"head", memoryview(b"a memoryview"), bytearray(b"a bytearray"), big],
        [b"many frames: more than one call packs", *(bytes([n]) * n for n in range(40))],
        [b"a big frame in one call", big, b"tail"],
    ]

    def send_all() -> None:
        sender = sender_for(mode, push)
        for message in messages:
            sender.send(message)

    in_mode(mode, send_all)
    for message in messages:
        assert pull.poll(POLL_MS)
        assert pull.recv_multipart() == [bytes(frame) for frame in message]


@pytest.mark.parametrize("mode", MODES)
def test_a_full_socket_refuses_the_whole_message(context: Sockets, mode: str) -> None:
    push = context.socket(zmq.PUSH)  # no peer: nowhere to queue
    with pytest.raises(SendError) as refused:
        in_mode(mode, lambda: sender_for(mode, push).send([b"a", b"b"]))
    assert refused.value.errno == errno.EAGAIN


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_message_leaves_nothing_behind(context: Sockets, mode: str) -> None:
    """At the high-water mark the next message is refused whole; once there is room
    the receiver sees only whole messages, in order, and none of the refused one."""
    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    push.setsockopt(zmq.SNDHWM, 1)
    pull.setsockopt(zmq.RCVHWM, 1)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push.connect(f"tcp://127.0.0.1:{port}")

    def fill() -> tuple[int, int]:
        sender = sender_for(mode, push)
        sent = 0
        while True:
            try:
                sender.send([b"n", str(sent).encode(), b"x" * 1000, b"end"])
            except SendError as exc:
                return sent, exc.errno
            sent += 1

    sent, error = in_mode(mode, fill)
    assert error == errno.EAGAIN
    assert sent >= 1
    for n in range(sent):
        assert pull.poll(POLL_MS)
        assert pull.recv_multipart() == [b"n", str(n).encode(), b"x" * 1000, b"end"]
    # Once there is room again, the next message received is the next one
    # sent: no fragment of the refused one sits in between.
    assert push.poll(POLL_MS, zmq.POLLOUT)
    in_mode(mode, lambda: sender_for(mode, push).send([b"after", b"the refusal"]))
    assert pull.poll(POLL_MS)
    assert pull.recv_multipart() == [b"after", b"the refusal"]


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_peer_is_unroutable(context: Sockets, mode: str) -> None:
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.bind_to_random_port("tcp://127.0.0.1")
    with pytest.raises(SendError) as refused:
        in_mode(mode, lambda: sender_for(mode, router).send([b"nobody", b"hello"]))
    assert refused.value.errno == errno.EHOSTUNREACH


@pytest.mark.parametrize("mode", MODES)
def test_large_frames_still_go_after_pyzmqs_atexit_hook(context: Sockets, mode: str) -> None:
    """The kernel's last flush runs in its own atexit hook, possibly after pyzmq's,
    which stops the helper thread that zero-copy sends need. Big frames -- our
    own bytes and users' buffers alike -- must still go out."""
    from zmq.utils.garbage import gc

    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push.connect(f"tcp://127.0.0.1:{port}")
    big = bytes(range(256)) * 1024  # 256 KiB, past pyzmq's zero-copy threshold
    staying_down = gc._stay_down
    gc._stay_down = True  # what pyzmq's atexit hook leaves behind
    try:
        in_mode(mode, lambda: sender_for(mode, push).send([b"head", big, memoryview(big)]))
    finally:
        gc._stay_down = staying_down
    assert pull.poll(POLL_MS)
    assert pull.recv_multipart() == [b"head", big, big]


@pytest.mark.parametrize("mode", MODES)
def test_large_frames_are_lent_to_zeromq_not_copied(context: Sockets, mode: str) -> None:
    """A frame of ZERO_COPY_MIN bytes or more is handed to libzmq as it is: while the
    message waits in the pipe, pyzmq's helper holds that very object (a copy would
    double the kernel's memory for a 50 MB buffer). Smaller frames are copied."""
    from zmq.utils.garbage import gc

    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    pull.bind("inproc://zero-copy")
    push.connect("inproc://zero-copy")  # inproc: the message stays in the pipe until read
    big = bytes(range(256)) * (ZERO_COPY_MIN // 256)
    small = b"x" * (ZERO_COPY_MIN - 1)
    in_mode(mode, lambda: sender_for(mode, push).send([b"head", small, big]))
    lent = [ref.obj for ref in list(gc.refs.values())]
    assert any(obj is big for obj in lent)
    assert not any(obj is small for obj in lent)
    assert pull.poll(POLL_MS)
    assert pull.recv_multipart() == [b"head", small, big]


@pytest.mark.parametrize("track", [True, False])
def test_large_frames_libzmq_holds_are_counted_until_it_lets_go(context: Sockets, track: bool) -> None:
    """``track_lent`` (iopub's sender): a large frame counts in ``still_lent`` while libzmq
    holds it -- over inproc, until the receiver takes the message -- and no longer once
    it has let go. Untracked senders keep no ledger at all."""
    pull = context.socket(zmq.PULL)
    pull.bind(f"inproc://lent-{track}")
    push = context.socket(zmq.PUSH)
    push.connect(f"inproc://lent-{track}")
    sender = FrameSender(push, track_lent=track)
    payload = b"x" * (4 * ZERO_COPY_MIN)
    sender.send([b"head", payload])
    assert sender.still_lent() == (len(payload) if track else 0)
    assert pull.poll(POLL_MS)
    assert pull.recv_multipart() == [b"head", payload]
    if track:
        sender._lent[0][0].wait(POLL_MS / 1000)  # white box: pyzmq's tracker, set once libzmq let go
    assert sender.still_lent() == 0
    assert not sender._lent
