"""The same cells in ipykernel 7.4 and in threadline: a front end must receive the same.

Theory of operation
-------------------
Two real kernels run side by side, each in its own empty working directory:
ipykernel, started with its own argv through a private kernelspec named
``ipykernel-reference`` (never ``python3``), and threadline. Every case sends
the same cells to both, in the same order, as a front end does (with
``allow_stdin``: the test answers ``input``/``getpass`` prompts), and records
what a front end receives for each cell: the reply (status, the set of its
fields, error name and value, payloads, user expressions, execution count
relative to the case's first cell), the iopub outputs in order (stream text
merged per stream, since how text is cut into messages is timing), display
data's mime types and plain text, transient display ids, clear_output, and
the stdin prompts.

Then both records are normalised -- ids, dates, timings, memory addresses,
working directories, cell file names, process ids: what legitimately differs
between two processes -- and compared. A traceback is compared by exception
name, value and number of entries (frames), not by text: the text names
files.

Differences are allowed only where ``DELIBERATE`` (and, for replies to other
requests, ``EXTRA_REPLY_FIELDS``) lists them, each pointing to its section in
docs/compatibility.md; a listed difference that disappears fails the case, so
the list stays honest. A case that fails because another helper's work is
still under way is marked ``xfail(strict=False)`` with the owner named in
``PENDING``, so their fix does not break the run (empty today).
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import TIMEOUT, start_kernel, stop_kernel

REFERENCE = "ipykernel-reference"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ipykernel") is None, reason="ipykernel (the reference) is not installed"
)


# -- the two kernels ---------------------------------------------------------------------------


@dataclass
class Side:
    """One kernel of the pair, and the directory it started in."""

    name: str
    manager: KernelManager
    client: BlockingKernelClient
    cwd: Path


@dataclass
class Pair:
    reference: Side
    threadline: Side

    def __iter__(self) -> Iterator[Side]:
        return iter((self.reference, self.threadline))


@pytest.fixture(scope="module")
def pair(jupyter_environment: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    spec_dir = Path(os.environ["JUPYTER_PATH"]) / "kernels" / REFERENCE
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "ipykernel (reference for threadline's differential test)",
                "language": "python",
                "interrupt_mode": "signal",
            }
        )
    )
    sides: list[Side] = []
    try:
        for kernel_name, label in ((REFERENCE, "ipykernel"), ("threadline", "threadline")):
            cwd = tmp_path_factory.mktemp(f"cwd-{label}")
            manager, client = start_kernel(kernel_name, cwd=str(cwd))
            sides.append(Side(label, manager, client, cwd.resolve()))
        yield Pair(*sides)
    finally:
        for side in sides:
            stop_kernel(side.manager, side.client)


# -- what a front end receives -----------------------------------------------------------------


@dataclass
class Observed:
    """What one cell produced, as a front end sees it."""

    reply: dict[str, Any]
    iopub: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[tuple[str, bool]] = field(default_factory=list)


def run_cell(
    client: BlockingKernelClient, code: str, answers: list[str], timeout: float = TIMEOUT
) -> Observed:
    """Execute ``code``, answering stdin prompts from ``answers``; collect until idle and replied."""
    answers = list(answers)
    msg_id = client.execute(code, allow_stdin=True)
    observed = Observed(reply={})
    poller = zmq.Poller()
    sockets = {
        client.iopub_channel.socket: client.get_iopub_msg,
        client.stdin_channel.socket: client.get_stdin_msg,
        client.shell_channel.socket: client.get_shell_msg,
    }
    for socket in sockets:
        poller.register(socket, zmq.POLLIN)
    idle = False
    deadline = time.monotonic() + timeout
    while not (idle and observed.reply):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"cell {code!r} did not finish within {timeout}s: {observed!r:.3000}")
        for socket, _ in poller.poll(int(remaining * 1000) + 1):
            try:
                message = sockets[socket](timeout=0)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if socket is client.stdin_channel.socket and kind == "input_request":
                content = message["content"]
                observed.prompts.append((content["prompt"], bool(content.get("password"))))
                client.input(answers.pop(0) if answers else "")
            elif socket is client.shell_channel.socket:
                observed.reply = message
            elif kind == "status":
                idle = message["content"]["execution_state"] == "idle"
            else:
                observed.iopub.append(message)
    return observed


def run_request(client: BlockingKernelClient, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """A non-execute shell request's reply content."""
    message = client.session.msg(msg_type, content)
    client.shell_channel.send(message)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            reply: dict[str, Any] = client.get_shell_msg(timeout=deadline - time.monotonic())
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == message["header"]["msg_id"]:
            return dict(reply["content"])
    raise TimeoutError(f"no reply to {msg_type}")


