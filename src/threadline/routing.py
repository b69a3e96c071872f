"""Which cell does this output belong to? One context variable answers.

Theory of operation
-------------------
The parent of everything a thread publishes -- stream text, display data,
comm messages, input requests -- is read from one ``contextvars.ContextVar``.
Nothing keeps a copy. The kernel sets it when it starts handling a request;
asyncio tasks copy it when they are created, so a task keeps the cell that
created it.

Threads do not inherit context variables on their own (before Python 3.14), so
``install_thread_propagation`` teaches them: ``threading.Thread.start`` records
the starter's origin and the new thread adopts it before ``run`` (so
subclasses that override ``run``, and threads started by libraries, are
covered); ``ThreadPoolExecutor.submit`` binds each task to its submitter's
origin, because pool threads outlive any one cell.

A thread with no origin (started at import time, or a kernel thread) is routed
to the most recent *execute* request: never an empty parent, which no front end
shows, and never a completion or inspection request. The value ``RUNNING``
routes to whatever cell is executing at the moment of each write.

Thread safety: a ContextVar is per-thread (and per-task) by construction. The
two module globals are single references replaced atomically by the kernel and
only read elsewhere.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

from threadline.after_import import when_imported

# Not ``typing.TYPE_CHECKING``: a spawned child imports this module before its own
# code, and ``typing`` is not otherwise imported there (2-3 ms a child, see
# shell/child_process.py). mypy treats this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, ParamSpec, Protocol, TypeVar

    from threadline.protocol import JSONDict

    P = ParamSpec("P")
    T = TypeVar("T")

    class OutputSink(Protocol):
        """Takes a thread's output in place of iopub (see ``threadline.shell.widgets``).

        Called only on the thread whose output it takes.
        """

        def stream(self, name: str, text: str) -> None: ...

        def output(self, msg_type: str, content: dict[str, Any]) -> bool:
            """Take a display_data / execute_result / error / clear_output; False to decline."""
            ...


class Parent:
    """A request that output can belong to: its header and who sent it. Immutable.

    A plain class rather than a frozen dataclass: every process of the kernel's
    family imports this module, a spawned child before its own code, and
    ``dataclasses`` would bring ``inspect`` with it (~8 ms a child here).
    """

    __slots__ = ("allow_stdin", "header", "header_json", "identities", "sink")

    header: JSONDict
    identities: tuple[bytes, ...]
    #: Whether the request allows ``input()`` (execute requests only).
    allow_stdin: bool
    #: Where output goes instead of iopub, if set (an ``OutputSink``: a widget
    #: capturing this thread's output into its own state).
    sink: OutputSink | None
    #: ``header`` serialised, as every message for this parent carries it: the
    #: request's own header frame when there is one (``Message.header_json``),
    #: otherwise serialised once, here.
    header_json: bytes

    def __init__(
        self,
        header: JSONDict,
        identities: tuple[bytes, ...] = (),
        allow_stdin: bool = False,
        sink: OutputSink | None = None,
        header_json: bytes = b"",
    ) -> None:
        if not header_json:
            # Imported here: a child process is given its header serialised
            # (shell/child_process.py) and stays clear of the protocol package.
            from threadline.protocol import pack

            header_json = pack(header)
        assign = object.__setattr__
        assign(self, "header", header)
        assign(self, "identities", identities)
        assign(self, "allow_stdin", allow_stdin)
        assign(self, "sink", sink)
        assign(self, "header_json", header_json)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Parent cannot be changed (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Parent cannot be changed (tried to delete {name!r})")

    def __repr__(self) -> str:
        return f"Parent(header={self.header!r}, allow_stdin={self.allow_stdin!r})"

    @property
    def msg_id(self) -> str:
        value: str = self.header["msg_id"]
        return value

    @property
    def msg_type(self) -> str:
        value: str = self.header["msg_type"]
        return value


class _Running:
    """Marker: route to whichever cell is executing at the time of each write."""

    def __repr__(self) -> str:
        return "RUNNING"


RUNNING: Final = _Running()

Route = Parent | _Running

_origin: contextvars.ContextVar[Route | None] = contextvars.ContextVar("threadline_parent", default=None)
_latest_execute: Parent | None = None
_running_execute: Parent | None = None


def current_parent() -> Parent | None:
    """The parent that output from here goes to right now (None before any cell)."""
    origin = _origin.get()
    if origin is None:
        return _latest_execute
    if origin is RUNNING:
        return _running_execute or _latest_execute
    return origin  # type: ignore[return-value]


def current_origin() -> Route | None:
    """This context's own routing, without the fallbacks of ``current_parent``."""
    return _origin.get()


def set_origin(route: Route | None) -> contextvars.Token[Route | None]:
    """Make ``route`` this context's origin (the kernel does this per request)."""
    return _origin.set(route)


def reset_origin(token: contextvars.Token[Route | None]) -> None:
    _origin.reset(token)


def note_execute_started(parent: Parent) -> None:
    """The kernel calls this when an execute request starts running."""
    global _latest_execute, _running_execute
    _latest_execute = parent
    _running_execute = parent


def note_execute_finished(parent: Parent) -> None:
    global _running_execute
    if _running_execute is parent:
        _running_execute = None


def latest_execute() -> Parent | None:
    return _latest_execute


@contextmanager
def route_to(route: Route | None) -> Iterator[None]:
    """Send this thread's output to ``route`` inside the block.

    ``route`` is a ``Parent`` (from ``current_parent()`` in the cell you want),
    ``RUNNING`` for whatever cell is executing, or ``None`` for the fallback
    (the most recent execute request).
    """
    token = _origin.set(route)
    try:
        yield
    finally:
        _origin.reset(token)


# -- propagation into threads and pools ---------------------------------------------

_ORIGIN_ATTR = "_threadline_origin"
_installed = False


def bind(function: Callable[P, T], route: Route | None = None) -> Callable[P, T]:
    """``function`` wrapped to run with ``route`` (default: the caller's origin)."""
    captured = _origin.get() if route is None else route

    @functools.wraps(function)
    def bound(*args: P.args, **kwargs: P.kwargs) -> T:
        token = _origin.set(captured)
        try:
            return function(*args, **kwargs)
        finally:
            _origin.reset(token)

    return bound


def install_thread_propagation() -> None:
    """Make new threads and pool tasks inherit the origin of the code that started them.

    Idempotent. Patches ``threading.Thread.start`` / ``_bootstrap_inner`` and
    ``ThreadPoolExecutor.submit``, the latter once ``concurrent.futures`` is
    imported (a spawned child may never import it: with ``logging``, ~9 ms);
    other context variables are left alone.
    """
    global _installed
    if _installed:
        return
    _installed = True

    original_start = threading.Thread.start
    original_bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def start(self: threading.Thread) -> None:
        setattr(self, _ORIGIN_ATTR, _origin.get())
        original_start(self)

    def _bootstrap_inner(self: threading.Thread) -> None:
        origin = getattr(self, _ORIGIN_ATTR, None)
        if origin is not None:
            _origin.set(origin)  # a fresh thread starts with an empty context
        original_bootstrap(self)

    threading.Thread.start = start  # type: ignore[method-assign]
    threading.Thread._bootstrap_inner = _bootstrap_inner  # type: ignore[attr-defined]
    when_imported("concurrent.futures.thread", _bind_pool_tasks)


def _bind_pool_tasks(module: ModuleType) -> None:
    executor: Any = module.ThreadPoolExecutor
    original_submit = executor.submit

    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return original_submit(self, bind(fn), *args, **kwargs)

    executor.submit = submit
