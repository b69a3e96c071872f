"""Child processes' output, through a real kernel: whole lines, in the cell that started them.

Stress size and invariant, for each way of starting children: 4 children x 200
lines of ``child C line L`` + 40 x, written at the same time; the cell receives
every one of the 800 lines exactly once, whole (nothing else on its line), each
child's lines in order, and nothing else. Plus: a child's traceback; a child
that outlives its cell (its line still carries the first cell's msg_id while a
later cell runs); faulthandler; ``''`` on sys.path after ``%cd``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import (
    collect_until_idle,
    execute,
    get_reply,
    start_kernel_logged,
    stop_kernel,
    wait_for_exit,
)
from threadline.shell.child_stream import FRAME_HEAD, FRAME_SIZE

CHILDREN, LINES = 4, 200
PAD = "x" * 40
LINE = re.compile(rf"child (\d+) line (\d+) {PAD}")

#: A module the children run: spawned children import their target by name.
WORKER_MODULE = f"""
import sys

def write_lines(child, lines={LINES}):
    for line in range(lines):
        print(f"child {{child}} line {{line}} {PAD}")

def task(child):
    write_lines(child)
    return child

def grandchildren(child, method):
    import multiprocessing as mp
    context = mp.get_context(method)
    processes = [context.Process(target=write_lines, args=(child * 2 + k,)) for k in range(2)]
    for p in processes: p.start()
    for p in processes: p.join()

def fail(child):
    raise ValueError(f"boom in child {{child}}")
"""


@pytest.fixture
def worker_dir(tmp_path: Path) -> Path:
    (tmp_path / "children_worker.py").write_text(WORKER_MODULE)
    return tmp_path


def _import_worker(kc: BlockingKernelClient, worker_dir: Path) -> None:
    code = f"import sys\nsys.path.insert(0, {str(worker_dir)!r})\nimport children_worker"
    assert execute(kc, code).content["status"] == "ok"


def assert_whole_lines(stdout: str, children: int = CHILDREN, lines: int = LINES) -> None:
    """Every expected line exactly once and whole, each child's in order, nothing else."""
    seen: dict[int, list[int]] = defaultdict(list)
    for text in stdout.splitlines():
        match = LINE.fullmatch(text)
        assert match is not None, f"a broken or foreign line: {text!r}"
        seen[int(match[1])].append(int(match[2]))
    assert sorted(seen) == list(range(children)), sorted(seen)
    for child, numbers in seen.items():
        assert numbers == list(range(lines)), f"child {child}: {len(numbers)} lines, out of order or lost"


def test_the_process_hooks_wait_for_the_users_import(kc: BlockingKernelClient) -> None:
    """A kernel whose cells start no process never imports multiprocessing (it cost ~5 ms
    of every start-up); the hooks take hold once a cell imports it (the tests below)."""
    names = ("multiprocessing", "concurrent.futures.process")
    code = f"import sys; print(sorted(m for m in sys.modules if m.startswith({names!r})))"
    result = execute(kc, code)
    assert result.content["status"] == "ok", result.content
    assert result.stdout == "[]\n"


def test_forked_processes_lines_whole(kc: BlockingKernelClient) -> None:
    code = textwrap.dedent(f"""
        import multiprocessing as mp
        def write_lines(child):
            for line in range({LINES}):
                print(f"child {{child}} line {{line}} {PAD}")
        processes = [mp.get_context("fork").Process(target=write_lines, args=(c,)) for c in range({CHILDREN})]
        for p in processes: p.start()
        for p in processes: p.join()
    """)
    result = execute(kc, code)
    assert result.content["status"] == "ok", result.content
    assert_whole_lines(result.stdout)


