"""Dask: done-callbacks run on Dask's threads, and land in the cell that submitted the work.

Dask schedules each done-callback from the submitting thread through its
client's event loop (``call_soon_threadsafe`` copies the submitter's context)
and then runs it on a thread pool (whose ``submit`` threadline binds to the
submitter's cell). So without any routing code in the notebook, every line
and progress update reaches the submitting cell, also while later cells run.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import execute, get_reply

distributed = pytest.importorskip("distributed")

TASKS = 200


def run_tasks_and_watch(kc: BlockingKernelClient) -> None:
    submit = execute(
        kc,
        "import threading, ipywidgets\n"
        f"N = {TASKS}\n"
        "progress = ipywidgets.IntProgress(min=0, max=N)\n"
        "finished, lock, count = threading.Event(), threading.Lock(), [0]\n"
        "def on_done(future):\n"
        "    with lock:\n"
        "        count[0] += 1\n"
        "        progress.value = count[0]\n"
        "        print(f'task {future.result()} done')\n"
        "        if count[0] == N:\n"
        "            finished.set()\n"
        "futures = [client.submit(lambda x: x * x, i, pure=False) for i in range(N)]\n"
        "for future in futures:\n"
        "    future.add_done_callback(on_done)\n"
        "print('model', progress.model_id)\n",
    )
    assert submit.content["status"] == "ok", submit.content
    cell = submit.reply["parent_header"]["msg_id"]
    model_id = next(line.split()[1] for line in submit.stdout.splitlines() if line.startswith("model "))
    seen = list(submit.messages)
    # A later cell runs while the callbacks are still arriving.
    later = kc.execute("print('all done:', finished.wait(120), count[0])")
    deadline = time.monotonic() + 180
    later_idle = False
    while not later_idle:
        message = kc.get_iopub_msg(timeout=max(0.0, deadline - time.monotonic()))
        seen.append(message)
        later_idle = (
            message["parent_header"].get("msg_id") == later
            and message["msg_type"] == "status"
            and message["content"]["execution_state"] == "idle"
        )
    assert get_reply(kc, later)["content"]["status"] == "ok"
    seen += drain(kc)

    later_text = "".join(
        m["content"]["text"]
        for m in seen
        if m["msg_type"] == "stream" and m["parent_header"]["msg_id"] == later
    )
    assert later_text == f"all done: True {TASKS}\n"
    task_lines = [
        (m["parent_header"]["msg_id"], line)
        for m in seen
        if m["msg_type"] == "stream"
        for line in m["content"]["text"].splitlines()
        if line.startswith("task ")
    ]
    assert {parent for parent, _ in task_lines} == {cell}
    assert sorted(line for _, line in task_lines) == sorted(f"task {i * i} done" for i in range(TASKS))
    updates = [
        (m["parent_header"]["msg_id"], m["content"]["data"]["state"]["value"])
        for m in seen
        if m["msg_type"] == "comm_msg"
        and m["content"]["comm_id"] == model_id
        and "value" in m["content"]["data"].get("state", {})
    ]
    assert {parent for parent, _ in updates} == {cell}
    assert [value for _, value in updates] == list(range(1, TASKS + 1))


def drain(kc: BlockingKernelClient) -> list[dict[str, Any]]:
    """Whatever iopub already holds (nothing is expected to be missing by now)."""
    messages = []
    while True:
        try:
            messages.append(kc.get_iopub_msg(timeout=0.2))
        except queue.Empty:
            return messages


@pytest.mark.slow
def test_dask_local_cluster_in_the_kernel(kc: BlockingKernelClient) -> None:
    start = execute(
        kc,
        "import logging\n"
        "from distributed import Client, LocalCluster\n"
        "cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host='127.0.0.1',\n"
        "                       dashboard_address=None, silence_logs=logging.ERROR)\n"
        "client = Client(cluster)\n"
        "print(len(cluster.workers))",
        timeout=120,
    )
    assert start.content["status"] == "ok", start.content
    assert start.stdout == "2\n"
    try:
        run_tasks_and_watch(kc)
    finally:
        execute(kc, "client.close(); cluster.close()", timeout=60)


@pytest.fixture
def scheduler_address() -> Iterator[str]:
    """An existing Dask scheduler (with one worker) outside the kernel."""
    import logging

    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster.scheduler_address


@pytest.mark.slow
def test_dask_existing_scheduler(kc: BlockingKernelClient, scheduler_address: str) -> None:
    start = execute(
        kc, f"from distributed import Client\nclient = Client({scheduler_address!r})\nprint('ok')"
    )
    assert start.stdout == "ok\n", start.content
    try:
        run_tasks_and_watch(kc)
    finally:
        execute(kc, "client.close()", timeout=60)
