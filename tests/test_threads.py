"""Output from threads lands in the cell that started them, whole, and is never lost.

Each test drives a real kernel process. Threads in the kernel are coordinated
with events set by later cells, never with sleeps, so "prints while cell 2
runs" is a fact the test arranges rather than a timing it hopes for.
"""

from __future__ import annotations

import os
import queue
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import TIMEOUT, execute, get_reply, start_kernel, stop_kernel


def stream_messages_until(
    kc: BlockingKernelClient, done: Any, timeout: float = TIMEOUT
) -> list[dict[str, Any]]:
    """Collect stream messages (any parent) until ``done(messages)`` is true."""
    deadline = time.monotonic() + timeout
    messages: list[dict[str, Any]] = []
    while not done(messages):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"condition not met; got {len(messages)} stream messages")
        try:
            message = kc.get_iopub_msg(timeout=remaining)
        except queue.Empty:
            continue
        if message["msg_type"] == "stream":
            messages.append(message)
    return messages


def execute_seeing_all(kc: BlockingKernelClient, code: str) -> tuple[str, list[dict[str, Any]]]:
    """Run ``code``; return its msg_id and every iopub message (any parent) until its idle."""
    msg_id = kc.execute(code)
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        message = kc.get_iopub_msg(timeout=max(0.0, deadline - time.monotonic()))
        messages.append(message)
        if (
            message["parent_header"].get("msg_id") == msg_id
            and message["msg_type"] == "status"
            and message["content"]["execution_state"] == "idle"
        ):
            get_reply(kc, msg_id)
            return msg_id, messages


def wait_for_exit(manager: KernelManager) -> int:
    """The kernel process's exit code, once it has exited by itself."""
    process = manager.provisioner.process  # type: ignore[union-attr]
    code: int = process.wait(timeout=TIMEOUT)
    return code


def lines_until_exit(
    manager: KernelManager, kc: BlockingKernelClient, cell: str, got: list[str], n: int
) -> list[str]:
    """``cell``'s stream lines: those already ``got``, then more until ``n`` or the kernel has exited."""
    got = list(got)
    deadline = time.monotonic() + TIMEOUT
    while len(got) < n and time.monotonic() < deadline:
        try:
            message = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            if not manager.is_alive():
                break
            continue
        if message["msg_type"] == "stream" and message["parent_header"].get("msg_id") == cell:
            got.extend(message["content"]["text"].splitlines())
    return got


def lines_by_parent(messages: list[dict[str, Any]]) -> dict[str, list[str]]:
    by_parent: dict[str, list[str]] = defaultdict(list)
    for message in messages:
        text = message["content"]["text"]
        by_parent[message["parent_header"].get("msg_id", "")].extend(text.splitlines())
    return by_parent


def test_thread_output_goes_to_the_cell_that_started_it(kc: BlockingKernelClient) -> None:
    setup = execute(
        kc,
        "import threading\n"
        "go_on, finished = threading.Event(), threading.Event()\n"
        "def worker():\n"
        "    print('early')\n"
        "    go_on.wait()\n"
        "    for i in range(50):\n"
        "        print(f'late {i}')\n"
        "    finished.set()\n"
        "threading.Thread(target=worker).start()\n",
    )
    cell1 = setup.reply["parent_header"]["msg_id"]
    # Cell 2 releases the thread and waits for it: the thread prints while cell 2 runs.
    cell2, during = execute_seeing_all(kc, "go_on.set(); finished.wait(10); print('cell two')")
    seen = setup.of_type("stream") + [m for m in during if m["msg_type"] == "stream"]
    expected = ["early"] + [f"late {i}" for i in range(50)]
    seen += stream_messages_until(kc, lambda ms: len(lines_by_parent(seen + ms)[cell1]) >= len(expected))
    lines = lines_by_parent(seen)
    assert lines[cell1] == expected
    assert lines[cell2] == ["cell two"]
    assert set(lines) == {cell1, cell2}


