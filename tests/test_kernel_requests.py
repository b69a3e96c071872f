"""The shell and control requests other than execute, against a real kernel process."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

from tests.kernel_helpers import TIMEOUT, collect_until_idle, execute, get_reply, wait_for_iopub
from threadline.protocol import CHANNELS


def _request(kc: BlockingKernelClient, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    message = kc.session.msg(msg_type, content)
    kc.shell_channel.send(message)
    return get_reply(kc, message["header"]["msg_id"])


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# -- complete ---------------------------------------------------------------------------------


def test_complete_module_name(kc: BlockingKernelClient) -> None:
    code = "import o"
    reply = get_reply(kc, kc.complete(code, len(code)))
    content = reply["content"]
    assert reply["msg_type"] == "complete_reply"
    assert content["status"] == "ok"
    assert "os" in content["matches"]
    assert all(match.startswith("o") for match in content["matches"])
    assert (content["cursor_start"], content["cursor_end"]) == (7, 8)
    types = content["metadata"]["_jupyter_types_experimental"]
    assert [t["text"] for t in types] == content["matches"]


def test_complete_attribute_of_a_user_variable(kc: BlockingKernelClient) -> None:
    execute(kc, "class Thing:\n    alpha_one = 1\n    alpha_two = 2\n    beta = 3\nthing = Thing()")
    code = "x = thing.alp"
    reply = get_reply(kc, kc.complete(code, len(code)))
    content = reply["content"]
    assert sorted(content["matches"]) == ["alpha_one", "alpha_two"]
    assert (content["cursor_start"], content["cursor_end"]) == (10, 13)


def test_complete_cursor_in_the_middle(kc: BlockingKernelClient) -> None:
    execute(kc, "unique_variable_name = 1")
    code = "unique_var + 1"
    reply = get_reply(kc, kc.complete(code, 10))
    content = reply["content"]
    assert content["matches"] == ["unique_variable_name"]
    assert (content["cursor_start"], content["cursor_end"]) == (0, 10)


def test_complete_nothing(kc: BlockingKernelClient) -> None:
    code = "zzqqxx_no_such_name"
    content = get_reply(kc, kc.complete(code, len(code)))["content"]
    assert content["status"] == "ok"
    assert content["matches"] == []
    assert content["cursor_end"] == len(code)


def test_complete_has_busy_idle_and_no_output(kc: BlockingKernelClient) -> None:
    msg_id = kc.complete("pri", 3)
    messages = collect_until_idle(kc, msg_id)
    assert [(m["msg_type"], m["content"].get("execution_state")) for m in messages] == [
        ("status", "busy"),
        ("status", "idle"),
    ]
    assert "print" in get_reply(kc, msg_id)["content"]["matches"]


# -- inspect -------------------------------------------------------------------------------------


def test_inspect_found(kc: BlockingKernelClient) -> None:
    execute(kc, "def documented(a, b=2):\n    'The documentation of it.'\n")
    code = "documented("
    content = get_reply(kc, kc.inspect(code, len(code), detail_level=0))["content"]
    assert content["status"] == "ok"
    assert content["found"] is True
    text = _strip_ansi(content["data"]["text/plain"])
    assert "Signature: documented(a, b=2)" in text
    assert "The documentation of it." in text


def test_inspect_detail_level_one_shows_source(kc: BlockingKernelClient) -> None:
    execute(kc, "def with_source():\n    return 'the body line'\n")
    content = get_reply(kc, kc.inspect("with_source", 11, detail_level=1))["content"]
    assert content["found"] is True
    assert "return 'the body line'" in _strip_ansi(content["data"]["text/plain"])


def test_inspect_not_found(kc: BlockingKernelClient) -> None:
    content = get_reply(kc, kc.inspect("no_such_thing_here", 5))["content"]
    assert content["status"] == "ok"
    assert content["found"] is False
    assert content["data"] == {}


# -- history -------------------------------------------------------------------------------------

CELLS = ["alpha = 1", "beta = alpha + 1", "beta * 10", "print('gamma')"]


def _run_cells(kc: BlockingKernelClient) -> None:
    for code in CELLS:
        assert execute(kc, code).content["status"] == "ok"


def test_history_tail(kc: BlockingKernelClient) -> None:
    _run_cells(kc)
    content = get_reply(kc, kc.history(hist_access_type="tail", n=3, raw=True, output=False))["content"]
    assert content["status"] == "ok"
    history = content["history"]
    assert [entry[1:] for entry in history] == [[2, CELLS[1]], [3, CELLS[2]], [4, CELLS[3]]]
    assert len({entry[0] for entry in history}) == 1


def test_history_tail_with_output(kc: BlockingKernelClient) -> None:
    _run_cells(kc)
    content = get_reply(kc, kc.history(hist_access_type="tail", n=2, raw=True, output=True))["content"]
    # Like IPython (db_log_output is off by default), the database keeps no outputs.
    assert [entry[1:] for entry in content["history"]] == [[3, [CELLS[2], None]], [4, [CELLS[3], None]]]


def test_history_range_of_this_session_with_output(kc: BlockingKernelClient) -> None:
    _run_cells(kc)
    content = get_reply(
        kc, kc.history(hist_access_type="range", session=0, start=3, stop=5, raw=True, output=True)
    )["content"]
    # This session's outputs are held in memory: the displayed repr of each result.
    assert [entry[1:] for entry in content["history"]] == [[3, [CELLS[2], "20"]], [4, [CELLS[3], None]]]


def test_history_range(kc: BlockingKernelClient) -> None:
    _run_cells(kc)
    content = get_reply(
        kc, kc.history(hist_access_type="range", session=0, start=2, stop=4, raw=True, output=False)
    )["content"]
    assert [entry[1:] for entry in content["history"]] == [[2, CELLS[1]], [3, CELLS[2]]]
    # entries carry the real session number (as tail does), so a client can ask again by it
    tail = get_reply(kc, kc.history(hist_access_type="tail", n=1, raw=True, output=False))["content"]
    session = tail["history"][0][0]
    assert session > 0
    assert {entry[0] for entry in content["history"]} == {session}
    again = get_reply(
        kc, kc.history(hist_access_type="range", session=session, start=2, stop=3, raw=True, output=False)
    )["content"]
    assert again["history"] == [[session, 2, CELLS[1]]]


def test_history_search(kc: BlockingKernelClient) -> None:
    _run_cells(kc)
    content = get_reply(kc, kc.history(hist_access_type="search", pattern="beta*", raw=True, output=False))[
        "content"
    ]
    found = [entry[2] for entry in content["history"]]
    # earlier test sessions share the history database, so only the end is ours
    assert found[-2:] == [CELLS[1], CELLS[2]]
    assert all(code.startswith("beta") for code in found)
    unique = get_reply(
        kc, kc.history(hist_access_type="search", pattern="beta =*", raw=True, output=False, unique=True)
    )["content"]["history"]
    assert [entry[2] for entry in unique] == [CELLS[1]]


def test_history_unknown_access_type(kc: BlockingKernelClient) -> None:
    content = _request(kc, "history_request", {"hist_access_type": "sideways", "raw": True, "output": False})[
        "content"
    ]
    assert content["status"] == "error"
    assert content["history"] == []


# -- is_complete ---------------------------------------------------------------------------------


def test_is_complete_complete(kc: BlockingKernelClient) -> None:
    assert get_reply(kc, kc.is_complete("x = 1"))["content"] == {"status": "complete"}


def test_is_complete_incomplete_with_indent(kc: BlockingKernelClient) -> None:
    content = get_reply(kc, kc.is_complete("for i in range(3):"))["content"]
    assert content == {"status": "incomplete", "indent": "    "}
    nested = get_reply(kc, kc.is_complete("def f():\n    if True:"))["content"]
    assert nested == {"status": "incomplete", "indent": "        "}
    bracket = get_reply(kc, kc.is_complete("x = [1,"))["content"]
    assert bracket["status"] == "incomplete"


def test_is_complete_invalid(kc: BlockingKernelClient) -> None:
    assert get_reply(kc, kc.is_complete("x = = 1"))["content"]["status"] == "invalid"


# -- kernel_info ---------------------------------------------------------------------------------


def _check_kernel_info(reply: dict[str, Any]) -> None:
    assert reply["msg_type"] == "kernel_info_reply"
    content = reply["content"]
    assert content["status"] == "ok"
    assert content["protocol_version"] == "5.4"
    assert content["implementation"] == "threadline"
    assert isinstance(content["implementation_version"], str) and content["implementation_version"]
    info = content["language_info"]
    assert info["name"] == "python"
    assert info["file_extension"] == ".py"
    assert info["mimetype"] == "text/x-python"
    assert info["version"].split(".")[:2] == [str(part) for part in __import__("sys").version_info[:2]]
    assert "threadline" in content["banner"]
    assert isinstance(content["help_links"], list)


def test_kernel_info_on_shell(kc: BlockingKernelClient) -> None:
    _check_kernel_info(get_reply(kc, kc.kernel_info()))


def test_kernel_info_on_control(kc: BlockingKernelClient) -> None:
    message = kc.session.msg("kernel_info_request", {})
    kc.control_channel.send(message)
    reply = get_reply(kc, message["header"]["msg_id"], channel="control")
    _check_kernel_info(reply)


def test_connect_request_names_the_bound_ports(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    manager, kc = kernel
    reply = _request(kc, "connect_request", {})
    assert reply["msg_type"] == "connect_reply"
    ports = {f"{c}_port": manager.get_connection_info()[f"{c}_port"] for c in CHANNELS}
    assert reply["content"] == {"status": "ok", **ports}


def test_execute_reply_metadata_says_when_it_started(kc: BlockingKernelClient) -> None:
    """JupyterLab records ``metadata.started`` as the cell's execution start, as ipykernel sends it."""
    before = datetime.now(UTC)
    metadata = execute(kc, "1").reply["metadata"]
    started = datetime.fromisoformat(metadata["started"])
    assert metadata["started"].endswith("Z") and metadata["status"] == "ok"
    assert before - timedelta(seconds=1) <= started <= datetime.now(UTC)


