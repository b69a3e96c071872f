"""The visual debugger: ``debug_request`` on control, DAP to an in-process debugpy.

Theory of operation
-------------------
JupyterLab's debugger speaks the Debug Adapter Protocol (DAP) wrapped in Jupyter
messages: a ``debug_request``'s content is a DAP request, the ``debug_reply``'s
content its response, and DAP events travel as ``debug_event`` on iopub.

The kernel starts debugpy in its own process as a server (``debugpy.listen`` on
127.0.0.1, a free port) and talks DAP to it over one TCP connection. That
connection, and all the waiting it implies, belongs to the debugger thread, which
runs its own asyncio loop. The IO thread never waits on it: ``Debugger.handle``
posts the request to that loop, nothing more. On the debugger thread the
requests are served one at a time, in the order they came (as ipykernel serves
its control channel): each is forwarded to debugpy (or answered by the kernel
itself, for the Jupyter additions ``dumpCell``, ``debugInfo``,
``inspectVariables``, ``richInspectVariables`` and ``copyToGlobals``) between a
``busy`` and an ``idle`` on iopub, its ``debug_reply`` going out on control, all
through the ``Sender`` (the thread-safe path through the outbox). A reader task
matches debugpy's responses to requests by ``request_seq`` and publishes its
events.

The order matters to JupyterLab: it takes ``isStarted`` from every ``debugInfo``
reply, and sends one whenever a notebook gains focus or its kernel changes. A
``debugInfo`` sent after ``initialize`` but answered before a slower ``attach``
said "not started" and switched JupyterLab's session off again, after which it
ignored every click in the breakpoint gutter. So: in order, and a session
counts as started from a successful ``initialize`` on, as in ipykernel.

debugpy delays its ``attach`` response until ``configurationDone``; a client
(JupyterLab) waits for the attach reply before it sends anything else. So the
kernel runs that handshake itself -- attach, wait for ``initialized``, send
``configurationDone`` -- and answers the client's own ``configurationDone``.

The kernel's own threads (IO, heartbeat, fd pumps, this one) are marked so that
debugpy never traces or suspends them: a breakpoint stops user code only, and
control requests are still answered while it is stopped.

Cells get stable file names, as the Jupyter debugger protocol asks
(``shell/cell_names.py``, installed when the kernel starts if debugpy is there):
``debugInfo`` tells the front end how they are made, and ``dumpCell`` writes the
code to its file for debugpy. The kernel builds the ``Debugger`` when the first
``debug_request`` comes: a kernel never debugged imports none of this module,
pdb included.

State (connection, breakpoints, stopped threads) is touched only on the debugger
thread.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any, Final

from threadline.io import Sender
from threadline.kernel.info import debugpy_available
from threadline.protocol import JSONDict, Message
from threadline.shell import cell_names, pdb_prompt
from threadline.shell.interactive import ThreadlineShell

log = logging.getLogger("threadline.debugger")

#: How long a request may wait for debugpy before it is answered with a failure.
DAP_TIMEOUT: Final = 30.0
#: Threads of the kernel itself, which debugpy must neither trace nor suspend.
KERNEL_THREAD_NAMES: Final = frozenset(
    {"threadline-io", "threadline-heartbeat", "threadline-fd1", "threadline-fd2", "threadline-debugger"}
)
_PACKAGE_DIR: Final = str(Path(__file__).resolve().parent.parent)
_REPR_LIMIT: Final = 1000
_INTERRUPT_RETRIES: Final = 1000
_INTERRUPT_RETRY_DELAY: Final = 0.001
_STEPS: Final = frozenset({"continue", "next", "stepIn", "stepOut"})


def _hide_from_debugger(thread: threading.Thread) -> None:
    # The attributes debugpy (pydevd) reads to leave a thread alone.
    thread.pydev_do_not_trace = True  # type: ignore[attr-defined]
    thread.is_pydev_daemon_thread = True  # type: ignore[attr-defined]


# -- DAP over TCP ------------------------------------------------------------------------------


class DapError(RuntimeError):
    """debugpy could not be reached, or did not answer in time."""


def encode_dap(message: JSONDict) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read_dap(reader: asyncio.StreamReader) -> JSONDict:
    """Read one DAP message; ``asyncio.IncompleteReadError`` at the end of the stream."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = None
    for line in head.decode("ascii", "replace").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise DapError(f"DAP message without Content-Length: {head!r}")
    message: JSONDict = json.loads(await reader.readexactly(length))
    return message


