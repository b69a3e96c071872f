"""Child processes' output: whole lines received, threadline vs ipykernel, same run.

Each scenario is one cell that starts 4 children at once, each printing 200
numbered lines (``child C line L`` + 40 x); the cell waits for them. The client
collects every ``stream`` message on stdout until the cell's idle plus a quiet
second (output that arrives late still counts), and counts:

* ``whole``: distinct expected lines received intact, on a line of their own;
* ``broken``: expected lines not received intact (800 - whole);
* ``fragments``: received lines that are not an expected line (pieces of
  lines, or two children's text glued together);
* ``missing chars``: characters of the 800 lines that never arrived (text
  lost, as opposed to text cut up);
* ``dup``: expected lines received more than once;
* ``other cell``: intact expected lines that arrived with another parent.

A count says nothing about why lines are missing: a cell that raised (the
subprocess cell asserts its children's exit codes), text on the cell's stderr
(a child that could not start or import) or no idle are printed on stderr,
``children: the cell fell short: ...``.

Run (ipykernel 7.4 runs from its own environment, ``benchmarks.peers``, built
on first use and cached)::

    .venv/bin/python -m benchmarks.children            # 3 repetitions per kernel
    .venv/bin/python -m benchmarks.children --reps 1 --only fork
    .venv/bin/python -m benchmarks.children --flood 25000   # 4 x 25,000 lines, timed

``s to idle`` is from the request to the cell's idle status (children's start-up
included): what a user waits for. The full run compares it only for cells whose
800 lines all arrived whole (``benchmarks.workloads.child_figures``): a cell
that lost its children's output went idle sooner for doing less.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

from benchmarks import peers
from benchmarks.harness import KernelHandle, isolate_jupyter_dirs, parts, running_kernel

CHILDREN, LINES = 4, 200
PAD = "x" * 40
LINE = re.compile(rf"child (\d+) line (\d+) {PAD}")
QUIET = 1.0

WORKER = f"""
def write_lines(child, lines={LINES}):
    for line in range(lines):
        print(f"child {{child}} line {{line}} {PAD}")
    return child
