"""Every notebook in examples/ runs cleanly in the threadline kernel; the demo shows what it says.

The notebooks are executed by ``dev.execute_notebook`` -- the same code that
``python3 dev.py demo`` uses -- which files each output under the cell whose
request it answers, as JupyterLab does, even when it arrives after that cell
has finished.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from dev import execute_notebook

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))

_executed: dict[Path, tuple[Any, dict[str, dict[str, Any]]]] = {}


def executed(path: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The executed notebook and its widget states; each notebook runs once per session."""
    if path not in _executed:
        _executed[path] = execute_notebook(path, timeout=60)
    return _executed[path]


def stdout_of(cell: Any) -> str:
    return "".join(o["text"] for o in cell.outputs if o["output_type"] == "stream" and o["name"] == "stdout")


def test_there_is_a_demo() -> None:
    assert EXAMPLES / "demo.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path: Path) -> None:
    notebook, _ = executed(path)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
    for cell in code_cells:
        for output in cell.outputs:
            assert output["output_type"] != "error", f"cell {cell.id} raised: {output}"
            assert output.get("name") != "stderr", f"cell {cell.id} wrote to stderr: {output['text']}"


@pytest.fixture(scope="module")
def demo() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The executed demo: cells by id, and widget states."""
    notebook, widgets = executed(EXAMPLES / "demo.ipynb")
    return {cell.id: cell for cell in notebook.cells}, widgets


def test_worker_lines_land_in_the_cell_that_started_them(demo: tuple[dict[str, Any], Any]) -> None:
    cells, _ = demo
    lines = stdout_of(cells["workers"]).splitlines()
    assert "[MainThread] started 3 workers; this cell is done, they are not" in lines
    for k in (1, 2, 3):
        mine = [line for line in lines if line.startswith(f"[worker-{k}] ")]
        # Lines 3 and 4 were printed after this cell had finished, while the next one ran.
        assert mine == [f"[worker-{k}] line {i} of 4" for i in (1, 2, 3, 4)]
    assert len(lines) == 13
    assert (
        stdout_of(cells["meanwhile"])
        == "[MainThread] all workers finished -- their lines are in the cell above\n"
    )


def test_display_updated_from_a_thread(demo: tuple[dict[str, Any], Any]) -> None:
    cells, _ = demo
    [output] = cells["display"].outputs
    assert output["output_type"] == "display_data"
    assert output["data"]["text/plain"] == "'lift-off'"


def test_progress_widget_driven_by_threads(demo: tuple[dict[str, Any], dict[str, dict[str, Any]]]) -> None:
    cells, widgets = demo
    [view] = [o for o in cells["widget"].outputs if o["output_type"] == "display_data"]
    model_id = view["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    state = widgets[model_id]
    assert state["_model_name"] == "IntProgressModel"
    assert (state["value"], state["max"], state["description"], state["bar_style"]) == (
        40,
        40,
        "40/40",
        "success",
    )
    assert stdout_of(cells["widget"]) == "progress: 40 of 40\n"


def test_route_to_sends_answers_to_the_asking_cell(demo: tuple[dict[str, Any], Any]) -> None:
    cells, _ = demo
    assert stdout_of(cells["service"]) == "[MainThread] service started\n"
    assert stdout_of(cells["ask"]) == (
        "[service] 'where does this go' has 18 letters\n[service] 'here' has 4 letters\n"
    )


def test_summary_counts_every_line(demo: tuple[dict[str, Any], Any]) -> None:
    cells, _ = demo
    counts = dict(re.findall(r"^\s*(\S+): (\d+) lines", stdout_of(cells["summary"]), re.MULTILINE))
    assert counts == {
        "MainThread": "3",
        "service": "2",
        "worker-1": "4",
        "worker-2": "4",
        "worker-3": "4",
        "total": "17",
    }
    assert stdout_of(cells["summary"]).endswith("total: 17 lines from 5 threads\n")


def test_asyncio_and_background_cells() -> None:
    notebook, _ = executed(EXAMPLES / "asyncio_and_background.ipynb")
    cells = {cell.id: cell for cell in notebook.cells}
    assert stdout_of(cells["asyncio-run"]) == "asyncio.run: 285\n"
    assert stdout_of(cells["task"]) == "cell: task started\ntask: got one\ntask: got two\n"
    assert stdout_of(cells["task-done"]) == ""
    # Every line of the background cell lands under it, though it printed them after it finished.
    assert stdout_of(cells["background"]) == "".join(f"background line {i} of 5\n" for i in range(1, 6))
    assert stdout_of(cells["meanwhile"]) == "meanwhile, this cell ran\n"
    assert "  1  finished " in stdout_of(cells["listing"])
