"""Requests that come back to back: the main thread polls for the next before it sleeps.

See "Requests that come back to back" in kernel/shell_channel.py. The channel
tests drive a ShellChannel's idle wait alone, with a socket pair standing in
for the lent shell socket and a window long enough that "quick" never
depends on the machine's speed; the kernel tests use a real kernel.
"""

from __future__ import annotations

import asyncio
import itertools
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import execute
from tests.test_asyncio import _SocketLender, make_channel
from tests.test_gui import PLAIN_SELECT_TOOLKIT, last_number, ok
from threadline.kernel import shell_channel
from threadline.kernel.shell_channel import ShellChannel

#: Longer than any test may run (pytest-timeout): a request is "quick" whatever the
#: machine's load, and a wait that wrongly polled to the window's end fails the test.
LONG_WINDOW = 3600.0


Wait = tuple[ShellChannel, _SocketLender, asyncio.AbstractEventLoop, list[int]]


@contextmanager
def idle_wait(window: float) -> Iterator[Wait]:
    """A channel with a lender offering ``window``; the list counts the loop's runs."""
    channel = make_channel()
    loop = asyncio.new_event_loop()
    lender = _SocketLender(channel, window)
    channel.bind_loop(loop)
    channel.input_lender = lender
    channel._serving_ident = threading.get_ident()
    runs = [0]
    run_forever = loop.run_forever

    def counted() -> None:
        runs[0] += 1
        run_forever()

    loop.run_forever = counted  # type: ignore[method-assign]
    try:
        yield channel, lender, loop, runs
    finally:
        channel.close_loop()
        lender.ours.close()
        lender.theirs.close()


def test_after_a_quick_request_the_next_is_taken_without_sleeping() -> None:
    with idle_wait(LONG_WINDOW) as (channel, lender, _, runs):
        lender.theirs.send(b"\x01")
        assert channel._next_request() == "request 1"  # no request before it: slept
        assert runs[0] == 1
        lender.theirs.send(b"\x02")
        assert channel._next_request() == "request 2"  # came quickly: polled, no sleep
        assert runs[0] == 1


def test_without_a_window_every_wait_sleeps_in_the_loop() -> None:
    with idle_wait(0.0) as (channel, lender, _, runs):
        for number in (1, 2, 3):
            lender.theirs.send(bytes([number]))
            assert channel._next_request() == f"request {number}"
        assert runs[0] == 3


def test_a_request_answered_on_the_spot_keeps_the_wait_polling() -> None:
    """kernel_info is answered by the thread that receives it, inside the wait: the
    request after it (sent once it is answered) is polled for, as after a cell."""
    with idle_wait(LONG_WINDOW) as (channel, lender, _, runs):
        lender.theirs.send(b"\x01")
        assert channel._next_request() == "request 1"
        lender.then_send = [b"\xa1", b"\x03"]  # answered on the spot, again, then a cell
        lender.theirs.send(b"\xa0")
        assert channel._next_request() == "request 3"
        assert lender.answered == [0xA0, 0xA1]
        assert runs[0] == 1  # all three taken by polling


def test_the_poll_gives_way_to_work_on_the_loop() -> None:
    """A callback waiting on the loop runs before the next request is taken: polling
    must not hold up tasks, timers and callbacks between back-to-back requests."""
    with idle_wait(LONG_WINDOW) as (channel, lender, loop, runs):
        lender.theirs.send(b"\x01")
        assert channel._next_request() == "request 1"
        order: list[str] = []
        loop.call_soon(order.append, "callback")
        lender.theirs.send(b"\x02")
        order.append(str(channel._next_request()))
        assert order == ["callback", "request 2"]
        assert runs[0] == 2


def test_a_post_from_another_thread_ends_the_poll() -> None:
    """The IO thread posts what it receives (comms for the main shell, a request it
    took while the socket was reclaimed): the polling wait takes it at once."""
    with idle_wait(LONG_WINDOW) as (channel, lender, _, runs):
        lender.theirs.send(b"\x01")
        assert channel._next_request() == "request 1"
        lender.lent.clear()

        def post_once_waiting() -> None:
            lender.lent.wait(30)
            channel.post("from the IO thread")

        poster = threading.Thread(target=post_once_waiting)
        poster.start()
        assert channel._next_request() == "from the IO thread"
        poster.join(30)
        assert runs[0] == 1


class _CountedPoll:
    """Stands in for the channel's ``select.poll``: counts the polls of a wait."""

    def __init__(self, polling: select.poll) -> None:
        self.polling = polling
        self.calls = 0

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        self.calls += 1
        return self.polling.poll(timeout)

    def __getattr__(self, name: str) -> object:  # register, unregister, modify
        return getattr(self.polling, name)


def _count_polls(channel: ShellChannel) -> _CountedPoll:
    assert channel._polling is not None
    counted = _CountedPoll(channel._polling)
    channel._polling = counted  # type: ignore[assignment]
    return counted


