"""Listening before ZeroMQ (``threadline.io.listening``), and binding by taking the descriptors.

The point of listening early is that a client connecting before the kernel's
ZeroMQ sockets exist is accepted and heard. So the central test connects real
pyzmq clients (a DEALER on shell, a SUB on iopub, a REQ on the heartbeat) to
ports on which only plain listening sockets exist, sends a request, and only
then builds the IO thread and the heartbeat with those descriptors: the
request must be dispatched, the subscription seen and the ping echoed --
through the same ports, and with no reconnect in between (the clients'
reconnect interval is set to an hour, so only the first connection can work).

Every case that is not plain TCP on an IPv4 address gives no early listening
at all, and leaves no descriptor open.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import socket
import threading
from pathlib import Path

import pytest
import zmq
from jupyter_client.session import Session as JupyterSession

from threadline.io import Heartbeat, IOThread
from threadline.io.listening import CHANNELS, close_all, listen_early
from threadline.protocol import CHANNELS as PROTOCOL_CHANNELS
from threadline.protocol import ConnectionInfo, Message, Session

DEADLINE = 20.0


def free_ports(count: int) -> list[int]:
    holders = [socket.socket() for _ in range(count)]
    try:
        for holder in holders:
            holder.bind(("127.0.0.1", 0))
        return [holder.getsockname()[1] for holder in holders]
    finally:
        for holder in holders:
            holder.close()


def connection_file(tmp_path: Path, **overrides: object) -> Path:
    ports = free_ports(len(CHANNELS))
    content: dict[str, object] = {
        f"{channel}_port": port for channel, port in zip(CHANNELS, ports, strict=True)
    }
    content.update(ip="127.0.0.1", transport="tcp", key=secrets.token_hex(16), signature_scheme="hmac-sha256")
    content.update(overrides)
    path = tmp_path / "kernel.json"
    path.write_text(json.dumps(content))
    return path


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def test_the_channels_are_the_protocols() -> None:
    assert CHANNELS == PROTOCOL_CHANNELS


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to list open descriptors")
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"transport": "ipc", "ip": "kernel"}, id="ipc"),
        pytest.param({"ip": "localhost"}, id="host-name"),
        pytest.param({"ip": "::1"}, id="ipv6"),
        pytest.param({"shell_port": 0}, id="port-0"),
        pytest.param({"hb_port": "9000"}, id="port-as-string"),
        pytest.param({"iopub_port": True}, id="port-as-bool"),
    ],
)
def test_anything_unusual_means_no_early_listening(tmp_path: Path, overrides: dict[str, object]) -> None:
    before = open_fds()
    assert listen_early(str(connection_file(tmp_path, **overrides))) == {}
    assert open_fds() == before


def test_a_missing_or_broken_file_means_no_early_listening(tmp_path: Path) -> None:
    assert listen_early(None) == {}
    assert listen_early(str(tmp_path / "absent.json")) == {}
    broken = tmp_path / "broken.json"
    broken.write_text('{"shell_port": ')
    assert listen_early(str(broken)) == {}
    broken.write_text("[1, 2]")
    assert listen_early(str(broken)) == {}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to list open descriptors")
def test_a_taken_port_closes_what_was_opened(tmp_path: Path) -> None:
    path = connection_file(tmp_path)
    taken = json.loads(path.read_text())["stdin_port"]  # the third channel: two are open by then
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen(1)
        before = open_fds()
        assert listen_early(str(path)) == {}
        assert open_fds() == before


def test_each_channel_listens_on_its_port(tmp_path: Path) -> None:
    path = connection_file(tmp_path)
    listeners = listen_early(str(path))
    try:
        assert sorted(listeners) == sorted(CHANNELS)
        expected = json.loads(path.read_text())
        for channel, fd in listeners.items():
            with socket.socket(fileno=os.dup(fd)) as sock:
                assert sock.getsockname() == ("127.0.0.1", expected[f"{channel}_port"])
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
                assert not os.get_blocking(fd)
                assert not os.get_inheritable(fd)
    finally:
        close_all(listeners)
    assert listeners == {}


def test_clients_connected_before_zeromq_are_heard(tmp_path: Path) -> None:
    path = connection_file(tmp_path)
    info = ConnectionInfo.from_json(path.read_bytes())
    listeners = listen_early(str(path))
    assert sorted(listeners) == sorted(CHANNELS)

    # The clients first: nothing of ZeroMQ exists on the kernel's side yet.
    context = zmq.Context()
    clients: list[zmq.Socket[bytes]] = []

    def client(kind: int, channel: str) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = context.socket(kind)
        sock.linger = 0
        sock.setsockopt(zmq.RECONNECT_IVL, 3_600_000)  # only the first connection can work
        sock.connect(info.url(channel))
        clients.append(sock)
        return sock

    shell = client(zmq.DEALER, "shell")
    iopub = client(zmq.SUB, "iopub")
    iopub.setsockopt(zmq.SUBSCRIBE, b"")
    ping = client(zmq.REQ, "hb")
    session = JupyterSession(key=info.key.encode(), signature_scheme="hmac-sha256", username="test")
    request = session.msg("kernel_info_request", {})
    session.send(shell, request)
    ping.send(b"ping")

    dispatched: queue.Queue[tuple[str, Message]] = queue.Queue()
    subscribed = threading.Event()
    heartbeat_listener = listeners.pop("hb")
    io = IOThread(
        info,
        Session(info.key.encode()),
        lambda channel, message: dispatched.put((channel, message)),
        on_subscribe=lambda topic: subscribed.set(),
        listeners=listeners,
    )
    heartbeat = Heartbeat(info, listener=heartbeat_listener)
    try:
        assert io.start() == info  # the ports are the file's: nothing was bound anew
        heartbeat.start()
        channel, message = dispatched.get(timeout=DEADLINE)
        assert (channel, message.msg_type, message.msg_id) == (
            "shell",
            "kernel_info_request",
            request["msg_id"],
        )
        assert subscribed.wait(DEADLINE), "the early subscriber was never seen"
        assert ping.poll(int(DEADLINE * 1000)), "the heartbeat did not echo the early ping"
        assert ping.recv() == b"ping"
    finally:
        io.stop()
        heartbeat.stop()
        for sock in clients:
            sock.close(linger=0)
        context.term()
