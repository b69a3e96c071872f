"""Run the benchmarks: threadline and its peers side by side, in the same run.

    .venv/bin/python -m benchmarks.run [--quick] [--only SCENARIO ...] [--reps N]
                                       [--peer NAME ...] [--flood-mb MB] [--no-raw]
                                       [--out PATH]

First every peer kernel's environment is made ready (``benchmarks.peers``:
built from PyPI on first use, then reused; a peer that cannot be installed is
reported and left out). Each scenario then starts one kernel of each kind (or
a fresh one per repetition, or, for the start-up scenarios, as many as it
measures) and repeats its measurement, rotating which kernel goes first in
each repetition (ABCD, BCDA, ...) so that drift in the machine's load falls on
all of them. It prints medians, min-max ranges and threadline's ratio to each
peer (ratio of medians), plus the raw pyzmq ceiling, and writes everything
(with the raw values, the peers' versions and the load average) to
``benchmarks/results/latest.json``.
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

from benchmarks import encryption, harness, peers, raw_zmq, verdict
from benchmarks.harness import KernelHandle, median, profiled, running_kernel
from benchmarks.scenarios import SCENARIOS, Scenario, Sizes

#: Short column names for the ratio columns.
SHORT = {"ipykernel": "ipk", "xeus-python": "xeus", "async-kernel": "async"}

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
    parser.add_argument(
        "--peer",
        action="append",
        choices=[p.name for p in peers.PEERS if p is not peers.THREADLINE],
        help="measure threadline against this peer only (repeatable; default: all of them)",
    )
    parser.add_argument(
        "--peers-dir",
        type=Path,
        default=peers.default_cache(),
        help="where the peers' virtual environments are built and kept (default: %(default)s)",
    )
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
    parser.add_argument(
        "--host-speed",
        type=float,
        metavar="SECONDS",
        help="print the host's speed (harness.host_speed) every half second for SECONDS and exit; "
        "runs no kernel",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="where to write JSON")
    args = parser.parse_args(argv)
    if args.profile is not None and harness.py_spy() is None:
        # Else every repetition would run unprofiled and the folder stay empty, unsaid.
        parser.error("--profile needs py-spy (pip install py-spy), which is not installed here")
    return args


def run_scenario(
    scenario: Scenario,
    sizes: Sizes,
    kinds: tuple[str, ...],
    profile: Path | None = None,
    *,
    gil: bool = False,
) -> dict[str, Any]:
    """All repetitions of one scenario, kernels interleaved; raw values per kernel.

    ``errors`` says what failed, for people; ``failed`` names the kernels whose
    repetitions failed, for the run's exit status.
    """
    values: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    errors: list[str] = []
    failed: set[str] = set()
    shared: dict[str, KernelHandle] = {}
    run_again: list[dict[str, float]] = []
    speeds: list[float] = []  # the host's speed before each round, rounds run again included
    try:
        if scenario.kernel == "shared":
            for kind in kinds:
                handle = KernelHandle(kind)
                shared[kind] = handle
                handle.start()
                handle.wait_ready()
                handle.execute("pass")
                if scenario.setup:
                    handle.execute(scenario.setup(sizes))
        reps = scenario.reps(sizes)
        rep = 0
        while rep < reps:
            shift = rep % len(kinds)
            order = kinds[shift:] + kinds[:shift]
            speeds.append(harness.host_speed())
            ticks = harness.cpu_ticks()
            this_round: dict[str, dict[str, float]] = {}
            for kind in order:
                try:
                    where = (
                        profile / f"{scenario.name}-{rep + 1}.txt"
                        if profile and kind == peers.THREADLINE.name
                        else None
                    )
                    this_round[kind] = _once(scenario, kind, sizes, shared, where, gil=gil)
                    brief = _brief([this_round[kind]])
                except Exception as exc:
                    errors.append(f"{kind} rep {rep + 1}: {exc!r}")
                    failed.add(kind)
                    traceback.print_exc()
                    brief = f"failed ({exc})"
                print(f"  {scenario.name} rep {rep + 1} {kind}: {brief}", flush=True)
            steal = harness.steal_share(ticks, harness.cpu_ticks())
            if _run_again(scenario, steal, len(run_again), reps):
                assert steal is not None
                run_again.append({"round": rep + 1, "steal": steal})
                print(
                    f"  {scenario.name} rep {rep + 1}: the hypervisor took {steal:.1%}: run again", flush=True
                )
                continue
            for kind, found in this_round.items():
                values[kind].append(found)
            rep += 1
    finally:
        for handle in shared.values():
            handle.close()
    summary: dict[str, Any] = {
        "title": scenario.title,
        "values": values,
        "errors": errors,
        "failed": sorted(failed),
        "host_speed_us": speeds,
    }
    if run_again:
        summary["run_again"] = run_again
    return summary


def _run_again(scenario: Scenario, steal: float | None, done: int, reps: int) -> bool:
    """Whether a round is run again: its kernels measured while the hypervisor took
    more than the scenario's ``steal_limit`` (at most ``reps`` rounds again, so a host
    that never calms down doubles the scenario's time, no more). The decision looks
    only at the host, never at a kernel's figures, and drops every kernel's
    values of the round: no kernel is favoured."""
    return (
        scenario.steal_limit is not None
        and steal is not None
        and steal > scenario.steal_limit
        and done < reps
    )


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
        with running_kernel(kind) as handle:
            if scenario.setup:
                handle.execute(scenario.setup(sizes))
            with profiled(handle.pid, profile, gil=gil):
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


def summarise(scenario: Scenario, raw: dict[str, Any], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per metric: each kernel's median, min, max over repetitions; threadline's ratio to each peer.

    A NaN value (a figure that does not apply, e.g. the time of a notebook that
    failed on that kernel) is left out; a kernel with no value shows "-".
    """
    rows = []
    for metric in scenario.metrics:
        row: dict[str, Any] = {"metric": metric.name, "unit": metric.unit, "better": metric.better}
        for kind in kinds:
            found = (v.get(metric.name, math.nan) for v in raw["values"][kind])
            series = [value for value in found if not math.isnan(value)]
            row[kind] = (
                {"median": median(series), "min": min(series), "max": max(series), "n": len(series)}
                if series
                else None
            )
        ours = row.get(peers.THREADLINE.name)
        row["ratios"] = {
            kind: _ratio_of(ours, row[kind]) if metric.better != "info" else None
            for kind in kinds
            if kind != peers.THREADLINE.name
        }
        rows.append(row)
    return rows