# -- normalising ---------------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CELL_FILE = re.compile(r"/\S*?(?:ipykernel|threadline)_\d+/\d+\.py")
ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
#: IPython writes micro as U+03BC (Greek mu) or U+00B5 (micro sign), depending on the terminal.
DURATION = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?\s*(?:ns|\u03bcs|\u00b5s|us|ms|s|sec|min)\b")
#: A cell's file name is a hash of its code with a per-process seed (a SyntaxError names it).
CELL_HASH_NAME = re.compile(r"\b\d{6,}\.py\b")
PID_FILE = re.compile(r"\b(kernel|ipykernel|threadline)[-_][0-9a-f-]{6,}")


def normalise_text(text: str, side: Side) -> str:
    text = ANSI.sub("", text)
    text = text.replace(str(side.cwd), "<CWD>")
    text = CELL_FILE.sub("<CELL>", text)
    text = CELL_HASH_NAME.sub("<CELL>", text)
    text = ADDRESS.sub("0x<ADDR>", text)
    text = DURATION.sub("<T>", text)
    return PID_FILE.sub(r"\1-<ID>", text)


def normalise_value(value: Any, side: Side) -> Any:
    if isinstance(value, str):
        return normalise_text(value, side)
    if isinstance(value, list):
        return [normalise_value(item, side) for item in value]
    if isinstance(value, dict):
        return {key: normalise_value(item, side) for key, item in value.items()}
    return value