def test_thread_output_after_its_cell_and_while_no_cell_runs(kc: BlockingKernelClient) -> None:
    first = execute(
        kc,
        "import threading\n"
        "release = threading.Event()\n"
        "def later():\n"
        "    release.wait()\n"
        "    for i in range(20):\n"
        "        print(f'after {i}', flush=True)\n"
        "threading.Thread(target=later).start()\n",
    )
    cell1 = first.reply["parent_header"]["msg_id"]
    _, during = execute_seeing_all(kc, "release.set()")
    seen = [m for m in during if m["msg_type"] == "stream"]
    seen += stream_messages_until(kc, lambda ms: len(lines_by_parent(seen + ms)[cell1]) >= 20)
    assert lines_by_parent(seen)[cell1] == [f"after {i}" for i in range(20)]
    assert set(lines_by_parent(seen)) == {cell1}


def test_pool_task_and_asyncio_task_keep_their_cell(kc: BlockingKernelClient) -> None:
    execute(
        kc, "from concurrent.futures import ThreadPoolExecutor\npool = ThreadPoolExecutor(2)\nimport asyncio"
    )
    # Warm the pool in one cell, so its threads were started by a different cell.
    execute(kc, "pool.submit(print, 'warm').result()")
    submitter = execute(
        kc,
        "gate = __import__('threading').Event()\n"
        "fut = pool.submit(lambda: (gate.wait(10), print('from pool')))\n"
        "async def later():\n"
        "    await asyncio.sleep(0)\n"  # code run in the kernel, not a test wait (noqa: sleep-ok)
        "    await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)\n"
        "    print('from task')\n"
        "task = asyncio.ensure_future(later())\n",
    )
    cell = submitter.reply["parent_header"]["msg_id"]
    _, during = execute_seeing_all(kc, "gate.set(); fut.result(10)")
    seen = [m for m in during if m["msg_type"] == "stream"]
    seen += stream_messages_until(
        kc, lambda ms: {"from pool", "from task"} <= set(lines_by_parent(seen + ms)[cell])
    )
    assert sorted(lines_by_parent(seen)[cell]) == ["from pool", "from task"]
    assert set(lines_by_parent(seen)) == {cell}


def test_thread_started_before_any_cell_goes_to_latest_execute(kc: BlockingKernelClient) -> None:
    # A thread with no origin: started from a context with the origin cleared.
    execute(
        kc,
        "import threading, threadline\n"
        "ping = threading.Event()\n"
        "def orphan():\n"
        "    while True:\n"
        "        ping.wait(); ping.clear()\n"
        "        print('orphan', flush=True)\n"
        "with threadline.route_to(None):\n"
        "    threading.Thread(target=orphan, daemon=True).start()\n",
    )
    # A completion request must not become the orphan's parent.
    kc.complete("threa", 5, reply=True, timeout=TIMEOUT)
    latest = execute(kc, "ping.set()")
    cell = latest.reply["parent_header"]["msg_id"]
    messages = latest.of_type("stream") or stream_messages_until(kc, lambda ms: len(ms) >= 1)
    assert [m["parent_header"]["msg_id"] for m in messages] == [cell]
    assert messages[0]["content"]["text"] == "orphan\n"


def test_explicit_routing_api(kc: BlockingKernelClient) -> None:
    target = execute(kc, "import threadline, threading\ncell_one = threadline.current_parent()")
    cell1 = target.reply["parent_header"]["msg_id"]
    cell2, messages = execute_seeing_all(
        kc,
        "def routed():\n"
        "    with threadline.route_to(cell_one):\n"
        "        print('to cell one')\n"
        "    print('to my own cell')\n"
        "t = threading.Thread(target=routed); t.start(); t.join()\n"
        "print(threadline.current_parent().msg_id == cell_one.msg_id)",
    )
    lines = lines_by_parent([m for m in messages if m["msg_type"] == "stream"])
    assert lines[cell1] == ["to cell one"]
    assert lines[cell2] == ["to my own cell", "False"]


