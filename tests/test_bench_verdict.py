"""benchmarks/verdict.py: when the suite may call threadline ahead of or behind a peer.

The bootstrap is checked on series whose answer is known: clearly apart, drawn
from the same values, apart only within each interleaved round (where pairing
is what separates them), and the zero-against-zero counts of lost messages.
"""

from __future__ import annotations

import math
from typing import Any

from benchmarks import verdict

LOW = [1.00, 1.02, 1.05, 0.98, 1.01, 1.03, 0.99]
HIGH = [2.00, 2.05, 1.97, 2.10, 2.02, 1.99, 2.04]


def _summary(metric: str, better: str, ours: list[float], theirs: list[float]) -> dict[str, Any]:
    return {
        "rows": [{"metric": metric, "better": better}, {"metric": "samples", "better": "info"}],
        "values": {
            "threadline": [{metric: x, "samples": 1.0} for x in ours],
            "xeus-python": [{metric: x, "samples": 1.0} for x in theirs],
        },
    }


def _one(metric: str, better: str, ours: list[float], theirs: list[float]) -> verdict.Standing:
    found = verdict.standings({"s": _summary(metric, better, ours, theirs)}, ("threadline", "xeus-python"))
    assert [s.metric for s in found] == [metric], "info metrics are not judged"
    return found[0]


def test_clearly_apart_is_ahead_or_behind_by_direction() -> None:
    fast = _one("median_ms", "lower", LOW, HIGH)
    assert fast.verdict == "ahead" and fast.high < 1 and not fast.wrong_side
    slow = _one("median_ms", "lower", HIGH, LOW)
    assert slow.verdict == "behind" and slow.low > 1 and slow.wrong_side
    assert _one("msg_s", "higher", HIGH, LOW).verdict == "ahead"
    assert _one("msg_s", "higher", LOW, HIGH).verdict == "behind"


def test_the_same_values_are_level_whatever_the_order() -> None:
    spread = [0.8, 1.4, 0.9, 1.1, 2.0, 1.0, 1.2]
    found = _one("p95_ms", "lower", spread, list(reversed(spread)))
    assert found.verdict == "level"
    assert found.low < 1 < found.high
    assert math.isclose(found.ratio, 1.0)


def test_pairing_keeps_a_round_wide_load_spike_from_hiding_a_difference() -> None:
    # Each interleaved round has its own load (1x .. 30x); threadline is 0.9x
    # the peer within every round. Drawn apart, the rounds' spread swamps it.
    rounds = [1.0, 3.0, 30.0, 2.0, 10.0, 1.5, 5.0]
    ours = [0.9 * r for r in rounds]
    paired = verdict.ratio_interval(ours, rounds, paired=True)
    unpaired = verdict.ratio_interval(ours, rounds, paired=False)
    assert all(math.isclose(end, 0.9) for end in paired)
    assert unpaired[0] < 1 < unpaired[1]
    assert _one("median_ms", "lower", ours, rounds).verdict == "ahead"


def test_a_missing_repetition_falls_back_to_unpaired_draws() -> None:
    found = verdict.standings(
        {
            "s": {
                "rows": [{"metric": "median_ms", "better": "lower"}],
                "values": {
                    "threadline": [{"median_ms": x} for x in LOW],
                    "xeus-python": [{"median_ms": x} for x in HIGH[:5]] + [{}],  # one failed repetition
                },
            }
        },
        ("threadline", "xeus-python"),
    )
    assert len(found) == 1 and found[0].verdict == "ahead"


def test_two_repetitions_are_too_few_to_call_either_way() -> None:
    found = _one("seconds", "lower", [0.0772, 0.0938], [0.0768, 0.0841])  # both a little slower
    assert found.low > 1 and found.verdict == "level" and found.wrong_side
    assert _one("seconds", "lower", LOW[:2], HIGH[:2]).verdict == "level"
    assert _one("seconds", "lower", LOW[:3], HIGH[:3]).verdict == "ahead"


def test_counts_of_zero() -> None:
    assert _one("lost", "lower", [0.0] * 5, [0.0] * 5).verdict == "level"
    lost = _one("lost", "lower", [1.0, 3.0, 2.0], [0.0, 0.0, 0.0])
    assert lost.verdict == "behind" and math.isinf(lost.ratio)
    # One repetition of three lost nothing either: a draw can be level.
    assert _one("lost", "lower", [0.0, 3.0, 2.0], [0.0, 0.0, 0.0]).verdict == "level"
    assert _one("lost", "lower", [0.0] * 3, [100.0, 50.0, 70.0]).verdict == "ahead"


def test_the_summary_names_what_is_behind_and_what_is_level_on_the_losing_side() -> None:
    found = verdict.standings(
        {
            "startup_parts": _summary("imports_s", "lower", HIGH, LOW),
            "latency": _summary("p95_ms", "lower", [1.0, 1.5, 0.9, 1.2, 1.1], [1.1, 0.9, 1.0, 1.3, 1.0]),
            "comms": _summary("msg_s", "higher", HIGH, LOW),
        },
        ("threadline", "xeus-python"),
    )
    text = "\n".join(verdict.summary_lines(found))
    assert "**1 ahead, 1 level, 1 behind**" in text
    behind, level = text.split("Level, with")
    assert "startup_parts `imports_s` vs xeus-python" in behind
    assert "latency `p95_ms` vs xeus-python" in level
    assert "comms" not in text


