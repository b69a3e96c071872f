"""Booting: the IO thread serves before the kernel exists (kernel/boot.py).

``Boot`` is started on its own, with no kernel behind it, and driven by plain
pyzmq client sockets signed with jupyter_client's ``Session``: kernel_info is
answered at once (control) or once iopub has a subscriber and nothing waits
before it (shell); everything else is held and reaches the kernel's
dispatcher, in order, at ``hand_over``. A real kernel process shows its
start-up marks in the order boot promises: sockets bound before IPython is
imported. Nothing sleeps: every wait is a poll with a deadline.
"""

from __future__ import annotations

import json
import queue
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.session import Session as JupyterSession

from tests.kernel_helpers import execute, start_kernel, stop_kernel
from threadline.kernel import info
from threadline.kernel.boot import Boot
from threadline.protocol import ConnectionInfo, Message

DEADLINE = 20.0


class Client:
    """Shell and control DEALERs and an iopub SUB, connected to a booted kernel."""

    def __init__(self, connection: ConnectionInfo, key: str) -> None:
        self.context = zmq.Context()
        self.session = JupyterSession(key=key.encode())
        self.sockets: dict[str, zmq.Socket[bytes]] = {}
        for channel in ("shell", "control"):
            self.sockets[channel] = self._connect(zmq.DEALER, connection.url(channel))

    def _connect(self, kind: int, url: str) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.context.socket(kind)
        sock.linger = 0
        sock.connect(url)
        return sock

    def subscribe(self, connection: ConnectionInfo) -> None:
        """Subscribe to iopub and wait for the kernel's welcome (JEP 65)."""
        sub = self.sockets["iopub"] = self._connect(zmq.SUB, connection.url("iopub"))
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        welcome = self.receive("iopub")
        assert welcome["msg_type"] == "iopub_welcome"

    def request(self, channel: str, msg_type: str, content: dict[str, Any] | None = None) -> str:
        msg = self.session.msg(msg_type, content or {})
        self.sockets[channel].send_multipart(self.session.serialize(msg))
        return str(msg["header"]["msg_id"])

    def receive(self, channel: str, timeout: float = DEADLINE) -> dict[str, Any]:
        sock = self.sockets[channel]
        assert sock.poll(int(timeout * 1000)), f"nothing arrived on {channel}"
        _, frames = self.session.feed_identities(sock.recv_multipart())
        message: dict[str, Any] = self.session.deserialize(frames)
        return message

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(linger=0)
        self.context.term()


@pytest.fixture
def booted() -> Iterator[tuple[Boot, Client]]:
    key = secrets.token_hex(16)
    boot = Boot(ConnectionInfo(key=key))
    connection = boot.start()
    client = Client(connection, key)
    try:
        yield boot, client
    finally:
        client.close()
        boot.io.stop()
        if boot.heartbeat is not None:
            boot.heartbeat.stop()


def test_kernel_info_is_answered_before_any_kernel_exists(booted: tuple[Boot, Client]) -> None:
    boot, client = booted
    asked = client.request("control", "kernel_info_request")
    reply = client.receive("control")
    assert reply["parent_header"]["msg_id"] == asked
    assert reply["content"] == info.kernel_info()
    assert reply["content"]["implementation"] == "threadline"

    client.subscribe(boot.connection or ConnectionInfo())
    asked = client.request("shell", "kernel_info_request")
    reply = client.receive("shell")
    assert reply["parent_header"]["msg_id"] == asked
    assert reply["content"] == info.kernel_info()
    statuses = [client.receive("iopub") for _ in range(2)]
    assert [s["content"]["execution_state"] for s in statuses] == ["busy", "idle"]
    assert all(s["parent_header"]["msg_id"] == asked for s in statuses)


