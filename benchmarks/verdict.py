"""Ahead, level or behind: threadline's standing against each peer, beyond the run's noise.

Theory of operation
-------------------
A ratio of medians from 3-15 repetitions moves from run to run with the host's
load: on this 2-core machine the same kernel's p95 thread-output latency has
come out 0.97x and 1.14x xeus-python's in two runs an hour apart. So "behind"
in the results must mean behind by more than the run's own spread, and the
run says which figures are: for each metric and peer, a percentile bootstrap
of the ratio of medians. Each of the ``RESAMPLES`` resamples draws the
repetitions again with replacement and takes the ratio of the two medians;
the interval is the middle ``COVERAGE`` of those ratios. Repetitions are
interleaved (repetition *i* of every kernel runs in the same round), so when
both kernels have every repetition the draw is paired -- the same rounds for
both, which keeps a load spike that hit a whole round from counting as a
difference between kernels; otherwise each kernel's repetitions are drawn on
their own. The seed is fixed: a results file always gives the same verdict.

A figure is *behind* when its whole interval is on the wrong side of 1 (above
for lower-is-better figures, below for higher-is-better), *ahead* when it is
wholly on the right side, and *level* otherwise. A peer's median of zero
(nothing lost) against a non-zero one of threadline's is behind, with an
infinite ratio; zero against zero is level.

With few repetitions a bootstrap sees little of the spread: two values per
kernel give at most three distinct resampled medians, and a pair of runs
that both happen to fall one way is "behind" with an interval that excludes
1 (one of the 50 MB comm sends came out 1.06 (1.01-1.12)x ipykernel's from
2 repetitions each, level in the runs before). So a comparison needs at
least ``MIN_REPETITIONS`` values of each kernel to be called anything but
level; with 3 an interval can still only span what three values give, so
such a scenario is called level more readily. The verdict is about what
this run shows, not what more runs might.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

from benchmarks.peers import THREADLINE

#: Resamples per interval, and the share of them the interval covers.
RESAMPLES = 2000
COVERAGE = 0.95
#: Fewer values than this of either kernel: level, whatever the interval says.
MIN_REPETITIONS = 3


@dataclass(frozen=True)
class Standing:
    """threadline against one peer on one metric."""

    scenario: str
    metric: str
    peer: str
    ratio: float
    low: float
    high: float
    verdict: str  # "ahead", "level" or "behind"
    wrong_side: bool  # the ratio itself is on the losing side of 1


def _ratio(ours: float, theirs: float) -> float:
    if theirs:
        return ours / theirs
    return math.inf if ours else 1.0


def ratio_interval(
    ours: Sequence[float], theirs: Sequence[float], *, paired: bool, seed: int = 0
) -> tuple[float, float]:
    """The ``COVERAGE`` percentile-bootstrap interval of median(ours) / median(theirs)."""
    rng = random.Random(seed)
    ratios: list[float] = []
    for _ in range(RESAMPLES):
        if paired:
            picks = [rng.randrange(len(ours)) for _ in ours]
            a = [ours[i] for i in picks]
            b = [theirs[i] for i in picks]
        else:
            a = rng.choices(ours, k=len(ours))
            b = rng.choices(theirs, k=len(theirs))
        ratios.append(_ratio(median(a), median(b)))
    ratios.sort()
    tail = (1.0 - COVERAGE) / 2
    return ratios[int(tail * RESAMPLES)], ratios[math.ceil((1.0 - tail) * RESAMPLES) - 1]


def judge(ratio: float, low: float, high: float, better: str) -> tuple[str, bool]:
    """(verdict, wrong_side) for an interval, given which way is better."""
    if better == "higher":
        return ("ahead" if low > 1 else "behind" if high < 1 else "level"), ratio < 1
    return ("ahead" if high < 1 else "behind" if low > 1 else "level"), ratio > 1


def _series(values: list[dict[str, float]], metric: str) -> list[float]:
    return [v.get(metric, math.nan) for v in values]


def standings(scenarios: dict[str, Any], kinds: Sequence[str]) -> list[Standing]:
    """Every compared metric of every scenario, against every peer.

    ``scenarios`` is the run's per-scenario summary (``rows`` and the raw
    ``values`` per kernel), as ``benchmarks.run`` writes it.
    """
    out: list[Standing] = []
    for name, summary in scenarios.items():
        values = summary.get("values") or {}
        for row in summary["rows"]:
            if row["better"] == "info":
                continue
            ours_all = _series(values.get(THREADLINE.name, []), row["metric"])
            for peer in (k for k in kinds if k != THREADLINE.name):
                theirs_all = _series(values.get(peer, []), row["metric"])
                ours = [x for x in ours_all if not math.isnan(x)]
                theirs = [x for x in theirs_all if not math.isnan(x)]
                if not ours or not theirs:
                    continue
                paired = len(ours) == len(ours_all) == len(theirs) == len(theirs_all)
                ratio = _ratio(median(ours), median(theirs))
                low, high = ratio_interval(ours, theirs, paired=paired)
                verdict, wrong_side = judge(ratio, low, high, row["better"])
                if min(len(ours), len(theirs)) < MIN_REPETITIONS:
                    verdict = "level"
                out.append(Standing(name, row["metric"], peer, ratio, low, high, verdict, wrong_side))
    return out


def as_json(found: list[Standing]) -> list[dict[str, Any]]:
    return [asdict(s) for s in found]


def _num(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"


def summary_lines(found: list[Standing]) -> list[str]:
    """Markdown: the counts, then every figure behind, then every level one on the losing side."""
    counts = {v: sum(s.verdict == v for s in found) for v in ("ahead", "level", "behind")}
    same = sum(s.low == s.high == 1.0 for s in found)
    lines = [
        f"Threadline against each peer, metric by metric ({len(found)} comparisons; ratio of "
        f"medians with its {COVERAGE:.0%} bootstrap interval over the repetitions, "
        "benchmarks/verdict.py): "
        f"**{counts['ahead']} ahead, {counts['level']} level, {counts['behind']} behind** "
        f"({same} of the level ones identical in every repetition, such as nothing lost on either side).",
    ]
    for title, chosen in (
        ("Behind (the whole interval on the losing side of 1):", [s for s in found if s.verdict == "behind"]),
        (
            "Level, with the ratio on the losing side of 1 (the interval includes 1, "
            f"or fewer than {MIN_REPETITIONS} repetitions):",
            [s for s in found if s.verdict == "level" and s.wrong_side],
        ),
    ):
        lines += ["", title, ""]
        lines += [
            f"* {s.scenario} `{s.metric}` vs {s.peer}: {_num(s.ratio)} ({_num(s.low)}-{_num(s.high)})"
            for s in chosen
        ] or ["* none"]
    return lines
