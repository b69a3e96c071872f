"""``get_ipython().kernel`` and the shell answer to ipykernel's names, and the legacy
``session.send(kernel.iopub_socket, ...)`` path is safe from any thread."""

from __future__ import annotations

import ast
import time
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import collect_until_idle, execute, get_reply

THREADS = 4
MESSAGES = 250


def value_of(client: BlockingKernelClient, expression: str) -> Any:
    run = execute(client, f"print(repr({expression}))")
    assert run.content["status"] == "ok", run.content
    return ast.literal_eval(run.stdout.strip())


def test_kernel_attributes(kc: BlockingKernelClient) -> None:
    code = """
import comm
k = get_ipython().kernel
print(repr({
    "shell": k.shell is get_ipython(),
    "comm_manager": k.comm_manager is comm.get_comm_manager(),
    "parent": k.get_parent()["header"]["msg_id"],
    "parent_type": k.get_parent()["msg_type"],
    "shell_parent": get_ipython().get_parent()["header"]["msg_id"],
    "parent_header": get_ipython().parent_header["header"]["msg_id"],
    "old_parent": k._parent_header["header"]["msg_id"],
    "ident": type(k._parent_ident["shell"]).__name__,
    "session": k.session.session,
    "execution_count": k.execution_count == get_ipython().execution_count,
    "has_key": hasattr(k.session, "key"),
    "core": type(k.io).__name__,
}))
"""
    msg_id = kc.execute(code)
    messages = collect_until_idle(kc, msg_id)
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok", reply["content"]
    text = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    seen = ast.literal_eval(text.strip())
    assert seen == {
        "shell": True,
        "comm_manager": True,
        "parent": msg_id,
        "parent_type": "execute_request",
        "shell_parent": msg_id,
        "parent_header": msg_id,
        "old_parent": msg_id,
        "ident": "list",
        "session": reply["header"]["session"],
        "execution_count": True,
        "has_key": False,  # the signing key is not handed to libraries
        "core": "IOThread",  # other attributes are the core kernel's
    }


def test_session_send_on_iopub_socket_from_many_threads(kc: BlockingKernelClient) -> None:
    """N threads x M messages through the legacy API at once: none lost, none mixed, order kept."""
    code = f"""
import threading
k = get_ipython().kernel
parent = k.get_parent()
start = threading.Barrier({THREADS})

def send(n):
    start.wait()
    for i in range({MESSAGES}):
        k.session.send(k.iopub_socket, "stream", {{"name": "stdout", "text": f"{{n}}:{{i}}\\n"}},
                       parent=parent, ident=b"stream.stdout")

threads = [threading.Thread(target=send, args=(n,)) for n in range({THREADS})]
for t in threads: t.start()
for t in threads: t.join()
"""
    run = execute(kc, code, timeout=120)
    assert run.content["status"] == "ok", run.content
    lines = [m["content"]["text"] for m in run.of_type("stream")]
    assert len(lines) == THREADS * MESSAGES
    by_thread: dict[int, list[int]] = {}
    for line in lines:
        thread, index = line.strip().split(":")  # a mixed message would not split this way
        by_thread.setdefault(int(thread), []).append(int(index))
    assert by_thread == {n: list(range(MESSAGES)) for n in range(THREADS)}


def test_session_msg_and_send_a_prebuilt_message(kc: BlockingKernelClient) -> None:
    code = """
k = get_ipython().kernel
msg = k.session.msg("display_data", {"data": {"text/plain": "prebuilt"}, "metadata": {}},
                    parent=k.get_parent())
sent = k.session.send(k.iopub_socket, msg)
print(sent["msg_id"] == msg["header"]["msg_id"], sent["parent_header"]["msg_type"])
"""
    run = execute(kc, code)
    assert run.stdout.strip() == "True execute_request"
    shown = [m for m in run.of_type("display_data")]
    assert [m["content"]["data"] for m in shown] == [{"text/plain": "prebuilt"}]


def test_set_parent_routes_this_context_to_another_cell(kc: BlockingKernelClient) -> None:
    first = execute(kc, "first_parent = get_ipython().get_parent()")
    first_id = first.reply["parent_header"]["msg_id"]
    msg_id = kc.execute("get_ipython().set_parent(first_parent)\nprint('to the first cell')")
    get_reply(kc, msg_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = kc.get_iopub_msg(timeout=30)
        if message["msg_type"] == "stream" and "to the first cell" in message["content"]["text"]:
            assert message["parent_header"]["msg_id"] == first_id
            break
    else:
        raise AssertionError("the output never arrived")
    # The next cell's output is its own again.
    assert execute(kc, "print('own')").stdout == "own\n"


def outputs_until_idle(client: BlockingKernelClient, msg_id: str) -> list[dict[str, Any]]:
    """Every stream message (whatever its parent) until ``msg_id``'s idle."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = client.get_iopub_msg(timeout=30)
        if message["msg_type"] == "stream":
            seen.append(message)
        if (
            message["parent_header"].get("msg_id") == msg_id
            and message["msg_type"] == "status"
            and message["content"]["execution_state"] == "idle"
        ):
            return seen
    raise AssertionError("no idle")


def test_set_thread_parent_and_reset(kc: BlockingKernelClient) -> None:
    first_id = execute(kc, "first = get_ipython().get_parent()").reply["parent_header"]["msg_id"]
    code = """
import threading
def work():
    token = get_ipython().set_thread_parent(first)
    print("to the first cell", flush=True)
    get_ipython().reset_thread_parent(token)
    print("to this thread's own cell", flush=True)
thread = threading.Thread(target=work)
thread.start()
thread.join()
"""
    second_id = kc.execute(code)
    by_text = {m["content"]["text"]: m["parent_header"]["msg_id"] for m in outputs_until_idle(kc, second_id)}
    assert by_text == {"to the first cell\n": first_id, "to this thread's own cell\n": second_id}


def test_control_parent_and_identities(kc: BlockingKernelClient) -> None:
    session = kc.session.session
    assert value_of(kc, "get_ipython().kernel._parent_ident['shell']") == [session.encode()]
    request = kc.session.msg("kernel_info_request")
    kc.control_channel.send(request)
    reply = kc.get_control_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == request["header"]["msg_id"]
    k = "get_ipython().kernel"
    assert value_of(kc, f"{k}.get_parent('control')['header']['msg_id']") == request["header"]["msg_id"]
    assert value_of(kc, f"{k}._parent_ident['control']") == [session.encode()]