def test_a_flood_from_children_blocks_them_and_loses_nothing(kc: BlockingKernelClient) -> None:
    """4 forked children x 20,000 lines at full speed: the socket's queue holds ~10 records,
    so the children wait for the kernel; all 80,000 lines arrive whole, once, in each
    child's order. A 100,000-character line (sent in pieces) arrives intact."""
    lines = 20_000
    code = textwrap.dedent(f"""
        import multiprocessing as mp
        def write_lines(child):
            for line in range({lines}):
                print(f"child {{child}} line {{line}} {PAD}")
        processes = [mp.get_context("fork").Process(target=write_lines, args=(c,)) for c in range({CHILDREN})]
        for p in processes: p.start()
        for p in processes: p.join()
    """)
    result = execute(kc, code, timeout=240)
    assert result.content["status"] == "ok", result.content
    assert_whole_lines(result.stdout, lines=lines)
    code = "import os\npid = os.fork()\nif pid == 0:\n    print('y' * 100_000)\n    os._exit(0)\n"
    code += "os.waitpid(pid, 0)"
    result = execute(kc, code)
    assert result.stdout == "y" * 100_000 + "\n"


def test_long_lines_from_a_childs_threads_arrive_whole(kc: BlockingKernelClient) -> None:
    """A line longer than a pipe's atomic write goes in several frames, which other
    writers' frames may come between: 3 threads of a child and a second child each
    write 20 lines of 10,000-30,000 characters at once; every line arrives whole, once,
    each writer's in order."""
    code = textwrap.dedent("""
        import os, threading
        def lines(writer):
            for n in range(20):
                print(f"<{writer} {n} " + "xyz"[n % 3] * (10_000 + 1_000 * n) + ">")
        pids = []
        for child in range(2):
            pid = os.fork()
            if pid == 0:
                writers = [threading.Thread(target=lines, args=(f"{child}.{t}",)) for t in range(3)]
                for w in writers: w.start()
                for w in writers: w.join()
                os._exit(0)
            pids.append(pid)
        for pid in pids: os.waitpid(pid, 0)
    """)
    result = execute(kc, code, timeout=120)
    assert result.content["status"] == "ok", result.content
    seen: dict[str, list[int]] = defaultdict(list)
    for text in result.stdout.splitlines():
        match = re.fullmatch(r"<(\d\.\d) (\d+) ([xyz]+)>", text)
        assert match is not None, f"a broken line: {text[:60]!r}...{text[-20:]!r} ({len(text)} chars)"
        n = int(match[2])
        assert match[3] == "xyz"[n % 3] * (10_000 + 1_000 * n), f"line {match[1]} {n} damaged"
        seen[match[1]].append(n)
    assert sorted(seen) == [f"{c}.{t}" for c in range(2) for t in range(3)], sorted(seen)
    assert all(numbers == list(range(20)) for numbers in seen.values()), dict(seen)


def test_a_forked_child_does_not_hold_the_kernels_ends_of_the_pipe(kc: BlockingKernelClient) -> None:
    """The kernel holds its children's pipe open (reading end, and a writing end of its
    own); a forked child closes its copies, so that once the kernel is gone a child's
    write fails at once and goes to its descriptor, instead of filling a pipe that only
    the child itself holds and waiting for ever."""
    code = textwrap.dedent("""
        import os
        def ends():
            found = []
            for fd in os.listdir("/proc/self/fd"):
                try:
                    target = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    continue
                if "/threadline-" in target and target.endswith("/children"):
                    found.append(fd)
            return len(found)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, str(ends()).encode())
            print("the child's line")
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        print("kernel", ends(), "child", os.read(r, 10).decode())
    """)
    result = execute(kc, code)
    assert result.content["status"] == "ok", result.content
    assert result.stdout.splitlines() == ["the child's line", "kernel 2 child 0"], result.stdout


FRAMING_SCRIPT = """
import json, os
from threadline.shell.children import ChildOutput
from threadline.shell.child_stream import FIRST, FRAME_HEAD, frames

class Published:
    def __init__(self):
        self.texts = []
    def publish(self, msg_type, content, parent):
        self.texts.append([parent.decode(), content["text"]])

published = Published()
output = ChildOutput(published, (), pipe_programs=False)
output.start()
pipe = os.open(output.address, os.O_WRONLY)
def record(cell, text):
    return b"1" + json.dumps({"msg_id": cell}).encode() + b"\\0" + text.encode()
a = list(frames(record("a", "A" * 10_000 + "\\n"), 1, 1))
b = list(frames(record("b", "B\\n"), 2, 1))
c_cut = list(frames(record("c", "C" * 6_000 + "\\n"), 3, 1))[0]  # its writer stopped here
c = list(frames(record("c", "c\\n"), 3, 1))
d_cut = list(frames(record("d", "D" * 6_000 + "\\n"), 3, 2))[0]  # never finished
for frame in [a[0], b[0], a[1], c_cut, a[2], *c, d_cut]:
    os.write(pipe, frame)
output.close()
print(json.dumps([len(a), published.texts, os.path.exists(os.path.dirname(output.address))]))
"""


