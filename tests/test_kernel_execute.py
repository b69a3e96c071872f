"""execute_request against a real kernel process: options, outputs, payloads, errors."""

from __future__ import annotations

import re
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import (
    collect_until_idle,
    execute,
    get_reply,
    wait_for_exit,
    wait_for_iopub,
)


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# -- ordering and counting ------------------------------------------------------------------


def test_busy_input_outputs_idle_order(kc: BlockingKernelClient) -> None:
    code = "print('out'); import sys; print('err', file=sys.stderr); 7"
    run = execute(kc, code)
    assert run.content["status"] == "ok"
    kinds = [m["msg_type"] for m in run.messages]
    states = [m["content"]["execution_state"] for m in run.of_type("status")]
    assert states == ["busy", "idle"]
    assert kinds[0] == "status" and kinds[1] == "execute_input" and kinds[-1] == "status"
    assert sorted(kinds[2:-1]) == ["execute_result", "stream", "stream"]
    assert kinds.index("execute_result") > max(i for i, kind in enumerate(kinds) if kind == "stream")
    [execute_input] = run.of_type("execute_input")
    assert execute_input["content"] == {"code": code, "execution_count": 1}
    assert run.stdout == "out\n"
    assert run.stderr == "err\n"
    assert run.content["execution_count"] == 1
    [result] = run.of_type("execute_result")
    assert result["content"]["execution_count"] == 1
    assert result["content"]["data"] == {"text/plain": "7"}


def test_execution_count_increments(kc: BlockingKernelClient) -> None:
    counts = [execute(kc, "1").content["execution_count"] for _ in range(3)]
    assert counts == [1, 2, 3]


def test_silent_has_no_input_no_result_and_keeps_count(kc: BlockingKernelClient) -> None:
    assert execute(kc, "a = 1").content["execution_count"] == 1
    run = execute(kc, "print('quiet'); a = 5; a", silent=True)
    assert run.content["status"] == "ok"
    # the reply carries the counter as it stands: the last cell that stored history
    assert run.content["execution_count"] == 1
    assert run.of_type("execute_input") == []
    assert run.of_type("execute_result") == []
    assert run.stdout == "quiet\n"  # silent suppresses the result, not what the code prints
    after = execute(kc, "a")
    assert after.content["execution_count"] == 2
    assert after.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "5"


def test_store_history_false(kc: BlockingKernelClient) -> None:
    execute(kc, "first = 1")
    run = execute(kc, "'not stored'", store_history=False)
    assert run.content["status"] == "ok"
    assert run.content["execution_count"] == 1
    [execute_input] = run.of_type("execute_input")
    assert execute_input["content"]["code"] == "'not stored'"
    [result] = run.of_type("execute_result")
    assert result["content"]["data"]["text/plain"] == "'not stored'"
    after = execute(kc, "second = 2")
    assert after.content["execution_count"] == 2
    # session 0 is this kernel's own session
    msg_id = kc.history(hist_access_type="range", session=0, start=1, stop=None, raw=True, output=False)
    history = get_reply(kc, msg_id)["content"]["history"]
    assert [(entry[1], entry[2]) for entry in history] == [(1, "first = 1"), (2, "second = 2")]


# -- user_expressions ------------------------------------------------------------------------


def test_user_expressions(kc: BlockingKernelClient) -> None:
    run = execute(
        kc,
        "x = 21",
        user_expressions={"double": "x * 2", "text": "'a' + 'b'", "broken": "1 / 0", "missing": "nope"},
    )
    assert run.content["status"] == "ok"
    expressions = run.content["user_expressions"]
    assert set(expressions) == {"double", "text", "broken", "missing"}
    assert expressions["double"]["status"] == "ok"
    assert expressions["double"]["data"]["text/plain"] == "42"
    assert expressions["text"]["data"]["text/plain"] == "'ab'"
    broken = expressions["broken"]
    assert broken["status"] == "error"
    assert broken["ename"] == "ZeroDivisionError"
    assert "division by zero" in broken["evalue"]
    assert isinstance(broken["traceback"], list)
    assert expressions["missing"]["status"] == "error"
    assert expressions["missing"]["ename"] == "NameError"
    # user expressions produce no output of their own
    assert run.of_type("execute_result", "display_data", "error") == []