def _ratio_of(ours: dict[str, float] | None, theirs: dict[str, float] | None) -> float | None:
    return ours["median"] / theirs["median"] if ours and theirs and theirs["median"] else None


def _cell(stats: dict[str, float] | None, *, ranges: bool = True) -> str:
    if not stats:
        return "-"
    if not ranges or stats["min"] == stats["max"]:
        return _fmt(stats["median"])
    return f"{_fmt(stats['median'])} [{_fmt(stats['min'])}-{_fmt(stats['max'])}]"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def print_table(
    summaries: dict[str, Any],
    ceiling: dict[str, float] | None,
    kinds: tuple[str, ...],
    standings: list[verdict.Standing],
) -> None:
    peers_only = [k for k in kinds if k != peers.THREADLINE.name]
    widths = [26] * len(kinds)
    header = f"{'scenario / metric':40} " + " ".join(f"{k:{w}}" for k, w in zip(kinds, widths, strict=True))
    header += " " + " ".join(f"{'tl/' + SHORT.get(k, k):>8}" for k in peers_only)
    print()
    print(header)
    print("-" * len(header))
    for name, summary in summaries.items():
        print(f"{name}: {summary['title']}")
        for row in summary["rows"]:
            cells = " ".join(f"{_cell(row[k]):{w}}" for k, w in zip(kinds, widths, strict=True))
            ratios = " ".join(f"{_ratio(row['ratios'][k]):>8}" for k in peers_only)
            label = f"  {row['metric']} ({row['unit']}, {row['better']})"
            print(f"{label:40} {cells} {ratios}")
        for error in summary["errors"]:
            print(f"  ERROR {error}")
    if ceiling:
        print("raw pyzmq ceiling (two processes, tcp loopback, 6-frame messages)")
        for key, value in ceiling.items():
            print(f"  {key:42} {_fmt(value)}")
        comms = summaries.get("comms")
        if comms and comms["rows"][0].get(peers.THREADLINE.name):
            share = comms["rows"][0][peers.THREADLINE.name]["median"] / ceiling["pushpull_msg_s"]
            print(f"  {'threadline comms / push-pull ceiling':42} {share:.0%}")
    if standings:
        print()
        print("\n".join(verdict.summary_lines(standings)))


