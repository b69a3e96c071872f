"""Scenarios users feel as a whole: notebooks run end to end, and large outputs.

Theory of operation
-------------------
``run_notebooks`` executes every ``examples/*.ipynb`` with nbclient -- which
starts the kernel through jupyter_client, waits for it to be ready and runs
each cell in turn, as ``jupyter nbconvert --execute`` and papermill do -- and
times it from the call to the moment the last cell's execution (reply and
idle) is complete. A notebook may fail on a kernel that lacks a feature it
shows (two of the examples use threadline's routing API): the first error
(or a cell timeout) ends that run, which counts as failed and has no time
(NaN), because a run that stopped doing the work is not a comparable figure.

``run_big_comm`` and ``run_big_image`` send one large output on a fresh
kernel: a 50 MB binary buffer through a comm (``comm.send(buffers=...)``) and
a 20 MB PNG through IPython's ``display``. The payload is built by the
untimed setup cell, so what is measured is the kernel's cost of sending it:
seconds from the execute_request to the output's arrival, and the kernel's
peak RSS (VmHWM) above its baseline after setup. The client checks, after the
clock stops, that exactly the payload arrived (``intact``).
"""

from __future__ import annotations

import base64
import math
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.harness import DELIMITER, KernelHandle, collect_run, kernelspec_name, parts

if TYPE_CHECKING:
    from benchmarks.scenarios import Sizes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = tuple(sorted(path.stem for path in EXAMPLES.glob("*.ipynb")))


def run_notebooks(kind: str, sizes: Sizes) -> dict[str, float]:
    import nbformat
    from nbclient import NotebookClient

    runtime_log = Path(os.environ.get("JUPYTER_RUNTIME_DIR", tempfile.gettempdir())) / "notebooks.log"
    out: dict[str, float] = {}
    for stem in NOTEBOOKS:
        nb = nbformat.read(EXAMPLES / f"{stem}.ipynb", as_version=4)  # type: ignore[no-untyped-call]
        last = [0.0]

        def executed(*, last: list[float] = last, **_: Any) -> None:
            last[0] = time.perf_counter()

        client = NotebookClient(
            nb,
            kernel_name=kernelspec_name(kind),
            timeout=sizes.notebook_timeout,
            allow_errors=False,  # the first failing cell ends the run: it is not comparable
            on_cell_executed=executed,
            resources={"metadata": {"path": str(EXAMPLES)}},
        )
        failed = ""
        with open(runtime_log, "ab") as log:
            t0 = time.perf_counter()
            try:
                client.execute(stdout=log, stderr=log)
            except Exception as exc:  # a cell's error, a timeout, a dead kernel
                failed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1:] or ''}"
        if failed:
            print(f"    {stem} on {kind} did not run through: {failed[:200]}", flush=True)
        out[f"{stem}_s"] = math.nan if failed else last[0] - t0
        out[f"{stem}_failed"] = 1.0 if failed else 0.0
    return out


def _payload(megabytes: float) -> bytes:
    """Deterministic bytes, the same in the kernel's setup code and here."""
    return bytes(range(256)) * int(megabytes * 1e6 / 256)


def big_comm_setup(megabytes: float) -> str:
    return (
        "import comm as _c\n"
        "_bench_comm = _c.create_comm(target_name='threadline_bench')\n"
        f"_bench_payload = bytes(range(256)) * {int(megabytes * 1e6 / 256)}\n"
    )


def big_image_setup(megabytes: float) -> str:
    return (
        "from IPython.display import Image as _Image, display as _display\n"
        f"_bench_png = b'\\x89PNG\\r\\n\\x1a\\n' + bytes(range(256)) * {int(megabytes * 1e6 / 256)}\n"
    )


