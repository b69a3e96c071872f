"""A pytest plugin for the peers' suites: one JSON line per test's final outcome.

Loaded with ``-p peer_outcomes`` by tests/peers/run_suites.py, which sets
``PEER_OUTCOMES`` to the file to append to. A test's outcome is the worst of its
phases: an error in setup or teardown is "error", a failing call "failed"; a
skip is "skipped"; expected failures keep pytest's "xfailed"/"xpassed".
"""

from __future__ import annotations

import json
import os

import pytest

_outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if hasattr(report, "wasxfail"):
        outcome = "xpassed" if report.passed else "xfailed"
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"
    elif report.skipped:
        outcome = "skipped"
    elif report.when == "call":
        outcome = "passed"
    else:
        return
    earlier = _outcomes.get(report.nodeid)
    if earlier in {"failed", "error"}:  # a teardown error after a failed call stays "failed"
        return
    _outcomes[report.nodeid] = outcome


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("PEER_OUTCOMES")
    if not path:
        return
    with open(path, "w", encoding="utf-8") as handle:
        for nodeid, outcome in _outcomes.items():
            handle.write(json.dumps({"nodeid": nodeid, "outcome": outcome}) + "\n")
