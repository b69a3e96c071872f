"""What CurveZMQ transport encryption costs: comm throughput and request round trips.

Theory of operation
-------------------
Four kernels run side by side for the whole measurement: threadline and
ipykernel, each plain and encrypted (the manager provisions Curve keys with
``transport_encryption="required"``; the raw client's sockets are Curve clients
-- ``harness.KernelHandle(encrypted=True)``). Each repetition runs the existing
``comms`` scenario (4 threads x N comm messages) on every kernel, rotating
which kernel goes first, and then the round trips *request by request*: one
``execute_request`` (then one ``kernel_info_request``) to each kernel in turn,
N times, so that a burst of load on the shared machine falls on all four
alike instead of on one kernel's whole series. The ratios that answer the
question are computed from medians of the same run:

* threadline encrypted / threadline plain -- what encryption costs threadline;
* threadline encrypted / ipykernel encrypted -- the encrypted kernels compared;
* ipykernel encrypted / ipykernel plain -- for reference, the same cost there.

    .venv/bin/python -m benchmarks.run --only encryption --reps 3
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from benchmarks.harness import KernelHandle, median, quantile
from benchmarks.scenarios import Sizes, run_comms

#: The kernels this needs (both can encrypt; ``harness.ENCRYPTING``).
KINDS = frozenset({"threadline", "ipykernel"})

CONFIGS: tuple[tuple[str, bool], ...] = (
    ("threadline", False),
    ("threadline", True),
    ("ipykernel", True),
    ("ipykernel", False),
)

#: metric -> (unit, which way is better, the scenario's own key)
METRICS: dict[str, tuple[str, str, str]] = {
    "comms_msg_s": ("msg/s", "higher", "throughput"),
    "comms_lost": ("msgs", "lower", "lost"),
    "execute_median_ms": ("ms", "lower", "execute_median_ms"),
    "execute_p99_ms": ("ms", "lower", "execute_p99_ms"),
    "kernel_info_median_ms": ("ms", "lower", "kernel_info_median_ms"),
}

RATIO_METRICS = ("comms_msg_s", "execute_median_ms", "execute_p99_ms", "kernel_info_median_ms")

RATIOS = (
    ("threadline+curve / threadline", "threadline+curve", "threadline"),
    ("threadline+curve / ipykernel+curve", "threadline+curve", "ipykernel+curve"),
    ("ipykernel+curve / ipykernel", "ipykernel+curve", "ipykernel"),
)


def label(kind: str, encrypted: bool) -> str:
    return f"{kind}+curve" if encrypted else kind


def run(sizes: Sizes) -> dict[str, Any]:
    """All repetitions, four kernels interleaved; raw values, medians and ratios."""
    labels = [label(*config) for config in CONFIGS]
    values: dict[str, list[dict[str, float]]] = {name: [] for name in labels}
    errors: list[str] = []
    handles: dict[str, KernelHandle] = {}
    try:
        for kind, encrypted in CONFIGS:
            handle = KernelHandle(kind, encrypted=encrypted)
            handles[label(kind, encrypted)] = handle
            handle.start()
            handle.wait_ready()
            handle.execute("pass")
        for rep in range(sizes.reps):
            order = labels[rep % len(labels) :] + labels[: rep % len(labels)]
            runs: dict[str, dict[str, float]] = {name: {} for name in labels}
            for name in order:
                try:
                    runs[name].update(run_comms(handles[name], sizes))
                except Exception as exc:
                    errors.append(f"{name} rep {rep + 1} comms: {exc!r}")
            try:
                for name, got in interleaved_round_trips(handles, order, sizes).items():
                    runs[name].update(got)
            except Exception as exc:
                errors.append(f"rep {rep + 1} round trips: {exc!r}")
            for name in labels:
                got = runs[name]
                picked = {metric: got[key] for metric, (_, _, key) in METRICS.items() if key in got}
                values[name].append(picked)
                shown = ", ".join(f"{metric}={_fmt(value)}" for metric, value in values[name][-1].items())
                print(f"  encryption rep {rep + 1} {name}: {shown}", flush=True)
    finally:
        for handle in handles.values():
            handle.close()
    return summarise(values, errors)


def interleaved_round_trips(
    handles: dict[str, KernelHandle], order: list[str], sizes: Sizes
) -> dict[str, dict[str, float]]:
    """Round trips (ms) one request at a time to each kernel in turn; medians and p99 per kernel."""
    requests: dict[str, Callable[[KernelHandle], tuple[bytes, list[bytes]]]] = {
        "execute": lambda handle: handle.execute_frames("pass"),
        "kernel_info": lambda handle: handle.request_frames("kernel_info_request", {}),
    }
    out: dict[str, dict[str, float]] = {name: {} for name in order}
    for request, make in requests.items():
        times: dict[str, list[float]] = {name: [] for name in order}
        for index in range(sizes.warmup + sizes.roundtrips):
            for name in order:
                handle = handles[name]
                msg_id, frames = make(handle)
                started = time.perf_counter()
                handle.shell.send_multipart(frames)
                if handle.wait_reply(handle.shell, msg_id, 10.0) is None:
                    raise RuntimeError(f"{name}: no reply to {request} within 10s")
                elapsed = (time.perf_counter() - started) * 1000
                handle.wait_idle(msg_id, 1.0)
                if index >= sizes.warmup:
                    times[name].append(elapsed)
        for name, series in times.items():
            out[name][f"{request}_median_ms"] = median(series)
            out[name][f"{request}_p99_ms"] = quantile(series, 0.99)
    return out


def summarise(values: dict[str, list[dict[str, float]]], errors: list[str]) -> dict[str, Any]:
    medians: dict[str, dict[str, float]] = {}
    ranges: dict[str, dict[str, tuple[float, float]]] = {}
    for name, runs in values.items():
        medians[name], ranges[name] = {}, {}
        for metric in METRICS:
            series = [run[metric] for run in runs if metric in run]
            if series:
                medians[name][metric] = median(series)
                ranges[name][metric] = (min(series), max(series))
    ratios: dict[str, dict[str, float]] = {}
    # The same ratio within each repetition (the two kernels measured minutes
    # apart at most): its median and range say how steady the answer is.
    paired: dict[str, dict[str, tuple[float, float, float]]] = {}
    for title, top, bottom in RATIOS:
        ratios[title], paired[title] = {}, {}
        for metric in RATIO_METRICS:
            if medians.get(top, {}).get(metric) and medians.get(bottom, {}).get(metric):
                ratios[title][metric] = medians[top][metric] / medians[bottom][metric]
            per_rep = [
                above[metric] / below[metric]
                for above, below in zip(values.get(top, []), values.get(bottom, []), strict=False)
                if above.get(metric) and below.get(metric)
            ]
            if per_rep:
                paired[title][metric] = (median(per_rep), min(per_rep), max(per_rep))
    return {
        "values": values,
        "medians": medians,
        "ranges": ranges,
        "ratios": ratios,
        "paired_ratios": paired,
        "errors": errors,
    }


def print_table(result: dict[str, Any]) -> None:
    print("\nencryption: CurveZMQ's cost (medians [min-max] of the same run)")
    names = list(result["medians"])
    print(f"  {'metric':34}" + "".join(f"{name:>28}" for name in names))
    for metric, (unit, better, _) in METRICS.items():
        cells = []
        for name in names:
            value = result["medians"][name].get(metric)
            low, high = result["ranges"][name].get(metric, (float("nan"), float("nan")))
            cells.append("-" if value is None else f"{_fmt(value)} [{_fmt(low)}-{_fmt(high)}]")
        print(f"  {f'{metric} ({unit}, {better})':34}" + "".join(f"{cell:>28}" for cell in cells))
    print("  ratio of medians [median of the per-repetition ratios, min-max]")
    for title, row in result["ratios"].items():
        paired = result.get("paired_ratios", {}).get(title, {})
        shown = ", ".join(
            f"{metric} {value:.2f}"
            + (" [{:.2f}, {:.2f}-{:.2f}]".format(*paired[metric]) if metric in paired else "")
            for metric, value in row.items()
        )
        print(f"  {title:36} {shown}")
    for error in result["errors"]:
        print(f"  ERROR {error}")


def markdown(result: dict[str, Any]) -> str:
    names = list(result["medians"])
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for metric, (unit, better, _) in METRICS.items():
        cells = []
        for name in names:
            value = result["medians"][name].get(metric)
            low, high = result["ranges"][name].get(metric, (0.0, 0.0))
            cells.append("-" if value is None else f"{_fmt(value)} [{_fmt(low)}-{_fmt(high)}]")
        lines.append(f"| {metric} ({unit}, {better} is better) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| ratio of medians [per-rep ratios: median, min-max] | " + " | ".join(result["ratios"]) + " |",
    ]
    lines.append("|---|" + "---|" * len(result["ratios"]))
    paired = result.get("paired_ratios", {})
    for metric in RATIO_METRICS:
        cells = []
        for title, row in result["ratios"].items():
            cell = f"{row[metric]:.2f}" if metric in row else "-"
            if metric in paired.get(title, {}):
                cell += " [{:.2f}, {:.2f}-{:.2f}]".format(*paired[title][metric])
            cells.append(cell)
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"
