"""``%%background``: a cell's body on a thread of its own, its output under that cell.

Every test drives a real kernel process: the reply comes back at once (later
cells run, and release the body), every line, display and traceback of the
body lands under its cell, and background cells are listed and interrupted.
"""

from __future__ import annotations

import re
import time
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import TIMEOUT, execute, get_reply, wait_for_iopub

SETUP = "import threading, time\ngo = threading.Event()\nprogress = [threading.Event() for _ in range(5)]\n"
#: Prints 5 lines over about a second; the third waits for a later cell's go-ahead.
BODY = (
    "%%background\n"
    "for i in range(5):\n"
    "    if i == 2:\n"
    "        go.wait(30)\n"
    "    print(f'background line {i}')\n"
    "    progress[i].set()\n"
    "    time.sleep(0.2)  # in the kernel (noqa: sleep-ok)\n"
)


#: Waits until every background cell has finished (their states are final then).
JOIN_ALL = "assert all(cell.join(30) for cell in get_ipython().kernel.background.cells)"


def under(messages: list[dict[str, Any]], msg_id: str, msg_type: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["msg_type"] == msg_type and m["parent_header"].get("msg_id") == msg_id]


def read_iopub_until(kc: BlockingKernelClient, done: Any) -> list[dict[str, Any]]:
    """Every iopub message, whatever its parent, until ``done(messages)`` is true."""
    seen: list[dict[str, Any]] = []
    while not done(seen):
        seen.append(wait_for_iopub(kc, lambda m: True))
    return seen


def text_under(messages: list[dict[str, Any]], msg_id: str) -> str:
    return "".join(m["content"]["text"] for m in under(messages, msg_id, "stream"))


def test_a_background_cell_prints_while_two_other_cells_run(kc: BlockingKernelClient) -> None:
    execute(kc, SETUP)
    background = kc.execute(BODY)
    reply = get_reply(kc, background)
    assert reply["content"]["status"] == "ok"
    # The body waits for this cell's go-ahead: had the reply waited for the body, it would never come.
    first = kc.execute("go.set()\nprogress[2].wait(30)\nprint('other cell 1')")
    second = kc.execute("progress[4].wait(30)\nprint('other cell 2')")
    lines = [f"background line {i}\n" for i in range(5)]
    seen = read_iopub_until(kc, lambda seen: "".join(lines) == text_under(seen, background))
    assert text_under(seen, background) == "".join(lines)
    assert get_reply(kc, first)["content"]["status"] == "ok"
    assert get_reply(kc, second)["content"]["status"] == "ok"
    seen += read_iopub_until(kc, lambda more: text_under(seen + more, second) == "other cell 2\n")
    assert text_under(seen, first) == "other cell 1\n"
    # The cell's result is the background cell itself.
    [result] = under(seen, background, "execute_result")
    assert result["content"]["data"]["text/plain"].startswith("<background cell 1: ")


def test_displays_and_tracebacks_of_the_body_land_under_its_cell(kc: BlockingKernelClient) -> None:
    execute(kc, SETUP)
    background = kc.execute(
        "%%background\ngo.wait(30)\ndisplay({'shown': 'late'}, raw=True)\n"
        "raise LookupError('from the background')"
    )
    assert get_reply(kc, background)["content"]["status"] == "ok"
    assert execute(kc, "go.set()").content["status"] == "ok"
    seen = read_iopub_until(kc, lambda seen: under(seen, background, "error"))
    [display] = under(seen, background, "display_data")
    assert display["content"]["data"] == {"shown": "late"}
    [error] = under(seen, background, "error")
    assert (error["content"]["ename"], error["content"]["evalue"]) == ("LookupError", "from the background")
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["content"]["traceback"]))
    assert "raise LookupError('from the background')" in traceback
    assert execute(kc, JOIN_ALL).content["status"] == "ok"
    listing = execute(kc, "%background").stdout
    assert "  1  failed " in listing


def test_a_top_level_await_body_runs_on_a_loop_of_its_own(kc: BlockingKernelClient) -> None:
    background = kc.execute(
        "%%background\nimport asyncio, threading\nawait asyncio.sleep(0)\n"  # in the kernel (noqa: sleep-ok)
        "print(threading.current_thread().name, asyncio.get_running_loop() is get_ipython().kernel._loop)"
    )
    seen = read_iopub_until(kc, lambda seen: text_under(seen, background).endswith("\n"))
    assert text_under(seen, background) == "threadline-background-1 False\n"


