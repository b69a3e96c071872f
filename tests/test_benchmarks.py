"""The benchmark suite itself, end to end: it must run, and say the truth about losses.

``benchmarks/`` is where threadline's speed is proven, so it must not rot between
the full runs that feed the README (16-20 minutes; not for CI). Here it runs the
way a user runs it -- ``python -m benchmarks.run --quick`` in a subprocess, with
ipykernel as the one peer, each kernel from its own environment (built from
PyPI on first use and kept in the benchmark's cache) -- and the test checks
what the run wrote: every scenario ran for every kernel without an error,
every metric is there, and threadline's correctness counters (lost, broken,
duplicated, out-of-order messages and lines; intact large outputs; children's
output; notebooks that ran) are what the README claims. No time is asserted:
the figures themselves are for ``benchmarks/`` to compare, side by side.

The harness's safety net is checked on its own: a kernel that stops answering
(SIGSTOP) is given up on after ``silence`` seconds, with an error that says so.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from benchmarks.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent

#: The quick run takes ~100 s here; the peers' first build adds a minute or two.
RUN_TIMEOUT = 15 * 60

PEER = "ipykernel"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--no-raw", "--peer", PEER, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    log = done.stdout[-6000:] + done.stderr[-4000:]
    assert done.returncode == 0, f"the quick run failed (exit {done.returncode}):\n{log}"
    results: dict[str, Any] = json.loads(out.read_text())
    results["_log"] = log
    results["_path"] = str(out)
    return results


def _values(results: dict[str, Any], scenario: str, kind: str) -> list[dict[str, float]]:
    values: list[dict[str, float]] = results["scenarios"][scenario]["values"][kind]
    assert values, f"{scenario}: no repetition of {kind} ran\n{results['_log']}"
    return values


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_every_scenario_runs_for_every_kernel_and_reports_every_metric(quick_run: dict[str, Any]) -> None:
    assert quick_run["quick"] is True
    kinds = ["threadline"]
    if PEER in quick_run["kernels"]:
        kinds.append(PEER)
    else:  # no package index here: threadline alone still has to run
        print(f"{PEER} not installed: {quick_run['not_installed'].get(PEER)}")
    for scenario in SCENARIOS:
        ran = quick_run["scenarios"].get(scenario.name)
        assert ran is not None, f"scenario {scenario.name} is missing from the results"
        assert ran["errors"] == [], f"{scenario.name}: {ran['errors']}"
        for kind in kinds:
            for rep in _values(quick_run, scenario.name, kind):
                # tl_*: the kernel's own start-up marks, which only threadline reports.
                wanted = [
                    m.name for m in scenario.metrics if kind == "threadline" or not m.name.startswith("tl_")
                ]
                missing = [name for name in wanted if name not in rep]
                assert not missing, f"{scenario.name} {kind}: no {missing}"
        steal = ran["steal"]  # the host's share of CPU time taken while the scenario ran
        speeds = ran["host_speed_us"]  # the host's speed before each round (rounds run again too)
        assert len(speeds) >= len(_values(quick_run, scenario.name, "threadline")), speeds
        assert all(math.isfinite(us) and us > 0 for us in speeds), speeds
        assert (steal is None) if not Path("/proc/stat").exists() else (0.0 <= steal <= 1.0), steal
    encryption = quick_run["encryption"]
    assert encryption is not None and encryption["errors"] == [], encryption


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_threadline_loses_breaks_and_misorders_nothing_in_any_scenario(quick_run: dict[str, Any]) -> None:
    def each(scenario: str) -> list[dict[str, float]]:
        return _values(quick_run, scenario, "threadline")

    for rep in each("comms"):
        assert rep["throughput"] > 0
        counts = (rep["lost"], rep["duplicated"], rep["out_of_order"], rep["bad_signature"])
        assert counts == (0, 0, 0, 0), rep
        assert rep["idle_seen"] == 1
    for scenario in ("print_main", "print_threads"):
        for rep in each(scenario):
            counts = (rep["broken_lines"], rep["lost_lines"], rep["duplicated_lines"], rep["bad_signature"])
            assert counts == (0, 0, 0, 0), (scenario, rep)
    for rep in each("flood"):
        assert (rep["lost_lines"], rep["duplicated_lines"]) == (0, 0), rep
        assert rep["received_mb"] == pytest.approx(quick_run["sizes"]["flood_mb"], rel=0.01), rep
    for scenario in ("big_comm", "big_image"):
        for rep in each(scenario):
            assert rep["intact"] == 1, (scenario, rep)
    for rep in each("children"):
        for way in {key.rsplit(" ", 1)[0] for key in rep if key.endswith(" whole")}:
            bad = {k: rep[k] for k in (f"{way} fragments", f"{way} missing chars", f"{way} other cell")}
            assert set(bad.values()) == {0}, (way, bad)
            assert rep[f"{way} whole"] > 0, (way, rep)
    for rep in each("notebooks"):
        failed = {key: value for key, value in rep.items() if key.endswith("_failed") and value}
        assert not failed, failed
    for rep in each("latency"):
        assert rep["samples"] > 0 and math.isfinite(rep["median_ms"]), rep
    for scenario in ("roundtrip", "startup", "startup_client", "startup_parts"):
        for rep in each(scenario):
            assert all(math.isfinite(value) and value > 0 for value in rep.values()), (scenario, rep)


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_the_results_render_as_the_readme_table(quick_run: dict[str, Any]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--markdown", quick_run["_path"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    table = done.stdout
    for scenario in SCENARIOS:
        for metric in scenario.metrics:
            row = f"| {scenario.name} | {metric.name} ("
            assert row in table, f"{scenario.name} {metric.name} is not in the table"
    assert "The host's speed before each round" in table
    if PEER in quick_run["kernels"]:
        assert "tl/ipk" in table
        assert "Threadline against each peer, metric by metric" in table
        judged = {(s["scenario"], s["metric"]) for s in quick_run["standings"] if s["peer"] == PEER}
        compared = {
            (sc.name, m.name)
            for sc in SCENARIOS
            for m in sc.metrics
            if m.better != "info"
            and all(_reported(quick_run, sc.name, kind, m.name) for kind in ("threadline", PEER))
        }
        assert compared and judged == compared, f"judged against {PEER}: {sorted(judged ^ compared)}"


def _reported(results: dict[str, Any], scenario: str, kind: str, metric: str) -> bool:
    """Whether some repetition gave a value (a notebook that fails on a peer gives NaN)."""
    return any(not math.isnan(rep.get(metric, math.nan)) for rep in _values(results, scenario, kind))


#: Started in a subprocess: the harness points Jupyter's directories at a temp
#: dir through the environment, which must not leak into the test process.
SILENT_KERNEL = textwrap.dedent(
    """
    import os, signal
    from benchmarks import harness, peers
    from benchmarks.harness import KernelHandle, collect_run

    harness.isolate_jupyter_dirs([peers.development()])
    handle = KernelHandle("threadline")
    handle.start()
    handle.wait_ready()
    handle.execute("pass")
    os.kill(handle.pid, signal.SIGSTOP)
    try:
        collect_run(
            handle, "print(1)", is_interesting=lambda f: True, enough=lambda: True, silence=2.0, timeout=60.0
        )
    except RuntimeError as exc:
        print(f"GAVE UP: {exc}")
    finally:
        os.kill(handle.pid, signal.SIGCONT)
        handle.close()
    """
)


@pytest.mark.timeout(120)
def test_the_harness_gives_up_on_a_kernel_that_stops_answering() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SILENT_KERNEL],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    gave_up = re.search(r"GAVE UP: threadline: no reply and no output in (\d+) s", done.stdout)
    assert gave_up is not None, done.stdout + done.stderr
    # Which limit fired, not how fast: the 2 s of silence, not the 60 s timeout.
    assert int(gave_up.group(1)) < 60, done.stdout


def test_profiling_without_py_spy_is_refused_up_front(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--profile`` with no py-spy would run every repetition unprofiled and say nothing."""
    from benchmarks import harness, run

    monkeypatch.setattr(harness, "py_spy", lambda: None)
    with pytest.raises(SystemExit) as exited:
        run.parse_args(["--profile", "profiles"])
    assert exited.value.code == 2
    assert "--profile needs py-spy" in capsys.readouterr().err
    monkeypatch.setattr(harness, "py_spy", lambda: "/usr/bin/py-spy")
    assert run.parse_args(["--profile", "profiles"]).profile is not None


@pytest.mark.timeout(60)
def test_the_host_speed_probe_prints_a_figure_and_runs_no_kernel() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--host-speed", "0.1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # One line per half second: "HH:MM:SS N us", N the probe's microseconds.
    first = done.stdout.splitlines()[0].split()
    assert len(first) == 3 and first[2] == "us", done.stdout
    assert float(first[1].replace(",", "")) > 0, done.stdout
    assert "kernels:" not in done.stdout, done.stdout
