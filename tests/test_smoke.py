"""The kernel starts, runs a cell, and reports its output."""

from __future__ import annotations

from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import execute


def test_print_and_result(kc: BlockingKernelClient) -> None:
    run = execute(kc, "print('hello'); 6 * 7")
    assert run.content["status"] == "ok"
    assert run.stdout == "hello\n"
    [result] = run.of_type("execute_result")
    assert result["content"]["data"]["text/plain"] == "42"
    kinds = [m["msg_type"] for m in run.messages]
    assert kinds[0] == "status" and kinds[1] == "execute_input" and kinds[-1] == "status"
