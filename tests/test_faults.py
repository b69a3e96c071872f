"""Faults, against real kernel processes: the kernel keeps its promises when things go wrong.

* A client disconnects while a thread prints; a new client gets the rest of the
  output, with no line missing from the moment it subscribed.
* An interrupt while 8 threads publish: the cell stops with KeyboardInterrupt,
  the threads go on and finish; every iopub message verifies (HMAC, no
  duplicate), every thread's lines arrive complete and in order.
* A restart while threads publish: a new process answers, with fresh state.
* A request handler that raises: an error reply, and the shell keeps working.
* A non-daemon thread that never ends: shutdown still completes, the process
  exits (code 0) within ``EXIT_BOUND`` seconds, and says why in its log.
* The IO thread failing (its shell socket closed behind its back): logged as
  critical, and the process exits with code 1 instead of hanging.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import (
    TIMEOUT,
    WirePeer,
    execute,
    get_reply,
    kernel_pid,
    start_kernel_logged,
    stop_kernel,
    wait_for_exit,
    wait_for_iopub,
)
from threadline.protocol import Message, Session

EXIT_BOUND = 15.0


def _thread_lines(messages: list[dict[str, Any]], msg_id: str, pattern: str) -> list[re.Match[str]]:
    """Every stdout line matching ``pattern`` in the stream messages parented to ``msg_id``."""
    lines: list[re.Match[str]] = []
    for m in messages:
        if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id:
            for line in m["content"]["text"].splitlines():
                match = re.fullmatch(pattern, line)
                assert match is not None, f"a malformed line: {line!r}"
                lines.append(match)
    return lines


# -- a client leaves and another comes ------------------------------------------------------------

TALKER = """
import itertools, threading, time
_stop = threading.Event()
_said = 0
def _talk():
    global _said
    for i in itertools.count():
        if _stop.is_set():
            break
        print(f"line {i}", flush=True)
        _said = i + 1
        time.sleep(0.002)  # pacing only: about 500 lines a second (noqa: sleep-ok)
_talker = threading.Thread(target=_talk)
_talker.start()
"""


def test_client_reconnects_mid_stream(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    """Old client closes while a thread prints; a new client gets every line from its first one to the end."""
    manager, old = kernel
    started = execute(old, TALKER)
    assert started.content["status"] == "ok"
    cell = started.reply["parent_header"]["msg_id"]
    first = wait_for_iopub(old, lambda m: m["msg_type"] == "stream" and "line " in m["content"]["text"])
    last_seen_by_old = int(first["content"]["text"].split()[-1])
    old.stop_channels()

    new = manager.client()
    # manager.client() clones the manager's Session, message counter included, so its
    # msg_ids would repeat the old client's; a session id of its own keeps them apart.
    new.session.session = uuid.uuid4().hex
    new.start_channels()
    messages: list[dict[str, Any]] = []

    def collect_until(predicate: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = new.get_iopub_msg(timeout=max(0.0, deadline - time.monotonic()))
            messages.append(message)
            if predicate(message):
                return

    try:
        # (Not wait_for_ready: it waits for 0.2 s of silence on iopub, which never comes here.)
        info = new.kernel_info()
        assert get_reply(new, info)["msg_type"] == "kernel_info_reply"
        # Let the new client receive a good stretch (200+ lines) of the stream, then stop it.
        target = last_seen_by_old + 200
        collect_until(lambda m: any(int(x[1]) >= target for x in _thread_lines([m], cell, r"line (\d+)")))
        stop = new.execute("_stop.set(); _talker.join(); print('said', _said)")
        # The talker's last line was queued before the stopping cell's idle.
        collect_until(
            lambda m: (
                m["parent_header"].get("msg_id") == stop
                and m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"
            )
        )
        assert get_reply(new, stop)["content"]["status"] == "ok"
        said = int(_thread_lines(messages, stop, r"said (\d+)")[0][1])
    finally:
        new.stop_channels()

    numbers = [int(m[1]) for m in _thread_lines(messages, cell, r"line (\d+)")]
    assert numbers, "the new client got none of the thread's output"
    assert numbers[0] > last_seen_by_old
    assert numbers == list(range(numbers[0], said)), "a line was lost or reordered after reconnecting"
    print(f"old client saw up to line {last_seen_by_old}; new client lines {numbers[0]}..{said - 1}")


# -- an interrupt while 8 threads publish -----------------------------------------------------------

PUBLISHERS = """
import threading, time
_stop = threading.Event()
_counts = {}
def _publish(k):
    i = 0
    while not _stop.is_set():
        print(f"t{k} {i}")
        i += 1
        if i % 10 == 0:
            time.sleep(0.005)  # pacing only: about 2,000 lines a second per thread (noqa: sleep-ok)
    _counts[k] = i
    print(f"t{k} end", flush=True)