def test_held_requests_reach_the_kernel_in_order(booted: tuple[Boot, Client]) -> None:
    """Shell requests wait (kernel_info too, behind an execute); control's kernel_info does not."""
    boot, client = booted
    connection = boot.connection or ConnectionInfo()
    first_info = client.request("shell", "kernel_info_request")  # before any subscriber: held
    execute_id = client.request("shell", "execute_request", {"code": "1"})
    behind = client.request("shell", "kernel_info_request")  # behind the execute: held
    on_control = client.request("control", "kernel_info_request")
    assert client.receive("control")["parent_header"]["msg_id"] == on_control

    client.subscribe(connection)
    # The subscriber releases the kernel_info that waited for it, and only that
    # one: the other is among the held messages below.
    assert client.receive("shell")["parent_header"]["msg_id"] == first_info

    got: queue.Queue[tuple[str, Message]] = queue.Queue()
    seen = threading.Event()
    boot.hand_over(
        lambda channel, message: got.put((channel, message)),
        lambda topic: None,
        lambda exc: None,
        first_subscriber_seen=seen.set,
    )
    assert seen.is_set()
    held = [got.get(timeout=DEADLINE) for _ in range(2)]
    assert [(channel, m.msg_id) for channel, m in held] == [("shell", execute_id), ("shell", behind)]
    # From now on the kernel's dispatcher gets everything at once.
    later = client.request("shell", "kernel_info_request")
    channel, message = got.get(timeout=DEADLINE)
    assert (channel, message.msg_id) == ("shell", later)


def test_a_real_kernel_listens_first_and_binds_before_it_imports_ipython(kc: BlockingKernelClient) -> None:
    """Started by a kernel manager (a connection file with its ports): the launcher
    listens on them before anything else (io/listening.py), then binds, then imports."""
    run = execute(kc, "import json; print(json.dumps(get_ipython().kernel.startup_marks))")
    marks = json.loads(run.stdout)
    order = ["main", "listening", "sockets_bound", "imports_done", "shell_built", "serving"]
    assert list(marks) == order
    assert [marks[name] for name in order] == sorted(marks[name] for name in order)


#: What the kernel module leaves to the shell's construction (IPython imports its
#: completer, tempfile and sqlite3 then) or to first use (the debugger, pdb, getpass).
LEFT_FOR_LATER = (
    "IPython.core.completer",
    "sqlite3",
    "tempfile",
    "shutil",
    "pdb",
    "bdb",
    "IPython.core.debugger",
    "getpass",
    "threadline.kernel.debugger",
    "threadline.kernel.background",
    "threadline.shell.pdb_prompt",
)


def test_the_kernel_module_imports_what_defining_the_kernel_needs() -> None:
    """``import threadline.kernel.kernel`` in a fresh interpreter loads none of
    ``LEFT_FOR_LATER`` (the start-up breakdown's import figure; benchmarks/README.md)."""
    report = (
        "import sys, threadline.kernel.kernel; "
        f"print(sorted(m for m in {LEFT_FOR_LATER!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", report], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


def test_a_kernel_loads_its_debugger_with_the_first_debug_request(kc: BlockingKernelClient) -> None:
    """...and a running kernel builds it then (debugInfo needs no debugpy)."""
    loaded = "import sys; print('threadline.kernel.debugger' in sys.modules)"
    assert execute(kc, loaded).stdout == "False\n"
    msg_id = kc.session.msg("debug_request", {"type": "request", "seq": 1, "command": "debugInfo"})
    kc.control_channel.send(msg_id)
    reply = kc.get_control_msg(timeout=30)
    assert reply["msg_type"] == "debug_reply"
    assert reply["content"]["command"] == "debugInfo"
    assert reply["content"]["success"] is True
    assert execute(kc, loaded).stdout == "True\n"


#: Counts a fresh interpreter's young-generation collections up to the end of a script.
YOUNG_COLLECTIONS = "import gc; print(gc.get_stats()[0]['collections'])"


def test_the_collector_waits_while_the_kernel_is_built() -> None:
    """``app.launch`` pauses Python's cyclic collector while it builds the kernel,
    then files what it built in the oldest generation and resumes it, before the
    user's start-up code runs. So starting a whole kernel runs fewer collections
    than only importing its module with the collector on; nothing stays frozen;
    and objects built in the pause, the user namespace among them, are still
    seen by ``gc.get_referrers``."""
    import_only = subprocess.run(
        [sys.executable, "-c", f"import threadline.kernel.kernel; {YOUNG_COLLECTIONS}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert import_only.returncode == 0, import_only.stderr
    manager, client = start_kernel(
        extra_arguments=["--IPKernelApp.exec_lines=['import gc', 'on_in_exec_lines = gc.isenabled()']"]
    )
    try:
        assert int(execute(client, YOUNG_COLLECTIONS).stdout) < int(import_only.stdout)
        probe = (
            "marker = object(); "
            "print(gc.isenabled(), on_in_exec_lines, gc.get_freeze_count(), "
            "any(referrer is get_ipython().user_ns for referrer in gc.get_referrers(marker)))"
        )
        assert execute(client, probe).stdout == "True True 0 True\n"
    finally:
        stop_kernel(manager, client)