"""

SCENARIOS: dict[str, str] = {
    "fork": f"""
        import multiprocessing as mp
        context = mp.get_context("fork")
        ps = [context.Process(target=bench_worker.write_lines, args=(c,)) for c in range({CHILDREN})]
        for p in ps: p.start()
        for p in ps: p.join()
    """,
    "os.fork": f"""
        import os
        pids = []
        for c in range({CHILDREN}):
            pid = os.fork()
            if pid == 0:
                bench_worker.write_lines(c)
                sys.stdout.flush()
                os._exit(0)
            pids.append(pid)
        for pid in pids: os.waitpid(pid, 0)
    """,
    "spawn": f"""
        import multiprocessing as mp
        context = mp.get_context("spawn")
        ps = [context.Process(target=bench_worker.write_lines, args=(c,)) for c in range({CHILDREN})]
        for p in ps: p.start()
        for p in ps: p.join()
    """,
    "pool (fork)": f"""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor({CHILDREN}, mp_context=mp.get_context("fork")) as pool:
            list(pool.map(bench_worker.write_lines, range({CHILDREN})))
    """,
    "pool (spawn)": f"""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor({CHILDREN}, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(bench_worker.write_lines, range({CHILDREN})))
    """,
    "mp.Pool (fork)": f"""
        import multiprocessing as mp
        with mp.get_context("fork").Pool({CHILDREN}) as pool:
            pool.map(bench_worker.write_lines, range({CHILDREN}), chunksize=1)
    """,
    "subprocess": f"""
        import os, subprocess
        script = "import bench_worker, sys; bench_worker.write_lines(int(sys.argv[1]))"
        env = dict(os.environ, PYTHONPATH=os.path.dirname(bench_worker.__file__))
        command = [sys.executable, "-c", script]
        children = [subprocess.Popen([*command, str(c)], env=env) for c in range({CHILDREN})]
        codes = [child.wait() for child in children]
        assert codes == [0] * {CHILDREN}, f"exit codes {{codes}}"
    """,
}


def flood_code(lines: int) -> str:
    """The fork scenario with ``lines`` lines per child (``--flood``)."""
    return f"""
        import multiprocessing as mp
        context = mp.get_context("fork")
        ps = [context.Process(target=bench_worker.write_lines, args=(c, {lines})) for c in range({CHILDREN})]
        for p in ps: p.start()
        for p in ps: p.join()
    """


#: Seconds a cell may take before its children are taken to hang (see ``measure``).
CELL_TIMEOUT = 30.0


def measure(
    handle: KernelHandle, code: str, lines_each: int = LINES, timeout: float = CELL_TIMEOUT
) -> dict[str, float]:
    """Run one scenario cell; count what arrived (see the module docstring).

    A cell that has not gone idle after ``timeout`` seconds is waiting for
    children that will never end (xeus-python's forked children hang: a fork
    of a multi-threaded C++ process): they are killed, so that the cell and
    the run go on, and the scenario counts what arrived. (The slowest cell that
    does end, ipykernel's forked children, takes ~2 s here; with 120 s the
    hang cost a full run 6 minutes.)
    """
    msg_id, frames = handle.execute_frames(textwrap.dedent(code))
    started = time.perf_counter()
    handle.shell.send_multipart(frames)
    to_idle = math.nan
    received: list[list[bytes]] = []
    deadline = time.monotonic() + timeout
    idle = killed = False
    while time.monotonic() < deadline or (not killed and not idle):
        if not idle and not killed and time.monotonic() >= deadline:
            killed = True
            print(
                f"children: no idle after {timeout:.0f} s; killing {handle.kind}'s children", file=sys.stderr
            )
            _kill_children(handle.pid)
            deadline = time.monotonic() + 30.0
        if not handle.iopub.poll(int(QUIET * 1000)):
            if idle:
                break
            continue
        before = len(received)
        handle.drain_iopub(received.append)
        for message in received[before:]:
            header, parent, content = parts(message)
            if b"status" in header and b"idle" in content and msg_id in parent and not idle:
                idle, to_idle = True, time.perf_counter() - started
    mine: list[str] = []
    elsewhere: list[str] = []
    # Why a cell fell short, printed: a child that failed to start or import, the
    # cell's error or a kernel that never went idle all count 0 lines otherwise.
    problems = [] if idle else [f"no idle within {timeout:.0f} s"]
    if killed:
        problems.append("its child processes hung and were killed")
    other_streams: list[str] = []
    for message in received:
        decoded = handle.decode(message)
        own = decoded["parent_header"].get("msg_id", "").encode() == msg_id
        content = decoded["content"]
        if own and decoded["msg_type"] == "error":
            problems.append(f"{content['ename']}: {content['evalue']}")
        if decoded["msg_type"] != "stream":
            continue
        if content["name"] != "stdout":
            if own:
                other_streams.append(content["text"])
            continue
        (mine if own else elsewhere).append(content["text"])
    if other_streams:
        problems.append(f"stderr {''.join(other_streams)[-400:]!r}")
    if problems:
        print(f"children: the cell fell short: {'; '.join(problems)}", file=sys.stderr)
    lines = "".join(mine).splitlines()
    whole = Counter(line for line in lines if LINE.fullmatch(line))
    other = sum(1 for line in "".join(elsewhere).splitlines() if LINE.fullmatch(line))
    expected_chars = sum(
        len(f"child {c} line {n} {PAD}\n") for c in range(CHILDREN) for n in range(lines_each)
    )
    return {
        "whole": len(whole),
        "broken": CHILDREN * lines_each - len(whole),
        "fragments": sum(1 for line in lines if not LINE.fullmatch(line)),
        "missing chars": max(0, expected_chars - len("".join(mine))),
        "dup": sum(count - 1 for count in whole.values()),
        "other cell": other,
        "idle": int(idle),
        "s to idle": round(to_idle, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="a scenario (repeatable)")
    parser.add_argument("--out", type=Path, help="write the raw results as JSON here")
    parser.add_argument("--peers-dir", type=Path, default=peers.default_cache(), help="peer environments")
    parser.add_argument(
        "--flood", type=int, metavar="LINES", help="instead: 4 forked children x LINES lines each, timed"
    )
    args = parser.parse_args(argv)
    if args.flood:
        SCENARIOS[f"fork flood {CHILDREN}x{args.flood}"] = flood_code(args.flood)
        args.only = [f"fork flood {CHILDREN}x{args.flood}"]
    scenarios = args.only or list(SCENARIOS)
    lines_each = args.flood or LINES
    ready = []
    for peer in peers.select(["ipykernel"]):
        installed = peers.ensure(peer, args.peers_dir)
        if installed.python is None:
            print(f"{peer.name} left out: {installed.error}", file=sys.stderr)
        else:
            ready.append(installed)
    kernel_names = [installed.peer.name for installed in ready]
    root = isolate_jupyter_dirs(ready)
    worker_dir = Path(tempfile.mkdtemp(prefix="bench-children-"))
    (worker_dir / "bench_worker.py").write_text(WORKER)
    setup = f"import sys\nsys.path.insert(0, {str(worker_dir)!r})\nimport bench_worker"
    results: dict[str, dict[str, list[dict[str, float]]]] = {name: {} for name in scenarios}
    try:
        for kind in kernel_names:
            with running_kernel(kind) as handle:
                handle.execute(setup)
                for name in scenarios:
                    for _ in range(args.reps):
                        counts = measure(handle, SCENARIOS[name], lines_each)
                        results[name].setdefault(kind, []).append(counts)
                        print(f"{kind:10} {name:13} {counts}", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(worker_dir, ignore_errors=True)
    total = CHILDREN * lines_each
    print(f"\n{CHILDREN} children x {lines_each} lines at once, {args.reps} repetitions:")
    print("whole lines min-max, seconds to idle median, the other columns the worst repetition\n")
    print(
        f"| scenario | kernel | whole lines (of {total}) | fragments | missing chars | dup | other cell "
        "| s to idle |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in scenarios:
        for kind in kernel_names:
            runs = results[name].get(kind, [])
            if not runs:
                continue
            worst = {key: max(r[key] for r in runs) for key in runs[0]}
            wholes = sorted(r["whole"] for r in runs)
            whole = f"{wholes[0]}" if wholes[0] == wholes[-1] else f"{wholes[0]}-{wholes[-1]}"
            seconds = statistics.median(r["s to idle"] for r in runs)
            print(
                f"| {name} | {kind} | {whole} | {worst['fragments']} | {worst['missing chars']} | "
                f"{worst['dup']} | {worst['other cell']} | {seconds:.2f} |"
            )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def _kill_children(pid: int | None) -> None:
    """SIGKILL every process whose parent is ``pid`` (Linux: read from /proc)."""
    if pid is None:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGKILL)