def test_kernel_info_on_control_while_a_cell_runs(kc: BlockingKernelClient) -> None:
    execute(kc, "import threading\nrelease = threading.Event()")
    running = kc.execute("print('waiting', flush=True)\nrelease.wait(60)")
    collected: list[dict[str, Any]] = []
    # the cell is running once its output arrives
    while not any(m["msg_type"] == "stream" for m in collected):
        message = kc.get_iopub_msg(timeout=TIMEOUT)
        if message["parent_header"].get("msg_id") == running:
            collected.append(message)
    request = kc.session.msg("kernel_info_request", {})
    kc.control_channel.send(request)
    _check_kernel_info(get_reply(kc, request["header"]["msg_id"], channel="control"))
    # the cell was still running all along: it ends only when interrupted
    interrupt = kc.session.msg("interrupt_request", {})
    kc.control_channel.send(interrupt)
    assert get_reply(kc, interrupt["header"]["msg_id"], channel="control")["content"]["status"] == "ok"
    assert get_reply(kc, running)["content"]["ename"] == "KeyboardInterrupt"


# -- comm_info -----------------------------------------------------------------------------------


def test_comm_info_lists_comms_and_filters(kc: BlockingKernelClient) -> None:
    run = execute(
        kc,
        "import comm\n"
        "c1 = comm.create_comm(target_name='t')\n"
        "c2 = comm.create_comm(target_name='t')\n"
        "other = comm.create_comm(target_name='other')\n"
        "print(c1.comm_id, c2.comm_id, other.comm_id)",
    )
    assert run.content["status"] == "ok"
    id1, id2, id_other = run.stdout.split()
    opens = run.of_type("comm_open")
    assert [m["content"]["comm_id"] for m in opens] == [id1, id2, id_other]
    assert [m["content"]["target_name"] for m in opens] == ["t", "t", "other"]

    everything = get_reply(kc, kc.comm_info())["content"]
    assert everything["status"] == "ok"
    assert everything["comms"] == {
        id1: {"target_name": "t"},
        id2: {"target_name": "t"},
        id_other: {"target_name": "other"},
    }
    only_t = get_reply(kc, kc.comm_info(target_name="t"))["content"]
    assert only_t["comms"] == {id1: {"target_name": "t"}, id2: {"target_name": "t"}}
    none = get_reply(kc, kc.comm_info(target_name="absent"))["content"]
    assert none["comms"] == {}

    closed = execute(kc, "c1.close()")
    [close] = closed.of_type("comm_close")
    assert close["content"]["comm_id"] == id1
    after = get_reply(kc, kc.comm_info(target_name="t"))["content"]
    assert after["comms"] == {id2: {"target_name": "t"}}


