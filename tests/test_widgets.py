"""Comms and widgets from any thread, and comm handling while a cell is busy.

The client here is a plain ``BlockingKernelClient``: it verifies every
message's HMAC signature as it decodes it, so "all HMAC-valid" is checked for
every message counted.
"""

from __future__ import annotations

import queue
import time
from collections import defaultdict
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import TIMEOUT, execute, get_reply
from tests.test_subshells import create_subshell

FLOOD_THREADS = 8
FLOOD_MESSAGES = 10_000


def send_comm_msg(
    kc: BlockingKernelClient, comm_id: str, data: dict[str, Any], subshell_id: str | None = None
) -> str:
    message = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    if subshell_id is not None:
        message["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(message)
    msg_id: str = message["header"]["msg_id"]
    return msg_id


def iopub_until_idle(kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """Every iopub message (any parent) until ``msg_id``'s idle."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no idle for {msg_id}; {len(seen)} messages so far")
        try:
            message = kc.get_iopub_msg(timeout=remaining)
        except queue.Empty:
            continue
        seen.append(message)
        if (
            message["msg_type"] == "status"
            and message["parent_header"].get("msg_id") == msg_id
            and message["content"]["execution_state"] == "idle"
        ):
            return seen


@pytest.mark.parametrize("shared", [True, False], ids=["one-shared-comm", "one-comm-per-thread"])
def test_comm_flood_from_threads_loses_nothing(kc: BlockingKernelClient, shared: bool) -> None:
    """8 threads x 10,000 comm messages: none lost or duplicated, each thread in order."""
    code = (
        "import comm, threading\n"
        f"shared = {shared}\n"
        f"comms = [comm.create_comm(target_name='flood') for _ in range(1 if shared else {FLOOD_THREADS})]\n"
        "def send(t):\n"
        "    c = comms[0] if shared else comms[t]\n"
        f"    for i in range({FLOOD_MESSAGES}):\n"
        "        c.send({'t': t, 'i': i})\n"
        f"ts = [threading.Thread(target=send, args=(t,)) for t in range({FLOOD_THREADS})]\n"
        "for t in ts: t.start()\n"
        "for t in ts: t.join()\n"
    )
    msg_id = kc.execute(code)
    messages = iopub_until_idle(kc, msg_id, timeout=300)
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    opened = {m["content"]["comm_id"] for m in messages if m["msg_type"] == "comm_open"}
    assert len(opened) == (1 if shared else FLOOD_THREADS)
    sequences: dict[int, list[int]] = defaultdict(list)
    comm_of_thread: dict[int, set[str]] = defaultdict(set)
    for message in messages:
        if message["msg_type"] != "comm_msg":
            continue
        data = message["content"]["data"]
        assert message["parent_header"]["msg_id"] == msg_id
        sequences[data["t"]].append(data["i"])
        comm_of_thread[data["t"]].add(message["content"]["comm_id"])
    expected = list(range(FLOOD_MESSAGES))
    for thread in range(FLOOD_THREADS):
        assert sequences[thread] == expected, f"thread {thread}: lost, duplicated or reordered messages"
        assert comm_of_thread[thread] <= opened
    if not shared:
        assert len(set().union(*comm_of_thread.values())) == FLOOD_THREADS


def test_cell_waiting_for_a_button_click_sees_it(kc: BlockingKernelClient) -> None:
    setup = execute(
        kc,
        "import ipywidgets, time\n"
        "clicked = []\n"
        "button = ipywidgets.Button(description='go')\n"
        "button.on_click(lambda b: clicked.append(True))\n"
        "print(button.model_id)",
    )
    assert setup.content["status"] == "ok", setup.content
    button_id = setup.stdout.strip()
    waits_for_click = (
        "while not clicked:\n    time.sleep(0.01)\nprint('clicked!')"  # in the kernel (noqa: sleep-ok)
    )
    waiting = kc.execute(waits_for_click)
    # The cell is running (we see its busy status) before we click.
    deadline = time.monotonic() + TIMEOUT
    while True:
        message = kc.get_iopub_msg(timeout=max(0.0, deadline - time.monotonic()))
        if message["parent_header"].get("msg_id") == waiting and message["msg_type"] == "execute_input":
            break
    sent_at = time.monotonic()
    send_comm_msg(kc, button_id, {"method": "custom", "content": {"event": "click"}})
    reply = get_reply(kc, waiting, timeout=TIMEOUT)
    latency = time.monotonic() - sent_at
    assert reply["content"]["status"] == "ok"
    print(f"click to cell completion: {latency * 1000:.1f} ms")


@pytest.mark.parametrize("on_subshell", [False, True], ids=["plain", "on-a-subshell"])
def test_serial_comm_handling_waits_for_the_cell(kc: BlockingKernelClient, on_subshell: bool) -> None:
    """'serial' holds widget messages until the cell ends -- also those JupyterLab
    4.4+ sends on a subshell of their own."""
    subshell_id = create_subshell(kc) if on_subshell else None
    setup = execute(
        kc,
        "import threadline, threading, comm\n"
        "threadline.set_comm_handling('serial')\n"
        "got = threading.Event()\n"
        "c = comm.create_comm(target_name='probe')\n"
        "c.on_msg(lambda msg: got.set())\n"
        "print(c.comm_id)",
    )
    comm_id = setup.stdout.strip()
    # A cell that first tells us it runs, then checks (with a deadline of its own)
    # whether the message got through while it was still running.
    blocked = kc.execute("print('running', flush=True)\nprint('seen during cell:', got.wait(1.0))")
    deadline = time.monotonic() + TIMEOUT
    while True:
        message = kc.get_iopub_msg(timeout=max(0.0, deadline - time.monotonic()))
        if message["parent_header"].get("msg_id") == blocked and message["msg_type"] == "stream":
            break
    send_comm_msg(kc, comm_id, {"ping": 1}, subshell_id)
    execute_messages = iopub_until_idle(kc, blocked)
    text = "".join(m["content"]["text"] for m in execute_messages if m["msg_type"] == "stream")
    assert "seen during cell: False" in text
    after = execute(kc, "print(got.is_set()); threadline.set_comm_handling('concurrent')")
    assert after.stdout == "True\n"


def test_output_widgets_capture_only_their_own_thread(kc: BlockingKernelClient) -> None:
    run_id = kc.execute(
        "import ipywidgets, threading\n"
        "outs = [ipywidgets.Output(), ipywidgets.Output()]\n"
        "barrier = threading.Barrier(2)\n"
        "def work(k):\n"
        "    with outs[k]:\n"
        "        barrier.wait()\n"
        "        for i in range(20):\n"
        "            print(f'thread {k} line {i}')\n"
        "        barrier.wait()\n"
        "ts = [threading.Thread(target=work, args=(k,)) for k in range(2)]\n"
        "for t in ts: t.start()\n"
        "for t in ts: t.join()\n"
        "print('ids', outs[0].model_id, outs[1].model_id)\n"
    )
    messages = iopub_until_idle(kc, run_id)
    assert get_reply(kc, run_id)["content"]["status"] == "ok"
    cell_text = "".join(
        m["content"]["text"]
        for m in messages
        if m["msg_type"] == "stream" and m["parent_header"]["msg_id"] == run_id
    )
    ids_line = next(line for line in cell_text.splitlines() if line.startswith("ids "))
    model_ids = ids_line.split()[1:3]
    # What each widget was told: the msg_id it captures by, and its own outputs.
    captured_ids: dict[str, set[str]] = defaultdict(set)
    own_text: dict[str, str] = defaultdict(str)
    for message in messages:
        if message["msg_type"] == "comm_msg" and message["content"]["comm_id"] in model_ids:
            model = message["content"]["comm_id"]
            state = message["content"]["data"].get("state", {})
            if state.get("msg_id"):
                captured_ids[model].add(state["msg_id"])
            if "outputs" in state:
                own_text[model] = "".join(o.get("text", "") for o in state["outputs"])
            # Widget state updates travel with the cell's parent, so every client sees them.
            assert message["parent_header"]["msg_id"] == run_id
    # The first capture of the cell uses the cell's own id, as ipywidgets does ...
    by_id = [model for model in model_ids if captured_ids[model] == {run_id}]
    assert len(by_id) == 1, captured_ids
    # ... and the concurrent one goes into its widget's own outputs state.
    [by_state] = [model for model in model_ids if model not in by_id]
    assert not captured_ids[by_state]
    streamed = [
        line
        for m in messages
        if m["msg_type"] == "stream" and m["parent_header"]["msg_id"] == run_id
        for line in m["content"]["text"].splitlines()
        if line.startswith("thread")
    ]
    k_id = model_ids.index(by_id[0])
    k_state = model_ids.index(by_state)
    assert streamed == [f"thread {k_id} line {i}" for i in range(20)]
    assert own_text[by_state] == "".join(f"thread {k_state} line {i}\n" for i in range(20))
