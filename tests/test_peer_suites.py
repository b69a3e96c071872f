"""ipykernel's and nbclient's own test suites, run against threadline as ``python3``.

tests/peers/run_suites.py does the work (its docstring says how); this test runs
it in CI and fails listing every unexpected outcome: a failure not in
tests/peers/expected_failures.toml, a "deliberate" difference that now passes, or
a stale entry. Pending failures that now pass are printed, not failed on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent / "peers" / "run_suites.py"

#: One file of a suite, including the peers venv's first build, on the 2-core CI machine.
SUITES_TIMEOUT = 20 * 60

#: Each file runs as its own test: a failure names its file, and each run stays short.
SUITE_FILES = [
    ("ipykernel", "tests/test_message_spec.py"),
    ("ipykernel", "tests/test_kernel.py"),
    ("ipykernel", "tests/test_subshells.py"),
    ("ipykernel", "tests/test_async.py"),
    ("ipykernel", "tests/test_debugger.py"),
    ("nbclient", "tests/test_client.py"),
]


@pytest.mark.slow
@pytest.mark.timeout(SUITES_TIMEOUT + 60)
@pytest.mark.parametrize(
    ("suite", "test_file"),
    [pytest.param(*item, id=f"{item[0]}-{Path(item[1]).stem}") for item in SUITE_FILES],
)
def test_peer_suite_fails_only_where_expected(suite: str, test_file: str, tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--suite",
            suite,
            "--test-file",
            test_file,
            "--json",
            str(summary_path),
        ],
        capture_output=True,
        text=True,
        timeout=SUITES_TIMEOUT,
        check=False,
    )
    print(done.stdout[-5000:])
    if not summary_path.exists():
        pytest.fail(
            f"the runner did not finish (exit {done.returncode}):\n{done.stdout[-8000:]}{done.stderr}"
        )
    verdict = json.loads(summary_path.read_text())[suite]["verdict"]
    problems = [
        *(f"unexpected failure: {item}" for item in verdict["unexpected"]),
        *(f"deliberate difference now passes: {item}" for item in verdict["deliberate_passing"]),
        *(f"listed but did not run: {item}" for item in verdict["missing"]),
    ]
    counts = verdict["counts"]
    assert counts.get("passed", 0) > 0, (
        f"no test of {suite}'s {test_file} passed: {counts}\n{done.stdout[-8000:]}"
    )
    assert not problems, f"{suite} {test_file} {counts}:\n" + "\n".join(problems)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr
