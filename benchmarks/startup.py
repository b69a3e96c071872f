"""Start-up as users meet it, and where the time goes.

Theory of operation
-------------------
``run_startup_client`` starts a kernel the way Jupyter front ends do:
``jupyter_client.KernelManager.start_kernel``, then a ``BlockingKernelClient``
with ``start_channels`` and ``wait_for_ready``, then one ``execute_request``
for ``pass``. ``wait_for_ready`` sends ``kernel_info_request`` (again each
second until answered), accepts a reply only once an iopub message arrives
within 0.2 s after it (else it starts over), and then reads iopub until it has
been quiet for 0.2 s. Its sockets use ZeroMQ's default reconnect interval of
100 ms, so a kernel that binds its ports late is first reached at the next
100 ms tick after it binds: start-up through this path moves in steps.

Clocks: every figure is ``time.perf_counter`` (CLOCK_MONOTONIC on Linux, the
same clock in every process), measured from just before ``start_kernel``:

* ``launch_s``: ``start_kernel`` returned (the process is spawned);
* ``kernel_info_s``: the client accepted the kernel_info reply (reply plus an
  iopub message);
* ``ready_s``: ``wait_for_ready`` returned (after its 0.2 s quiet period);
* ``first_reply_s``: the first execute_reply arrived -- the figure users feel.

For threadline the kernel's own start-up marks (``Kernel.startup_marks``,
perf_counter values taken in the kernel) add where the kernel's time went:
interpreter up (``main``), sockets bound, imports done, shell built, serving.

``run_startup_parts`` measures, for every kernel, the two costs before any of
its own code runs: a bare interpreter of its environment (``python -c pass``)
and importing its kernel module on top of that, each the fastest of
``part_tries`` starts in a row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import TYPE_CHECKING, Any

from jupyter_client.manager import KernelManager

from benchmarks import peers
from benchmarks.harness import kernelspec_name

if TYPE_CHECKING:
    from benchmarks.scenarios import Sizes

#: Kernel start-up marks, in the order the kernel records them.
THREADLINE_MARKS = ("main", "listening", "sockets_bound", "imports_done", "shell_built", "serving")

MARKS_CODE = "import json; print('MARKS', json.dumps(getattr(get_ipython().kernel, 'startup_marks', {})))"


def run_startup_client(kind: str, sizes: Sizes) -> dict[str, float]:
    runtime = Path(os.environ.get("JUPYTER_RUNTIME_DIR", tempfile.gettempdir()))
    km = KernelManager(
        kernel_name=kernelspec_name(kind),
        connection_file=str(runtime / f"kernel-{kind}-{time.monotonic_ns()}.json"),
    )
    log_path = runtime / f"{kind}-startup-{time.monotonic_ns()}.log"
    out: dict[str, float] = {}
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        km.start_kernel(stdout=log, stderr=log)
        out["launch_s"] = time.perf_counter() - t0
        kc = km.client()
        accepted: list[float] = []
        handle_reply = kc._handle_kernel_info_reply

        def note_reply(msg: dict[str, Any]) -> None:
            accepted.append(time.perf_counter())
            handle_reply(msg)

        kc._handle_kernel_info_reply = note_reply
        try:
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            out["ready_s"] = time.perf_counter() - t0
            if accepted:
                out["kernel_info_s"] = accepted[0] - t0
            msg_id = kc.execute("pass", store_history=False)
            _reply_to(kc, msg_id, 30.0)
            out["first_reply_s"] = time.perf_counter() - t0
            if kind == peers.THREADLINE.name:
                out.update(_threadline_marks(kc, t0))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            km.cleanup_resources()
    return out


def _reply_to(kc: Any, msg_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.perf_counter() + timeout
    while (left := deadline - time.perf_counter()) > 0:
        try:
            msg: dict[str, Any] = kc.get_shell_msg(timeout=left)
        except Empty:
            break
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg
    raise RuntimeError(f"no reply to {msg_id} within {timeout:.0f}s")


def _threadline_marks(kc: Any, t0: float) -> dict[str, float]:
    """The kernel's own start-up marks, relative to the client's clock start."""
    msg_id = kc.execute(MARKS_CODE, store_history=False)
    _reply_to(kc, msg_id, 30.0)
    deadline = time.perf_counter() + 10.0
    while time.perf_counter() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1.0)
        except Empty:
            continue
        text = msg["content"].get("text", "") if msg["msg_type"] == "stream" else ""
        if msg["parent_header"].get("msg_id") == msg_id and text.startswith("MARKS "):
            marks: dict[str, float] = json.loads(text[len("MARKS ") :])
            return {f"tl_{name}_s": marks[name] - t0 for name in THREADLINE_MARKS if name in marks}
    return {}


def run_startup_parts(kind: str, sizes: Sizes) -> dict[str, float]:
    """A bare interpreter of the kernel's environment, and its kernel module's imports on top."""
    peer = next(p for p in peers.PEERS if p.name == kind)
    python = _python_of(kind)
    env = dict(os.environ)
    bare: list[float] = []
    imported: list[float] = []
    pause = "import gc; gc.disable(); " if peer.collector_paused else ""
    for _ in range(sizes.part_tries):
        bare.append(_wall([python, "-c", "pass"], env))
        imported.append(_wall([python, "-c", f"{pause}import {peer.module}"], env))
    # A start is fixed work plus whatever the host's load adds, never less: the
    # fastest of a few back-to-back starts is the cost itself. (One start each:
    # the same interpreter binary in four environments came out 1.12-1.19x apart.)
    return {"interpreter_s": min(bare), "imports_s": max(0.0, min(imported) - min(bare))}


def _python_of(kind: str) -> str:
    """The interpreter the kernel's kernelspec runs."""
    data = Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels" / kernelspec_name(kind) / "kernel.json"
    argv: list[str] = json.loads(data.read_text())["argv"]
    return argv[0] if argv else sys.executable


def _wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True)
    return time.perf_counter() - t0
