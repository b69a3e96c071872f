"""Interrupt, restart, shutdown, and bad input on the wire, against a real kernel process."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from jupyter_client.session import DELIM, Session

from tests.kernel_helpers import (
    TIMEOUT,
    execute,
    get_input_request,
    get_reply,
    kernel_pid,
    stop_kernel,
    wait_for_exit,
    wait_for_iopub,
)


def _result(kc: BlockingKernelClient, code: str) -> str:
    run = execute(kc, code)
    assert run.content["status"] == "ok", run.content
    text: str = run.of_type("execute_result")[0]["content"]["data"]["text/plain"]
    return text


def _start_and_wait_running(kc: BlockingKernelClient, code: str, marker: str = "running") -> str:
    """Send ``code`` (which prints ``marker`` first, flushed); return its msg_id once it printed."""
    msg_id = kc.execute(f"print({marker!r}, flush=True)\n{code}")
    wait_for_iopub(
        kc,
        lambda m: (
            m["parent_header"].get("msg_id") == msg_id
            and m["msg_type"] == "stream"
            and marker in m["content"]["text"]
        ),
    )
    return msg_id


def _assert_interrupted(kc: BlockingKernelClient, msg_id: str) -> None:
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    error = wait_for_iopub(
        kc, lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "error"
    )
    assert error["content"]["ename"] == "KeyboardInterrupt"


def _send_control(kc: BlockingKernelClient, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    message = kc.session.msg(msg_type, content)
    kc.control_channel.send(message)
    return get_reply(kc, message["header"]["msg_id"], channel="control")


# -- interrupts ----------------------------------------------------------------------------------


def test_interrupt_busy_loop_with_signal(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = kernel
    assert manager.kernel_spec is not None and manager.kernel_spec.interrupt_mode == "signal"
    execute(kc, "state = 'kept'")
    msg_id = _start_and_wait_running(kc, "while True:\n    pass")
    manager.interrupt_kernel()
    _assert_interrupted(kc, msg_id)
    assert _result(kc, "state") == "'kept'"
    assert _result(kc, "6 * 7") == "42"


def test_interrupt_request_message_on_control(kc: BlockingKernelClient) -> None:
    msg_id = _start_and_wait_running(kc, "while True:\n    pass")
    reply = _send_control(kc, "interrupt_request", {})
    assert reply["msg_type"] == "interrupt_reply"
    assert reply["content"]["status"] == "ok"
    _assert_interrupted(kc, msg_id)
    assert _result(kc, "'still here'") == "'still here'"


@pytest.fixture
def message_mode_kernel() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    manager = KernelManager(kernel_name="threadline")
    assert manager.kernel_spec is not None
    manager.kernel_spec.interrupt_mode = "message"
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield manager, client
    finally:
        stop_kernel(manager, client)


def test_interrupt_with_message_mode_manager(
    message_mode_kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    manager, kc = message_mode_kernel
    msg_id = _start_and_wait_running(kc, "while True:\n    pass")
    manager.interrupt_kernel()  # sends interrupt_request on control
    _assert_interrupted(kc, msg_id)
    assert _result(kc, "1 + 1") == "2"


def test_interrupt_async_cell(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = kernel
    code = "import asyncio\nawait asyncio.sleep(100)\nprint('not reached')"  # in the kernel (noqa: sleep-ok)
    msg_id = _start_and_wait_running(kc, code)
    manager.interrupt_kernel()
    _assert_interrupted(kc, msg_id)
    code = "import asyncio\nawait asyncio.sleep(0, result='async ok')"  # in the kernel (noqa: sleep-ok)
    run = execute(kc, code)
    assert run.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "'async ok'"
    assert "not reached" not in run.stdout


def test_interrupt_while_waiting_for_input(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = kernel
    msg_id = kc.execute("answer = input('never answered? ')", allow_stdin=True)
    request = get_input_request(kc)
    assert request["content"]["prompt"] == "never answered? "
    manager.interrupt_kernel()
    _assert_interrupted(kc, msg_id)
    # a late reply to the withdrawn request is ignored ...
    kc.stdin_channel.send(kc.session.msg("input_reply", {"value": "too late"}, parent=request))
    # ... and input works again afterwards
    second = kc.execute("answer = input('again? ')\nanswer", allow_stdin=True)
    again = get_input_request(kc)
    assert again["content"]["prompt"] == "again? "
    kc.input("fresh")
    assert get_reply(kc, second)["content"]["status"] == "ok"
    assert _result(kc, "answer") == "'fresh'"


def test_interrupt_when_idle_is_harmless(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = kernel
    reply = _send_control(kc, "interrupt_request", {})
    assert reply["content"]["status"] == "ok"
    assert _result(kc, "'fine'") == "'fine'"
    assert manager.is_alive()


# -- the first client ------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(3))
def test_first_request_output_reaches_a_client_that_just_connected(attempt: int) -> None:
    """A client that connects, gets its kernel_info reply and executes at once (as jupyter
    console does) sees every iopub message of that execution: its iopub subscription is
    live before the kernel answers on shell. (Each attempt is a fresh kernel: the race is
    at first connection.)"""
    manager = KernelManager(kernel_name="threadline")
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        info = get_reply(client, client.kernel_info(), timeout=60)
        assert info["content"]["status"] == "ok"
        msg_id = client.execute("print('first')")
        reply = get_reply(client, msg_id)
        assert reply["content"]["status"] == "ok"
        # no polling retry: these messages were published before the reply was received
        kinds = []
        while True:
            message = client.get_iopub_msg(timeout=TIMEOUT)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kinds.append(message["msg_type"])
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        assert kinds == ["status", "execute_input", "stream", "status"]
    finally:
        stop_kernel(manager, client)


# -- restart and shutdown --------------------------------------------------------------------------


def test_restart_gives_a_new_process_with_fresh_state(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    manager, kc = kernel
    old_pid = _result(kc, "import os\nsecret = 'old state'\nos.getpid()")
    assert manager.provisioner is not None
    old_process = manager.provisioner.process  # type: ignore[attr-defined]
    manager.restart_kernel(now=False)
    assert old_process.poll() is not None  # the old process exited
    kc.wait_for_ready(timeout=60)
    new_pid = _result(kc, "import os\nos.getpid()")
    assert new_pid != old_pid
    gone = execute(kc, "secret")
    assert gone.content["status"] == "error"
    assert gone.content["ename"] == "NameError"
    assert execute(kc, "1").content["execution_count"] == 3  # counting starts over
    # The new process listened on the same ports before importing pyzmq
    # (io/listening.py), the old one's connections in TIME_WAIT notwithstanding.
    marks = execute(kc, "print(sorted(get_ipython().kernel.startup_marks))").stdout
    assert "'listening'" in marks, marks


def test_shutdown_request_replies_on_control_then_exits(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    manager, kc = kernel
    execute(kc, "x = 1")
    msg_id = kc.shutdown(restart=False)
    reply = get_reply(kc, msg_id, channel="control")
    assert reply["msg_type"] == "shutdown_reply"
    assert reply["content"] == {"status": "ok", "restart": False}
    assert wait_for_exit(manager) == 0
    assert not manager.is_alive()


def test_shutdown_with_restart_flag_is_echoed(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = kernel
    msg_id = kc.shutdown(restart=True)
    reply = get_reply(kc, msg_id, channel="control")
    assert reply["content"] == {"status": "ok", "restart": True}
    assert wait_for_exit(manager) == 0


def test_shutdown_while_a_cell_runs(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = kernel
    _start_and_wait_running(kc, "while True:\n    pass")
    msg_id = kc.shutdown()
    assert get_reply(kc, msg_id, channel="control")["content"]["status"] == "ok"
    assert wait_for_exit(manager) == 0


def test_shutdown_flushes_output_of_the_last_cell(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = kernel
    msg_id = kc.execute("import sys\nsys.stdout.write('partial line without newline')")
    get_reply(kc, msg_id)
    shutdown = kc.shutdown()
    get_reply(kc, shutdown, channel="control")
    text = wait_for_iopub(
        kc, lambda m: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id
    )
    assert text["content"]["text"] == "partial line without newline"
    assert wait_for_exit(manager) == 0


SIGTERM_BLOCKED_MAIN = """
import signal, sys, threading
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
print("waiting", flush=True)
sys.stdout.write("last words, not yet flushed")
threading.Event().wait()
"""


def test_sigterm_taken_by_another_thread_still_shuts_down_in_order(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """SIGTERM while the main thread blocks it and waits: another thread takes it,
    which alone wakes nothing. The kernel's signal watch pokes the main thread, its
    handler starts the orderly shutdown, the cell is interrupted, the text still in
    the buffers is sent, and the process exits 0 (without the watch: no exit)."""
    manager, kc = kernel
    msg_id = kc.execute(SIGTERM_BLOCKED_MAIN)
    wait_for_iopub(kc, lambda m: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id)
    os.kill(kernel_pid(manager), signal.SIGTERM)
    last = wait_for_iopub(kc, lambda m: m["msg_type"] == "stream" and "last words" in m["content"]["text"])
    assert last["content"]["text"] == "last words, not yet flushed"
    assert wait_for_exit(manager) == 0


# -- bad input on the wire ---------------------------------------------------------------------------


class RawPeer:
    """A DEALER socket that speaks (and misspeaks) the wire protocol to one kernel socket."""

    def __init__(self, context: zmq.Context[Any], address: str, session: Session) -> None:
        self.session = session
        self.socket = context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(address)

    def frames(self, msg_type: str, content: dict[str, Any] | None = None) -> tuple[str, list[bytes]]:
        message = self.session.msg(msg_type, content or {})
        return message["header"]["msg_id"], self.session.serialize(message)

    def send(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)

    def receive(self) -> dict[str, Any]:
        assert self.socket.poll(int(TIMEOUT * 1000)), "no reply within the timeout"
        _, frames = self.session.feed_identities(self.socket.recv_multipart())
        message: dict[str, Any] = self.session.deserialize(frames)
        return message

    def assert_answers_kernel_info(self) -> None:
        """The next reply on this socket is the one to a fresh kernel_info request."""
        msg_id, frames = self.frames("kernel_info_request")
        self.send(frames)
        reply = self.receive()
        assert reply["msg_type"] == "kernel_info_reply"
        assert reply["parent_header"]["msg_id"] == msg_id


@pytest.fixture(params=["shell", "control"])
def raw_peer(
    request: pytest.FixtureRequest, kernel: tuple[KernelManager, BlockingKernelClient]
) -> Iterator[RawPeer]:
    manager, _ = kernel
    info = manager.get_connection_info(session=False)
    address = f"{info['transport']}://{info['ip']}:{info[request.param + '_port']}"
    session = Session(key=manager.session.key, signature_scheme=manager.session.signature_scheme)
    context: zmq.Context[Any] = zmq.Context()
    peer = RawPeer(context, address, session)
    try:
        peer.assert_answers_kernel_info()  # the socket works before we misbehave
        yield peer
    finally:
        peer.socket.close(linger=0)
        context.term()


def test_no_delimiter_is_dropped(raw_peer: RawPeer) -> None:
    _, frames = raw_peer.frames("kernel_info_request")
    raw_peer.send([frame for frame in frames if frame != DELIM])
    raw_peer.assert_answers_kernel_info()


def test_wrong_signature_is_dropped(raw_peer: RawPeer) -> None:
    _, frames = raw_peer.frames("kernel_info_request")
    index = frames.index(DELIM) + 1
    frames[index] = b"0" * len(frames[index])
    raw_peer.send(frames)
    raw_peer.assert_answers_kernel_info()


def test_unsigned_message_is_dropped(raw_peer: RawPeer) -> None:
    _, frames = raw_peer.frames("kernel_info_request")
    frames[frames.index(DELIM) + 1] = b""
    raw_peer.send(frames)
    raw_peer.assert_answers_kernel_info()


def test_invalid_json_under_valid_signature_is_dropped(raw_peer: RawPeer) -> None:
    body = [b"{this is not json", b"{}", b"{}", b"{}"]
    raw_peer.send([DELIM, raw_peer.session.sign(body), *body])
    raw_peer.assert_answers_kernel_info()


def test_json_that_is_not_an_object_is_dropped(raw_peer: RawPeer) -> None:
    body = [json.dumps([1, 2, 3]).encode(), b"{}", b"{}", b"{}"]
    raw_peer.send([DELIM, raw_peer.session.sign(body), *body])
    raw_peer.assert_answers_kernel_info()


def test_missing_frames_are_dropped(raw_peer: RawPeer) -> None:
    _, frames = raw_peer.frames("kernel_info_request")
    start = frames.index(DELIM)
    header = frames[start + 2]
    raw_peer.send([DELIM, raw_peer.session.sign([header]), header])
    raw_peer.assert_answers_kernel_info()


def test_replayed_message_is_dropped(raw_peer: RawPeer) -> None:
    msg_id, frames = raw_peer.frames("kernel_info_request")
    raw_peer.send(frames)
    first = raw_peer.receive()
    assert first["parent_header"]["msg_id"] == msg_id
    raw_peer.send(frames)  # the very same bytes again
    raw_peer.assert_answers_kernel_info()


def test_garbage_frames_are_dropped(raw_peer: RawPeer) -> None:
    raw_peer.send([b"\xff\xfe garbage", b"", b"\x00"])
    raw_peer.send([DELIM])
    raw_peer.assert_answers_kernel_info()


def test_kernel_still_executes_after_bad_input(
    kernel: tuple[KernelManager, BlockingKernelClient], raw_peer: RawPeer
) -> None:
    _, kc = kernel
    _, frames = raw_peer.frames("execute_request", {"code": "hacked = True", "silent": False})
    frames[frames.index(DELIM) + 1] = b"f" * 64
    raw_peer.send(frames)
    raw_peer.assert_answers_kernel_info()
    assert _result(kc, "'hacked' in dir()") == "False"