def test_route_to_running_follows_the_executing_cell(kc: BlockingKernelClient) -> None:
    execute(
        kc,
        "import threading, threadline\n"
        "tick, said = threading.Event(), threading.Event()\n"
        "def follower():\n"
        "    with threadline.route_to(threadline.RUNNING):\n"
        "        for _ in range(2):\n"
        "            tick.wait(); tick.clear()\n"
        "            print('following'); __import__('sys').stdout.flush(); said.set()\n"
        "threading.Thread(target=follower, daemon=True).start()\n",
    )
    for _ in range(2):
        run = execute(kc, "said.clear(); tick.set(); said.wait(10)")
        assert run.stdout == "following\n"


def test_four_threads_lines_whole_once_in_order(kc: BlockingKernelClient) -> None:
    """4 threads x 25,000 lines: every line once, never split, each thread in order."""
    n = 25_000
    run = execute(
        kc,
        "import threading\n"
        f"def spam(t):\n    for i in range({n}):\n        print(f'thread {{t}} line {{i}} end')\n"
        "ts = [threading.Thread(target=spam, args=(t,)) for t in range(4)]\n"
        "for t in ts: t.start()\n"
        "for t in ts: t.join()\n",
        timeout=120,
    )
    assert run.content["status"] == "ok"
    pattern = re.compile(r"thread (\d) line (\d+) end")
    seen: dict[int, list[int]] = defaultdict(list)
    for message in run.of_type("stream"):
        text = message["content"]["text"]
        assert text.endswith("\n"), "a stream message ended mid-line"
        for line in text.splitlines():
            match = pattern.fullmatch(line)
            assert match, f"broken line: {line!r}"
            seen[int(match[1])].append(int(match[2]))
    assert {t: seq for t, seq in seen.items()} == {t: list(range(n)) for t in range(4)}