def test_comm_callback_resolves_a_future_the_async_cell_awaits(kc: BlockingKernelClient) -> None:
    """ipywidgets' recipe for waiting on a widget: its callback sets a future of the running cell.

    The callback runs on the comm worker; the main loop must still wake up to
    finish the cell (the await has no timeout: without the wake-up it hangs).
    """
    setup = execute(kc, "import asyncio, comm\nc = comm.create_comm(target_name='t')\nprint(c.comm_id)")
    comm_id = setup.stdout.strip()
    msg_id = kc.execute(
        "fut = asyncio.get_running_loop().create_future()\n"
        "c.on_msg(lambda msg: fut.set_result(msg['content']['data']['value']))\n"
        "c.send({'ask': 1})\n"
        "print('answer', await fut)"
    )
    wait_for_iopub(kc, lambda m: m["msg_type"] == "comm_msg" and m["parent_header"].get("msg_id") == msg_id)
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"value": 42}}))
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    outputs = collect_until_idle(kc, msg_id)
    assert "answer 42\n" in [m["content"].get("text") for m in outputs if m["msg_type"] == "stream"]


def test_comm_open_from_frontend_reaches_target(kc: BlockingKernelClient) -> None:
    execute(
        kc,
        "import comm\n"
        "received = []\n"
        "def target(c, msg):\n"
        "    received.append(msg['content']['data'])\n"
        "    c.on_msg(lambda m: c.send({'echo': m['content']['data']['value']}))\n"
        "comm.get_comm_manager().register_target('echo', target)",
    )
    comm_id = "frontend-comm-1"
    opening = kc.session.msg("comm_open", {"comm_id": comm_id, "target_name": "echo", "data": {"hello": 1}})
    kc.shell_channel.send(opening)
    collect_until_idle(kc, opening["header"]["msg_id"])
    talking = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"value": "ping"}})
    kc.shell_channel.send(talking)
    messages = collect_until_idle(kc, talking["header"]["msg_id"])
    [echo] = [m for m in messages if m["msg_type"] == "comm_msg"]
    assert echo["content"] == {"comm_id": comm_id, "data": {"echo": "ping"}}
    listed = get_reply(kc, kc.comm_info(target_name="echo"))["content"]["comms"]
    assert listed == {comm_id: {"target_name": "echo"}}
    check = execute(kc, "received")
    assert check.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "[{'hello': 1}]"


# -- iopub welcome (JEP 65) ----------------------------------------------------------------------


def test_iopub_welcome_on_subscribe(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, _ = kernel
    info = manager.get_connection_info(session=False)
    session = Session(key=manager.session.key, signature_scheme=manager.session.signature_scheme)
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.linger = 0
    try:
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(f"{info['transport']}://{info['ip']}:{info['iopub_port']}")
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            assert remaining_ms > 0, "no iopub_welcome arrived"
            if not socket.poll(remaining_ms):
                continue
            frames = socket.recv_multipart()
            _, frames = session.feed_identities(frames)
            message = session.deserialize(frames)
            if message["msg_type"] == "iopub_welcome":
                break
        assert message["content"] == {"subscription": ""}
        assert message["header"]["msg_type"] == "iopub_welcome"
    finally:
        socket.close(linger=0)
        context.term()
