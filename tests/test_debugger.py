"""The visual debugger: DAP sessions driven through a real kernel, as JupyterLab drives them.

Requests go on the control channel as ``debug_request``; replies come back as
``debug_reply``; debugpy's events arrive on iopub as ``debug_event``. Every wait
is on a message, with a deadline as a safety net.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import (
    TIMEOUT,
    collect_until_idle,
    execute,
    get_input_request,
    get_reply,
    wait_for_exit,
    wait_for_iopub,
)
from threadline.kernel.debugger import debugpy_available, encode_dap, read_dap
from threadline.shell.cell_names import HASH_SEED, cell_file_name, murmur2

pytestmark = pytest.mark.skipif(not debugpy_available(), reason="debugpy is not installed")

# -- without a kernel -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Computed with JupyterLab's own murmur2 (packages/debugger/src/hash.ts).
        ("", 3559853910),
        ("a", 1786965676),
        ("abc", 3530490457),
        ("abcd", 1285869465),
        ("x = 1\ny = 2\n", 2183146802),
        ("héllo ✓ wörld", 2249201699),
    ],
)
def test_cell_names_hash_like_jupyterlab(text: str, expected: int) -> None:
    assert murmur2(text.encode("utf-8"), HASH_SEED) == expected
    assert cell_file_name(text).endswith(f"{expected}.py")


def test_dap_framing_round_trip() -> None:
    messages = [{"seq": 1, "type": "event", "event": "stopped"}, {"seq": 2, "type": "event", "body": "é"}]

    async def read_back(data: bytes) -> list[dict[str, Any]]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return [await read_dap(reader) for _ in messages]

    data = b"".join(encode_dap(m) for m in messages)
    assert asyncio.run(read_back(data)) == messages


# -- a DAP client over the kernel's control channel ---------------------------------------------


class DebugClient:
    """Sends DAP requests as ``debug_request`` and reads ``debug_reply`` / ``debug_event``."""

    def __init__(self, kc: BlockingKernelClient) -> None:
        self.kc = kc
        self._seq = itertools.count(1)

    def request(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        content: dict[str, Any] = {"type": "request", "seq": next(self._seq), "command": command}
        if arguments is not None:
            content["arguments"] = arguments
        message = self.kc.session.msg("debug_request", content)
        self.kc.control_channel.send(message)
        reply = get_reply(self.kc, message["header"]["msg_id"], channel="control")
        assert reply["msg_type"] == "debug_reply"
        response: dict[str, Any] = reply["content"]
        assert response["command"] == command
        assert response["request_seq"] == content["seq"]
        return response

    def ok(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.request(command, arguments)
        assert response["success"], response
        body: dict[str, Any] = response.get("body") or {}
        return body

    def event(self, name: str, **expected: Any) -> dict[str, Any]:
        """The next ``debug_event`` named ``name`` whose body has the ``expected`` items."""

        def matches(message: dict[str, Any]) -> bool:
            if message["msg_type"] != "debug_event" or message["content"].get("event") != name:
                return False
            body = message["content"].get("body") or {}
            return all(body.get(key) == value for key, value in expected.items())

        event: dict[str, Any] = wait_for_iopub(self.kc, matches)["content"]
        return event

    def start(self) -> None:
        capabilities = self.ok(
            "initialize",
            {
                "clientID": "threadline-tests",
                "adapterID": "python",
                "pathFormat": "path",
                "linesStartAt1": True,
                "columnsStartAt1": True,
                "supportsVariableType": True,
            },
        )
        assert capabilities["supportsConfigurationDoneRequest"]
        self.ok("attach", {})

    def set_breakpoints(self, code: str, *lines: int) -> str:
        path: str = self.ok("dumpCell", {"code": code})["sourcePath"]
        body = self.ok(
            "setBreakpoints",
            {"source": {"path": path}, "breakpoints": [{"line": line} for line in lines]},
        )
        assert [b["verified"] for b in body["breakpoints"]] == [True] * len(lines)
        return path

    def top_frame(self, thread_id: int) -> dict[str, Any]:
        frames = self.ok("stackTrace", {"threadId": thread_id})["stackFrames"]
        frame: dict[str, Any] = frames[0]
        return frame

    def locals_of(self, frame_id: int) -> dict[str, str]:
        scopes = self.ok("scopes", {"frameId": frame_id})["scopes"]
        local_scope = next(s for s in scopes if s["name"] == "Locals")
        variables = self.ok("variables", {"variablesReference": local_scope["variablesReference"]})
        return {v["name"]: v["value"] for v in variables["variables"]}


FUNCTION_CELL = """\
def add(a, b):
    total = a + b
    return total