def test_windows_that_run_out_twice_in_a_row_stop_the_polling_for_a_while() -> None:
    """The back-off (``_POLL_BACKOFF``): a quick request's wait polls to the window's
    end and nothing comes -- on a busy machine the poll holds the CPU the client
    needs. Once is chance; twice in a row, the next waits sleep at once, however
    quickly requests come."""
    window = 0.05
    with idle_wait(window) as (channel, lender, loop, runs):
        lender.theirs.send(b"\x01")
        assert channel._next_request() == "request 1"
        polls = _count_polls(channel)
        sleeping = threading.Event()
        run_forever = loop.run_forever

        def noted() -> None:
            sleeping.set()
            run_forever()

        loop.run_forever = noted  # type: ignore[method-assign]
        for number, backoff in ((2, 0.0), (3, shell_channel._POLL_BACKOFF)):
            channel._quick, channel._free_since = True, time.perf_counter()  # as if it came quickly
            sleeping.clear()
            calls = polls.calls
            sender = threading.Thread(
                target=lambda n=number: sleeping.wait(30) and lender.theirs.send(bytes([n]))
            )
            sender.start()
            assert channel._next_request() == f"request {number}"  # polled the whole window, then slept
            sender.join(30)
            assert polls.calls > calls and runs[0] == number
            assert channel._poll_backoff == backoff
        assert channel._poll_after > time.perf_counter() - window

        channel._poll_after = time.perf_counter() + 3600.0  # still backing off
        channel._quick, calls = True, polls.calls
        lender.theirs.send(b"\x04")
        assert channel._next_request() == "request 4"
        assert polls.calls == calls and runs[0] == 4  # no poll at all: slept in the loop


def test_misses_double_the_back_off_and_catches_halve_it() -> None:
    with idle_wait(LONG_WINDOW) as (channel, lender, _, runs):
        lender.theirs.send(b"\x01")
        assert channel._next_request() == "request 1"
        channel._poll_backoff, channel._poll_misses = 8 * shell_channel._POLL_BACKOFF, 5
        for number, left in ((2, 4), (3, 2), (4, 1), (5, 0)):
            lender.theirs.send(bytes([number]))  # there before the wait: caught by the poll
            assert channel._next_request() == f"request {number}"
            assert channel._poll_backoff == left * shell_channel._POLL_BACKOFF
            assert channel._poll_misses == 0
        assert runs[0] == 1
    with idle_wait(0.0) as (channel, lender, _, runs):  # a window of nothing: every poll misses
        lender.theirs.send(b"\x01")
        assert channel._next_request() == "request 1"
        for number, backoff in ((2, 0), (3, 1), (4, 2), (5, 4)):
            channel._quick, channel._poll_after = True, 0.0
            lender.theirs.send(bytes([number]))
            assert channel._next_request() == f"request {number}"
            assert channel._poll_backoff == backoff * shell_channel._POLL_BACKOFF
        channel._poll_backoff = shell_channel._MAX_POLL_BACKOFF
        channel._quick, channel._poll_after = True, 0.0
        lender.theirs.send(b"\x06")
        assert channel._next_request() == "request 6"
        assert channel._poll_backoff == shell_channel._MAX_POLL_BACKOFF


# -- in a kernel -------------------------------------------------------------------


def test_a_gui_loop_runs_between_back_to_back_requests(kc: BlockingKernelClient) -> None:
    """With a toolkit's loop in the idle wait, the wait is never polled past: the
    toolkit runs between requests however quickly they come."""
    ok(kc, "import threadline.kernel.kernel as k\nk.POLL_WINDOW = 60.0")  # every request is quick
    try:
        ok(kc, PLAIN_SELECT_TOOLKIT)
        ok(kc, "%gui plainselect")
        before = last_number(ok(kc, "print(waits)"))
        for _ in range(10):
            ok(kc, "pass")
        assert last_number(ok(kc, "print(waits)")) > before
        ok(kc, "%gui")
    finally:
        ok(kc, "k.POLL_WINDOW = 0.001")


def test_tasks_run_between_back_to_back_requests(kc: BlockingKernelClient) -> None:
    """A task a cell started keeps running while requests come back to back."""
    ok(kc, "import threadline.kernel.kernel as k\nk.POLL_WINDOW = 60.0")
    try:
        ok(
            kc,
            "import asyncio\n"
            "ticks = 0\n"
            "async def ticker():\n"
            "    global ticks\n"
            "    while True:\n"
            "        ticks += 1\n"
            "        await asyncio.sleep(0)\n"  # in the kernel (noqa: sleep-ok)
            "task = asyncio.get_event_loop().create_task(ticker())",
        )
        seen = [last_number(ok(kc, "print(ticks)")) for _ in range(10)]
        assert all(later > earlier for earlier, later in itertools.pairwise(seen)), seen
        ok(kc, "task.cancel()")
    finally:
        ok(kc, "k.POLL_WINDOW = 0.001")


def test_back_to_back_requests_of_every_kind_are_answered(kc: BlockingKernelClient) -> None:
    """Cells, kernel_info and comm_info sent without waiting, then one after another."""
    sent = [kc.execute("x = 1"), kc.kernel_info(), kc.comm_info(), kc.execute("x + 1")]
    for msg_id in sent:
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok"
    for _ in range(20):
        assert execute(kc, "x").content["status"] == "ok"
        info = kc.kernel_info()
        assert kc.get_shell_msg(timeout=30)["parent_header"]["msg_id"] == info