def test_nothing_behind_says_so() -> None:
    found = verdict.standings(
        {"comms": _summary("msg_s", "higher", HIGH, LOW)}, ("threadline", "xeus-python")
    )
    assert verdict.summary_lines(found).count("* none") == 2


def test_a_time_is_compared_only_for_a_complete_result() -> None:
    """The children cells' ``s to idle``: a peer whose cell went idle sooner because
    its children's lines were lost is not judged faster; one whose cell never went
    idle counts the time given up after."""
    from benchmarks.workloads import CHILD_METRICS, child_figures

    def counts(whole: float, to_idle: float) -> dict[str, float]:
        return {key: 0.0 for key in CHILD_METRICS} | {"whole": whole, "s to idle": to_idle}

    complete = [child_figures(counts(800, t), 800, 30.0) for t in (0.050, 0.044, 0.036)]
    lossy = [child_figures(counts(0, t), 800, 30.0) for t in (0.031, 0.031, 0.025)]
    hung = [child_figures(counts(0, math.nan), 800, 30.0) for _ in range(3)]
    assert [f["s to idle"] for f in complete] == [0.050, 0.044, 0.036]
    assert all(math.isnan(f["s to idle"]) for f in lossy)
    assert [f["s to idle"] for f in hung] == [30.0, 30.0, 30.0]

    def judged(theirs: list[dict[str, float]]) -> dict[str, str]:
        summary = {
            "rows": [{"metric": "s to idle", "better": "lower"}, {"metric": "whole", "better": "higher"}],
            "values": {"threadline": complete, "xeus-python": theirs},
        }
        found = verdict.standings({"children": summary}, ("threadline", "xeus-python"))
        return {s.metric: s.verdict for s in found}

    assert judged(lossy) == {"whole": "ahead"}  # no time to compare: not "behind"
    assert judged(hung) == {"s to idle": "ahead", "whole": "ahead"}
    # Without the rule the lossy peer's sooner idle would count against threadline.
    raw = [counts(0, t) for t in (0.031, 0.031, 0.025)]
    assert judged(raw)["s to idle"] == "behind"


def test_a_round_the_hypervisor_slowed_is_run_again(monkeypatch: Any) -> None:
    """``benchmarks.run``: a round of a scenario with a ``steal_limit`` during which the
    hypervisor took more is dropped for every kernel and run again -- at most as many
    times as there are rounds; a scenario without a limit keeps every round."""
    from benchmarks import harness, run
    from benchmarks.scenarios import LOWER, Metric, Scenario, Sizes

    def host(steal_per_round: list[float]) -> None:
        """cpu_ticks as the host gives them: 1000 ticks a round, this share stolen."""
        readings = iter(range(2 * len(steal_per_round)))
        total = {"steal": 0, "all": 0}

        def cpu_ticks() -> tuple[int, int]:
            index = next(readings)
            if index % 2:  # the reading at a round's end
                total["steal"] += round(1000 * steal_per_round[index // 2])
                total["all"] += 1000
            return total["steal"], total["all"]

        monkeypatch.setattr(harness, "cpu_ticks", cpu_ticks)

    calls: list[str] = []

    def measure(kind: str, sizes: Sizes) -> dict[str, float]:
        calls.append(kind)
        return {"ms": float(len(calls))}

    def scenario(limit: float | None) -> Scenario:
        metrics = [Metric("ms", "ms", LOWER)]
        return Scenario("s", "s", metrics, measure, "own", lambda sizes: 3, steal_limit=limit)

    kinds = ("threadline", "xeus-python")
    host([0.0, 0.10, 0.01, 0.0])
    raw = run.run_scenario(scenario(0.03), Sizes(), kinds)
    assert raw["run_again"] == [{"round": 2, "steal": 0.10}]
    assert len(calls) == 8  # 4 rounds of 2 kernels
    # Round 2 (calls 3-4) is gone for both kernels; rounds are still paired by index.
    assert [v["ms"] for v in raw["values"]["threadline"]] == [1.0, 6.0, 7.0]
    assert [v["ms"] for v in raw["values"]["xeus-python"]] == [2.0, 5.0, 8.0]

    calls.clear()
    host([0.2] * 6)
    raw = run.run_scenario(scenario(0.03), Sizes(), kinds)
    assert len(raw["run_again"]) == 3 and len(raw["values"]["threadline"]) == 3  # a host that never calms

    calls.clear()
    host([0.0, 0.10, 0.0])
    raw = run.run_scenario(scenario(None), Sizes(), kinds)
    assert "run_again" not in raw and len(raw["values"]["threadline"]) == 3
