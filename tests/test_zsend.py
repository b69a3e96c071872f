"""The IO thread's multipart send: libzmq via ctypes (GIL held) and the pyzmq fallback."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest
import zmq

from threadline.io.zsend import FrameSender, SendError

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


def test_the_ctypes_path_is_available_here() -> None:
    # pyzmq's wheels link libzmq dynamically; if this fails the kernel still
    # works (through pyzmq), but the latency guarantees of zsend are lost.
    assert FrameSender.__init__  # import works
    from threadline.io import zsend

    assert zsend._C_SEND is not None


@pytest.mark.parametrize("use_ctypes", [True, False], ids=["ctypes", "pyzmq"])
def test_multipart_messages_arrive_whole(context: Sockets, use_ctypes: bool) -> None:
    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push.connect(f"tcp://127.0.0.1:{port}")
    sender = FrameSender(push, use_ctypes=use_ctypes)
    assert sender.holds_gil is use_ctypes
    big = bytes(range(256)) * 1024  # 256 KiB
    messages = [
        [b"<IDS|MSG>", b"sig", b"{}", b"{}", b"{}", b'{"a": 1}'],
        [b"only"],
        [b"", b"empty frames too", b""],
        [b"head", memoryview(b"a memoryview"), bytearray(b"a bytearray"), big],
    ]
    for message in messages:
        sender.send(message)
    for message in messages:
        assert pull.poll(POLL_MS)
        assert pull.recv_multipart() == [bytes(frame) for frame in message]


@pytest.mark.parametrize("use_ctypes", [True, False], ids=["ctypes", "pyzmq"])
def test_a_full_socket_refuses_the_whole_message(context: Sockets, use_ctypes: bool) -> None:
    push = context.socket(zmq.PUSH)  # no peer: nowhere to queue
    with pytest.raises(SendError) as refused:
        FrameSender(push, use_ctypes=use_ctypes).send([b"a", b"b"])
    assert refused.value.errno == errno.EAGAIN


@pytest.mark.parametrize("use_ctypes", [True, False], ids=["ctypes", "pyzmq"])
def test_an_unknown_peer_is_unroutable(context: Sockets, use_ctypes: bool) -> None:
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.bind_to_random_port("tcp://127.0.0.1")
    with pytest.raises(SendError) as refused:
        FrameSender(router, use_ctypes=use_ctypes).send([b"nobody", b"hello"])
    assert refused.value.errno == errno.EHOSTUNREACH


@pytest.mark.parametrize("use_ctypes", [True, False], ids=["ctypes", "pyzmq"])
def test_large_frames_still_go_after_pyzmqs_atexit_hook(context: Sockets, use_ctypes: bool) -> None:
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
        FrameSender(push, use_ctypes=use_ctypes).send([b"head", big, memoryview(big)])
    finally:
        gc._stay_down = staying_down
    assert pull.poll(POLL_MS)
    assert pull.recv_multipart() == [b"head", big, big]
