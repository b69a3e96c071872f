"""JEP 91 subshells: concurrent shells with their own threads and execution counts."""

from __future__ import annotations

import queue
import time
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import (
    HOLD_UNTIL_INTERRUPTED,
    TIMEOUT,
    collect_until_idle,
    execute,
    get_reply,
    wait_for_iopub,
)


def control_request(kc: BlockingKernelClient, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    message = kc.session.msg(msg_type, content)
    kc.control_channel.send(message)
    reply: dict[str, Any] = get_reply(kc, message["header"]["msg_id"], channel="control")
    return reply


def create_subshell(kc: BlockingKernelClient) -> str:
    reply = control_request(kc, "create_subshell_request", {})
    assert reply["content"]["status"] == "ok"
    subshell_id: str = reply["content"]["subshell_id"]
    return subshell_id


def execute_in(kc: BlockingKernelClient, subshell_id: str | None, code: str, **content: Any) -> str:
    message = kc.session.msg("execute_request", {"code": code, "silent": False, **content})
    if subshell_id is not None:
        message["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(message)
    msg_id: str = message["header"]["msg_id"]
    return msg_id


def replies(kc: BlockingKernelClient, msg_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Replies to all of ``msg_ids``, in whatever order they come."""
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + TIMEOUT
    order: list[str] = []
    while len(got) < len(msg_ids):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"replies missing for {set(msg_ids) - set(got)}")
        try:
            reply = kc.get_shell_msg(timeout=remaining)
        except queue.Empty:
            continue
        parent = reply["parent_header"].get("msg_id")
        if parent in msg_ids:
            got[parent] = reply
            order.append(parent)
    got["__order__"] = {"order": order}
    return got


def test_kernel_info_advertises_subshells(kc: BlockingKernelClient) -> None:
    reply = kc.kernel_info(reply=True, timeout=TIMEOUT)
    assert "kernel subshells" in reply["content"]["supported_features"]


def test_create_list_delete(kc: BlockingKernelClient) -> None:
    first, second = create_subshell(kc), create_subshell(kc)
    assert first != second
    listed = control_request(kc, "list_subshell_request", {})["content"]["subshell_id"]
    assert sorted(listed) == sorted([first, second])
    assert control_request(kc, "delete_subshell_request", {"subshell_id": first})["content"]["status"] == "ok"
    assert control_request(kc, "list_subshell_request", {})["content"]["subshell_id"] == [second]
    missing = control_request(kc, "delete_subshell_request", {"subshell_id": first})["content"]
    assert missing["status"] == "error" and missing["ename"] == "UnknownSubshellError"


def test_subshell_runs_while_the_main_shell_is_busy(kc: BlockingKernelClient) -> None:
    execute(kc, "import threading\nreleased = threading.Event()")
    subshell = create_subshell(kc)
    # The main shell blocks until the subshell releases it: only concurrency finishes this.
    main = execute_in(kc, None, "print('main released:', released.wait(60))")
    side = execute_in(kc, subshell, "released.set()\nprint('from the subshell')")
    got = replies(kc, [main, side])
    assert got[side]["content"]["status"] == "ok"
    assert got[main]["content"]["status"] == "ok"
    # The main cell finished only because the subshell ran while it was blocked.
    assert "main released: True" in execute(kc, "print('main released:', released.is_set())").stdout


def test_subshell_keeps_order_and_its_own_count(kc: BlockingKernelClient) -> None:
    subshell = create_subshell(kc)
    main_before = execute(kc, "1").content["execution_count"]
    ids = [execute_in(kc, subshell, f"order = globals().get('order', []) + [{k}]") for k in range(3)]
    got = replies(kc, ids)
    assert [got[i]["content"]["execution_count"] for i in ids] == [1, 2, 3]
    assert got["__order__"]["order"] == ids
    check = execute(kc, "print(order)")
    assert check.stdout == "[0, 1, 2]\n"
    assert check.content["execution_count"] == main_before + 1


def test_unknown_subshell_is_an_error_not_a_fallback(kc: BlockingKernelClient) -> None:
    msg_id = execute_in(kc, "no-such-subshell", "print('must not run')")
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "UnknownSubshellError"


def interrupt_once_printed(kc: BlockingKernelClient, subshell_id: str, code: str) -> dict[str, Any]:
    """Run ``code`` (which prints first) in a subshell; once it has printed, send an
    interrupt_request (which must be answered ok); the cell's reply."""
    msg_id = execute_in(kc, subshell_id, code)
    wait_for_iopub(kc, lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream")
    assert control_request(kc, "interrupt_request", {})["content"]["status"] == "ok"
    return get_reply(kc, msg_id)


def test_interrupt_reaches_a_subshell(kc: BlockingKernelClient) -> None:
    subshell = create_subshell(kc)
    spinning = "import sys\nprint('spinning', flush=True)\nwhile True:\n    pass"
    reply = interrupt_once_printed(kc, subshell, spinning)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert execute(kc, "print('still fine')").stdout == "still fine\n"


def test_an_interrupt_before_a_subshell_cell_starts_interrupts_it(kc: BlockingKernelClient) -> None:
    """An interrupt_request after a subshell cell's execute_input, before its first
    line (held open by an input transformer until the interrupt has come): the
    cell fails with KeyboardInterrupt and none of it runs; the next one runs."""
    assert execute(kc, HOLD_UNTIL_INTERRUPTED).content["status"] == "ok"
    subshell = create_subshell(kc)
    # Interrupted once it printed "holding": its execute_input is out, its code has not run.
    reply = interrupt_once_printed(kc, subshell, "# hold\nran = True")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert execute(kc, "print('ran' in globals())").stdout == "False\n"
    after = execute_in(kc, subshell, "print('next')")
    assert get_reply(kc, after)["content"]["status"] == "ok"


def test_subshell_code_runs_with_the_usual_signal_mask(kc: BlockingKernelClient) -> None:
    """Subshell threads are started by the IO thread, which blocks signals; a
    subshell's cells (and threads they start) must not inherit that mask."""
    probe = (
        "import signal, threading\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])))\n"
        "t.start(); t.join()\n"
        "print(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])), sorted(seen[0]))"
    )
    main_mask = execute(kc, probe).stdout
    subshell_id = create_subshell(kc)
    msg_id = execute_in(kc, subshell_id, probe)
    assert replies(kc, [msg_id])[msg_id]["content"]["status"] == "ok"
    streams = [m for m in collect_until_idle(kc, msg_id) if m["msg_type"] == "stream"]
    assert "".join(m["content"]["text"] for m in streams) == main_mask == "[] []\n"