def markdown(report: dict[str, Any]) -> str:
    """The results of a run as Markdown: one table of medians [min-max] and ratios."""
    if not report["scenarios"] and report.get("encryption"):  # --only encryption
        return encryption.markdown(report["encryption"])
    kinds = tuple(report.get("kernels") or ("threadline", "ipykernel"))
    peers_only = [k for k in kinds if k != peers.THREADLINE.name]
    columns = [*kinds, *(f"tl/{SHORT.get(k, k)}" for k in peers_only)]
    lines = ["| scenario | metric | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, summary in report["scenarios"].items():
        for row in summary["rows"]:
            ratios = row.get("ratios") or {"ipykernel": row.get("ratio")}
            metric = f"{row['metric']} ({row['unit']}, {row['better']})"
            cells = [_cell(row.get(k)) for k in kinds] + [_ratio(ratios.get(k)) for k in peers_only]
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    scenarios = report["scenarios"].items()
    steals = {name: s["steal"] for name, s in scenarios if s.get("steal") is not None}
    speeds = {name: s["host_speed_us"] for name, s in scenarios if s.get("host_speed_us")}
    redone = {name: s["run_again"] for name, s in scenarios if s.get("run_again")}
    # (what the list is, its separator, its items): one paragraph under the table each.
    for intro, separator, parts in (
        (
            "CPU time the hypervisor took from this VM while each scenario ran (`steal` in /proc/stat; "
            "it slows whichever kernel is measured then)",
            ", ",
            [f"{name} {share:.1%}" for name, share in steals.items()],
        ),
        (
            "The host's speed before each round, as microseconds for a fixed piece of pure Python "
            "(`harness.host_speed`; lower is faster, fastest-slowest round; a shared host can run it "
            "at two speeds for seconds at a time, which steal does not show)",
            ", ",
            [f"{name} {min(us):,.0f}-{max(us):,.0f}" for name, us in speeds.items()],
        ),
        (
            "Rounds run again because the hypervisor took more than the scenario's limit "
            "(`steal_limit`, every kernel's values of the round dropped)",
            "; ",
            [
                f"{name} " + ", ".join(f"round {r['round']} ({r['steal']:.1%})" for r in rounds)
                for name, rounds in redone.items()
            ],
        ),
    ):
        if parts:
            lines += ["", f"{intro}: {separator.join(parts)}."]
    if report["scenarios"] and len(kinds) > 1:
        lines += ["", *verdict.summary_lines(verdict.standings(report["scenarios"], kinds))]
    if report.get("encryption"):
        lines += ["", encryption.markdown(report["encryption"])]
    ceiling = report.get("raw_ceiling")
    if ceiling:
        lines += ["", "| raw pyzmq ceiling | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in ceiling.items()]
    return "\n".join(lines)


def watch_host_speed(seconds: float) -> None:
    """Print the host's speed every half second: the probe the runs take before each round."""
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        print(f"{time.strftime('%H:%M:%S')} {harness.host_speed():,.0f} us", flush=True)
        time.sleep(0.5)


def prepare_kernels(wanted: list[str] | None, cache: Path) -> tuple[list[peers.Installed], dict[str, str]]:
    """Each selected kernel's environment, ready; and why any peer is left out."""
    ready: list[peers.Installed] = []
    missing: dict[str, str] = {}
    for peer in peers.select(wanted):
        installed = peers.ensure(peer, cache)
        if installed.python is None:
            print(f"peer {peer.name} NOT INSTALLED, left out of this run: {installed.error}", flush=True)
            missing[peer.name] = installed.error
        else:
            ready.append(installed)
    return ready, missing


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    if args.host_speed is not None:
        watch_host_speed(args.host_speed)
        return 0
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.reps:
        sizes.reps = sizes.kernel_reps = args.reps
        sizes.flood_reps = min(args.reps, sizes.flood_reps)
    if args.flood_mb:
        sizes.flood_mb = args.flood_mb
    if args.flood_rate:
        sizes.flood_client_mb_s = args.flood_rate
    only = set(args.only or [])
    ready, missing = prepare_kernels(args.peer, args.peers_dir)
    if not ready or ready[0].peer is not peers.THREADLINE:
        print("threadline itself is not importable here", file=sys.stderr)
        return 2
    kinds = tuple(installed.peer.name for installed in ready)
    print("kernels: " + ", ".join(f"{i.peer.name} {i.version}" for i in ready), flush=True)
    root = harness.isolate_jupyter_dirs(ready)
    started = time.time()
    load_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}", flush=True)
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
            ticks = harness.cpu_ticks()
            raw = run_scenario(scenario, sizes, kinds, args.profile, gil=args.profile_gil)
            steal = harness.steal_share(ticks, harness.cpu_ticks())
            if steal is not None:
                print(f"  {scenario.name}: the hypervisor took {steal:.1%} of the CPU time", flush=True)
            summaries[scenario.name] = {**raw, "rows": summarise(scenario, raw, kinds), "steal": steal}
        if (not only or "encryption" in only) and set(kinds) >= encryption.KINDS:
            print("encryption: comms and round trips, plain and CurveZMQ", flush=True)
            encrypted = encryption.run(sizes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    standings = verdict.standings(summaries, kinds)
    if summaries or ceiling:
        print_table(summaries, ceiling, kinds, standings)
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
        "kernels": kinds,
        "versions": {i.peer.name: i.version for i in ready},
        "environments": {i.peer.name: i.note or i.python for i in ready},
        "not_installed": missing,
        "quick": args.quick,
        "sizes": vars(sizes),
        "raw_ceiling": ceiling,
        "scenarios": summaries,
        "standings": verdict.as_json(standings),
        "encryption": encrypted,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {args.out} (load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f})")
    for name, error in missing.items():
        print(f"peer {name} was not measured: {error}")
    for installed in ready:
        if installed.note:
            print(f"{installed.peer.name} ran from {installed.note}")
    # A peer that fails a scenario has that as its result (the table shows it);
    # the run itself fails when threadline does, or when the encryption runs do.
    failed = any(peers.THREADLINE.name in summary["failed"] for summary in summaries.values())
    failed = failed or bool(encrypted and encrypted["errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
