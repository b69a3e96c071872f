"""Run ipykernel's and nbclient's own test suites against threadline as ``python3``.

    python tests/peers/run_suites.py [--suite ipykernel|nbclient] [--test-file tests/test_x.py]
                                     [-k EXPR] [--json PATH] [--kernel-python PY] [--reference]

(run it with the project's ``.venv/bin/python``; ``--reference`` runs the same
suites against ipykernel itself, to tell the suites' own failures from ours.)

Theory of operation
-------------------
The strongest evidence that threadline is a drop-in for ipykernel is the test
suite ipykernel wrote for itself, and the one nbclient (and so papermill and
``jupyter execute``) wrote against the ``python3`` kernel. Both releases'
source distributions carry their tests. This script:

1. builds a separate virtual environment, ``.peers/venv``, holding exactly the
   pinned releases under test and what *their* suites need (pytest-asyncio,
   flaky, trio, nbconvert, ...). It is separate from the project's ``.venv``
   on purpose: the suites must import the very versions whose tests they are
   (ipykernel 7.4.0, nbclient 0.11.0), and their pytest plugins (pytest-asyncio)
   must not load into threadline's own test run, which turns every warning into
   an error. A stamp file keeps the venv while the requirements are unchanged.
2. downloads both sdists with that venv's pip into ``.peers/downloads`` (a
   cache, git-ignored) and unpacks them into ``.peers/src``. ``pip download``
   of an sdist prepares its metadata, so the build backend (hatchling) and
   ipykernel's build hook's import of jupyter_client must be there: they are.
3. writes a kernelspec named ``python3`` whose argv starts threadline with the
   *project's* interpreter (the one running this script, so the kernel under
   test is the threadline that ``dev.py`` installed) into a private Jupyter
   path, and points JUPYTER_PATH / JUPYTER_DATA_DIR / JUPYTER_RUNTIME_DIR /
   JUPYTER_CONFIG_DIR / IPYTHONDIR at a temporary directory. ipykernel's wheel
   installs its own ``python3`` spec into the peers venv's prefix; JUPYTER_PATH
   comes first in jupyter_client's search, and the script checks that the spec
   jupyter_client resolves for ``python3`` (and for nbclient's ``python``) is
   threadline's before running anything.
4. runs each suite's selected test files with pytest from the unpacked sdist
   (so their own pytest configuration applies), with a small plugin
   (``peer_outcomes.py``) that writes one JSON line per test outcome.
5. compares the outcomes with ``expected_failures.toml``: every test that
   fails or errors must be listed there. A "deliberate" entry (a test of
   ipykernel's private internals, or of a choice where threadline deliberately
   differs, each documented in docs/compatibility.md) that passes is an error;
   a "pending" entry (work another helper is doing now) that passes is only
   reported, so their fixes never break CI. Listed tests of the files that
   ran but that no longer exist are errors too, so the list stays honest.

The exit status is 0 when nothing unexpected happened; ``tests/test_peer_suites.py``
runs this script inside ``python3 dev.py test``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import venv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = ROOT / ".peers"
PEERS_VENV = CACHE / "venv"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
DOWNLOADS = CACHE / "downloads"
SOURCES = CACHE / "src"
EXPECTED = HERE / "expected_failures.toml"

#: What the peers venv holds: the releases under test and their suites' needs.
REQUIREMENTS = (
    "ipykernel==7.4.0",
    "nbclient==0.11.0",
    "hatchling",  # both sdists' build backend: `pip download` prepares their metadata
    "pytest>=9.0.1,<10",  # nbclient wants >=9.0.1, ipykernel <10
    "pytest-asyncio>=1.3.0",  # both suites' configuration (asyncio_mode) and async tests
    "pytest-timeout",  # ipykernel's configuration sets `timeout`
    "pytest-cov",  # ipykernel's test_subshells reads the --cov option
    "flaky",
    "psutil>=5.7",  # ipykernel's test_kernel
    "trio",  # ipykernel's test_async runs its trio case only when trio imports
    "nbconvert>=7.1.0",  # nbclient's test_client (strip_ansi)
    "testpath",
    "xmltodict",
    "ipywidgets",  # nbclient's widget notebooks
    "nbformat",
)


@dataclass(frozen=True)
class Suite:
    name: str
    release: str  # name==version on PyPI
    test_files: tuple[str, ...]
    pytest_args: tuple[str, ...] = ()

    @property
    def source(self) -> Path:
        return SOURCES / self.release.replace("==", "-")


SUITES = (
    Suite(
        "ipykernel",
        "ipykernel==7.4.0",
        (
            "tests/test_message_spec.py",
            "tests/test_kernel.py",
            "tests/test_subshells.py",
            "tests/test_async.py",
            "tests/test_debugger.py",
        ),
        # ipykernel's own 30 s per test assumes a machine to itself; this one is shared.
        ("--timeout=180",),
    ),
    Suite("nbclient", "nbclient==0.11.0", ("tests/test_client.py",), ("--timeout=300",)),
)

FAILED = frozenset({"failed", "error"})


def say(text: str) -> None:
    print(text, flush=True)


def pip(*args: str | os.PathLike[str]) -> None:
    """Run the peers venv's pip; show its output only if it fails."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_ROOT_USER_ACTION="ignore")
    argv = [str(PEERS_PYTHON), "-m", "pip", *map(str, args)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        say(done.stdout[-10000:] + done.stderr[-10000:])
        raise SystemExit(f"failed ({done.returncode}): {' '.join(argv)}")


# -- the peers' environment ------------------------------------------------------------


def ensure_peers_venv() -> None:
    stamp_path = PEERS_VENV / ".threadline-peers-stamp"
    stamp = hashlib.sha256(f"{sys.version}\n{REQUIREMENTS}".encode()).hexdigest()
    if PEERS_PYTHON.exists() and stamp_path.exists() and stamp_path.read_text() == stamp:
        return
    under_test = ", ".join(REQUIREMENTS[:2])
    say(f"peers: building {PEERS_VENV.relative_to(ROOT)} ({under_test} and their suites' needs)")
    shutil.rmtree(PEERS_VENV, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(PEERS_VENV)
    pip("install", "-q", *REQUIREMENTS)
    stamp_path.write_text(stamp)


def ensure_source(suite: Suite) -> Path:
    """The unpacked sdist of ``suite``'s release, downloaded once into the cache."""
    if (suite.source / "tests").is_dir():
        return suite.source
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    name, version = suite.release.split("==")
    archive = DOWNLOADS / f"{name}-{version}.tar.gz"
    if not archive.exists():
        say(f"peers: downloading the {suite.release} sdist")
        pip(
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--no-build-isolation",
            "-d",
            DOWNLOADS,
            suite.release,
        )
    SOURCES.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(SOURCES, filter="data")
    if not (suite.source / "tests").is_dir():
        raise SystemExit(f"{archive} has no tests/ directory")
    return suite.source


def private_jupyter(root: Path, kernel_python: str, kernel_module: str) -> dict[str, str]:
    """An environment whose ``python3`` kernel is ``kernel_module`` run by ``kernel_python``."""
    spec_dir = root / "data" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [kernel_python, "-m", kernel_module, "-f", "{connection_file}"],
        "display_name": f"Python 3 ({kernel_module})",
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": True},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    env = dict(os.environ)
    for variable in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"):
        env.pop(variable, None)
    env.update(
        JUPYTER_PATH=str(root / "data"),
        JUPYTER_DATA_DIR=str(root / "data"),
        JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        JUPYTER_CONFIG_DIR=str(root / "config"),
        IPYTHONDIR=str(root / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PATH=f"{PEERS_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def check_python3_is(kernel_module: str, env: dict[str, str]) -> None:
    probe = (
        "import json\n"
        "from jupyter_client.kernelspec import KernelSpecManager\n"
        "from jupyter_client.manager import KernelManager\n"
        "spec = KernelSpecManager().get_kernel_spec('python3')\n"
        "km = KernelManager(kernel_name='python')\n"
        "print(json.dumps([spec.argv, km.kernel_spec.argv]))\n"
    )
    found = subprocess.run(
        [PEERS_PYTHON, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout
    for argv in json.loads(found):
        if argv[1:3] != ["-m", kernel_module]:
            raise SystemExit(f"the python3 kernelspec found does not run {kernel_module}: {argv}")


# -- running and reading outcomes ---------------------------------------------------------


def run_suite(
    suite: Suite, files: Sequence[str], env: dict[str, str], outcomes_path: Path, extra: Sequence[str]
) -> int:
    source = ensure_source(suite)
    env = dict(env, PEER_OUTCOMES=str(outcomes_path), PYTHONPATH=str(HERE))
    argv = [
        str(PEERS_PYTHON),
        "-m",
        "pytest",
        "-p",
        "peer_outcomes",
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        "--color=no",
        "-o",
        "log_cli=false",
        # pytest-asyncio warns (an error under both suites' filterwarnings) when unset.
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "--durations=5",
        *suite.pytest_args,
        *extra,
        *files,
    ]
    say(f"\npeers: {suite.name} suite: {' '.join(argv[1:])}  (in {source.relative_to(ROOT)})")
    return subprocess.run(argv, cwd=source, env=env, stdin=subprocess.DEVNULL, check=False).returncode


#: Unexpected failures are run once more, alone, when there are at most this many: on a
#: loaded machine a timing-sensitive test of the peers can fail once (ipykernel's own CI
#: reruns such tests with ``flaky``). More than this is not flakiness.
MAX_RETRIES = 5


def retry_unexpected_failures(
    suite: Suite, outcomes: dict[str, str], expected: dict[str, Expected], env: dict[str, str], scratch: Path
) -> None:
    """Rerun the unlisted failures once; one that passes then is recorded as "flaky" (reported)."""
    failed = [nodeid for nodeid, outcome in outcomes.items() if outcome in FAILED and nodeid not in expected]
    if not failed or len(failed) > MAX_RETRIES:
        return
    say(f"\npeers: running {len(failed)} unexpected failure(s) once more: {', '.join(failed)}")
    retry_path = scratch / f"{suite.name}-retry.jsonl"
    run_suite(suite, failed, env, retry_path, ())
    for nodeid, outcome in read_outcomes(retry_path).items():
        if nodeid in failed and outcome == "passed":
            outcomes[nodeid] = "flaky"


def read_outcomes(path: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            outcomes[record["nodeid"]] = record["outcome"]
    return outcomes


@dataclass
class Expected:
    kind: str  # "deliberate" | "pending"
    reason: str
    owner: str = ""


def load_expected(suite: str) -> dict[str, Expected]:
    table = tomllib.loads(EXPECTED.read_text()).get(suite, {})
    expected = {}
    for nodeid, entry in table.items():
        if entry["kind"] not in {"deliberate", "pending"}:
            raise SystemExit(f"{EXPECTED.name}: {nodeid}: kind must be 'deliberate' or 'pending'")
        if entry["kind"] == "pending" and not entry.get("owner"):
            raise SystemExit(f"{EXPECTED.name}: {nodeid}: a pending entry names its owner")
        expected[nodeid] = Expected(entry["kind"], entry["reason"], entry.get("owner", ""))
    return expected


@dataclass
class Verdict:
    counts: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)  # failed, not listed
    deliberate_passing: list[str] = field(default_factory=list)  # listed deliberate, passed: error
    pending_passing: list[str] = field(default_factory=list)  # listed pending, passed: report
    missing: list[str] = field(default_factory=list)  # listed, not run at all
    flaky: list[str] = field(default_factory=list)  # failed, then passed when run again: report

    @property
    def ok(self) -> bool:
        return not (self.unexpected or self.deliberate_passing or self.missing)


def judge(
    outcomes: dict[str, str], expected: dict[str, Expected], files: Sequence[str], keyword: bool
) -> Verdict:
    """Compare ``outcomes`` of a run of ``files`` with the list (stale entries: only without -k)."""
    verdict = Verdict()
    for outcome in outcomes.values():
        verdict.counts[outcome] = verdict.counts.get(outcome, 0) + 1
    for nodeid, outcome in sorted(outcomes.items()):
        entry = expected.get(nodeid)
        if outcome in FAILED and entry is None:
            verdict.unexpected.append(f"{nodeid} ({outcome})")
        elif outcome == "flaky":
            verdict.flaky.append(nodeid)
        elif outcome == "passed" and entry is not None:
            target = verdict.deliberate_passing if entry.kind == "deliberate" else verdict.pending_passing
            target.append(f"{nodeid} (listed {entry.kind}{': ' + entry.owner if entry.owner else ''})")
    if not keyword:
        verdict.missing = sorted(
            nodeid for nodeid in expected if nodeid.split("::")[0] in files and nodeid not in outcomes
        )
    return verdict


def report(suite: str, verdict: Verdict) -> None:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(verdict.counts.items()))
    say(f"\npeers: {suite}: {counts or 'nothing ran'}")
    for title, items in (
        ("UNEXPECTED failures (fix, or list in tests/peers/expected_failures.toml)", verdict.unexpected),
        ("deliberate differences that now PASS (remove from the list and docs)", verdict.deliberate_passing),
        ("listed tests that did not run (stale entries)", verdict.missing),
        ("pending failures that now pass (remove them from the list)", verdict.pending_passing),
        ("failed once, passed when run again (flaky under load?)", verdict.flaky),
    ):
        if items:
            say(f"  {title}:")
            for item in items:
                say(f"    {item}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=[s.name for s in SUITES], action="append")
    parser.add_argument(
        "--test-file", action="append", help="run only this file of the suite (e.g. tests/test_kernel.py)"
    )
    parser.add_argument("--kernel-python", default=sys.executable, help="the Python that runs threadline")
    parser.add_argument("-k", dest="keyword", help="pytest -k selection (then stale entries are not judged)")
    parser.add_argument("--json", type=Path, help="write outcomes and verdicts here")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="run the suites against ipykernel itself (as python3), to tell their own failures from ours",
    )
    args = parser.parse_args(argv)

    ensure_peers_venv()
    suites = [s for s in SUITES if not args.suite or s.name in args.suite]
    summary: dict[str, object] = {}
    ok = True
    with tempfile.TemporaryDirectory(prefix="threadline-peers-") as scratch:
        kernel_module = "ipykernel_launcher" if args.reference else "threadline"
        env = private_jupyter(Path(scratch) / "jupyter", args.kernel_python, kernel_module)
        check_python3_is(kernel_module, env)
        for suite in suites:
            outcomes_path = Path(scratch) / f"{suite.name}.jsonl"
            extra = ["-k", args.keyword] if args.keyword else []
            files = [f for f in suite.test_files if not args.test_file or f in args.test_file]
            if not files:
                continue
            run_suite(suite, files, env, outcomes_path, extra)
            outcomes = read_outcomes(outcomes_path)
            retry_unexpected_failures(suite, outcomes, load_expected(suite.name), env, Path(scratch))
            verdict = judge(outcomes, load_expected(suite.name), files, keyword=bool(args.keyword))
            report(suite.name, verdict)
            ok = ok and verdict.ok and bool(outcomes)
            summary[suite.name] = {"outcomes": outcomes, "verdict": verdict.__dict__}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    say("\npeers: " + ("everything as expected" if ok else "FAILED: see above"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