x = 10
y = add(x, 5)
z = y * 2
"""


def execute_reply(kc: BlockingKernelClient, msg_id: str) -> dict[str, Any]:
    reply: dict[str, Any] = get_reply(kc, msg_id)["content"]
    return reply


# -- through a kernel ------------------------------------------------------------------------------


def test_kernel_info_advertises_the_debugger(kc: BlockingKernelClient) -> None:
    msg_id = kc.kernel_info()
    content = get_reply(kc, msg_id)["content"]
    assert content["debugger"] is True
    # JupyterLab 4.x also looks in the feature list (as ipykernel 7 declares it).
    assert "debugger" in content["supported_features"]
    assert "kernel subshells" in content["supported_features"]


#: Starts with blank lines (IPython drops them before compiling) and an indented one.
BLANK_LINES_CELL = "\n\n   \ndef add(a, b):\n    total = a + b\n    return total\n\nresult = add(2, 3)\n"


def test_a_breakpoint_in_a_cell_that_starts_with_blank_lines_is_hit(kc: BlockingKernelClient) -> None:
    """The front end numbers the cell's lines as typed; the compiled code must agree."""
    dbg = DebugClient(kc)
    dbg.start()
    path = dbg.set_breakpoints(BLANK_LINES_CELL, 5)
    dbg.ok("configurationDone")
    msg_id = kc.execute(BLANK_LINES_CELL)
    thread_id = dbg.event("stopped", reason="breakpoint")["body"]["threadId"]
    frames = dbg.ok("stackTrace", {"threadId": thread_id})["stackFrames"]
    assert [(f["name"], f["line"], f["source"]["path"]) for f in frames] == [
        ("add", 5, path),
        ("<module>", 8, path),
    ]
    assert dbg.locals_of(frames[0]["id"]) == {"a": "2", "b": "3"}
    dbg.ok("continue", {"threadId": thread_id})
    assert execute_reply(kc, msg_id)["status"] == "ok"
    # Tracebacks count the cell's lines as typed too.
    failed = execute(kc, "\n\n1 / 0\n")
    assert "line 3" in failed.content["traceback"][2]


def test_debug_requests_are_answered_in_the_order_sent(kc: BlockingKernelClient) -> None:
    """JupyterLab's start-up, with a state check in between: in order, and started after initialize.

    JupyterLab sends ``initialize``, then ``attach``, while a focus change or a
    kernel event may send ``debugInfo`` at any moment -- and it takes ``isStarted``
    from every debugInfo reply. A ``debugInfo`` answered before a slower
    ``attach`` with ``isStarted: false`` switched JupyterLab's session off again,
    and from then on it ignored every click in the breakpoint gutter (the flaky
    browser test). Requests are served one at a time, in order, as ipykernel
    serves its control channel, and the session counts as started from its
    ``initialize`` on, as in ipykernel.
    """
    dbg = DebugClient(kc)
    sent = []
    for command, arguments in [
        ("initialize", {"clientID": "threadline-tests", "adapterID": "python", "pathFormat": "path"}),
        ("debugInfo", {}),
        ("attach", {}),
        ("debugInfo", {}),
    ]:
        content = {"type": "request", "seq": next(dbg._seq), "command": command, "arguments": arguments}
        message = kc.session.msg("debug_request", content)
        kc.control_channel.send(message)
        sent.append(message["header"]["msg_id"])
    arrived = [kc.get_control_msg(timeout=TIMEOUT) for _ in sent]
    assert [reply["parent_header"]["msg_id"] for reply in arrived] == sent
    replies = [reply["content"] for reply in arrived]
    assert all(reply["success"] for reply in replies), replies
    started = [reply["body"]["isStarted"] for reply in replies if reply["command"] == "debugInfo"]
    assert started == [True, True]


