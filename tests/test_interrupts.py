"""Interrupts land in the user's code, never inside the kernel's own critical sections."""

from __future__ import annotations

import re
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import TIMEOUT, execute, get_reply_reading_iopub, wait_for_iopub

ROUNDS = 25
#: Sleeps in the kernel, to show a poke's EINTR does not cut a sleep short.
SLEEPING_CELL = "import time\nfor _ in range(20):\n    time.sleep(0.005)  # noqa: sleep-ok\nprint('done')"
FLUSHING_FOREVER = "print('go', flush=True)\nwhile True:\n    print('x', end='', flush=True)"


def interrupt_once(manager: KernelManager, kc: BlockingKernelClient, code: str) -> dict[str, Any]:
    """Run ``code`` (which prints first), interrupt it once it has printed; its reply."""
    msg_id = kc.execute(code)
    wait_for_iopub(kc, lambda m: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id)
    manager.interrupt_kernel()
    return get_reply_reading_iopub(kc, msg_id, timeout=TIMEOUT)


def test_interrupting_a_cell_that_lives_in_kernel_code(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """25 interrupts of a cell that spends most of its time flushing streams.

    Each interrupt ends its cell with KeyboardInterrupt (raised in the cell's own
    frame, not in kernel code), and the kernel answers the next cell: no lock is
    ever left held by an interrupt that landed in a critical section.
    """
    manager, kc = kernel
    for _ in range(ROUNDS):
        reply = interrupt_once(
            manager, kc, "print('go', flush=True)\nwhile True:\n    print('x', end='', flush=True)"
        )
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        # The frame the interrupt landed in (the last one before the SIGINT
        # handler's own) is the cell's code or a lock-free wait, never kernel code.
        frames = [re.sub(r"\x1b\[[0-9;]*m", "", entry) for entry in reply["content"]["traceback"]]
        frames = [entry.splitlines()[0] for entry in frames if entry.lstrip().startswith(("File ", "Cell "))]
        assert "on_sigint" in frames[-1]
        assert "threadline" not in frames[-2], frames[-2]
        assert execute(kc, "print('alive')").stdout == "alive\n"


BLOCKED_MAIN = """
import signal, threading
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
try:
    print("waiting", flush=True)
    threading.Event().wait()
finally:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
"""


def test_a_sigint_taken_by_another_thread_still_interrupts_the_main_thread(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """The main thread blocks SIGINT and waits; jupyter_client's process-directed
    SIGINT must then be taken by some other thread, whose C-level handler only
    marks it pending -- nothing wakes the main thread's wait. The kernel's
    watch sees the signal on its wake-up fd and pokes the main thread, whose
    Python handler then raises KeyboardInterrupt in the cell.

    The same watch covers the rarer race it was built for (a SIGINT landing on
    the main thread just before it blocks); this test makes the loss certain
    instead of rare: without the watch it times out every time.
    """
    manager, kc = kernel
    for _ in range(3):
        assert interrupt_once(manager, kc, BLOCKED_MAIN)["content"]["ename"] == "KeyboardInterrupt"
    # The pokes interrupted nothing else: the next cells run to the end.
    assert execute(kc, SLEEPING_CELL).stdout == "done\n"
    assert execute(kc, "print('alive')").stdout == "alive\n"