def summarise(
    observed: Observed, side: Side, first_count: int, ignore: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The normalised record of one cell (without the iopub messages of the ``ignore`` types)."""
    content = observed.reply["content"]
    reply: dict[str, Any] = {"status": content["status"], "fields": sorted(content)}
    if "execution_count" in content:
        reply["execution_count"] = content["execution_count"] - first_count
    if content["status"] == "error":
        reply["error"] = (content.get("ename"), normalise_text(str(content.get("evalue")), side))
    reply["payload"] = normalise_value(content.get("payload", []), side)
    reply["user_expressions"] = sorted(content.get("user_expressions", {}))

    order: list[str] = []
    streams: dict[str, str] = {}
    outputs: list[Any] = []
    for message in observed.iopub:
        kind, body = message["msg_type"], message["content"]
        if kind in ignore:
            continue
        if kind == "stream":
            streams[body["name"]] = streams.get(body["name"], "") + body["text"]
            if not order or order[-1] != "stream":
                order.append("stream")
            continue
        order.append(kind)
        if kind in {"display_data", "update_display_data", "execute_result"}:
            data = body["data"]
            outputs.append(
                {
                    "type": kind,
                    "mimes": sorted(data),
                    "text/plain": normalise_text(data.get("text/plain", ""), side),
                    "display_id": "display_id" in body.get("transient", {}),
                }
            )
        elif kind == "error":
            outputs.append(
                {
                    "type": kind,
                    "ename": body["ename"],
                    "evalue": normalise_text(body["evalue"], side),
                    "entries": len(body["traceback"]),
                }
            )
        elif kind == "clear_output":
            outputs.append({"type": kind, "wait": body["wait"]})
        elif kind == "execute_input":
            outputs.append({"type": kind, "execution_count": body["execution_count"] - first_count})
        else:
            outputs.append({"type": kind, "keys": sorted(body)})
    return {
        "reply": reply,
        "order": order,
        "streams": {name: normalise_text(text, side) for name, text in streams.items()},
        "outputs": outputs,
        "prompts": [(normalise_text(prompt, side), password) for prompt, password in observed.prompts],
    }


# -- the cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    code: str
    answers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    name: str
    cells: tuple[Cell, ...]
    #: Python modules the case needs in the kernel (skipped, saying which, when missing).
    needs: tuple[str, ...] = ()
    #: Run silently in both kernels after the case (undo what it changed).
    cleanup: str = ""
    #: Concurrent processes print: compare only which characters the streams carry, since
    #: ipykernel cuts and mixes their lines ("childchild" + "0" + "1", seen here;
    #: docs/compatibility.md, "Child processes"), and require threadline's sorted lines
    #: to be exactly these.
    whole_lines: tuple[str, ...] = ()
    #: iopub message types left out of the comparison: a progress bar's comm_msg
    #: updates depend on timing (tqdm redraws at most every 0.1 s).
    ignore: tuple[str, ...] = ()
    #: Where threadline deliberately differs (``DELIBERATE``): what its last cell must
    #: show as result ("" = no result), so the accepted difference is still pinned down.
    threadline_result: str | None = None


def case(
    name: str,
    *cells: str | Cell,
    needs: tuple[str, ...] = (),
    cleanup: str = "",
    whole_lines: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
    threadline_result: str | None = None,
) -> Case:
    return Case(
        name,
        tuple(c if isinstance(c, Cell) else Cell(c) for c in cells),
        needs,
        cleanup,
        whole_lines,
        ignore,
        threadline_result,
    )


TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

CASES = [
    # -- plain execution ---------------------------------------------------------------------
    case("print-and-result", "print('hello')\n1 + 1", "x = 5", "x * 2;", "None"),
    case("stdout-and-stderr", "import sys\nprint('out')\nprint('err', file=sys.stderr)"),
    case("execute-result-repr", "class A:\n    pass\nA()", "[1, 'two', {'three': 3.0}]"),
    case("empty-and-comment-cells", "", "# just a comment", "   "),
    # -- errors and tracebacks -------------------------------------------------------------------
    case("zero-division", "1/0"),
    case("raise-in-function", "def f():\n    raise ValueError('bad value')\ndef g():\n    f()\ng()"),
    case("name-error", "undefined_name_here"),
    case("syntax-error", "def f(:\n    pass"),
    case("indentation-error", "if True:\npass"),
    case(
        "xmode",
        "%xmode Plain",
        "def f():\n    return 1/0\nf()",
        "%xmode Verbose",
        "def f():\n    y = 2\n    return y/0\nf()",
        "%xmode Minimal",
        "f()",
        "%xmode Context",
        "f()",
    ),
    case("keyboard-interrupt-raised", "raise KeyboardInterrupt"),
    case("system-exit", "raise SystemExit(3)"),
    # -- magics --------------------------------------------------------------------------------------
    case("timeit", "%timeit -n1 -r1 sum(range(100))"),
    case("time", "%time sum(range(100))"),
    case("time-cell", "%%time\nz = sum(range(100))"),
    case("who", "alpha = 1\nbeta = 'b'\n%who", "%who_ls", "%whos"),
    case("capture", "%%capture captured\nprint('kept aside')\n1", "print(repr(captured.stdout))"),
    case("bash", "%%bash\necho from bash\necho to stderr >&2\nexit 0"),
    case("bash-error", "%%bash\necho failing\nexit 3"),
    case(
        "writefile-and-run",
        "%%writefile script.py\nprint('ran', __name__)\nvalue = 42",
        "%run script.py",
        "value",
    ),
    case("run-script-error", "%%writefile broken.py\nraise RuntimeError('in script')", "%run broken.py"),
    case("env", "%env THREADLINE_DIFF=1", "%env THREADLINE_DIFF", "import os\nos.environ['THREADLINE_DIFF']"),
    case(
        "cd-and-pwd",
        "import os\nos.makedirs('subdir', exist_ok=True)",
        "%cd subdir",
        "%pwd",
        "%cd ..",
        "%pwd",
        cleanup="import os as _os; _os.chdir(_os.path.dirname(_os.getcwd()) if _os.path.basename(_os.getcwd()) == 'subdir' else _os.getcwd())",  # noqa: E501
    ),
    case("pip", "%pip --version"),
    case("shell-escape", "!echo hello from the shell", "files = !echo one; echo two\nfiles", "!exit 2"),
    case("config", "%config InlineBackend.figure_format = 'png'", "%config InlineBackend.figure_format"),
    case("lsmagic", "len(get_ipython().magics_manager.lsmagic()['line']) > 50"),
    case("magic-not-found", "%not_a_magic_at_all"),
    case("help-payload", "len?"),
    case("set-next-input", "get_ipython().set_next_input('print(1)')"),
    case("automagic-off-name", "pwd = 3\npwd"),
    case("history-magic", "a1 = 1", "%history -l 1"),
    # -- rich display ----------------------------------------------------------------------------------
    case(
        "display-types",
        "from IPython.display import display, HTML, Markdown, JSON, Image, Latex, SVG, Javascript",
        "display(HTML('<b>bold</b>'))",
        "display(Markdown('**md**'))",
        "display(JSON({'a': 1}))",
        f"display(Image(data=__import__('base64').b64decode('{TINY_PNG}')))",
        "display(Latex('$x^2$'))",
        "HTML('<i>as result</i>')",
        "display('a', 'b', 1)",
    ),
    case(
        "clear-output",
        "from IPython.display import clear_output\nprint('a')\nclear_output()\nprint('b')",
        "print('c')\nclear_output(wait=True)\nprint('d')",
    ),
    case(
        "display-id-update",
        "from IPython.display import display, update_display\nh = display('first', display_id='d1')",
        "h.update('second')",
        "update_display('third', display_id='d1')",
        "h2 = display('x', display_id=True)\ntype(h2).__name__",
    ),
    case(
        "repr-methods",
        "class R:\n    def _repr_html_(self):\n        return '<p>r</p>'\n    def _repr_markdown_(self):\n"
        "        return '*r*'\nR()",
    ),
    # -- stdin ---------------------------------------------------------------------------------------------
    case("input", Cell("name = input('Your name? ')\nprint('hi', name)", ("Ada",))),
    case("input-no-prompt", Cell("v = input()\nv", ("value",))),
    case("getpass", Cell("import getpass\np = getpass.getpass('Password: ')\nlen(p)", ("secret",))),
    # -- warnings and logging ------------------------------------------------------------------------------
    case(
        "warnings", "import warnings\nwarnings.warn('careful')", "warnings.warn('again', DeprecationWarning)"
    ),
    case(
        "logging", "import logging\nlogging.warning('log it')", "logging.getLogger('mine').error('mine too')"
    ),
    # -- what libraries look at to decide "am I in a notebook?" --------------------------------------------
    case(
        "notebook-names",
        "ip = get_ipython()\ntype(ip).__name__",
        "'IPKernelApp' in ip.config",
        "[a for a in ('session', 'iopub_socket', 'comm_manager', 'shell', 'get_parent', '_parent_ident')"
        " if not hasattr(ip.kernel, a)]",
        "[a for a in ('get_parent', 'set_parent', 'parent_header') if not hasattr(ip, a)]",
    ),
    case("kernel-magics", "%autosave 0", "sv = 1\n%store sv", "%store -d sv"),
    case("faulthandler", "import faulthandler\nfaulthandler.enable()\nfaulthandler.is_enabled()"),
    case("sys-path", "import sys\n'' in sys.path"),
    case(
        "display-formatter-error",
        "class Broken:\n    def _repr_html_(self):\n        raise ValueError('no html')\nBroken()",
    ),
    case(
        "forked-children",
        "import multiprocessing\ndef work(i):\n    print('child', i, flush=True)\n"
        "ctx = multiprocessing.get_context('fork')\n"
        "procs = [ctx.Process(target=work, args=(i,)) for i in range(2)]\n"
        "for p in procs:\n    p.start()\nfor p in procs:\n    p.join()",
        whole_lines=("child 0", "child 1"),
    ),
    # -- asyncio -------------------------------------------------------------------------------------------
    case("top-level-await", "import asyncio\nawait asyncio.sleep(0)\n'awaited'"),  # (noqa: sleep-ok)
    case(
        "asyncio-run",
        "import asyncio\nasyncio.run(asyncio.sleep(0, 'ran'))",  # cell code, in the kernel (noqa: sleep-ok)
        threadline_result="'ran'",
    ),
    case(
        "running-loop-in-plain-cell",
        "import asyncio\ntype(asyncio.get_running_loop()).__name__",
        threadline_result="",
    ),
    case(
        "ensure-future-in-plain-cell",
        "import asyncio\ntask = asyncio.ensure_future(asyncio.sleep(0, 'later'))",  # (noqa: sleep-ok)
        "await task",
    ),
    # -- libraries, where installed ------------------------------------------------------------------------
    case(
        "tqdm-auto",
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3)):\n    pass",
        needs=("tqdm", "ipywidgets"),
        ignore=("comm_msg",),
    ),
    case("rich", "from rich import print as rprint\nrprint('[bold]rich[/bold]')", needs=("rich",)),
    case(
        "plotly",
        "import plotly.io as pio\npio.renderers.default",
        "import plotly.graph_objects as go\ngo.Figure(data=[go.Bar(y=[1, 2])])",
        needs=("plotly",),
    ),
    case("pandas", "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})", needs=("pandas",)),
    case("polars", "import polars as pl\npl.DataFrame({'a': [1, 2]})", needs=("polars",)),
    case(
        "matplotlib-inline",
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]);",
        needs=("matplotlib",),
    ),
]

#: Differences that are deliberate, each documented in docs/compatibility.md: case name ->
#: (the parts of a cell's record allowed to differ, why). A part is a record key
#: ("outputs") or one field of the reply ("reply.error"). Keep this list short and explained.
DELIBERATE: dict[str, tuple[set[str], str]] = {
    # docs/compatibility.md, "Aborted and failed cells": the reply names the formatter's
    # error (ValueError: no html); ipykernel 7.4's says NoneType/None. Status, outputs
    # and everything else must still match.
    "display-formatter-error": ({"reply.error"}, "the failed formatter's error is named in the reply"),
    # docs/compatibility.md, "asyncio: plain cells run outside the event loop": a plain
    # cell can asyncio.run() (ipykernel: RuntimeError, a loop is running)...
    "asyncio-run": ({"reply", "order", "outputs"}, "plain cells run with the loop stopped"),
    # ...and the price: no *running* loop in a plain cell (ipykernel returns its loop).
    "running-loop-in-plain-cell": ({"reply", "order", "outputs"}, "plain cells run with the loop stopped"),
}

#: Fields a reply to another request may have beyond ipykernel's, each on purpose.
EXTRA_REPLY_FIELDS: dict[str, tuple[set[str], str]] = {
    # src/threadline/kernel/info.py: the visual debugger is declared both ways, the
    # JEP 92 feature (which ipykernel 7.4 sends alone) and the older "debugger" flag
    # that front ends before JEP 92 read (docs/compatibility.md, "kernel_info").
    "kernel-info": ({"debugger"}, "the legacy debugger flag, beside supported_features"),
}

#: Cases that fail today because another helper's work is still under way: case -> owner: why.
PENDING: dict[str, str] = {}


def _params() -> list[Any]:
    params = []
    for item in CASES:
        marks = []
        if item.name in PENDING:
            marks.append(pytest.mark.xfail(strict=False, reason=PENDING[item.name]))
        params.append(pytest.param(item, id=item.name, marks=marks))
    return params


def _first_count(client: BlockingKernelClient) -> int:
    """The count the next stored cell will get (a silent cell does not use one)."""
    observed = run_cell_silent(client, "")
    return int(observed["execution_count"]) + 1


def run_cell_silent(client: BlockingKernelClient, code: str) -> dict[str, Any]:
    msg_id = client.execute(code, silent=True, store_history=False)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            reply: dict[str, Any] = client.get_shell_msg(timeout=deadline - time.monotonic())
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            content: dict[str, Any] = reply["content"]
            assert content["status"] == "ok", content
            return content
    raise TimeoutError(code)


@pytest.mark.parametrize("item", _params())
def test_same_as_ipykernel(pair: Pair, item: Case) -> None:
    missing = [module for module in item.needs if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (not installed)")
    records: dict[str, list[dict[str, Any]]] = {}
    for side in pair:
        first = _first_count(side.client)
        try:
            records[side.name] = [
                summarise(run_cell(side.client, cell.code, list(cell.answers)), side, first, item.ignore)
                for cell in item.cells
            ]
            if item.whole_lines:
                for record in records[side.name]:
                    if side.name == "threadline":
                        assert sorted(record["streams"].get("stdout", "").splitlines()) == list(
                            item.whole_lines
                        )
                    record["streams"] = {
                        name: "".join(sorted("".join(text.split())))
                        for name, text in record["streams"].items()
                    }
        finally:
            if item.cleanup:
                run_cell_silent(side.client, item.cleanup)
    if item.threadline_result is not None:
        results = [o for o in records["threadline"][-1]["outputs"] if o["type"] == "execute_result"]
        shown = results[0]["text/plain"] if results else ""
        assert shown == item.threadline_result, f"threadline's result: {shown!r}"
    allowed, _why = DELIBERATE.get(item.name, (set(), ""))
    differences = []
    allowed_differed = False
    for index, (theirs, ours) in enumerate(zip(records["ipykernel"], records["threadline"], strict=True)):
        for field_name in (part.removeprefix("reply.") for part in allowed if part.startswith("reply.")):
            allowed_differed |= theirs["reply"].pop(field_name, None) != ours["reply"].pop(field_name, None)
        for key in sorted(set(theirs) | set(ours)):
            if theirs.get(key) == ours.get(key):
                continue
            if key in allowed:
                allowed_differed = True
                continue
            differences.append(
                f"cell {index} {item.cells[index].code!r:.80}: {key}\n"
                f"  ipykernel:  {theirs.get(key)!r}\n  threadline: {ours.get(key)!r}"
            )
    assert not differences, "\n".join(differences)
    # Strict, like the peer suites' list: a listed difference that is gone is taken out.
    assert not allowed or allowed_differed, f"{item.name} is listed in DELIBERATE but no longer differs"


# -- other requests --------------------------------------------------------------------------------

REQUESTS = [
    (
        "complete-module",
        "complete_request",
        {"code": "import o", "cursor_pos": 8},
        ("status", "cursor_start"),
    ),
    ("complete-attribute", "complete_request", {"code": "str.up", "cursor_pos": 6}, ("status", "matches")),
    (
        "inspect-found",
        "inspect_request",
        {"code": "len", "cursor_pos": 3, "detail_level": 0},
        ("status", "found"),
    ),
    ("inspect-missing", "inspect_request", {"code": "nothing_x", "cursor_pos": 9}, ("status", "found")),
    ("is-complete-yes", "is_complete_request", {"code": "x = 1"}, ("status",)),
    ("is-complete-no", "is_complete_request", {"code": "for i in x:"}, ("status", "indent")),
    ("is-complete-invalid", "is_complete_request", {"code": "1 +* 2"}, ("status",)),
    (
        "history-tail",
        "history_request",
        {"hist_access_type": "tail", "n": 1, "output": False, "raw": True},
        ("status",),
    ),
    ("comm-info", "comm_info_request", {}, ("status",)),
    # protocol_version differs on purpose: docs/compatibility.md, "kernel_info names threadline".
    ("kernel-info", "kernel_info_request", {}, ("status",)),
]


def _request_params() -> list[Any]:
    return [
        pytest.param(
            *request,
            id=request[0],
            marks=[pytest.mark.xfail(strict=False, reason=PENDING[request[0]])]
            if request[0] in PENDING
            else [],
        )
        for request in REQUESTS
    ]


@pytest.mark.parametrize(("request_name", "msg_type", "content", "compare"), _request_params())
def test_request_replies_as_ipykernel(
    pair: Pair, request_name: str, msg_type: str, content: dict[str, Any], compare: tuple[str, ...]
) -> None:
    replies = {side.name: run_request(side.client, msg_type, content) for side in pair}
    theirs, ours = replies["ipykernel"], replies["threadline"]
    extra, _why = EXTRA_REPLY_FIELDS.get(request_name, (set(), ""))
    assert set(extra) <= set(ours), f"threadline's reply lacks {extra - set(ours)}"
    ours_compared = sorted(set(ours) - extra)
    assert sorted(theirs) == ours_compared, f"fields differ: {sorted(theirs)} vs {ours_compared}"
    for key in compare:
        assert theirs[key] == ours[key], f"{key}: ipykernel {theirs[key]!r}, threadline {ours[key]!r}"
    if msg_type == "inspect_request" and theirs["found"]:
        assert sorted(theirs["data"]) == sorted(ours["data"])