_publishers = [threading.Thread(target=_publish, args=(k,)) for k in range(8)]
for _t in _publishers:
    _t.start()
threading.Event().wait()  # the cell blocks until interrupted
"""


class IopubRecorder:
    """A raw SUB socket on iopub: every message is decoded and HMAC-verified by threadline's Session."""

    def __init__(self, context: zmq.Context[Any], manager: KernelManager) -> None:
        self.peer = WirePeer(context, manager, "iopub")
        self.session = Session(manager.session.key)
        self.messages: list[Message] = []
        # Subscribed once the kernel says so (JEP 65): nothing after this is missed.
        self.until(lambda m: m.msg_type == "iopub_welcome")

    def until(self, predicate: Callable[[Message], bool], timeout: float = TIMEOUT) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            frames = self.peer.receive_frames(max(0.0, deadline - time.monotonic()))
            if frames is None:
                raise TimeoutError("no matching iopub message")
            message = self.session.decode(frames)  # raises on a bad signature or a duplicate
            self.messages.append(message)
            if predicate(message):
                return message

    def close(self) -> None:
        self.peer.close()


def _is_idle(msg_id: str) -> Callable[[Message], bool]:
    return lambda m: (
        m.msg_type == "status"
        and m.parent_header.get("msg_id") == msg_id
        and m.content["execution_state"] == "idle"
    )


def _lines(messages: list[Message], msg_id: str) -> list[tuple[int, int]]:
    """(thread, number) of every publisher line parented to ``msg_id``, in arrival order (-1: "end")."""
    found = []
    for m in messages:
        if m.msg_type == "stream" and m.parent_header.get("msg_id") == msg_id:
            for line in m.content["text"].splitlines():
                match = re.fullmatch(r"t(\d) (\d+|end)", line)
                assert match is not None, f"a malformed or interleaved line: {line!r}"
                found.append((int(match[1]), -1 if match[2] == "end" else int(match[2])))
    return found


def test_interrupt_while_eight_threads_publish(
    kernel: tuple[KernelManager, BlockingKernelClient], context: zmq.Context[Any]
) -> None:
    """8 publishing threads: the interrupt stops only the cell; every message verifies; no line lost."""
    manager, kc = kernel
    iopub = IopubRecorder(context, manager)
    try:
        cell = kc.execute(PUBLISHERS)
        seen: set[int] = set()

        def all_threads_spoke(m: Message) -> bool:
            seen.update(k for k, _ in _lines([m], cell))
            return len(seen) == 8

        iopub.until(all_threads_spoke)
        manager.interrupt_kernel()
        reply = get_reply(kc, cell)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        idle = iopub.until(_is_idle(cell))
        after_idle = len(iopub.messages)
        seen.clear()
        iopub.until(all_threads_spoke)  # all 8 still publishing after the cell ended

        stop = kc.execute("_stop.set()\nfor _t in _publishers: _t.join()\nprint(sorted(_counts.items()))")
        iopub.until(_is_idle(stop))
        assert get_reply(kc, stop)["content"]["status"] == "ok"
        # A thread's unflushed text goes out on the stream timer; its flushed "end" line follows it.
        ended = {k for k, i in _lines(iopub.messages, cell) if i == -1}

        def all_threads_ended(m: Message) -> bool:
            ended.update(k for k, i in _lines([m], cell) if i == -1)
            return len(ended) == 8

        if len(ended) < 8:
            iopub.until(all_threads_ended)
    finally:
        iopub.close()

    counts = dict(eval(_stdout(iopub.messages, stop)))  # a list of (int, int) pairs printed by the kernel
    per_thread: dict[int, list[int]] = defaultdict(list)
    for k, i in _lines(iopub.messages, cell):
        per_thread[k].append(i)
    for k, numbers in per_thread.items():
        assert numbers[-1] == -1 and numbers.count(-1) == 1, f"thread {k}: no single end line last"
        numbers.pop()
    assert sorted(per_thread) == list(range(8))
    for k, numbers in per_thread.items():
        assert numbers == list(range(counts[k])), f"thread {k}: lines lost, duplicated or reordered"
    late = _lines(iopub.messages[after_idle:], cell)
    assert {k for k, _ in late} == set(range(8))
    assert idle.parent_header["msg_id"] == cell
    print(
        f"{len(iopub.messages)} iopub messages verified; {sum(counts.values())} lines from 8 threads "
        f"({len(late)} after the interrupted cell went idle)"
    )