def test_full_session_breakpoint_step_continue(kc: BlockingKernelClient) -> None:
    dbg = DebugClient(kc)
    info = dbg.ok("debugInfo")  # JupyterLab asks before it starts anything
    assert info["isStarted"] is False
    assert info["hashMethod"] == "Murmur2"
    dbg.start()
    path = dbg.set_breakpoints(FUNCTION_CELL, 2)
    assert path == f"{info['tmpFilePrefix']}{murmur2(FUNCTION_CELL.encode(), info['hashSeed'])}.py"
    dbg.ok("configurationDone")

    msg_id = kc.execute(FUNCTION_CELL)
    stopped = dbg.event("stopped", reason="breakpoint")["body"]
    thread_id = stopped["threadId"]
    frames = dbg.ok("stackTrace", {"threadId": thread_id})["stackFrames"]
    # Only the user's code: the cell, not IPython's or the kernel's frames.
    assert [(f["name"], f["line"], f["source"]["path"]) for f in frames] == [
        ("add", 2, path),
        ("<module>", 6, path),
    ]
    frame = frames[0]
    assert dbg.locals_of(frame["id"]) == {"a": "10", "b": "5"}

    info = dbg.ok("debugInfo")
    assert info["isStarted"] is True
    assert info["stoppedThreads"] == [thread_id]
    assert info["breakpoints"] == [{"source": path, "breakpoints": [{"line": 2}]}]

    dbg.ok("next", {"threadId": thread_id})
    dbg.event("stopped", reason="step", threadId=thread_id)
    frame = dbg.top_frame(thread_id)
    assert frame["line"] == 3
    assert dbg.locals_of(frame["id"])["total"] == "15"

    dbg.ok("continue", {"threadId": thread_id})
    assert execute_reply(kc, msg_id)["status"] == "ok"
    assert execute(kc, "print(z)").stdout == "30\n"
    assert dbg.ok("debugInfo")["stoppedThreads"] == []


def test_breakpoint_call_stops_in_the_panel_when_a_client_is_attached(kc: BlockingKernelClient) -> None:
    """``breakpoint()`` goes to the debugger panel while a session runs, to the ipdb prompt otherwise."""
    dbg = DebugClient(kc)
    dbg.start()
    dbg.ok("configurationDone")
    code = "before = 1\nbreakpoint()\nafter = before + 1\n"
    msg_id = kc.execute(code)
    thread_id = dbg.event("stopped")["body"]["threadId"]
    frame = dbg.top_frame(thread_id)
    assert frame["source"]["path"] == dbg.ok("dumpCell", {"code": code})["sourcePath"]
    assert frame["line"] == 3  # stopped before the line after breakpoint(), as pdb does
    assert dbg.locals_of(frame["id"])["before"] == "1"
    dbg.ok("continue", {"threadId": thread_id})
    assert execute_reply(kc, msg_id)["status"] == "ok"
    # Without a session, breakpoint() opens the text debugger (debugpy would ignore it).
    dbg.ok("disconnect", {"restart": False, "terminateDebuggee": False})
    msg_id = kc.execute("breakpoint()\nprint('went on')", allow_stdin=True)
    request = get_input_request(kc)
    assert request["content"]["prompt"].strip() == "ipdb>"
    kc.input("c")
    assert execute_reply(kc, msg_id)["status"] == "ok"