def _measure_one(
    handle: KernelHandle, code: str, marker: bytes, check: Any, timeout: float = 120.0
) -> dict[str, float]:
    baseline = handle.rss_status()
    got: list[list[bytes]] = []

    def interesting(frames: list[bytes]) -> bool:
        return marker in parts(frames)[0]

    run = collect_run(
        handle,
        code,
        is_interesting=interesting,
        enough=lambda: bool(got),
        on_message=lambda frames, at: got.append(frames),
        quiet=5.0,
        timeout=timeout,
    )
    after = handle.rss_status()
    arrived = run["last"] if run["last"] is not None else time.perf_counter()
    intact = 0.0
    if len(got) == 1:
        try:
            intact = 1.0 if check(got[0]) else 0.0
        except Exception:
            intact = 0.0
    return {
        "seconds": float(arrived) - float(run["sent"]),  # type: ignore[arg-type]
        "peak_rss_mb": after.get("VmHWM", 0) / 1024,
        "growth_mb": (after.get("VmHWM", 0) - baseline.get("VmHWM", 0)) / 1024,
        "intact": intact,
        "messages": float(len(got)),
    }


def run_big_comm(handle: KernelHandle, sizes: Sizes) -> dict[str, float]:
    expected = _payload(sizes.big_comm_mb)

    def check(frames: list[bytes]) -> bool:
        handle.decode(frames)  # verifies the signature
        buffers = frames[frames.index(DELIMITER) + 6 :]
        return len(buffers) == 1 and bytes(buffers[0]) == expected

    code = "_bench_comm.send({'n': len(_bench_payload)}, buffers=[_bench_payload])"
    return _measure_one(handle, code, b"comm_msg", check)


def run_big_image(handle: KernelHandle, sizes: Sizes) -> dict[str, float]:
    expected = b"\x89PNG\r\n\x1a\n" + _payload(sizes.big_image_mb)

    def check(frames: list[bytes]) -> bool:
        data = handle.decode(frames)["content"]["data"]["image/png"]
        return base64.b64decode(data) == expected

    code = "_display(_Image(data=_bench_png, format='png'))"
    return _measure_one(handle, code, b"display_data", check)


# -- child processes' output (benchmarks/children.py's cells, in the one command) ------------

#: Each child metric and its unit (``s to idle``: from the request to the cell's
#: idle, the children's start-up and exit included; see ``child_figures``).
CHILD_UNITS = {
    "whole": "lines",
    "fragments": "lines",
    "missing chars": "chars",
    "other cell": "lines",
    "s to idle": "s",
}
CHILD_METRICS = tuple(CHILD_UNITS)


def children_setup(sizes: Sizes) -> str:
    """The worker module ``benchmarks.children`` imports, written by the kernel itself."""
    from benchmarks import children

    return (
        "import os as _os, sys, tempfile as _tempfile\n"
        "_bench_dir = _tempfile.mkdtemp()\n"
        f"open(_os.path.join(_bench_dir, 'bench_worker.py'), 'w').write({children.WORKER!r})\n"
        "sys.path.insert(0, _bench_dir)\n"
        "import bench_worker\n"
    )


def run_children(handle: KernelHandle, sizes: Sizes) -> dict[str, float]:
    """Every scenario of ``benchmarks.children`` once: 4 children x 200 lines each."""
    from benchmarks import children

    out: dict[str, float] = {}
    for name, code in children.SCENARIOS.items():
        counts = children.measure(handle, code)
        figures = child_figures(counts, children.CHILDREN * children.LINES, children.CELL_TIMEOUT)
        out.update((f"{name} {key}", value) for key, value in figures.items())
    return out


def child_figures(counts: dict[str, float], expected_lines: int, timeout: float) -> dict[str, float]:
    """The compared figures of one children cell (``benchmarks.children.measure``'s counts).

    ``s to idle`` is the time to the cell's complete result. A cell given up on
    counts its timeout (the user waited at least that long). A cell that went
    idle with lines missing or broken has no such time: nan, which the verdict
    leaves out. Else a kernel that loses its children's output would be judged
    faster for it (xeus-python's forked children deliver nothing, and their
    cell goes idle sooner than one whose 800 lines all arrive).
    """
    out = {key: float(counts[key]) for key in CHILD_METRICS}
    if math.isnan(out["s to idle"]):
        out["s to idle"] = timeout  # never idle: given up on
    elif out["whole"] < expected_lines:
        out["s to idle"] = math.nan
    return out
