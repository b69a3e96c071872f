"""The decoder's fuzz target (fuzz/fuzz_decode.py), run bounded in CI.

* The seed corpus reaches every outcome of ``Session.decode`` (acceptance and
  each refusal reason), so the fuzzer starts past the first checks.
* Hypothesis drives the same target (runs even without atheris).
* atheris fuzzes it, coverage-guided, for THREADLINE_FUZZ_SECONDS (20 s by
  default) and must find no failing input; a second run with a planted bug
  shows that a failure in the target really fails the run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threadline.protocol import RemoteProtocolError, Session

FUZZ_DIR = Path(__file__).resolve().parent.parent / "fuzz"
CORPUS = FUZZ_DIR / "corpus"
FUZZ_SECONDS = int(os.environ.get("THREADLINE_FUZZ_SECONDS", "20"))
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None
needs_atheris = pytest.mark.skipif(
    not HAVE_ATHERIS,
    reason="atheris is not installed (pip install atheris; Linux x86_64 wheels): "
    "the coverage-guided run is skipped, the hypothesis run below still drives the target",
)


def _load_target() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_decode", FUZZ_DIR / "fuzz_decode.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


target = _load_target()


def test_seed_corpus_reaches_every_outcome() -> None:
    """Each seed keeps the promise, and together they reach acceptance and every refusal reason."""
    seeds = sorted(CORPUS.iterdir())
    assert 5 <= len(seeds) <= 50 and all(p.stat().st_size < 4096 for p in seeds)
    outcomes: set[str] = set()
    for path in seeds:
        data = path.read_bytes()
        target.one_input(data)
        control, frames = target.parse_input(data)
        session = Session(target.KEY, max_message_size=target.SMALL_LIMIT)
        signed = target.resign(frames, session) if control & 1 else frames
        for _ in range(2):  # the second decode of an accepted message is a replay
            try:
                session.decode(signed)
                outcomes.add("accepted")
            except RemoteProtocolError as exc:
                outcomes.add(exc.reason)
    assert outcomes == {"accepted", *target.REASONS}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(sorted(CORPUS.iterdir())),
    control=st.integers(0, 255),
    edits=st.lists(st.tuples(st.integers(0, 600), st.binary(max_size=6)), max_size=4),
)
def test_hypothesis_drives_the_target(seed: Path, control: int, edits: list[tuple[int, bytes]]) -> None:
    """Seeds with a random control byte and random byte edits keep the decoder's promise."""
    data = bytearray(seed.read_bytes())
    data[0] = control
    for position, replacement in edits:
        at = min(position, len(data))
        data[at : at + len(replacement)] = replacement
    target.one_input(bytes(data))


def _run_fuzzer(tmp_path: Path, *options: str, planted: bool = False) -> subprocess.CompletedProcess[str]:
    new_inputs = tmp_path / "new"
    new_inputs.mkdir()
    env = {**os.environ, "THREADLINE_FUZZ_PLANTED_BUG": "1" if planted else "0"}
    return subprocess.run(
        [
            sys.executable,
            str(FUZZ_DIR / "fuzz_decode.py"),
            f"-dict={FUZZ_DIR / 'decode.dict'}",
            f"-artifact_prefix={tmp_path}/",
            "-rss_limit_mb=1024",
            *options,
            str(new_inputs),
            str(CORPUS),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=FUZZ_SECONDS + 120,
        check=False,
    )


def _runs(output: str) -> int:
    """How many inputs libFuzzer ran ("Done N runs in S second(s)")."""
    for line in output.splitlines():
        if line.startswith("Done ") and " runs in " in line:
            return int(line.split()[1])
    raise AssertionError(f"libFuzzer did not finish:\n{output[-3000:]}")


@needs_atheris
@pytest.mark.slow
def test_atheris_finds_no_failing_input(tmp_path: Path) -> None:
    """THREADLINE_FUZZ_SECONDS of coverage-guided fuzzing: no exception but RemoteProtocolError."""
    result = _run_fuzzer(tmp_path, f"-max_total_time={FUZZ_SECONDS}")
    output = result.stdout + result.stderr
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "oom-", "timeout-")))
    assert result.returncode == 0 and not crashes, f"{crashes}\n{output[-4000:]}"
    runs = _runs(output)
    print(f"atheris: {runs} runs in {FUZZ_SECONDS}s, no failure")
    assert runs > 100 * FUZZ_SECONDS  # it really ran (about 2,000 inputs a second here)


@needs_atheris
def test_atheris_reports_a_planted_bug(tmp_path: Path) -> None:
    """With a bug planted in the target, the same run fails and saves the input: the check above can fail."""
    result = _run_fuzzer(tmp_path, "-runs=2000", planted=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "planted bug: the harness must report this" in output
    assert any(p.name.startswith("crash-") for p in tmp_path.iterdir())