def test_a_user_thread_stops_at_a_breakpoint(kc: BlockingKernelClient) -> None:
    dbg = DebugClient(kc)
    dbg.start()
    code = """\
import threading

def work():
    value = "in the thread"
    return value

worker = threading.Thread(target=work, name="worker")
worker.start()
"""
    dbg.set_breakpoints(code, 4)
    dbg.ok("configurationDone")
    msg_id = kc.execute(code)
    thread_id = dbg.event("stopped", reason="breakpoint")["body"]["threadId"]
    threads = {t["id"]: t["name"] for t in dbg.ok("threads")["threads"]}
    assert threads[thread_id] == "worker"
    frame = dbg.top_frame(thread_id)
    assert (frame["name"], frame["line"]) == ("work", 4)
    dbg.ok("stepOut", {"threadId": thread_id})  # out of work(): the thread runs to its end
    dbg.event("thread", reason="exited", threadId=thread_id)
    assert execute_reply(kc, msg_id)["status"] == "ok"
    # debugpy would never answer this; the kernel says the thread is gone.
    assert not dbg.request("continue", {"threadId": thread_id})["success"]
    assert execute(kc, "worker.join(30); print(worker.is_alive())").stdout == "False\n"


def test_control_answers_while_stopped_and_interrupt_ends_the_cell(kc: BlockingKernelClient) -> None:
    dbg = DebugClient(kc)
    dbg.start()
    code = "marker = 1\nmarker += 1\nwhile True:\n    marker += 1\n"
    dbg.set_breakpoints(code, 2)
    dbg.ok("configurationDone")
    msg_id = kc.execute(code)
    thread_id = dbg.event("stopped", reason="breakpoint")["body"]["threadId"]

    info_request = kc.session.msg("kernel_info_request")
    kc.control_channel.send(info_request)
    reply = get_reply(kc, info_request["header"]["msg_id"], channel="control")
    assert reply["content"]["status"] == "ok"
    assert dbg.ok("debugInfo")["stoppedThreads"] == [thread_id]

    # The interrupt resumes the stopped thread and lands in the cell's own code
    # (not in debugpy's, which would end the debugging of the main thread).
    interrupt = kc.session.msg("interrupt_request")
    kc.control_channel.send(interrupt)
    assert get_reply(kc, interrupt["header"]["msg_id"], channel="control")["content"]["status"] == "ok"
    result = execute_reply(kc, msg_id)
    assert (result["status"], result.get("ename")) == ("error", "KeyboardInterrupt")
    assert "pydevd" not in "".join(result["traceback"])
    assert dbg.ok("debugInfo")["stoppedThreads"] == []

    # The main thread is still debugged: the breakpoint stops the next run too.
    again = "marker = 1\nmarker += 1\n"
    dbg.set_breakpoints(again, 2)
    msg_id = kc.execute(again)
    assert dbg.event("stopped", reason="breakpoint")["body"]["threadId"] == thread_id
    dbg.ok("continue", {"threadId": thread_id})
    assert execute_reply(kc, msg_id)["status"] == "ok"


def test_an_interrupt_retried_after_its_cell_ended_leaves_background_cells_alone(
    kc: BlockingKernelClient,
) -> None:
    """Interrupted at a breakpoint on its last line, the cell is resumed by the debugger
    and ends before the debugger delivers the interrupt again. That delivery was a
    SIGINT, which then found no cell running and interrupted the %%background cell
    instead (3 of 3 tries by hand; this test failed 5 of 6 runs, the next run's
    breakpoint never stopping): now it is dropped with the cell it was for."""
    execute(kc, "import time\nticks = 0")
    execute(kc, "%%background\nwhile True:\n    ticks += 1\n    time.sleep(0.001)")  # (noqa: sleep-ok)
    dbg = DebugClient(kc)
    dbg.start()
    code = "marker = 1\nmarker += 1\n"
    dbg.set_breakpoints(code, 2)
    dbg.ok("configurationDone")
    for _ in range(3):
        msg_id = kc.execute(code)
        dbg.event("stopped", reason="breakpoint")
        interrupt = kc.session.msg("interrupt_request")
        kc.control_channel.send(interrupt)
        assert get_reply(kc, interrupt["header"]["msg_id"], channel="control")["content"]["status"] == "ok"
        result = execute_reply(kc, msg_id)
        # Either the interrupt landed in the cell's line, or the cell ended first.
        assert result["status"] == "ok" or result.get("ename") == "KeyboardInterrupt", result
    ticking = (
        "t0 = ticks\ndeadline = time.monotonic() + 10\n"
        "while ticks == t0 and time.monotonic() < deadline:\n    time.sleep(0.001)\n"  # (noqa: sleep-ok)
        "print(ticks > t0)"
    )
    assert execute(kc, ticking).stdout == "True\n"


