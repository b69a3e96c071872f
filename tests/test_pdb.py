"""pdb in a notebook: IPython's debugger, answered over the stdin channel, and interrupts at its prompt.

Every test drives a real kernel with jupyter_client: the debugger's prompt is an
``input_request`` on stdin, each answer an ``input_reply``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import collect_until_idle, execute, get_input_request, get_reply

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _text(messages: list[dict[str, Any]]) -> str:
    return ANSI.sub("", "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream"))


def _frames(traceback: list[str]) -> list[str]:
    """The first line of each frame entry of a formatted traceback, colours removed."""
    entries = [ANSI.sub("", entry) for entry in traceback]
    return [entry.splitlines()[0] for entry in entries if entry.lstrip().startswith(("File ", "Cell "))]


def _answer(kc: BlockingKernelClient, *lines: str) -> None:
    """Answer the debugger's prompts with ``lines``, one prompt each."""
    for line in lines:
        request = get_input_request(kc)
        assert request["content"]["prompt"].strip() == "ipdb>"
        kc.input(line)


@pytest.mark.parametrize(
    "stop", ["breakpoint()", "import pdb; pdb.set_trace()", "import pdb; pdb.Pdb().set_trace()"]
)
def test_breakpoint_and_set_trace_open_ipythons_debugger(kc: BlockingKernelClient, stop: str) -> None:
    msg_id = kc.execute(f"x = 41\n{stop}\ny = x + 1\nprint('y is', y)", allow_stdin=True)
    _answer(kc, "p x * 2", "x = 100", "c")
    text = _text(collect_until_idle(kc, msg_id))
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    assert "82\n" in text  # p x * 2, at the prompt
    assert text.endswith("y is 101\n")  # the assignment made at the prompt took effect


def test_debug_post_mortem_through_stdin(kc: BlockingKernelClient) -> None:
    failed = execute(kc, "def f(x):\n    return 1 / 0\nf(42)")
    assert failed.content["ename"] == "ZeroDivisionError"
    msg_id = kc.execute("%debug", allow_stdin=True)
    _answer(kc, "p x", "q")
    text = _text(collect_until_idle(kc, msg_id))
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    assert "return 1 / 0" in text  # where the debugger opened
    assert "\n42\n" in text  # p x


@pytest.mark.parametrize(
    "first",
    [
        "import pdb",
        "import IPython.core.debugger",  # which imports pdb before it defines its classes
        "get_ipython().debugger_cls",  # %debug's way: the kernel's debugger module first
        "import threadline.shell.pdb_prompt",
    ],
)
def test_every_way_in_opens_the_kernel_debugger(kc: BlockingKernelClient, first: str) -> None:
    """pdb.Pdb, pdb.set_trace, IPython's Pdb, %debug's class and the shell's (which the ipdb
    package asks for), whichever module comes first. The kernel imports none of them itself."""
    loaded = "import sys\nprint(sorted({'pdb', 'IPython.core.debugger'} & set(sys.modules)))"
    assert execute(kc, loaded).stdout == "[]\n"
    assert execute(kc, first).reply["content"]["status"] == "ok"
    code = (
        "import pdb, IPython.core.debugger as d\n"
        "ip = get_ipython()\n"
        "print({c.__name__ for c in (pdb.Pdb, d.Pdb, ip.debugger_cls, ip.InteractiveTB.debugger_cls)},"
        " pdb.set_trace.__module__)"
    )
    assert execute(kc, code).stdout == "{'KernelPdb'} threadline.shell.pdb_prompt\n"


def test_pdb_post_mortem_uses_the_kernel_debugger(kc: BlockingKernelClient) -> None:
    code = "import pdb, sys\ntry:\n    z = 7\n    1 / 0\nexcept ZeroDivisionError:\n    pdb.post_mortem()"
    msg_id = kc.execute(code, allow_stdin=True)
    _answer(kc, "p z + 1", "c")
    assert "8\n" in _text(collect_until_idle(kc, msg_id))
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"


def _interrupt_at_prompt(
    manager: KernelManager, kc: BlockingKernelClient, code: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    msg_id = kc.execute(code, allow_stdin=True)
    get_input_request(kc)
    manager.interrupt_kernel()
    messages = collect_until_idle(kc, msg_id)
    return get_reply(kc, msg_id)["content"], messages


LOOP_WITH_BREAKPOINT = "for i in range(3):\n    breakpoint()\n    print('iteration', i)"


def test_interrupting_the_debugger_prompt_ends_the_cell(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """The stop button at an ``ipdb>`` prompt: the cell ends with KeyboardInterrupt, the next runs.

    A breakpoint() in a loop would prompt again at once if the interrupt only left
    the debugger (ipykernel's way); here the loop stops on the first iteration.
    """
    manager, kc = kernel
    reply, messages = _interrupt_at_prompt(manager, kc, LOOP_WITH_BREAKPOINT)
    assert reply["status"] == "error"
    assert reply["ename"] == "KeyboardInterrupt"
    text = _text(messages)
    assert "--KeyboardInterrupt--" in text
    assert "iteration 0" not in text
    # The traceback ends in the cell, at the line the debugger stopped before (the
    # one after breakpoint()): no frame of the debugger's or of the kernel's.
    frames = _frames(reply["traceback"])
    assert len(frames) == 1 and frames[0].startswith("Cell In["), frames
    assert "----> 3     print('iteration', i)" in ANSI.sub("", "".join(reply["traceback"]))
    [error] = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert error["traceback"] == reply["traceback"]
    # No prompt is left behind, tracing is off, and the next cell runs at full speed.
    after = execute(kc, "import sys; print(sys.gettrace(), 'next cell')")
    assert after.content["status"] == "ok"
    assert after.stdout == "None next cell\n"
    with pytest.raises(TimeoutError):
        get_input_request(kc, timeout=0.5)


def test_interrupting_set_trace_at_the_end_of_a_statement(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """pdb stops when the statement calling set_trace() returns ("--Return--"): the
    traceback still ends at that line of the cell."""
    manager, kc = kernel
    reply, messages = _interrupt_at_prompt(manager, kc, "import pdb\nx = 5\npdb.set_trace()\ny = x + 1")
    assert (reply["ename"], reply["evalue"]) == ("KeyboardInterrupt", "Interrupted by user")
    assert "--Return--" in _text(messages)
    frames = _frames(reply["traceback"])
    assert len(frames) == 1 and frames[0].startswith("Cell In[1], line 3"), frames
    assert execute(kc, "print(x)").stdout == "5\n"


def test_interrupting_debug_post_mortem_ends_the_cell(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    manager, kc = kernel
    execute(kc, "def f(x):\n    return 1 / 0\nf(42)")
    reply, _ = _interrupt_at_prompt(manager, kc, "%debug")
    assert reply["ename"] == "KeyboardInterrupt"
    assert not any("threadline" in frame for frame in _frames(reply["traceback"]))
    assert execute(kc, "print('next cell')").stdout == "next cell\n"


def test_interrupting_input_ends_in_the_users_line(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    manager, kc = kernel
    reply, _ = _interrupt_at_prompt(manager, kc, "name = input('name: ')")
    assert (reply["ename"], reply["evalue"]) == ("KeyboardInterrupt", "Interrupted by user")
    frames = _frames(reply["traceback"])
    assert len(frames) == 1 and frames[0].startswith("Cell In["), frames
    assert execute(kc, "print('next cell')").stdout == "next cell\n"