class DapConnection:
    """One DAP connection to debugpy (debugger thread only): requests matched to responses."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_event: Callable[[JSONDict], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_event = on_event
        self._seq = itertools.count(1)
        self._pending: dict[int, asyncio.Future[JSONDict]] = {}
        self._event_waiters: dict[str, list[asyncio.Future[JSONDict]]] = {}
        self.closed = False
        self._reading = asyncio.get_running_loop().create_task(self._read_all())

    def send(self, command: str, arguments: JSONDict | None = None) -> asyncio.Future[JSONDict]:
        """Send a request now; the future is its response."""
        if self.closed:
            raise DapError("the connection to debugpy is closed")
        seq = next(self._seq)
        response: asyncio.Future[JSONDict] = asyncio.get_running_loop().create_future()
        self._pending[seq] = response
        request = {"seq": seq, "type": "request", "command": command, "arguments": arguments or {}}
        self._writer.write(encode_dap(request))
        return response

    async def call(self, command: str, arguments: JSONDict | None = None) -> JSONDict:
        return await _within(self.send(command, arguments), f"debugpy's {command} response")

    def expect_event(self, event: str) -> asyncio.Future[JSONDict]:
        """A future for the next ``event`` (register it before what causes the event)."""
        waiter: asyncio.Future[JSONDict] = asyncio.get_running_loop().create_future()
        self._event_waiters.setdefault(event, []).append(waiter)
        return waiter

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._writer.close()
            self._reading.cancel()
        self._fail_waiters()

    async def _read_all(self) -> None:
        try:
            while True:
                message = await read_dap(self._reader)
                kind = message.get("type")
                if kind == "response":
                    future = self._pending.pop(message.get("request_seq", -1), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif kind == "event":
                    for waiter in self._event_waiters.pop(message.get("event", ""), []):
                        if not waiter.done():
                            waiter.set_result(message)
                    self._on_event(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("reading from debugpy failed")
        finally:
            self.closed = True
            self._writer.close()
            self._fail_waiters()

    def _fail_waiters(self) -> None:
        waiters = list(self._pending.values())
        waiters += [w for ws in self._event_waiters.values() for w in ws]
        self._pending.clear()
        self._event_waiters.clear()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(DapError("the connection to debugpy closed"))


async def _within(future: asyncio.Future[JSONDict], what: str) -> JSONDict:
    try:
        return await asyncio.wait_for(future, DAP_TIMEOUT)
    except TimeoutError:
        raise DapError(f"no {what} within {DAP_TIMEOUT:.0f}s") from None


# -- the debugger ---------------------------------------------------------------------------


class Debugger:
    """Serves ``debug_request``; owns the debugger thread and its connection to debugpy."""

    def __init__(self, sender: Sender, shell: ThreadlineShell, interrupt_again: Callable[[], None]) -> None:
        self.sender = sender
        self.shell = shell
        #: Delivers a deferred interrupt again (``InterruptDelivery.interrupt_again``).
        self._interrupt_again = interrupt_again
        self.available = debugpy_available()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Debugger thread only, from here on.
        self._endpoint: tuple[str, int] | None = None
        self._dap: DapConnection | None = None
        #: From a successful ``initialize`` to ``disconnect`` (what debugInfo's isStarted says).
        self._started = False
        self._attached = False
        self._one_at_a_time = asyncio.Lock()
        self._breakpoints: dict[str, list[JSONDict]] = {}
        self._stopped: set[int] = set()
        #: Threads that ended: debugpy never answers a step or continue for one.
        self._exited: set[int] = set()
        self._event_parent: JSONDict | None = None
        #: debugpy's own source folder, once it runs (read by the SIGINT handler).
        self._debugpy_dir: str | None = None
        self._interrupt_retries = 0
        if self.available:
            pdb_prompt.visual_breakpoint = self._visual_breakpoint

    # -- the IO thread's side ------------------------------------------------------------------

    def handle(self, message: Message) -> None:
        """IO thread: take a ``debug_request``; busy, reply and idle come from the debugger thread."""
        _hide_from_debugger(threading.current_thread())
        self._ensure_thread().call_soon_threadsafe(self._begin, message)

    def _ensure_thread(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = self._loop = asyncio.new_event_loop()
            thread = threading.Thread(target=self._run, args=(loop,), name="threadline-debugger", daemon=True)
            _hide_from_debugger(thread)
            thread.start()
        return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    # -- the debugger thread ---------------------------------------------------------------

    def _begin(self, message: Message) -> None:
        self._start_task(self._serve(message))

    def _start_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, message: Message) -> None:
        request: JSONDict = dict(message.content)
        async with self._one_at_a_time:  # FIFO: the requests' tasks start in arrival order
            # busy, reply, idle for one request before the next (ipykernel's test_debug_requests_sequential)
            self.sender.publish("status", {"execution_state": "busy"}, parent=message.parent_part)
            self._event_parent = message.header
            try:
                response = await self._respond(request)
            except Exception as exc:
                if not isinstance(exc, DapError):
                    log.exception("debug request %r failed", request.get("command"))
                response = _response(request, success=False, message=str(exc))
            self.sender.send(
                "control", "debug_reply", response, parent=message.parent_part, identities=message.identities
            )
            self.sender.publish("status", {"execution_state": "idle"}, parent=message.parent_part)

    async def _respond(self, request: JSONDict) -> JSONDict:
        command = request.get("command")
        arguments = request.get("arguments") or {}
        local: dict[str, Callable[[JSONDict, JSONDict], Coroutine[Any, Any, JSONDict]]] = {
            "debugInfo": self._debug_info,
            "dumpCell": self._dump_cell,
            "inspectVariables": self._inspect_variables,
            "richInspectVariables": self._rich_inspect_variables,
            "copyToGlobals": self._copy_to_globals,
            "initialize": self._initialize,
            "attach": self._attach,
            "configurationDone": self._configuration_done,
            "disconnect": self._disconnect,
        }
        if isinstance(command, str) and command in local:
            return await local[command](request, arguments)
        if command in _STEPS and arguments.get("threadId") in self._exited:
            return _response(request, success=False, message=f"thread {arguments['threadId']} has exited")
        response = await self._forward(request)
        if command == "setBreakpoints" and response.get("success"):
            path = str(arguments.get("source", {}).get("path", ""))
            breakpoints = list(arguments.get("breakpoints") or [])
            if breakpoints:
                self._breakpoints[path] = breakpoints
            else:
                self._breakpoints.pop(path, None)
        elif command in _STEPS and response.get("success"):
            every = command == "continue" and (response.get("body") or {}).get("allThreadsContinued", True)
            if every:
                self._stopped.clear()
            else:
                self._stopped.discard(arguments.get("threadId", -1))
        return response

    async def _forward(self, request: JSONDict) -> JSONDict:
        """Send the client's request to debugpy; its response, renumbered for the client."""
        dap = self._require_connection()
        response = await dap.call(str(request.get("command")), request.get("arguments") or {})
        return {**response, "request_seq": request.get("seq", 0)}

    def _require_connection(self) -> DapConnection:
        if self._dap is None or self._dap.closed:
            raise DapError("the debugger is not started (send initialize first)")
        return self._dap

    def _on_event(self, event: JSONDict) -> None:
        name, body = event.get("event"), event.get("body") or {}
        if name == "stopped" and "threadId" in body:
            self._stopped.add(body["threadId"])
        elif name == "continued":
            if body.get("allThreadsContinued", True):
                self._stopped.clear()
            else:
                self._stopped.discard(body.get("threadId", -1))
        elif name == "thread" and body.get("reason") == "exited":
            self._stopped.discard(body.get("threadId", -1))
            self._exited.add(body.get("threadId", -1))
        self.sender.publish("debug_event", event, parent=self._event_parent)

    # -- the session -------------------------------------------------------------------------

    async def _initialize(self, request: JSONDict, arguments: JSONDict) -> JSONDict:
        if not self.available:
            return _response(request, success=False, message="debugpy is not installed")
        if self._dap is None or self._dap.closed:
            host, port = self._endpoint or self._listen()
            reader, writer = await asyncio.open_connection(host, port)
            self._dap = DapConnection(reader, writer, self._on_event)
        response = await self._forward(request)
        self._started = bool(response.get("success"))
        return response

    def _listen(self) -> tuple[str, int]:
        """Start debugpy in this process, once (blocks this thread for a moment)."""
        os.environ.setdefault("PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING", "1")  # steps across IPython's lines
        os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # no frozen-modules warning
        for thread in threading.enumerate():
            if thread.name in KERNEL_THREAD_NAMES:
                _hide_from_debugger(thread)
        hook = sys.breakpointhook
        import debugpy

        debugpy.configure(subProcess=False)
        host, port = debugpy.listen(("127.0.0.1", 0))
        # debugpy takes breakpoint() over (and ignores it without a client); here
        # breakpoint() stays pdb_prompt's, which asks ``_visual_breakpoint`` first.
        sys.breakpointhook = hook
        self._debugpy_dir = os.path.dirname(debugpy.__file__)
        self._endpoint = (str(host), int(port))
        return self._endpoint

    async def _attach(self, request: JSONDict, arguments: JSONDict) -> JSONDict:
        dap = self._require_connection()
        # debugpy answers attach only after configurationDone, which it asks for with
        # the initialized event: run that handshake here (the client waits for attach).
        initialized = dap.expect_event("initialized")
        # The kernel's own frames are not the user's code, even in a source checkout.
        rules = [*arguments.get("rules", []), {"path": _PACKAGE_DIR, "include": False}]
        attached = dap.send("attach", {"justMyCode": True, **arguments, "rules": rules})
        await _within(initialized, "initialized event from debugpy")
        configured = await dap.call("configurationDone", {})
        response = await _within(attached, "debugpy's attach response")
        self._attached = bool(response.get("success")) and bool(configured.get("success"))
        return {**response, "request_seq": request.get("seq", 0)}

    async def _configuration_done(self, request: JSONDict, arguments: JSONDict) -> JSONDict:
        if not self._attached:
            return _response(request, success=False, message="not attached")
        return _response(request)

    async def _disconnect(self, request: JSONDict, arguments: JSONDict) -> JSONDict:
        if self._dap is None or self._dap.closed:
            response = _response(request)
        else:
            response = await self._forward(request)
            self._dap.close()
        self._dap = None
        self._started = False
        self._attached = False
        self._breakpoints.clear()
        self._stopped.clear()
        self._exited.clear()
        return response

    # -- the Jupyter additions ----------------------------------------------------------------

    async def _debug_info(self, request: JSONDict, arguments: JSONDict) -> JSONDict:
        return _response(
            request,
            body={
                "isStarted": self._started,
                "hashMethod": "Murmur2",
                "hashSeed": cell_names.HASH_SEED,
                "tmpFilePrefix": cell_names.file_prefix(),
                "tmpFileSuffix": cell_names.FILE_SUFFIX,
                "breakpoints": [
                    {"source": path, "breakpoints": breakpoints}
                    for path, breakpoints in self._breakpoints.items()
                ],
                "stoppedThreads": sorted(self._stopped),
                "richRendering": True,
                "exceptionPaths": ["Python Exceptions"],
            },
        )

    async def _dump_cell(self, request: JSONDict, arguments: JSONDict) -> JSONDict:
        code = arguments.get("code")
        if not isinstance(code, str):
            return _response(request, success=False, message="dumpCell needs the cell's code")
        path = Path(cell_names.cell_file_name(code))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
        return _response(request, body={"sourcePath": str(path)})

    async def _inspect_variables(self, request: JSONDict, arguments: JSONDict) -> JSONDict:
        hidden = self.shell.user_ns_hidden
        variables = [
            {
                "name": name,
                "value": _short_repr(value),
                "type": type(value).__name__,
                "variablesReference": 0,
            }
            for name, value in list(self.shell.user_ns.items())
            if not name.startswith("_") and name not in hidden
        ]
        return _response(request, body={"variables": variables})

    async def _rich_inspect_variables(self, request: JSONDict, arguments: JSONDict) -> JSONDict:
        name = arguments.get("variableName")
        if not isinstance(name, str) or not name.isidentifier():
            return _response(request, success=False, message=f"not a variable name: {name!r}")
        frame_id = arguments.get("frameId")
        if frame_id is not None and self._stopped:
            # Stopped: the variable lives in that frame; format it there.
            formatter = "__import__('IPython').get_ipython().display_formatter.format"
            evaluated = await self._require_connection().call(
                "evaluate",
                {"expression": f"{formatter}({name})", "frameId": frame_id, "context": "clipboard"},
            )
            if not evaluated.get("success"):
                return {**evaluated, "command": "richInspectVariables", "request_seq": request.get("seq", 0)}
            data, metadata = ast.literal_eval(evaluated["body"]["result"])
        elif name in self.shell.user_ns:
            data, metadata = self.shell.display_formatter.format(self.shell.user_ns[name])
        else:
            return _response(request, success=False, message=f"no variable {name!r}")
        return _response(request, body={"data": data, "metadata": metadata})

    async def _copy_to_globals(self, request: JSONDict, arguments: JSONDict) -> JSONDict:
        source, target = arguments.get("srcVariableName"), arguments.get("dstVariableName")
        if not all(isinstance(n, str) and n.isidentifier() for n in (source, target)):
            return _response(request, success=False, message="copyToGlobals needs two variable names")
        response = await self._require_connection().call(
            "setExpression",
            {"expression": f"globals()[{target!r}]", "value": source, "frameId": arguments.get("srcFrameId")},
        )
        return {**response, "command": "copyToGlobals", "request_seq": request.get("seq", 0)}

    # -- breakpoint() -------------------------------------------------------------------------------

    def _visual_breakpoint(self, frame: FrameType) -> bool:
        """``breakpoint()`` (any thread): stop in the debugger panel if a client is attached.

        Otherwise the text debugger's prompt opens (``shell/pdb_prompt.py``).
        """
        if not self._started or self._debugpy_dir is None:
            return False
        import debugpy
        from debugpy.server import api

        if not debugpy.is_client_connected():
            return False
        # debugpy.breakpoint() would stop in its caller, the kernel's code; this is
        # the call it makes, stopping in the frame that called breakpoint() instead.
        settrace: Any = getattr(api, "_settrace", None)
        if settrace is None:  # another debugpy: its public call, one frame off
            debugpy.breakpoint()
        else:
            settrace(
                suspend=True, trace_only_current_thread=True, patch_multiprocessing=False, stop_at_frame=frame
            )
        return True

    # -- interrupts ------------------------------------------------------------------------------

    def defer_interrupt(self, frame: FrameType | None) -> bool:
        """The SIGINT handler asks (main thread): is this thread inside debugpy?

        Then the interrupt must wait: ``KeyboardInterrupt`` raised in debugpy's
        trace function would end the debugging of the thread for good. The
        debugger thread resumes the stopped threads and sends SIGINT again, until
        it lands in the user's code (bounded: after ``_INTERRUPT_RETRIES`` it is
        raised wherever it lands).
        """
        loop, debugpy_dir = self._loop, self._debugpy_dir
        if loop is None or debugpy_dir is None or not _runs_in(frame, debugpy_dir):
            self._interrupt_retries = 0
            return False
        if self._interrupt_retries >= _INTERRUPT_RETRIES:
            return False
        self._interrupt_retries += 1
        loop.call_soon_threadsafe(self._start_task, self._resume_then_interrupt())
        return True

    async def _resume_then_interrupt(self) -> None:
        if self._dap is not None and not self._dap.closed and self._stopped:
            with contextlib.suppress(DapError):
                await self._dap.call("continue", {"threadId": min(self._stopped)})
        await asyncio.sleep(_INTERRUPT_RETRY_DELAY)  # pace the retries while the thread leaves debugpy
        # Not SIGINT: if the cell has ended meanwhile (the thread it resumed ran to
        # the cell's end), this one is dropped instead of interrupting whatever
        # runs next -- a %%background cell, when the main thread is idle.
        self._interrupt_again()


def _response(
    request: JSONDict, *, success: bool = True, body: JSONDict | None = None, message: str | None = None
) -> JSONDict:
    response: JSONDict = {
        "type": "response",
        "seq": 0,
        "request_seq": request.get("seq", 0),
        "command": request.get("command", ""),
        "success": success,
        "body": body or {},
    }
    if message is not None:
        response["message"] = message
    return response


def _runs_in(frame: FrameType | None, directory: str) -> bool:
    """Whether ``frame`` or any frame that called it runs code from ``directory``."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(directory):
            return True
        frame = frame.f_back
    return False


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        return f"<repr failed: {type(exc).__name__}>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."