def test_variables_without_stopping(kc: BlockingKernelClient) -> None:
    dbg = DebugClient(kc)
    dbg.start()
    execute(kc, "numbers = [1, 2, 3]\n_private = 1")
    variables = {v["name"]: v for v in dbg.ok("inspectVariables")["variables"]}
    assert variables["numbers"]["value"] == "[1, 2, 3]"
    assert variables["numbers"]["type"] == "list"
    assert "_private" not in variables
    assert "In" not in variables
    rich = dbg.ok("richInspectVariables", {"variableName": "numbers"})
    assert rich["data"]["text/plain"] == "[1, 2, 3]"
    assert not dbg.request("richInspectVariables", {"variableName": "nothing_here"})["success"]


def test_copy_to_globals_and_rich_inspect_while_stopped(kc: BlockingKernelClient) -> None:
    dbg = DebugClient(kc)
    dbg.start()
    code = "def f():\n    secret = {'k': 42}\n    return secret\n\nf()\n"
    dbg.set_breakpoints(code, 3)
    dbg.ok("configurationDone")
    msg_id = kc.execute(code)
    thread_id = dbg.event("stopped", reason="breakpoint")["body"]["threadId"]
    frame_id = dbg.top_frame(thread_id)["id"]
    rich = dbg.ok("richInspectVariables", {"variableName": "secret", "frameId": frame_id})
    assert rich["data"]["text/plain"] == "{'k': 42}"
    dbg.ok(
        "copyToGlobals",
        {"srcVariableName": "secret", "dstVariableName": "copied", "srcFrameId": frame_id},
    )
    dbg.ok("continue", {"threadId": thread_id})
    assert execute_reply(kc, msg_id)["status"] == "ok"
    assert execute(kc, "print(copied)").stdout == "{'k': 42}\n"


def test_disconnect_ends_the_session(kc: BlockingKernelClient) -> None:
    dbg = DebugClient(kc)
    dbg.start()
    code = "after = 1\nafter += 1\n"
    dbg.set_breakpoints(code, 2)
    dbg.ok("configurationDone")
    dbg.ok("disconnect", {"restart": False, "terminateDebuggee": False})
    info = dbg.ok("debugInfo")
    assert (info["isStarted"], info["breakpoints"]) == (False, [])
    assert not dbg.request("stackTrace", {"threadId": 1})["success"]
    # The breakpoint is gone with the session: the cell runs through.
    assert execute(kc, code + "print(after)").stdout == "2\n"
    # And a new session can start.
    dbg.start()
    assert dbg.ok("debugInfo")["isStarted"] is True


def test_busy_and_idle_frame_each_debug_request(kc: BlockingKernelClient) -> None:
    request = kc.session.msg("debug_request", {"type": "request", "seq": 1, "command": "debugInfo"})
    kc.control_channel.send(request)
    msg_id = request["header"]["msg_id"]
    get_reply(kc, msg_id, channel="control")
    states = [
        m["content"]["execution_state"] for m in collect_until_idle(kc, msg_id) if m["msg_type"] == "status"
    ]
    assert states == ["busy", "idle"]


def test_shutdown_while_stopped(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = kernel
    dbg = DebugClient(kc)
    dbg.start()
    code = "stop_here = 1\nstop_here += 1\n"
    dbg.set_breakpoints(code, 2)
    dbg.ok("configurationDone")
    kc.execute(code)
    dbg.event("stopped", reason="breakpoint")
    shutdown = kc.session.msg("shutdown_request", {"restart": False})
    kc.control_channel.send(shutdown)
    assert get_reply(kc, shutdown["header"]["msg_id"], channel="control")["content"]["status"] == "ok"
    assert wait_for_exit(manager) is not None
