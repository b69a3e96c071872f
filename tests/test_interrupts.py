"""Interrupts land in the user's code, never inside the kernel's own critical sections."""

from __future__ import annotations

import re

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import TIMEOUT, execute, get_reply_reading_iopub, wait_for_iopub

ROUNDS = 25


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
        msg_id = kc.execute("print('go', flush=True)\nwhile True:\n    print('x', end='', flush=True)")
        wait_for_iopub(
            kc,
            lambda m, i=msg_id: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == i,
        )
        manager.interrupt_kernel()
        reply = get_reply_reading_iopub(kc, msg_id, timeout=TIMEOUT)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        # The frame the interrupt landed in (the last one before the SIGINT
        # handler's own) is the cell's code or a lock-free wait, never kernel code.
        frames = [re.sub(r"\x1b\[[0-9;]*m", "", entry) for entry in reply["content"]["traceback"]]
        frames = [entry.splitlines()[0] for entry in frames if entry.lstrip().startswith(("File ", "Cell "))]
        assert "on_sigint" in frames[-1]
        assert "threadline" not in frames[-2], frames[-2]
        assert execute(kc, "print('alive')").stdout == "alive\n"