def test_frames_are_joined_per_writer_and_an_unfinished_record_is_kept(tmp_path: Path) -> None:
    """The kernel's end of the pipe, alone in a process: a record in 3 frames with
    another writer's between them arrives whole; a writer that starts a new record
    before finishing the last (a signal's exception stopped it) has what came of the
    old one published first; what came of a record never finished is published
    when the kernel closes, and the pipe's private directory goes with it."""
    done = subprocess.run(
        [sys.executable, "-c", FRAMING_SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    frame_count, texts, directory_left = json.loads(done.stdout)
    assert frame_count == 3
    assert directory_left is False
    assert [json.loads(header)["msg_id"] for header, _ in texts] == ["b", "a", "c", "c", "d"], texts
    cut = FRAME_SIZE - FRAME_HEAD.size - len(b'1{"msg_id": "c"}\0')  # what the first frame holds
    assert [len(text) for _, text in texts] == [2, 10_001, cut, 2, cut], texts
    assert texts[0][1] == "B\n" and texts[1][1] == "A" * 10_000 + "\n" and texts[3][1] == "c\n"
    assert set(texts[2][1]) == {"C"} and set(texts[4][1]) == {"D"}


def test_forked_children_reach_the_cell_without_fd_capture(tmp_path: Path) -> None:
    """``--no-capture-fd`` leaves descriptors 1 and 2 alone; children still use the socket."""
    manager, kc = start_kernel_logged(tmp_path / "kernel.log", "--no-capture-fd")
    try:
        code = textwrap.dedent(f"""
            import multiprocessing as mp
            def write_lines(child):
                for line in range({LINES}):
                    print(f"child {{child}} line {{line}} {PAD}")
            ps = [mp.get_context("fork").Process(target=write_lines, args=(c,)) for c in range({CHILDREN})]
            for p in ps: p.start()
            for p in ps: p.join()
        """)
        result = execute(kc, code)
        assert result.content["status"] == "ok", result.content
        assert_whole_lines(result.stdout)
    finally:
        stop_kernel(manager, kc)


def test_os_fork_children_lines_whole(kc: BlockingKernelClient) -> None:
    code = textwrap.dedent(f"""
        import os
        pids = []
        for child in range({CHILDREN}):
            pid = os.fork()
            if pid == 0:
                for line in range({LINES}):
                    print(f"child {{child}} line {{line}} {PAD}")
                os._exit(0)
            pids.append(pid)
        for pid in pids: os.waitpid(pid, 0)
    """)
    result = execute(kc, code)
    assert result.content["status"] == "ok", result.content
    assert_whole_lines(result.stdout)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_processes_lines_whole(kc: BlockingKernelClient, worker_dir: Path, method: str) -> None:
    _import_worker(kc, worker_dir)
    code = textwrap.dedent(f"""
        import multiprocessing as mp
        context = mp.get_context({method!r})
        target = children_worker.write_lines
        processes = [context.Process(target=target, args=(c,)) for c in range({CHILDREN})]
        for p in processes: p.start()
        for p in processes: p.join()
    """)
    result = execute(kc, code, timeout=120)
    assert result.content["status"] == "ok", result.content
    assert_whole_lines(result.stdout)


def test_a_spawned_child_imports_only_the_childs_side(kc: BlockingKernelClient) -> None:
    """A spawned child imports threadline's child side before its own code, and only that:
    not the kernel's receiving end, the protocol package (orjson, hmac) or zmq. (It
    imported all of it but zmq once: 53 ms and 90 modules a child, and 4 spawned
    processes took 2.6x ipykernel's time.) Not even ``typing``, which multiprocessing's
    child does not import (2-3 ms of the 5-7 that were left), nor ``json`` (1.7 ms: the
    cell's header comes parsed). Its output still reaches the cell."""
    heavy = (
        "threadline.shell.children",
        "threadline.protocol",
        "threadline.kernel",
        "zmq",
        "orjson",
        "hashlib",
        "dataclasses",
        "concurrent.futures",
        "typing",
        "json",
    )
    report = (
        "import sys; "
        "print(sorted(m for m in sys.modules if m.startswith('threadline.')), "
        f"sorted(m for m in sys.modules if m.split('.')[0] in {sorted({h.split('.')[0] for h in heavy})!r} "
        f"and any(m == h or m.startswith(h + '.') for h in {heavy!r})))"
    )
    code = textwrap.dedent(f"""
        import multiprocessing as mp
        child = mp.get_context("spawn").Process(target=exec, args=({report!r},))
        child.start()
        child.join()
    """)
    result = execute(kc, code, timeout=120)
    assert result.content["status"] == "ok", result.content
    threadline_modules, heavy_found = result.stdout.strip().split("] [")
    assert "threadline.shell.child_process" in threadline_modules, result.stdout
    assert heavy_found.rstrip("]") == "", result.stdout


@pytest.mark.parametrize(("outer", "inner"), [("fork", "fork"), ("fork", "spawn"), ("spawn", "spawn")])
def test_children_of_children_lines_whole(
    kc: BlockingKernelClient, worker_dir: Path, outer: str, inner: str
) -> None:
    """2 children each start 2 grandchildren: the 4 grandchildren's 800 lines arrive whole."""
    _import_worker(kc, worker_dir)
    code = textwrap.dedent(f"""
        import multiprocessing as mp
        context = mp.get_context({outer!r})
        target = children_worker.grandchildren
        processes = [context.Process(target=target, args=(c, {inner!r})) for c in range(2)]
        for p in processes: p.start()
        for p in processes: p.join()
        assert [p.exitcode for p in processes] == [0, 0]
    """)
    result = execute(kc, code, timeout=120)
    assert result.content["status"] == "ok", result.content
    assert_whole_lines(result.stdout)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_process_pool_tasks_land_in_the_submitting_cell(
    kc: BlockingKernelClient, worker_dir: Path, method: str
) -> None:
    """The same pool serves two cells: each cell gets exactly its own tasks' lines."""
    _import_worker(kc, worker_dir)
    start = textwrap.dedent(f"""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        pool = ProcessPoolExecutor({CHILDREN}, mp_context=mp.get_context({method!r}))
    """)
    assert execute(kc, start).content["status"] == "ok"
    run = f"assert sorted(pool.map(children_worker.task, range({CHILDREN}))) == list(range({CHILDREN}))"
    for _ in range(2):
        result = execute(kc, run, timeout=120)
        assert result.content["status"] == "ok", result.content
        assert_whole_lines(result.stdout)
    assert execute(kc, "pool.shutdown()").content["status"] == "ok"


def test_multiprocessing_pool_tasks_land_in_the_submitting_cell(kc: BlockingKernelClient) -> None:
    code = textwrap.dedent(f"""
        import multiprocessing as mp
        def task(child):
            for line in range({LINES}):
                print(f"child {{child}} line {{line}} {PAD}")
            return child
        with mp.get_context("fork").Pool({CHILDREN}) as pool:
            assert pool.map(task, range({CHILDREN})) == list(range({CHILDREN}))
    """)
    result = execute(kc, code)
    assert result.content["status"] == "ok", result.content
    assert_whole_lines(result.stdout)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_childs_traceback_is_shown(kc: BlockingKernelClient, worker_dir: Path, method: str) -> None:
    _import_worker(kc, worker_dir)
    code = textwrap.dedent(f"""
        import multiprocessing as mp
        p = mp.get_context({method!r}).Process(target=children_worker.fail, args=(7,), name="failing")
        p.start(); p.join()
        print("exit code", p.exitcode)
    """)
    result = execute(kc, code, timeout=120)
    assert result.content["status"] == "ok", result.content
    assert "exit code 1" in result.stdout
    assert "Process failing:\nTraceback (most recent call last):" in result.stderr
    assert "ValueError: boom in child 7\n" in result.stderr


def test_a_failing_pool_task_shows_its_remote_traceback(kc: BlockingKernelClient, worker_dir: Path) -> None:
    _import_worker(kc, worker_dir)
    code = textwrap.dedent("""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as pool:
            pool.submit(children_worker.fail, 3).result()
    """)
    result = execute(kc, code)
    assert result.content["status"] == "error"
    assert result.content["ename"] == "ValueError"
    traceback = "\n".join(result.content["traceback"])
    assert "_RemoteTraceback" in traceback
    assert 'raise ValueError(f"boom in child {child}")' in traceback


def test_a_child_that_outlives_its_cell_lands_in_its_cell(kc: BlockingKernelClient) -> None:
    """The child writes only when the second cell tells it to: its line carries the first cell's id."""
    first = textwrap.dedent("""
        import multiprocessing as mp
        go = mp.get_context("fork").Event()
        def later():
            go.wait()
            print("from the first cell's child")
            print("and its partial line", end="")
        child = mp.get_context("fork").Process(target=later)
        child.start()
    """)
    first_id = kc.execute(first)
    assert get_reply(kc, first_id)["content"]["status"] == "ok"
    collect_until_idle(kc, first_id)
    second_id = kc.execute("go.set(); child.join(); print('second cell')")
    messages = _until_idle_of(kc, second_id)
    assert get_reply(kc, second_id)["content"]["status"] == "ok"
    assert _stream_text(messages, first_id) == "from the first cell's child\nand its partial line"
    assert _stream_text(messages, second_id) == "second cell\n"


def test_spawned_python_subprocess_output_reaches_the_cell(kc: BlockingKernelClient) -> None:
    code = textwrap.dedent(f"""
        import os, subprocess, sys
        subprocess.run([sys.executable, "-c", "print('from subprocess.run')"], check=True)
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('to stderr')"], check=True)
        subprocess.run([sys.executable, "-c", "print('given sys.stdout')"], stdout=sys.stdout, check=True)
        os.system({sys.executable!r} + ' -c "print(123 * 3)"')
    """)
    result = execute(kc, code)
    assert result.content["status"] == "ok", result.content
    assert result.stdout == "from subprocess.run\ngiven sys.stdout\n369\n"
    assert result.stderr == "to stderr"


def test_a_programs_output_comes_between_what_the_cell_printed_before_and_after(
    kc: BlockingKernelClient,
) -> None:
    """``wait()`` shows what the program wrote before the cell goes on: 20 rounds, order kept."""
    code = textwrap.dedent(f"""
        import subprocess
        for round in range(20):
            print("before", round)
            subprocess.run([{sys.executable!r}, "-c", f"print('program', {{round}})"], check=True)
            print("after", round)
    """)
    result = execute(kc, code, timeout=120)
    assert result.content["status"] == "ok", result.content
    expected = "".join(f"before {n}\nprogram {n}\nafter {n}\n" for n in range(20))
    assert result.stdout == expected


def test_concurrent_subprocesses_lines_whole(kc: BlockingKernelClient, worker_dir: Path) -> None:
    """4 Python subprocesses at once, block-buffered (8 KiB writes that end mid-line, more than
    PIPE_BUF): each has a pipe of its own, so every line arrives whole."""
    code = textwrap.dedent(f"""
        import subprocess, sys
        script = "import children_worker, sys; children_worker.write_lines(int(sys.argv[1]))"
        env = dict(os.environ, PYTHONPATH={str(worker_dir)!r})
        command = [sys.executable, "-c", script]
        children = [subprocess.Popen([*command, str(c)], env=env) for c in range({CHILDREN})]
        assert [child.wait() for child in children] == [0] * {CHILDREN}
    """)
    result = execute(kc, "import os\n" + code, timeout=120)
    assert result.content["status"] == "ok", result.content
    assert_whole_lines(result.stdout)


def test_a_subprocess_that_outlives_its_cell_lands_in_its_cell(kc: BlockingKernelClient) -> None:
    first = textwrap.dedent(f"""
        import subprocess, sys
        script = "import sys; sys.stdin.readline(); print('late line'); print('partial', end='')"
        program = subprocess.Popen([{sys.executable!r}, "-c", script], stdin=subprocess.PIPE)
    """)
    first_id = kc.execute(first)
    assert get_reply(kc, first_id)["content"]["status"] == "ok"
    collect_until_idle(kc, first_id)
    second_id = kc.execute("program.communicate(b'go\\n'); print('second cell')")
    messages = _until_idle_of(kc, second_id)
    assert get_reply(kc, second_id)["content"]["status"] == "ok"
    assert _stream_text(messages, first_id) == "late line\npartial"
    assert _stream_text(messages, second_id) == "second cell\n"


def _until_idle_of(kc: BlockingKernelClient, msg_id: str) -> list[dict[str, Any]]:
    """Every iopub message, whatever its parent, until ``msg_id``'s idle."""
    messages: list[dict[str, Any]] = []
    while True:
        message = kc.get_iopub_msg(timeout=30)
        messages.append(message)
        parent = message["parent_header"].get("msg_id")
        if parent == msg_id and message["content"].get("execution_state") == "idle":
            return messages


def _stream_text(messages: list[dict[str, Any]], msg_id: str) -> str:
    return "".join(
        m["content"]["text"]
        for m in messages
        if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id
    )


def test_display_in_a_child_is_dropped_with_one_warning(kc: BlockingKernelClient) -> None:
    """A forked child cannot use the kernel's sockets: its displays are dropped (as in
    ipykernel), it says so once on its stderr, and it goes on."""
    code = textwrap.dedent("""
        import multiprocessing as mp
        from IPython.display import display
        def show():
            display({"text/plain": "one"}, raw=True)
            display({"text/plain": "two"}, raw=True)
            print("after display")
        p = mp.get_context("fork").Process(target=show); p.start(); p.join()
        print("exit code", p.exitcode)
    """)
    result = execute(kc, code)
    assert result.content["status"] == "ok", result.content
    assert result.stdout == "after display\nexit code 0\n"
    assert result.stderr.count("threadline: a child process cannot send display") == 1
    assert not result.of_type("display_data")


def test_input_in_a_child_reads_its_own_stdin(kc: BlockingKernelClient) -> None:
    """Not the notebook's stdin channel (its reply could only reach the kernel): EOFError, no hang."""
    code = textwrap.dedent("""
        import multiprocessing as mp
        def ask():
            try:
                input("name? ")
            except EOFError:
                print("EOFError")
        p = mp.get_context("fork").Process(target=ask); p.start(); p.join()
    """)
    result = execute(kc, code, allow_stdin=True)
    assert result.content["status"] == "ok", result.content
    assert result.stdout.endswith("EOFError\n")


def test_faulthandler_works_in_a_cell(kc: BlockingKernelClient) -> None:
    code = "import faulthandler\nfaulthandler.enable()\nprint(faulthandler.is_enabled())\n"
    code += "faulthandler.dump_traceback()"
    result = execute(kc, code)
    assert result.content["status"] == "ok", result.content
    assert result.stdout == "True\n"
    assert "most recent call first" in result.stderr
    assert 'File "<ipython-input' in result.stderr or "<module>" in result.stderr


def test_a_fatal_error_traceback_goes_to_the_kernel_log(tmp_path: Path) -> None:
    """faulthandler.enable() in a cell, then a segfault: the traceback survives in the kernel's log."""
    log = tmp_path / "kernel.log"
    manager, kc = start_kernel_logged(log)
    try:
        kc.execute("import ctypes, faulthandler\nfaulthandler.enable()\nctypes.string_at(0)")
        assert wait_for_exit(manager) is not None
    finally:
        stop_kernel(manager, kc)
    text = log.read_text()
    assert "Fatal Python error: Segmentation fault" in text
    assert "most recent call first" in text


def test_cd_then_import_from_that_directory(kc: BlockingKernelClient, tmp_path: Path) -> None:
    (tmp_path / "module_in_that_dir.py").write_text("VALUE = 42\n")
    result = execute(kc, f"%cd {tmp_path}\nimport module_in_that_dir\nprint(module_in_that_dir.VALUE)")
    assert result.content["status"] == "ok", result.content
    assert result.stdout.endswith("42\n")
    assert execute(kc, "import sys; print('' in sys.path)").stdout == "True\n"