def _stdout(messages: list[Message], msg_id: str) -> str:
    return "".join(
        m.content["text"]
        for m in messages
        if m.msg_type == "stream"
        and m.parent_header.get("msg_id") == msg_id
        and m.content["name"] == "stdout"
    )


# -- a restart while threads publish --------------------------------------------------------------

FOREVER = """
import threading, time
def _forever(k):
    while True:
        print(f"t{k}", flush=True)
        time.sleep(0.002)  # pacing only (noqa: sleep-ok)
_forever_threads = [threading.Thread(target=_forever, args=(k,)) for k in range(4)]
for _t in _forever_threads:
    _t.start()
"""


def test_restart_while_threads_publish(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    """4 non-daemon threads printing forever; restart_kernel gives a new process with fresh state."""
    manager, kc = kernel
    old_pid = kernel_pid(manager)
    assert execute(kc, FOREVER).content["status"] == "ok"
    wait_for_iopub(kc, lambda m: m["msg_type"] == "stream" and m["content"]["text"].startswith("t3"))
    manager.restart_kernel(now=False)
    new_pid = kernel_pid(manager)
    assert new_pid != old_pid
    assert not os.path.exists(f"/proc/{old_pid}") or _is_zombie(old_pid)
    kc.wait_for_ready(timeout=60)
    run = execute(kc, "import os\nprint(os.getpid(), '_forever_threads' in dir())")
    assert run.content["status"] == "ok"
    assert run.stdout.split() == [str(new_pid), "False"]


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


# -- a handler that raises ------------------------------------------------------------------------


def test_a_request_handler_that_raises_gives_an_error_reply(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """history_request with n="x", execute_request with code=5: handlers raise, error replies, shell fine."""
    _, kc = kernel
    bad_requests = [
        (
            "history_request",
            {"hist_access_type": "tail", "n": "x", "output": False, "raw": True},
            "ValueError",
        ),
        ("execute_request", {"code": 5, "silent": False}, "TypeError"),
    ]
    for msg_type, content, ename in bad_requests:
        message = kc.session.msg(msg_type, content)
        kc.shell_channel.send(message)
        reply = get_reply(kc, message["header"]["msg_id"])
        assert reply["msg_type"] == msg_type.replace("_request", "_reply")
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == ename, reply["content"]
        run = execute(kc, "6 * 7")
        assert run.content["status"] == "ok"
        assert run.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "42"


# -- shutdown with a thread that never ends ---------------------------------------------------------


def test_shutdown_with_a_thread_blocked_forever(tmp_path: Path) -> None:
    """A non-daemon thread waiting forever: shutdown replies, the process exits 0 within EXIT_BOUND s."""
    log = tmp_path / "kernel.log"
    manager, kc = start_kernel_logged(log)
    try:
        code = (
            "import threading\n_blocked = threading.Thread(target=threading.Event().wait)\n_blocked.start()"
        )
        assert execute(kc, code).content["status"] == "ok"
        start = time.monotonic()
        msg_id = kc.shutdown()
        assert get_reply(kc, msg_id, channel="control")["content"]["status"] == "ok"
        assert wait_for_exit(manager, timeout=EXIT_BOUND) == 0
        print(f"exited {time.monotonic() - start:.1f}s after shutdown_request")
    finally:
        stop_kernel(manager, kc)
    assert "shutdown did not finish in" in log.read_text()


# -- the IO thread fails ----------------------------------------------------------------------------


def test_io_thread_failure_is_reported_and_the_kernel_exits(tmp_path: Path) -> None:
    """An unexpected exception on the IO thread: a critical log line, exit code 1, no hang.

    (Fault injection: the cell hands the IO thread a call that raises a
    BaseException, which the IO loop does not guard against -- as any bug in
    it would escape. Closing a socket behind the IO thread's back, tried first,
    is undefined in ZeroMQ: it usually raises ENOTSOCK, but once hung instead.)
    """
    log = tmp_path / "kernel.log"
    manager, kc = start_kernel_logged(log)
    try:
        start = time.monotonic()
        kc.execute(
            "class InjectedFault(BaseException):\n"
            "    pass\n"
            "def fail():\n"
            "    raise InjectedFault('injected into the IO thread')\n"
            "get_ipython().kernel.io.outbox.call_soon(fail)"
        )
        assert wait_for_exit(manager, timeout=EXIT_BOUND) == 1
        print(f"exited {time.monotonic() - start:.1f}s after the socket was closed")
    finally:
        stop_kernel(manager, kc)
    text = log.read_text()
    assert "the IO thread failed; the kernel cannot go on" in text
    assert "InjectedFault: injected into the IO thread" in text
