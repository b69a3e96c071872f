"""What a failing cell does to the requests behind it, and what counts as failing.

* With ``stop_on_error`` only the queued *execute* requests are aborted; every
  other request queued behind the failed cell is answered as usual (as in
  ipykernel). Aborted replies carry ``execution_count`` (null: the cell never ran).
* A cell whose result cannot be shown (a formatter raises) fails, as in
  ipykernel 7.3+: error output, then an error reply -- with the formatter's
  error in it, where ipykernel reports ``NoneType``.
"""

from __future__ import annotations

from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import collect_until_idle, execute, get_reply

#: The failing cell waits (polling, kernel side) until the kernel has taken in
#: every request queued behind it, then raises: the requests are surely queued.
FAIL_WHEN_QUEUED = """
import time
channel = get_ipython().kernel.channel
while channel._posted < {expected}:
    time.sleep(0.001)  # noqa: sleep-ok
raise ValueError("first fails")
"""


def test_stop_on_error_aborts_only_queued_execute_requests(kc: BlockingKernelClient) -> None:
    before = execute(kc, "pass").content["execution_count"]
    queued_requests = 9
    failing = kc.execute(FAIL_WHEN_QUEUED.format(expected=f"channel._finished + 1 + {queued_requests}"))
    queued = {
        "execute": kc.execute("print('aborted')"),
        "kernel_info": kc.kernel_info(),
        "complete": kc.complete("pri", 3),
        "inspect": kc.inspect("print", 5),
        "comm_info": kc.comm_info(),
        "history": kc.history(hist_access_type="tail", n=1),
        "is_complete": kc.is_complete("for i in range(3):"),
        "silent execute": kc.execute("print('aborted too')", silent=True),
        "another execute": kc.execute("x = 1"),
    }
    assert len(queued) == queued_requests
    failed = get_reply(kc, failing)
    assert failed["content"]["status"] == "error"
    assert failed["content"]["ename"] == "ValueError"
    replies = {name: get_reply(kc, msg_id) for name, msg_id in queued.items()}
    for name in ("execute", "silent execute", "another execute"):
        content = replies[name]["content"]
        assert content == {"status": "aborted", "execution_count": None}, name
        assert replies[name]["metadata"]["status"] == "aborted"
    for name in ("kernel_info", "complete", "inspect", "comm_info", "history"):
        assert replies[name]["content"]["status"] == "ok", (name, replies[name]["content"])
    assert replies["is_complete"]["content"]["status"] == "incomplete"
    assert "print" in replies["complete"]["content"]["matches"]
    assert replies["inspect"]["content"]["found"] is True
    assert replies["kernel_info"]["content"]["implementation"] == "threadline"
    # The aborted cells took no count: the next cell gets the one after the failed cell's.
    assert failed["content"]["execution_count"] == before + 1
    assert execute(kc, "'x' in dir()").content["execution_count"] == before + 2


RESULT_FORMATTER_RAISES = """
class BrokenHTML:
    def _repr_html_(self):
        raise ValueError("cannot render")

BrokenHTML()
"""


def test_a_result_whose_formatter_raises_fails_the_cell(kc: BlockingKernelClient) -> None:
    failing = kc.execute(RESULT_FORMATTER_RAISES)
    queued = kc.execute("print('aborted')")
    messages = collect_until_idle(kc, failing)
    reply = get_reply(kc, failing)["content"]
    [error] = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert (error["ename"], error["evalue"]) == ("ValueError", "cannot render")
    # The plain-text form is still shown, after the error (as in ipykernel).
    [result] = [m["content"] for m in messages if m["msg_type"] == "execute_result"]
    assert "BrokenHTML at" in result["data"]["text/plain"]
    assert reply["status"] == "error"
    assert (reply["ename"], reply["evalue"]) == ("ValueError", "cannot render")
    assert reply["traceback"] == error["traceback"]
    assert reply["user_expressions"] == {}
    # A failed cell: stop_on_error aborts what was queued behind it.
    assert get_reply(kc, queued)["content"]["status"] == "aborted"
    # display() of the same object shows the error but does not fail the cell (as in ipykernel).
    shown = execute(kc, "display(BrokenHTML()); print('went on')")
    assert shown.content["status"] == "ok"
    assert [m["content"]["ename"] for m in shown.of_type("error")] == ["ValueError"]
    assert shown.stdout == "went on\n"
    # And the failure belongs to that cell only.
    assert execute(kc, "1 + 1").content["status"] == "ok"
