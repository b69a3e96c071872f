"""A cell is transformed once: the kernel's own transform is handed to IPython's run_cell.

The kernel transforms each cell to decide how to run it (plain, or on the
event loop); IPython's ``run_cell`` would transform it again. The counts come
from the real kernel: its transformer manager is wrapped from a cell.
"""

from __future__ import annotations

from jupyter_client.blocking import BlockingKernelClient

from tests.kernel_helpers import execute

COUNTING = (
    "_manager = get_ipython().input_transformer_manager\n"
    "_calls = []\n"
    "_original = _manager.transform_cell\n"
    "def _counting(cell, _original=_original):\n"
    "    _calls.append(cell)\n"
    "    return _original(cell)\n"
    "_manager.transform_cell = _counting\n"
)


def test_a_plain_cell_and_a_magic_are_transformed_once(kc: BlockingKernelClient) -> None:
    assert execute(kc, COUNTING).content["status"] == "ok"
    assert execute(kc, "x = 41").content["status"] == "ok"
    assert execute(kc, "y = x + 1\nnames = %who_ls").content["status"] == "ok"
    run = execute(kc, "print(len(_calls), y)")
    # Each of the two cells once; the print cell itself once before it ran.
    assert run.stdout == "3 42\n"


def test_a_cell_whose_transform_fails_is_reported_by_ipython(kc: BlockingKernelClient) -> None:
    run = execute(kc, "%%nosuchcellmagic\nx = 1")
    assert run.content["status"] == "error"
    assert "nosuchcellmagic" in run.content["evalue"]
