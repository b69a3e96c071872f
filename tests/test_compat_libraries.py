"""Real libraries see a notebook kernel: the same cells in ipykernel 7.4 and in threadline
send the same kinds of output (message types, MIME types, widget models).

One kernel of each for the whole module; the cells run in the same order in both.
Every case also asserts what a user would see, so a case where both kernels
were wrong the same way would still fail.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import Execution, execute, start_kernel, stop_kernel

pytest.importorskip("ipykernel", reason="the reference kernel (ipykernel) is not installed")

Summary = tuple[Any, ...]


@pytest.fixture(scope="module")
def threadline_kernel() -> Iterator[BlockingKernelClient]:
    manager, client = start_kernel()
    yield client
    stop_kernel(manager, client)


@pytest.fixture(scope="module")
def ipykernel_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlockingKernelClient]:
    """ipykernel, from a private kernelspec: never confused with whatever ``python3`` is here."""
    kernels = tmp_path_factory.mktemp("reference-kernels")
    (kernels / "ipykernel-reference").mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ipykernel (reference)",
        "language": "python",
    }
    (kernels / "ipykernel-reference" / "kernel.json").write_text(json.dumps(spec))
    manager = KernelManager(
        kernel_name="ipykernel-reference", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    assert "ipykernel" in execute(client, "print(type(get_ipython()).__module__)").stdout
    yield client
    stop_kernel(manager, client)


def summarize(run: Execution) -> tuple[list[Summary], set[str]]:
    """What a front end acts on: outputs by MIME types, widgets by model; stream names apart
    (how text is chunked depends on timing)."""
    outputs: list[Summary] = []
    streams: set[str] = set()
    for message in run.messages:
        kind, content = message["msg_type"], message["content"]
        if kind in ("display_data", "execute_result", "update_display_data"):
            outputs.append((kind, tuple(sorted(content["data"]))))
        elif kind == "comm_open":
            state = content["data"].get("state", {})
            outputs.append((kind, content["target_name"], state.get("_model_name")))
        elif kind in ("error", "clear_output"):
            outputs.append((kind, content.get("ename")))
        elif kind == "stream":
            streams.add(content["name"])
    return sorted(outputs, key=repr), streams


def run_in_both(
    threadline: BlockingKernelClient, reference: BlockingKernelClient, code: str
) -> tuple[Execution, Execution]:
    ours, theirs = execute(threadline, code, timeout=120), execute(reference, code, timeout=120)
    assert ours.content["status"] == "ok", ours.content
    assert theirs.content["status"] == "ok", theirs.content
    assert summarize(ours) == summarize(theirs)
    return ours, theirs


def models(run: Execution) -> list[str]:
    return [m["content"]["data"]["state"]["_model_name"] for m in run.of_type("comm_open")]


def mime_types(run: Execution) -> list[list[str]]:
    return [sorted(m["content"]["data"]) for m in run.of_type("display_data", "execute_result")]


def test_tqdm_auto_draws_a_widget(
    threadline_kernel: BlockingKernelClient, ipykernel_kernel: BlockingKernelClient
) -> None:
    code = "from tqdm.auto import tqdm\nfor _ in tqdm(range(5)):\n    pass"
    ours, _ = run_in_both(threadline_kernel, ipykernel_kernel, code)
    assert "FloatProgressModel" in models(ours)
    assert ours.stderr == ""  # no text bar
    # What tqdm looked at: threadline's shell module, under the name tqdm knows.
    seen = execute(threadline_kernel, "import sys\nprint(sys.modules['ipykernel.zmqshell'].__name__)")
    assert seen.stdout == "threadline.compat.zmqshell\n"


def test_rich_renders_html(
    threadline_kernel: BlockingKernelClient, ipykernel_kernel: BlockingKernelClient
) -> None:
    ours, _ = run_in_both(threadline_kernel, ipykernel_kernel, "import rich\nrich.print('[bold]hi[/bold]')")
    assert mime_types(ours) == [["text/html", "text/plain"]]


def test_plotly_picks_ipykernels_renderer_and_sends_no_bundle(
    threadline_kernel: BlockingKernelClient, ipykernel_kernel: BlockingKernelClient
) -> None:
    choose = "import plotly.io as pio\nprint(pio.renderers.default)"
    ours, theirs = run_in_both(threadline_kernel, ipykernel_kernel, choose)
    assert ours.stdout == theirs.stdout == "plotly_mimetype\n"
    show = "import plotly.graph_objects as go\ngo.Figure(go.Scatter(x=[1, 2], y=[3, 4]))"
    ours, _ = run_in_both(threadline_kernel, ipykernel_kernel, show)
    assert mime_types(ours) == [["application/vnd.plotly.v1+json"]]
    largest = max(len(json.dumps(m["content"])) for m in ours.messages)
    assert largest < 100_000  # plotly.js itself is 3.5 MB


@pytest.mark.parametrize(
    ("name", "code", "expected_types", "expected_models"),
    [
        (
            "bokeh",
            "from bokeh.io import output_notebook, show\nfrom bokeh.plotting import figure\n"
            "output_notebook(hide_banner=True)\np = figure(width=200, height=200)\n"
            "p.line([1, 2], [3, 4])\nshow(p)",
            [
                ["application/javascript", "application/vnd.bokehjs_load.v0+json"],
                ["text/html"],
                ["application/javascript", "application/vnd.bokehjs_exec.v0+json"],
            ],
            [],
        ),
        (
            "altair",
            "import altair as alt, pandas as pd\n"
            "alt.Chart(pd.DataFrame({'a': [1, 2], 'b': [3, 4]})).mark_line().encode(x='a', y='b')",
            [["text/html", "text/plain"]],
            [],
        ),
        (
            "pandas",
            "import pandas as pd\npd.DataFrame({'a': [1, 2]})",
            [["text/html", "text/plain"]],
            [],
        ),
        (
            "polars",
            "import polars as pl\npl.DataFrame({'a': [1, 2]})",
            [["text/html", "text/plain"]],
            [],
        ),
        (
            "interact",
            "import ipywidgets\nipywidgets.interact(lambda x: print(x * 2), x=3);",
            [["application/vnd.jupyter.widget-view+json", "text/plain"]],
            ["IntSliderModel", "OutputModel", "VBoxModel"],
        ),
        (
            "ipympl",
            "%matplotlib widget\nimport matplotlib.pyplot as plt\nfig = plt.figure()\nplt.plot([1, 2]);",
            [["application/vnd.jupyter.widget-view+json", "image/png", "text/html", "text/plain"]],
            ["Canvas", "Toolbar"],
        ),
    ],
)
def test_outputs_match_ipykernel(  # noqa: PLR0917 (two fixtures and four parameters)
    threadline_kernel: BlockingKernelClient,
    ipykernel_kernel: BlockingKernelClient,
    name: str,
    code: str,
    expected_types: list[list[str]],
    expected_models: list[str],
) -> None:
    ours, _ = run_in_both(threadline_kernel, ipykernel_kernel, code)
    assert mime_types(ours) == expected_types, name
    widget_models = models(ours)
    for model in expected_models:
        assert any(model in found for found in widget_models), (model, widget_models)


def test_importing_ipykernels_kernel_keeps_widgets_working(threadline_kernel: BlockingKernelClient) -> None:
    """ipykernel.ipkernel swaps comm.create_comm for its own when imported (ipykernel.get_connection_file
    imports it); widgets made afterwards must still reach the front end."""
    code = "import ipykernel.kernelapp\nimport ipywidgets\nipywidgets.IntSlider(3)"
    run = execute(threadline_kernel, code)
    assert run.content["status"] == "ok", run.content
    assert "IntSliderModel" in models(run)


def comm_traffic(run: Execution, comm_ids: set[str] | None = None) -> list[Summary]:
    """The comm messages of a run that are not widgets' (or only those of ``comm_ids``):
    type, target, and what the data says it is. (Earlier cases' widgets, ipympl's
    canvas, may still be talking.)"""
    out: list[Summary] = []
    for message in run.of_type("comm_open", "comm_msg", "comm_close"):
        content = message["content"]
        if comm_ids is not None and content["comm_id"] not in comm_ids:
            continue
        if comm_ids is None and message["msg_type"] != "comm_open":
            continue
        if content.get("target_name") == "jupyter.widget":
            continue
        data = content.get("data")
        if isinstance(data, str) and data.startswith("{"):  # bokeh sends its parts as JSON text
            data = json.loads(data)
        kind = data.get("msgtype") if isinstance(data, dict) else type(data).__name__
        out.append((message["msg_type"], content.get("target_name"), kind))
    return out


def opened_comms(run: Execution, target: str | None = None) -> set[str]:
    return {
        m["content"]["comm_id"]
        for m in run.of_type("comm_open")
        if m["content"]["target_name"] != "jupyter.widget" and target in (None, m["content"]["target_name"])
    }


def test_bokeh_push_notebook_sends_its_updates(
    threadline_kernel: BlockingKernelClient, ipykernel_kernel: BlockingKernelClient
) -> None:
    """bokeh's notebook handles are ``ipykernel.comm.Comm``s: the update must go out as it
    does under ipykernel (a comm opened by ``show``, then the document patch)."""
    show_it = (
        "from bokeh.io import output_notebook, show, push_notebook\n"
        "from bokeh.plotting import figure\n"
        "output_notebook(hide_banner=True)\np = figure(width=200, height=200)\n"
        "line = p.line([1, 2], [3, 4])\nhandle = show(p, notebook_handle=True)"
    )
    update = "line.data_source.data = {'x': [1, 2, 3], 'y': [3, 4, 5]}\npush_notebook(handle=handle)"
    opened, opened_there = run_in_both(threadline_kernel, ipykernel_kernel, show_it)
    pushed, pushed_there = run_in_both(threadline_kernel, ipykernel_kernel, update)
    ours, theirs = opened_comms(opened), opened_comms(opened_there)
    assert comm_traffic(opened) == comm_traffic(opened_there)
    assert comm_traffic(pushed, ours) == comm_traffic(pushed_there, theirs)
    [(kind, target, _)] = comm_traffic(opened)
    assert kind == "comm_open" and target  # bokeh's target: the document's id
    sent = comm_traffic(pushed, ours)
    assert [kind for kind, _, _ in sent] == ["comm_msg"] * 3
    assert ("comm_msg", None, "PATCH-DOC") in sent
    patch = [m for m in pushed.of_type("comm_msg") if m["content"]["comm_id"] in ours][-1]
    assert "ColumnDataChanged" in patch["content"]["data"]  # the new column, as the document's events


def test_ipykernels_deprecated_comm_class_sends(threadline_kernel: BlockingKernelClient) -> None:
    code = (
        "import warnings\nwarnings.simplefilter('ignore', DeprecationWarning)\n"
        "from ipykernel.comm import Comm\n"
        "c = Comm(target_name='legacy', data={'a': 1})\nc.send({'b': 2})\nc.close()"
    )
    run = execute(threadline_kernel, code)
    assert run.content["status"] == "ok", run.content
    legacy = opened_comms(run, "legacy")
    assert len(legacy) == 1
    sent = [
        (m["msg_type"], m["content"]["data"])
        for m in run.of_type("comm_open", "comm_msg", "comm_close")
        if m["content"]["comm_id"] in legacy
    ]
    assert sent == [("comm_open", {"a": 1}), ("comm_msg", {"b": 2}), ("comm_close", {})]


def test_stream_attributes_read_as_under_ipykernel(
    threadline_kernel: BlockingKernelClient, ipykernel_kernel: BlockingKernelClient
) -> None:
    """What code asks of ``sys.stdout``/``sys.stderr`` before it writes (encoding compared as
    a string, isatty to decide on colours, the file interface's yes/no answers)."""
    code = (
        "import sys\nfor s in (sys.stdout, sys.stderr):\n"
        "    print(s.encoding, s.isatty(), s.writable(), s.readable(), s.seekable(), s.closed)"
    )
    ours, theirs = run_in_both(threadline_kernel, ipykernel_kernel, code)
    assert ours.stdout == theirs.stdout
    assert ours.stdout.split("\n")[0].split(" ")[0] == "UTF-8"


def test_ipykernels_connection_file_helpers_find_this_kernel(
    threadline_kernel: BlockingKernelClient, ipykernel_kernel: BlockingKernelClient
) -> None:
    """The "which notebook is this?" recipes: ``ipykernel.get_connection_file()`` (matched
    against the server's sessions), ``get_connection_info`` and ``IPKernelApp.instance()``."""
    code = (
        "import os, ipykernel\nfrom ipykernel.kernelapp import IPKernelApp\n"
        "path = ipykernel.get_connection_file()\n"
        "info = ipykernel.connect.get_connection_info(unpack=True)\n"
        "app = IPKernelApp.instance()\n"
        "print(os.path.isabs(path), os.path.exists(path), app.connection_file == path)\n"
        "print(IPKernelApp.initialized(), app.kernel is get_ipython().kernel)\n"
        "print(info['shell_port'], info['iopub_port'])"
    )
    ours, theirs = run_in_both(threadline_kernel, ipykernel_kernel, code)
    lines, their_lines = ours.stdout.splitlines(), theirs.stdout.splitlines()
    assert lines[:2] == their_lines[:2] == ["True True True", "True True"]
    assert lines[2] == f"{threadline_kernel.shell_port} {threadline_kernel.iopub_port}"
    assert their_lines[2] == f"{ipykernel_kernel.shell_port} {ipykernel_kernel.iopub_port}"
