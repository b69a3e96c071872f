"""GUI event loops: what an idle kernel costs, and how fast it answers, with a toolkit on.

    .venv/bin/python -m benchmarks.gui [--idle SECONDS] [--requests N] [--reps N] [--no-peers]

Starts a private Xvfb, then for threadline (and ipykernel 7.4 from the
benchmark peers' environment, for Tk: it has no Qt binding there) runs, per
GUI setting (off; ``%gui tk`` alone; with a Tk window; ``%gui qt`` with a Qt
window):

* idle CPU: the kernel process's CPU time (``/proc/PID/task/*/schedstat``,
  nanoseconds, all threads) over ``--idle`` seconds in which nothing is
  sent, as a percentage of one core;
* round trip: ``execute_request`` of ``pass`` to its reply (the next one is
  sent after the idle status), on the benchmarks' raw-socket client, median
  and p95 over ``--requests`` requests, reported also as a ratio to the same
  kernel with no GUI in the same run.

The GUI settings alternate within each repetition, so drift in the machine's
load hits all of them alike. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from benchmarks import peers
from benchmarks.harness import isolate_jupyter_dirs, running_kernel

#: A request unanswered this long (seconds) ends the measurement: the kernel stalled.
STALL = 10.0

SETUPS = {
    "off": "",
    "tk, no window": "%gui tk",
    "tk + window": "%gui tk\nimport tkinter\nroot = tkinter.Tk()\nroot.geometry('200x100')\nroot.update()",
    "qt + window": "%gui qt\nfrom PySide6 import QtWidgets\nw = QtWidgets.QLabel('idle')\nw.show()",
}


@contextmanager
def xvfb() -> Iterator[str]:
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        number = ready.readline().strip().decode()
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait()


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far (``schedstat``: nanoseconds on the CPU)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def measure(kind: str, gui: str, idle: float, requests: int) -> dict[str, float]:
    with running_kernel(kind) as handle:
        try:
            if SETUPS[gui]:
                handle.execute(SETUPS[gui])
            for _ in range(20):  # warm up
                handle.execute("pass", timeout=STALL)
        except RuntimeError as exc:
            print(f"{kind} gui={gui}: stalled in setup: {exc}", flush=True)
            return {"idle_cpu_pct": math.nan, "answered": 0, "rt_median_ms": math.nan, "rt_p95_ms": math.nan}
        assert handle.pid is not None
        before = cpu_seconds(handle.pid)
        time.sleep(idle)  # the idle interval being measured
        idle_cpu = (cpu_seconds(handle.pid) - before) / idle * 100
        times: list[float] = []
        for _ in range(requests):
            msg_id, frames = handle.execute_frames("pass")
            started = time.perf_counter()
            handle.shell.send_multipart(frames)
            if handle.wait_reply(handle.shell, msg_id, STALL) is None:
                print(f"{kind} gui={gui}: request {len(times) + 1} got no reply within {STALL} s", flush=True)
                break
            times.append(time.perf_counter() - started)
            handle.wait_idle(msg_id, 1.0)
        if not times:
            return {"idle_cpu_pct": idle_cpu, "answered": 0, "rt_median_ms": math.nan, "rt_p95_ms": math.nan}
        times.sort()
        return {
            "idle_cpu_pct": idle_cpu,
            "answered": len(times),
            "rt_median_ms": statistics.median(times) * 1000,
            "rt_p95_ms": times[int(len(times) * 0.95)] * 1000,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    # threadline from the development environment: Qt (PySide6) is installed only there.
    kernels = [peers.development()]
    if not args.no_peers:
        ipykernel = next(p for p in peers.PEERS if p.name == "ipykernel")
        installed = peers.ensure(ipykernel, peers.default_cache())
        if installed.python is not None:
            kernels.append(installed)
        else:
            print(f"ipykernel left out: {installed.error}", file=sys.stderr)
    isolate_jupyter_dirs(kernels)
    # ipykernel's environment has no Qt binding: Tk only there.
    plan = [(k.peer.name, g) for k in kernels for g in SETUPS if k.peer.name == "threadline" or "qt" not in g]
    results: dict[tuple[str, str], list[dict[str, float]]] = {key: [] for key in plan}
    with xvfb() as display:
        os.environ["DISPLAY"] = display  # the kernels inherit it
        for rep in range(args.reps):
            for kind, gui in plan:
                results[(kind, gui)].append(measure(kind, gui, args.idle, args.requests))
                print(f"rep {rep + 1}: {kind} gui={gui}: {results[(kind, gui)][-1]}", flush=True)
    print()
    print(
        "| kernel | GUI | idle CPU, % of a core | execute round trip median / p95, ms "
        f"| ratio to no GUI | requests answered (of {args.requests} per rep) |"
    )
    print("|---|---|---|---|---|---|")
    for kind, gui in plan:
        runs = results[(kind, gui)]
        base = statistics.median(r["rt_median_ms"] for r in results[(kind, "off")])
        cpu = statistics.median(r["idle_cpu_pct"] for r in runs)
        median = statistics.median(r["rt_median_ms"] for r in runs)
        p95 = statistics.median(r["rt_p95_ms"] for r in runs)
        answered = " / ".join(str(int(r["answered"])) for r in runs)
        print(f"| {kind} | {gui} | {cpu:.3f} | {median:.2f} / {p95:.2f} | {median / base:.2f} | {answered} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
