"""Shell requests are answered in the order they were sent, fast paths included."""

from __future__ import annotations

from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import TIMEOUT, execute


def test_kernel_info_waits_behind_a_running_cell(kc: BlockingKernelClient) -> None:
    """kernel_info is answered on the IO thread only when the shell is idle;
    sent behind a running cell, it is answered after that cell's reply."""
    setup = execute(
        kc,
        "import threading, comm\n"
        "release = threading.Event()\n"
        "comm.get_comm_manager().register_target('release', lambda c, msg: release.set())",
    )
    assert setup.content["status"] == "ok"
    cell = kc.execute("release.wait(60)")
    info = kc.kernel_info()
    # Comm messages are handled as they arrive (on the comm thread), so this
    # releases the cell while kernel_info is still queued behind it.
    kc.shell_channel.send(kc.session.msg("comm_open", {"comm_id": "r", "target_name": "release", "data": {}}))
    replies = [kc.get_shell_msg(timeout=TIMEOUT)["parent_header"]["msg_id"] for _ in range(2)]
    assert replies == [cell, info]


def test_kernel_info_on_an_idle_shell_is_answered_with_busy_and_idle(kc: BlockingKernelClient) -> None:
    msg_id = kc.kernel_info()
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["implementation"] == "threadline"
    states = []
    while len(states) < 2:
        message = kc.get_iopub_msg(timeout=TIMEOUT)
        if message["msg_type"] == "status" and message["parent_header"].get("msg_id") == msg_id:
            states.append(message["content"]["execution_state"])
    assert states == ["busy", "idle"]
