"""Driving a real kernel process with jupyter_client, without sleeping.

Every wait here is on a message, with a timeout only as a safety net.
"""

from __future__ import annotations

import queue
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

TIMEOUT = 30.0


def start_kernel(
    kernel_name: str = "threadline", **kwargs: Any
) -> tuple[KernelManager, BlockingKernelClient]:
    manager, client = start_new_kernel(kernel_name=kernel_name, startup_timeout=60, **kwargs)
    return manager, client


def stop_kernel(manager: KernelManager, client: BlockingKernelClient) -> None:
    client.stop_channels()
    if manager.is_alive():
        manager.shutdown_kernel(now=False)
    manager.cleanup_resources()


@dataclass
class Execution:
    """What one execute request produced: its reply and its iopub messages."""

    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def content(self) -> dict[str, Any]:
        content: dict[str, Any] = self.reply["content"]
        return content

    def of_type(self, *msg_types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in msg_types]

    @property
    def stdout(self) -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout"
        )

    @property
    def stderr(self) -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stderr"
        )


def collect_until_idle(
    client: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT
) -> list[dict[str, Any]]:
    """The iopub messages whose parent is ``msg_id``, up to and including its idle status."""
    deadline = time.monotonic() + timeout
    collected: list[dict[str, Any]] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no idle status for {msg_id} within {timeout}s; got {collected!r:.2000}")
        try:
            message = client.get_iopub_msg(timeout=remaining)
        except queue.Empty:
            continue
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        collected.append(message)
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return collected


def get_reply(
    client: BlockingKernelClient, msg_id: str, channel: str = "shell", timeout: float = TIMEOUT
) -> dict[str, Any]:
    """The reply to ``msg_id`` on ``channel``; replies to other requests are skipped."""
    deadline = time.monotonic() + timeout
    get = client.get_shell_msg if channel == "shell" else client.get_control_msg
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {channel} reply to {msg_id} within {timeout}s")
        try:
            reply: dict[str, Any] = get(timeout=remaining)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def execute(client: BlockingKernelClient, code: str, timeout: float = TIMEOUT, **options: Any) -> Execution:
    """Run ``code``; return its reply and every iopub message it produced until idle."""
    msg_id = client.execute(code, **options)
    messages = collect_until_idle(client, msg_id, timeout)
    reply = get_reply(client, msg_id, timeout=timeout)
    return Execution(reply=reply, messages=messages)


