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