# -- stdin disabled ------------------------------------------------------------------------------


def test_allow_stdin_false_raises_in_cell(kc: BlockingKernelClient) -> None:
    code = (
        "from IPython.core.error import StdinNotImplementedError\n"
        "try:\n"
        "    input('name? ')\n"
        "except StdinNotImplementedError as exc:\n"
        "    print('refused:', type(exc).__name__)\n"
    )
    run = execute(kc, code, allow_stdin=False)
    assert run.content["status"] == "ok"
    assert run.stdout == "refused: StdinNotImplementedError\n"


def test_allow_stdin_false_uncaught_is_an_error(kc: BlockingKernelClient) -> None:
    run = execute(kc, "input()", allow_stdin=False)
    assert run.content["status"] == "error"
    assert run.content["ename"] == "StdinNotImplementedError"


# -- stop_on_error -------------------------------------------------------------------------------


def _send_pair(kc: BlockingKernelClient, stop_on_error: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    failing = kc.execute("raise ValueError('first fails')", stop_on_error=stop_on_error)
    second = kc.execute("ran_second = True; print('second ran')")
    return get_reply(kc, failing), get_reply(kc, second)


def test_stop_on_error_aborts_queued_cell(kc: BlockingKernelClient) -> None:
    first, second = _send_pair(kc, stop_on_error=True)
    assert first["content"]["status"] == "error"
    assert first["content"]["ename"] == "ValueError"
    assert second["content"]["status"] == "aborted"
    assert second["metadata"].get("status") == "aborted"
    check = execute(kc, "'ran_second' in dir()")
    assert check.content["status"] == "ok"
    assert check.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "False"


def test_aborted_cell_has_busy_idle_and_no_input(kc: BlockingKernelClient) -> None:
    failing = kc.execute("1 / 0")
    second = kc.execute("print('never')")
    collect_until_idle(kc, failing)
    messages = collect_until_idle(kc, second)
    assert get_reply(kc, failing)["content"]["status"] == "error"
    assert get_reply(kc, second)["content"]["status"] == "aborted"
    assert [m["msg_type"] for m in messages] == ["status", "status"]


def test_stop_on_error_false_runs_next_cell(kc: BlockingKernelClient) -> None:
    first, second = _send_pair(kc, stop_on_error=False)
    assert first["content"]["status"] == "error"
    assert second["content"]["status"] == "ok"
    check = execute(kc, "ran_second")
    assert check.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "True"


def test_cell_after_abort_runs_normally(kc: BlockingKernelClient) -> None:
    failing = kc.execute("raise ValueError('first fails')")
    queued = kc.execute("print('aborted')")
    assert get_reply(kc, failing)["content"]["status"] == "error"
    # sent as soon as the error reply arrived, while the queued cell may still be pending
    after = kc.execute("print('sent after the error reply')")
    assert get_reply(kc, queued)["content"]["status"] == "aborted"
    assert get_reply(kc, after)["content"]["status"] == "ok"
    run = execute(kc, "print('after'); 3")
    assert run.content["status"] == "ok"
    assert run.stdout == "after\n"
    assert run.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "3"


def test_silent_error_does_not_abort(kc: BlockingKernelClient) -> None:
    failing = kc.execute("raise ValueError", silent=True)
    second = kc.execute("ok = 1")
    assert get_reply(kc, failing)["content"]["status"] == "error"
    assert get_reply(kc, second)["content"]["status"] == "ok"


# -- errors -------------------------------------------------------------------------------------


def test_exception_error_message(kc: BlockingKernelClient) -> None:
    run = execute(kc, "def f():\n    raise KeyError('boom')\nf()")
    assert run.content["status"] == "error"
    assert run.content["ename"] == "KeyError"
    assert run.content["evalue"] == "'boom'"
    [error] = run.of_type("error")
    assert error["content"]["ename"] == "KeyError"
    assert error["content"]["evalue"] == "'boom'"
    traceback = error["content"]["traceback"]
    assert isinstance(traceback, list) and all(isinstance(line, str) for line in traceback)
    assert run.content["traceback"] == traceback
    plain = _strip_ansi("\n".join(traceback))
    assert "----> 3 f()" in plain
    assert "raise KeyError('boom')" in plain
    assert plain.rstrip().endswith("KeyError: 'boom'")
    assert run.of_type("execute_result") == []


def test_syntax_error_message(kc: BlockingKernelClient) -> None:
    run = execute(kc, "x = (1,\nprint(")
    assert run.content["status"] == "error"
    assert run.content["ename"] == "SyntaxError"
    [error] = run.of_type("error")
    assert error["content"]["ename"] == "SyntaxError"
    assert error["content"]["traceback"]
    # A cell that fails to compile still uses up an execution count, like IPython.
    assert execute(kc, "1").content["execution_count"] == run.content["execution_count"] + 1


def test_error_after_output_keeps_output(kc: BlockingKernelClient) -> None:
    run = execute(kc, "print('before')\nraise RuntimeError('after print')")
    kinds = [m["msg_type"] for m in run.messages]
    assert kinds.index("stream") < kinds.index("error")
    assert run.stdout == "before\n"
    assert run.content["evalue"] == "after print"


# -- rich output -----------------------------------------------------------------------------------


def test_execute_result_rich(kc: BlockingKernelClient) -> None:
    run = execute(kc, "from IPython.display import HTML\nHTML('<b>bold</b>')")
    [result] = run.of_type("execute_result")
    assert result["content"]["data"]["text/html"] == "<b>bold</b>"
    assert "text/plain" in result["content"]["data"]
    assert result["content"]["execution_count"] == run.content["execution_count"]


def test_no_execute_result_for_none_or_semicolon(kc: BlockingKernelClient) -> None:
    assert execute(kc, "None").of_type("execute_result") == []
    assert execute(kc, "1 + 1;").of_type("execute_result") == []


def test_display_data(kc: BlockingKernelClient) -> None:
    run = execute(
        kc,
        "from IPython.display import display, Markdown\n"
        "display(Markdown('*hi*'), metadata={'k': 1})\n"
        "display({'a': 1}, raw=True)\n",
    )
    assert run.content["status"] == "ok"
    first, second = run.of_type("display_data")
    assert first["content"]["data"]["text/markdown"] == "*hi*"
    assert first["content"]["metadata"] == {"k": 1}
    assert first["content"]["transient"] == {}
    assert second["content"]["data"] == {"a": 1}
    assert run.of_type("execute_result") == []


def test_update_display_data_by_display_id(kc: BlockingKernelClient) -> None:
    run = execute(
        kc,
        "from IPython.display import display\n"
        "handle = display('start', display_id=True)\n"
        "handle.update('finish')\n"
        "print(handle.display_id)\n",
    )
    assert run.content["status"] == "ok"
    [shown] = run.of_type("display_data")
    [updated] = run.of_type("update_display_data")
    display_id = run.stdout.strip()
    assert display_id
    assert shown["content"]["transient"] == {"display_id": display_id}
    assert shown["content"]["data"]["text/plain"] == "'start'"
    assert updated["content"]["transient"] == {"display_id": display_id}
    assert updated["content"]["data"]["text/plain"] == "'finish'"
    kinds = [m["msg_type"] for m in run.messages]
    assert kinds.index("display_data") < kinds.index("update_display_data")


def test_update_display_from_a_later_cell(kc: BlockingKernelClient) -> None:
    execute(kc, "from IPython.display import display\nh = display('v1', display_id='fixed-id')")
    run = execute(kc, "h.update('v2')")
    [updated] = run.of_type("update_display_data")
    assert updated["content"]["transient"] == {"display_id": "fixed-id"}
    assert updated["content"]["data"]["text/plain"] == "'v2'"


def test_clear_output_wait_and_no_wait(kc: BlockingKernelClient) -> None:
    run = execute(
        kc,
        "from IPython.display import clear_output\n"
        "print('a')\n"
        "clear_output(wait=True)\n"
        "print('b')\n"
        "clear_output()\n",
    )
    assert run.content["status"] == "ok"
    relevant = [
        (m["msg_type"], m["content"].get("text", m["content"].get("wait")))
        for m in run.of_type("stream", "clear_output")
    ]
    assert relevant == [("stream", "a\n"), ("clear_output", True), ("stream", "b\n"), ("clear_output", False)]


# -- asyncio -----------------------------------------------------------------------------------


def test_top_level_await(kc: BlockingKernelClient) -> None:
    code = "import asyncio\nawait asyncio.sleep(0)\n"  # in the kernel (noqa: sleep-ok)
    code += "value = await asyncio.sleep(0, result=9)\nvalue"  # in the kernel (noqa: sleep-ok)
    run = execute(kc, code)
    assert run.content["status"] == "ok"
    assert run.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "9"


def test_async_error(kc: BlockingKernelClient) -> None:
    code = (
        "import asyncio\nawait asyncio.sleep(0)\nraise LookupError('async')"  # in the kernel (noqa: sleep-ok)
    )
    run = execute(kc, code)
    assert run.content["status"] == "error"
    assert run.content["ename"] == "LookupError"
    assert len(run.of_type("error")) == 1


def test_task_keeps_running_after_cell(kc: BlockingKernelClient) -> None:
    started = execute(
        kc,
        "import asyncio\n"
        "go = asyncio.Event()\n"
        "async def later():\n"
        "    await go.wait()\n"
        "    print('from the task')\n"
        "    return 'done'\n"
        "task = asyncio.ensure_future(later())\n",
    )
    assert started.content["status"] == "ok"
    assert started.stdout == ""
    # The task is still pending between cells; a later cell releases it.
    run = execute(kc, "print(task.done()); go.set()")
    assert run.stdout == "False\n"
    # Its output arrives after that cell finished, under the cell that started the task.
    started_id = started.reply["parent_header"]["msg_id"]
    message = wait_for_iopub(kc, lambda m: m["msg_type"] == "stream")
    assert message["content"]["text"] == "from the task\n"
    assert message["parent_header"]["msg_id"] == started_id
    check = execute(kc, "task.result()")
    assert check.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "'done'"


# -- payloads ---------------------------------------------------------------------------------


def test_set_next_input_payload(kc: BlockingKernelClient) -> None:
    run = execute(kc, "get_ipython().set_next_input('x')")
    assert run.content["status"] == "ok"
    assert run.content["payload"] == [{"source": "set_next_input", "text": "x", "replace": False}]
    # payloads are per request
    assert execute(kc, "1").content["payload"] == []


def test_page_payload(kc: BlockingKernelClient) -> None:
    run = execute(kc, "print?")
    assert run.content["status"] == "ok"
    [payload] = run.content["payload"]
    assert payload["source"] == "page"
    assert payload["start"] == 0
    assert "text/plain" in payload["data"]
    assert "print" in payload["data"]["text/plain"]


def test_page_magic_payload(kc: BlockingKernelClient) -> None:
    run = execute(kc, "text = 'paged text'\n%page text")
    [payload] = run.content["payload"]
    assert payload["source"] == "page"
    assert "paged text" in payload["data"]["text/plain"]


def test_exit_payload_then_process_exits(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = kernel
    run = execute(kc, "exit")
    assert run.content["status"] == "ok"
    assert run.content["payload"] == [{"source": "ask_exit", "keepkernel": False}]
    assert wait_for_exit(manager) == 0
    assert not manager.is_alive()


def test_exit_keep_kernel(kc: BlockingKernelClient) -> None:
    run = execute(kc, "exit(keep_kernel=True)")
    assert run.content["payload"] == [{"source": "ask_exit", "keepkernel": True}]
    assert execute(kc, "'alive'").of_type("execute_result")[0]["content"]["data"]["text/plain"] == "'alive'"


def test_non_string_code_is_an_error(kc: BlockingKernelClient) -> None:
    message = kc.session.msg("execute_request", {"code": 42, "silent": False})
    msg_id = message["header"]["msg_id"]
    kc.shell_channel.send(message)
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "TypeError"
    assert execute(kc, "1").content["status"] == "ok"


def test_matplotlib_inline_sends_a_png(kc: BlockingKernelClient) -> None:
    run = execute(
        kc,
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()",
    )
    assert run.content["status"] == "ok", run.content
    [image] = [m for m in run.of_type("display_data") if "image/png" in m["content"]["data"]]
    png = image["content"]["data"]["image/png"]
    assert png.startswith("iVBORw0KGgo")  # base64 of the PNG signature