FOREVER = (
    "%%background\nimport time\nprint('started', flush=True)\n"
    "while True:\n    time.sleep(0.01)  # in the kernel (noqa: sleep-ok)"
)
FLUSHING = "%%background\nprint('started', flush=True)\nwhile True:\n    print('x', end='', flush=True)"
AWAITING = (
    "%%background\nimport asyncio\nprint('started', flush=True)\n"
    "await asyncio.sleep(3600)"  # cell code, in the kernel (noqa: sleep-ok)
)


def start_and_wait(kc: BlockingKernelClient, code: str) -> str:
    msg_id = kc.execute(code)
    wait_for_iopub(
        kc,
        lambda m: (
            m["parent_header"].get("msg_id") == msg_id
            and m["msg_type"] == "stream"
            and m["content"]["text"].startswith("started")
        ),
    )
    return msg_id


def wait_for_interrupted(kc: BlockingKernelClient, *cells: str, request: str | None = None) -> None:
    """Wait until each of ``cells`` has shown ``KeyboardInterrupt``, in whatever order.

    With ``request``, send that cell first and also wait for its idle (its reply
    must be ok). The errors come from other threads, so they may arrive before
    the request's idle or in any order among themselves: one reader sees every
    message, where waiting for one thing at a time would skip the others.
    """
    pending = set(cells)
    request_id = kc.execute(request) if request is not None else None
    request_idle = request_id is None
    deadline = time.monotonic() + TIMEOUT
    while pending or not request_idle:
        message = wait_for_iopub(kc, lambda m: True, timeout=deadline - time.monotonic())
        parent, kind = message["parent_header"].get("msg_id"), message["msg_type"]
        if parent in pending and kind == "error":
            assert message["content"]["ename"] == "KeyboardInterrupt"
            pending.discard(parent)
        elif parent == request_id and kind == "status" and message["content"]["execution_state"] == "idle":
            request_idle = True
    if request_id is not None:
        assert get_reply(kc, request_id)["content"]["status"] == "ok"


def test_background_cells_are_listed_and_interrupted_by_number(kc: BlockingKernelClient) -> None:
    first = start_and_wait(kc, FOREVER)
    second = start_and_wait(kc, FLUSHING)  # mostly in the kernel's stream code
    listing = execute(kc, "%background").stdout
    assert "  1  running " in listing and "  2  running " in listing
    wait_for_interrupted(kc, second, request="%background --interrupt 2")
    assert "  1  running " in execute(kc, "%background").stdout
    wait_for_interrupted(kc, first, request="%background --interrupt all")
    assert execute(kc, JOIN_ALL).content["status"] == "ok"
    listing = execute(kc, "%background").stdout
    assert "  1  interrupted " in listing and "  2  interrupted " in listing
    assert execute(kc, "%background --interrupt 7").content["ename"] == "ValueError"
    assert execute(kc, "print('alive')").stdout == "alive\n"


def test_the_kernels_interrupt_stops_the_foreground_cell_else_the_background_ones(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    manager, kc = kernel
    waiter = (
        "import asyncio\ngo = asyncio.Event()\nasync def waiter():\n    await go.wait()\n    return 'kept'\n"
    )
    execute(kc, waiter + "task = asyncio.ensure_future(waiter())")
    sleeping = start_and_wait(kc, FOREVER)
    awaiting = start_and_wait(kc, AWAITING)
    # A cell stuck in the foreground is interrupted alone...
    stuck = kc.execute("print('stuck', flush=True)\nimport threading\nthreading.Event().wait()")
    wait_for_iopub(kc, lambda m: m["parent_header"].get("msg_id") == stuck and m["msg_type"] == "stream")
    manager.interrupt_kernel()
    assert get_reply(kc, stuck)["content"]["ename"] == "KeyboardInterrupt"
    listing = execute(kc, "%background").stdout
    assert "  1  running " in listing and "  2  running " in listing
    # ...and with the main shell idle, the interrupt reaches the background cells.
    manager.interrupt_kernel()
    wait_for_interrupted(kc, sleeping, awaiting)
    assert execute(kc, "print('alive')").stdout == "alive\n"
    assert execute(kc, JOIN_ALL).content["status"] == "ok"
    listing = execute(kc, "%background").stdout
    assert "  1  interrupted " in listing and "  2  interrupted " in listing
    # The interrupt between cells left the kernel's loop and its tasks alone.
    run = execute(kc, "go.set()\nawait task")
    assert run.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "'kept'"