def wait_for_iopub(
    client: BlockingKernelClient, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
) -> dict[str, Any]:
    """The first iopub message for which ``predicate`` is true; others are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no matching iopub message within {timeout}s")
        try:
            message: dict[str, Any] = client.get_iopub_msg(timeout=remaining)
        except queue.Empty:
            continue
        if predicate(message):
            return message


def get_input_request(client: BlockingKernelClient, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next message on the stdin channel (an ``input_request``)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no input_request within {timeout}s")
        try:
            message: dict[str, Any] = client.get_stdin_msg(timeout=remaining)
        except queue.Empty:
            continue
        return message


def wait_for_exit(manager: KernelManager, timeout: float = TIMEOUT) -> int | None:
    """Wait for the kernel process to end; its exit code, or None if it is still running."""
    process = manager.provisioner.process if manager.provisioner is not None else None  # type: ignore[attr-defined]
    if process is None:
        return None
    try:
        code: int = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return code


# -- hardening, faults and soak: raw wire peers and the kernel process from outside -------------


def start_kernel_logged(log_path: Any, *arguments: str) -> tuple[KernelManager, BlockingKernelClient]:
    """A kernel whose stderr (where its own log goes) is written to ``log_path``.

    ``arguments`` are extra command-line arguments (``--max-message-size``,
    ``--log-level``...). The file stays open in the child only.
    """
    with open(log_path, "wb") as log_file:
        return start_kernel(extra_arguments=list(arguments), stderr=log_file)


def kernel_pid(manager: KernelManager) -> int:
    process = manager.provisioner.process  # type: ignore[attr-defined]
    pid: int = process.pid
    return pid


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (``VmRSS``, ``VmHWM``...), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def open_fd_count(pid: int) -> int:
    import os

    return len(os.listdir(f"/proc/{pid}/fd"))


class WirePeer:
    """A raw ZeroMQ socket that speaks (and misspeaks) the wire protocol to one kernel channel.

    ``channel`` is shell/control (a DEALER) or iopub (a SUB subscribed to everything).
    """

    def __init__(self, context: Any, manager: KernelManager, channel: str) -> None:
        import zmq
        from jupyter_client.session import Session

        info = manager.get_connection_info(session=False)
        self.session = Session(key=manager.session.key, signature_scheme=manager.session.signature_scheme)
        self.channel = channel
        self.socket = context.socket(zmq.SUB if channel == "iopub" else zmq.DEALER)
        self.socket.linger = 0
        if channel == "iopub":
            self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(f"{info['transport']}://{info['ip']}:{info[channel + '_port']}")

    def frames(self, msg_type: str, content: dict[str, Any] | None = None) -> tuple[str, list[bytes]]:
        """A fresh request, signed: its msg_id and its frames."""
        message = self.session.msg(msg_type, content or {})
        return message["header"]["msg_id"], [bytes(f) for f in self.session.serialize(message)]

    def send(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)

    def receive_frames(self, timeout: float = TIMEOUT) -> list[bytes] | None:
        """The next message's raw frames, or None if none came within ``timeout``."""
        if not self.socket.poll(int(timeout * 1000)):
            return None
        frames: list[bytes] = self.socket.recv_multipart()
        return frames

    def receive(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message, verified and parsed by jupyter_client's Session."""
        frames = self.receive_frames(timeout)
        if frames is None:
            raise TimeoutError(f"nothing on {self.channel} within {timeout}s")
        _, body = self.session.feed_identities(frames)
        message: dict[str, Any] = self.session.deserialize(body)
        return message

    def request(self, msg_type: str, content: dict[str, Any] | None = None) -> str:
        msg_id, frames = self.frames(msg_type, content)
        self.send(frames)
        return msg_id

    def close(self) -> None:
        self.socket.close(linger=0)


def get_reply_reading_iopub(
    client: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """The shell reply to ``msg_id``, while reading (and discarding) iopub as a front end does.

    A client that stops reading iopub makes the kernel wait for it (nothing is
    dropped), so a test that floods output must keep reading while it waits.
    """
    poller = zmq.Poller()
    poller.register(client.shell_channel.socket, zmq.POLLIN)
    poller.register(client.iopub_channel.socket, zmq.POLLIN)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no shell reply to {msg_id} within {timeout}s")
        ready = dict(poller.poll(int(remaining * 1000) + 1))
        if client.iopub_channel.socket in ready:
            client.get_iopub_msg(timeout=0)
        if client.shell_channel.socket in ready:
            reply: dict[str, Any] = client.get_shell_msg(timeout=0)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply


#: An input transformer that holds a cell marked ``# hold`` after its
#: execute_input went out and before it starts (IPython transforms a cell
#: first), until the kernel's SIGINT handler has run: the window in which the
#: front end shows the cell running but none of its code runs yet.
HOLD_UNTIL_INTERRUPTED = """
import signal, threading
def hold(lines):
    if lines and lines[0].startswith("# hold"):
        watch = get_ipython().kernel.interrupts._watches[signal.SIGINT]
        seen = watch.handler_runs
        print("holding", flush=True)
        tick = threading.Event()
        for _ in range(3000):  # at most 30 s, a safety net: the test interrupts at once
            if watch.handler_runs != seen:
                break
            tick.wait(0.01)
    return lines
get_ipython().input_transformers_cleanup.append(hold)
"""