def test_shutdown_right_after_a_thread_starts_printing_loses_nothing(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    manager, kc = kernel
    n = 20_000
    started = execute(
        kc,
        f"import threading\nthreading.Thread(target=lambda: [print(f'n {{i}}') for i in range({n})]).start()",
    )
    cell = started.reply["parent_header"]["msg_id"]
    shutdown_id = kc.shutdown()
    reply = get_reply(kc, shutdown_id, channel="control")
    assert reply["content"]["status"] == "ok"
    got = lines_until_exit(manager, kc, cell, lines_by_parent(started.of_type("stream"))[cell], n)
    assert got == [f"n {i}" for i in range(n)]
    assert wait_for_exit(manager) == 0


def test_exit_in_a_cell_flushes_thread_output(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = kernel
    n = 5_000
    setup = execute(
        kc,
        "import threading\n"
        "go = threading.Event()\n"
        f"threading.Thread(target=lambda: (go.wait(), [print(f'x {{i}}') for i in range({n})])).start()",
    )
    cell = setup.reply["parent_header"]["msg_id"]
    _, during = execute_seeing_all(kc, "go.set()\nexit()")
    seen = setup.of_type("stream") + [m for m in during if m["msg_type"] == "stream"]
    got = lines_until_exit(manager, kc, cell, lines_by_parent(seen)[cell], n)
    assert got == [f"x {i}" for i in range(n)]
    assert wait_for_exit(manager) == 0


def test_two_threads_ask_for_input_at_once(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute(
        "import threading\n"
        "answers = {}\n"
        "def ask(name):\n"
        "    answers[name] = input(f'{name}? ')\n"
        "ts = [threading.Thread(target=ask, args=(n,)) for n in ('alpha', 'beta')]\n"
        "for t in ts: t.start()\n"
        "for t in ts: t.join()\n"
        "print(sorted(answers.items()))",
        allow_stdin=True,
    )
    for _ in range(2):
        request = kc.get_stdin_msg(timeout=TIMEOUT)
        assert request["msg_type"] == "input_request"
        assert request["parent_header"]["msg_id"] == msg_id
        prompt = request["content"]["prompt"]
        kc.input(f"answer-for-{prompt.rstrip('? ')}")
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    outputs = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        message = kc.get_iopub_msg(timeout=TIMEOUT)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "stream":
            outputs.append(message["content"]["text"])
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            break
    assert "".join(outputs) == "[('alpha', 'answer-for-alpha'), ('beta', 'answer-for-beta')]\n"


def test_no_traceback_anywhere(kc: BlockingKernelClient) -> None:
    run = execute(
        kc,
        "import threading, asyncio\n"
        "t = threading.Thread(target=lambda: print('quiet')); t.start(); t.join()\n"
        "await asyncio.sleep(0)\n",  # code run in the kernel, not a test wait (noqa: sleep-ok)
    )
    assert run.content["status"] == "ok"
    assert run.stderr == ""
    assert "Traceback" not in run.stdout and "LookupError" not in run.stdout


def test_c_level_output_is_captured(kc: BlockingKernelClient) -> None:
    run = execute(
        kc,
        "import os, subprocess\n"
        "os.write(1, b'raw fd one\\n')\n"
        "os.write(2, b'raw fd two\\n')\n"
        "os.system('echo from a shell')\n"
        "subprocess.run(['echo', 'from a child'])\n",
    )
    assert run.content["status"] == "ok"
    assert run.stdout == "raw fd one\nfrom a shell\nfrom a child\n"
    assert run.stderr == "raw fd two\n"


def test_user_logging_shows_in_the_cell(kc: BlockingKernelClient) -> None:
    run = execute(kc, "import logging\nlogging.getLogger('mine').warning('careful')")
    assert run.stderr == "careful\n"


def test_a_deliberate_partial_line_is_shown_before_its_newline(kc: BlockingKernelClient) -> None:
    setup = execute(
        kc,
        "import threading\n"
        "go = threading.Event()\n"
        "def prompt():\n"
        "    print('waiting...', end='')\n"
        "    go.wait()\n"
        "    print(' done')\n"
        "threading.Thread(target=prompt).start()",
    )
    cell = setup.reply["parent_header"]["msg_id"]
    seen = setup.of_type("stream")
    # The thread is blocked with half a line written: it must still be shown.
    if not seen:
        seen = stream_messages_until(kc, lambda ms: len(ms) >= 1)
    assert [m["content"]["text"] for m in seen] == ["waiting..."]
    _, during = execute_seeing_all(kc, "go.set()")
    seen += [m for m in during if m["msg_type"] == "stream"]
    seen += stream_messages_until(
        kc, lambda ms: "".join(m["content"]["text"] for m in seen + ms).endswith("\n")
    )
    assert "".join(m["content"]["text"] for m in seen) == "waiting... done\n"
    assert {m["parent_header"]["msg_id"] for m in seen} == {cell}


def test_a_thread_started_at_startup_goes_to_the_latest_execute_request(tmp_path: Path) -> None:
    """A thread started by an IPython startup file -- before any request exists."""
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-ticker.py").write_text(
        "import threading\n"
        "startup_tick = threading.Event()\n"
        "def _startup_ticker():\n"
        "    while True:\n"
        "        startup_tick.wait(); startup_tick.clear()\n"
        "        print('from a thread started at startup', flush=True)\n"
        "threading.Thread(target=_startup_ticker, daemon=True).start()\n"
        "print('printed by a startup file')\n"
    )
    manager, kc = start_kernel(env={**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")})
    try:
        # What the startup file printed had no cell to go to: it was not published.
        assert execute(kc, "startup_tick.is_set()").of_type("stream") == []
        kc.complete("startup_t", 9, reply=True, timeout=TIMEOUT)  # not an execute request
        for _ in range(2):
            run = execute(kc, "startup_tick.set()")
            cell = run.reply["parent_header"]["msg_id"]
            seen = run.of_type("stream") or stream_messages_until(kc, lambda ms: len(ms) >= 1)
            assert [(m["parent_header"]["msg_id"], m["content"]["text"]) for m in seen] == [
                (cell, "from a thread started at startup\n")
            ]
    finally:
        stop_kernel(manager, kc)
