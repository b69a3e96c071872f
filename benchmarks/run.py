"""Run the benchmarks: threadline and ipykernel side by side, in the same run.

    .venv/bin/python -m benchmarks.run [--quick] [--only SCENARIO ...] [--reps N]
                                       [--flood-mb MB] [--no-raw] [--out PATH]

Each scenario starts one kernel of each kind (or a fresh one per repetition,
or, for ``startup``, as many as it measures), then repeats its measurement,
alternating which kernel goes first in each repetition so that drift in the
machine's load falls on both. It prints medians, min-max ranges and the
threadline/ipykernel ratio of the medians, plus the raw pyzmq ceiling, and
writes everything (with the raw values) to ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import encryption, harness, raw_zmq
from benchmarks.harness import KERNEL_NAMES, KernelHandle, median, profiled, running_kernel
from benchmarks.scenarios import SCENARIOS, Scenario, Sizes

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (seconds, not minutes)")
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.name for s in SCENARIOS] + ["raw", "encryption"],
        help="run only this scenario (repeatable); 'raw' is the pyzmq ceiling, "
        "'encryption' CurveZMQ's cost (benchmarks/encryption.py)",
    )
    parser.add_argument("--reps", type=int, help="repetitions per kernel (default 3; --quick 2)")
    parser.add_argument("--flood-mb", type=float, help="size of the output flood (default 200 MB)")
    parser.add_argument("--flood-rate", type=float, help="the slow client's read rate in MB/s (default 40)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the threadline kernel with py-spy during each repetition (folded stacks in DIR)",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (py-spy --gil)",
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the raw pyzmq ceiling")
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="JSON",
        help="print a results JSON as a Markdown table (for README.md) and exit; runs nothing",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="where to write JSON")
    return parser.parse_args(argv)


def run_scenario(
    scenario: Scenario, sizes: Sizes, profile: Path | None = None, *, gil: bool = False
) -> dict[str, Any]:
    """All repetitions of one scenario, kernels interleaved; raw values per kernel."""
    values: dict[str, list[dict[str, float]]] = {kind: [] for kind in KERNEL_NAMES}
    errors: list[str] = []
    shared: dict[str, KernelHandle] = {}
    try:
        if scenario.kernel == "shared":
            for kind in KERNEL_NAMES:
                handle = KernelHandle(kind)
                shared[kind] = handle
                handle.start()
                handle.wait_ready()
                handle.execute("pass")
        for rep in range(scenario.reps(sizes)):
            order = KERNEL_NAMES if rep % 2 == 0 else tuple(reversed(KERNEL_NAMES))
            for kind in order:
                try:
                    where = (
                        profile / f"{scenario.name}-{rep + 1}.txt"
                        if profile and kind == "threadline"
                        else None
                    )
                    values[kind].append(_once(scenario, kind, sizes, shared, where, gil=gil))
                except Exception as exc:
                    errors.append(f"{kind} rep {rep}: {exc!r}")
                    traceback.print_exc()
                print(f"  {scenario.name} rep {rep + 1} {kind}: {_brief(values[kind][-1:])}", flush=True)
    finally:
        for handle in shared.values():
            handle.close()
    return {"title": scenario.title, "values": values, "errors": errors}


def _once(
    scenario: Scenario,
    kind: str,
    sizes: Sizes,
    shared: dict[str, KernelHandle],
    profile: Path | None,
    *,
    gil: bool,
) -> dict[str, float]:
    if scenario.kernel == "own":
        return scenario.run(kind, sizes)
    if scenario.kernel == "fresh":
        with running_kernel(kind) as handle, profiled(handle.pid, profile, gil=gil):
            return scenario.run(handle, sizes)
    with profiled(shared[kind].pid, profile, gil=gil):
        return scenario.run(shared[kind], sizes)


def _brief(last: list[dict[str, float]]) -> str:
    if not last:
        return "failed"
    return ", ".join(f"{k}={_fmt(v)}" for k, v in list(last[0].items())[:4])


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if value == int(value) and abs(value) >= 100:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def summarise(scenario: Scenario, raw: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for metric in scenario.metrics:
        row: dict[str, Any] = {"metric": metric.name, "unit": metric.unit, "better": metric.better}
        for kind in KERNEL_NAMES:
            series = [v[metric.name] for v in raw["values"][kind] if metric.name in v]
            row[kind] = (
                {"median": median(series), "min": min(series), "max": max(series), "n": len(series)}
                if series
                else None
            )
        tl, ipk = row["threadline"], row["ipykernel"]
        row["ratio"] = tl["median"] / ipk["median"] if tl and ipk and ipk["median"] else None
        rows.append(row)
    return rows


def print_table(summaries: dict[str, Any], ceiling: dict[str, float] | None) -> None:
    columns = ("threadline median [min-max]", "ipykernel median [min-max]")
    header = f"{'scenario / metric':44} {columns[0]:30} {columns[1]:30} tl/ipk"
    print()
    print(header)
    print("-" * len(header))
    for name, summary in summaries.items():
        print(f"{name}: {summary['title']}")
        for row in summary["rows"]:
            cells = []
            for kind in KERNEL_NAMES:
                s = row[kind]
                cells.append(f"{_fmt(s['median'])} [{_fmt(s['min'])}-{_fmt(s['max'])}]" if s else "-")
            ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
            label = f"  {row['metric']} ({row['unit']}, {row['better']} is better)"
            print(f"{label:44} {cells[0]:30} {cells[1]:30} {ratio}")
        for error in summary["errors"]:
            print(f"  ERROR {error}")
    if ceiling:
        print("raw pyzmq ceiling (two processes, tcp loopback, 6-frame messages)")
        for key, value in ceiling.items():
            print(f"  {key:42} {_fmt(value)}")
        comms = summaries.get("comms")
        if comms and comms["rows"][0]["threadline"]:
            share = comms["rows"][0]["threadline"]["median"] / ceiling["pushpull_msg_s"]
            print(f"  {'threadline comms / push-pull ceiling':42} {share:.0%}")


def markdown(report: dict[str, Any]) -> str:
    """The results of a run as a Markdown table."""
    lines = [
        "| scenario | metric | threadline median [min-max] | ipykernel median [min-max] | tl/ipk |",
        "|---|---|---|---|---|",
    ]
    for name, summary in report["scenarios"].items():
        for row in summary["rows"]:
            cells = []
            for kind in KERNEL_NAMES:
                s = row[kind]
                cells.append(f"{_fmt(s['median'])} [{_fmt(s['min'])}-{_fmt(s['max'])}]" if s else "-")
            ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
            metric = f"{row['metric']} ({row['unit']}, {row['better']} is better)"
            lines.append(f"| {name} | {metric} | {cells[0]} | {cells[1]} | {ratio} |")
    if report.get("encryption"):
        lines += ["", encryption.markdown(report["encryption"])]
    ceiling = report.get("raw_ceiling")
    if ceiling:
        lines += ["", "| raw pyzmq ceiling | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in ceiling.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.reps:
        sizes.reps = args.reps
        sizes.flood_reps = min(args.reps, sizes.flood_reps)
    if args.flood_mb:
        sizes.flood_mb = args.flood_mb
    if args.flood_rate:
        sizes.flood_client_mb_s = args.flood_rate
    only = set(args.only or [])
    root = harness.isolate_jupyter_dirs()
    started = time.time()
    load_before = os.getloadavg()
    summaries: dict[str, Any] = {}
    ceiling: dict[str, float] | None = None
    encrypted: dict[str, Any] | None = None
    try:
        if not args.no_raw and (not only or "raw" in only):
            print("raw pyzmq ceiling ...", flush=True)
            ceiling = raw_zmq.ceiling(sizes.raw_msgs, sizes.raw_roundtrips)
        for scenario in SCENARIOS:
            if only and scenario.name not in only:
                continue
            print(f"{scenario.name}: {scenario.title}", flush=True)
            raw = run_scenario(scenario, sizes, args.profile, gil=args.profile_gil)
            summaries[scenario.name] = {**raw, "rows": summarise(scenario, raw)}
        if not only or "encryption" in only:
            print("encryption: comms and round trips, plain and CurveZMQ", flush=True)
            encrypted = encryption.run(sizes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(summaries, ceiling)
    if encrypted is not None:
        encryption.print_table(encrypted)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "duration_s": time.time() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "quick": args.quick,
        "sizes": vars(sizes),
        "raw_ceiling": ceiling,
        "scenarios": summaries,
        "encryption": encrypted,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {args.out} (load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f})")
    failed = any(summary["errors"] for summary in summaries.values())
    failed = failed or bool(encrypted and encrypted["errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
