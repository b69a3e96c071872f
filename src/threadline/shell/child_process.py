"""What every process of a kernel's family runs -- the kernel and each of its children.

The theory of operation is in ``threadline.shell.children``: this module holds
the process-wide part -- which pipe the kernel's children write to, this
process's child streams once it is a child, the fork hook, the spawn
preparation and the pool task wrappers -- and ``start_spawned_child``, where a
child spawned by multiprocessing begins. The kernel's receiving end
(``ChildOutput``) and its programs' pipes are in ``children``.

A spawned child imports this module before its own code runs, so it keeps to
what a child needs: no zmq, no signing, no receiving thread, not even
``typing``. (Importing ``children`` instead cost each spawned child 53 ms and
90 modules here, on top of multiprocessing's own, and put a pool of 4 spawned
workers at 3x ipykernel's time to the cell's idle; ``typing`` was 2-3 ms of the
5-7 ms left.)
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import os
import sys
from collections.abc import Callable
from types import ModuleType

from threadline import routing
from threadline.after_import import when_imported
from threadline.routing import Parent
from threadline.shell.child_stream import ChildStream, KernelLink

# ``typing`` only for the type checker (see ``threadline.routing``).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

#: The kernel's pipe (its path), in the kernel and in every child that knows it.
_address: str | None = None
#: The kernel's own descriptors of the pipe, which a forked child closes: a child
#: holding the reading end would keep the pipe open after the kernel is gone,
#: and its writes would fill it and wait for ever instead of failing.
_kernel_descriptors: tuple[int, ...] = ()
#: The kernel's own ``OutStream`` objects (inherited by forked children).
_kernel_streams: tuple[io.TextIOBase, ...] = ()
#: This process's child streams, once it is a child.
_child_streams: tuple[ChildStream, ChildStream] | None = None
_hooks_installed = False
#: Whether this process has started a child (forked, spawned, a forkserver) since
#: it became the kernel; set just before the first one starts. Until then no record
#: can be waiting, and ``sync`` -- before every direct line of a thread and every
#: reply -- skips its look at the pipe: a ``poll``, 37-39 us on a thread woken
#: from a 20 ms sleep here (its caches cold), of a ~400 us print.
_children_started = False
_SPAWN_KEY: Final = "threadline_child_output"


def become_kernel(
    address: str, kernel_streams: tuple[io.TextIOBase, ...], descriptors: tuple[int, ...] = ()
) -> None:
    """This process is the kernel: its children write to the pipe at ``address``;
    ``descriptors`` are the kernel's own ends of it, which a forked child closes."""
    global _address, _kernel_streams, _kernel_descriptors
    _address, _kernel_streams, _kernel_descriptors = address, kernel_streams, descriptors
    _install_process_hooks()


def children_started() -> bool:
    """Whether this process has started a child since it became the kernel."""
    return _children_started


def start_spawned_child(address: str, header: dict[str, Any] | None, header_json: bytes) -> None:
    """Called in a child spawned by multiprocessing, while it unpickles its preparation data."""
    global _address
    _address = address
    routing.install_thread_propagation()
    parent = _parent(header, header_json)
    if parent is not None:
        routing.set_origin(parent)  # the child's main thread: it runs the Process target
    _become_child(replace_any=True)
    _install_process_hooks()


def _become_child(*, replace_any: bool) -> None:
    """Point this process's ``sys.stdout``/``sys.stderr`` at the kernel's pipe."""
    global _child_streams
    if _address is None:
        return
    if _child_streams is None:
        link = KernelLink(_address)
        _child_streams = (ChildStream("stdout", 1, link), ChildStream("stderr", 2, link))
        atexit.register(_flush_child_streams)
    else:
        for stream in _child_streams:
            stream.forget_partial_lines()
    out, err = _child_streams
    for kernel_stream in _kernel_streams:
        child = out if getattr(kernel_stream, "name", "") == "stdout" else err
        # Code may hold the kernel's stream object itself (a logging handler):
        # shadow its methods on the instance so it forwards, in this process only.
        setattr(kernel_stream, "write", child.write)  # noqa: B010
        setattr(kernel_stream, "flush", child.flush)  # noqa: B010
    # A stream the user put in place (``redirect_stdout``) stays, as in any fork.
    inherited = (*_kernel_streams, *_child_streams)
    if replace_any or sys.stdout in inherited:
        _replace_std_stream("stdout", out)
    if replace_any or sys.stderr in inherited:
        _replace_std_stream("stderr", err)


def _replace_std_stream(name: str, stream: ChildStream) -> None:
    old = getattr(sys, name)
    if old is not None and old not in _kernel_streams:
        with contextlib.suppress(Exception):
            old.flush()
    setattr(sys, name, stream)


def _flush_child_streams() -> None:
    if _child_streams is not None:
        for stream in _child_streams:
            stream.flush_all()


def flush_std_streams() -> None:
    """Flush the calling thread's ``sys.stdout``/``sys.stderr`` text, whatever they are."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()


def _before_child() -> None:
    """Just before this process starts a child: its output may arrive from now on."""
    global _children_started
    _children_started = True
    flush_std_streams()


def _after_fork_in_child() -> None:
    global _kernel_descriptors
    descriptors, _kernel_descriptors = _kernel_descriptors, ()  # a grandchild has none to close
    for fd in descriptors:
        with contextlib.suppress(OSError):
            os.close(fd)
    _become_child(replace_any=False)


def _install_process_hooks() -> None:
    """Once per process: the fork hook; the spawn preparation and the pool task wrappers
    once multiprocessing's modules are imported (by the user's code, most often never:
    importing them at start cost the kernel ~5 ms and 15 modules)."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    os.register_at_fork(before=_before_child, after_in_child=_after_fork_in_child)
    when_imported("multiprocessing.spawn", _prepare_spawned_children)
    when_imported("multiprocessing.pool", _route_pool_tasks)
    when_imported("concurrent.futures.process", _route_executor_tasks)


def _prepare_spawned_children(spawn: ModuleType) -> None:
    """A spawned child gets the kernel's address and the current cell (``_SpawnSetup``)."""
    original_preparation = spawn.get_preparation_data

    def get_preparation_data(name: str) -> dict[str, Any]:
        _before_child()  # a spawned child, or a forkserver (whose forks get this data)
        data: dict[str, Any] = original_preparation(name)
        if _address is not None:
            data[_SPAWN_KEY] = _SpawnSetup(_address, routing.current_parent())
        return data

    spawn.get_preparation_data = get_preparation_data  # type: ignore[attr-defined]


def _route_pool_tasks(pool_module: ModuleType) -> None:
    pool = pool_module.Pool
    for method in ("apply_async", "_map_async", "imap", "imap_unordered"):
        setattr(pool, method, _routing_first_argument(getattr(pool, method)))


def _route_executor_tasks(process: ModuleType) -> None:
    executor = process.ProcessPoolExecutor
    original_submit = executor.submit

    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return original_submit(self, _routed(fn), *args, **kwargs)

    executor.submit = submit


def current_header() -> bytes:
    parent = routing.current_parent()
    return parent.header_json if parent is not None else b""


def _routed(function: Callable[..., Any]) -> RoutedCall:
    flush_std_streams()
    parent = routing.current_parent()
    if parent is None:
        return RoutedCall(function, None, b"")
    return RoutedCall(function, parent.header, parent.header_json)


def _routing_first_argument(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return method(self, _routed(func), *args, **kwargs)

    return wrapper


class _SpawnSetup:
    """Unpickles, in a spawned child, into a call of ``start_spawned_child``.

    It reduces to ``exec`` of a guarded import, so an interpreter that cannot
    import threadline (another executable) starts normally, only without it.
    The cell's header goes as a Python literal beside its JSON, so that the
    child need not import ``json`` (1.7 ms a child here) to read it.
    """

    def __init__(self, address: str, parent: Parent | None) -> None:
        self.address = address
        self.header = parent.header if parent is not None else None
        self.header_json = parent.header_json if parent is not None else b""

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, dict[str, Any]]]:
        source = (
            "try:\n"
            "    from threadline.shell.child_process import start_spawned_child\n"
            f"    start_spawned_child({self.address!r}, {self.header!r}, {self.header_json!r})\n"
            "except Exception:\n"
            "    pass\n"
        )
        return (exec, (source, {}))  # its own globals, not the unpickler's module


class RoutedCall:
    """A function sent to a worker process, run there for the cell that submitted it
    (its header both parsed and as JSON: the worker need not import ``json``)."""

    __slots__ = ("function", "header", "header_json")

    def __init__(
        self, function: Callable[..., Any], header: dict[str, Any] | None, header_json: bytes
    ) -> None:
        self.function = function
        self.header = header
        self.header_json = header_json

    def __reduce__(
        self,
    ) -> tuple[type[RoutedCall], tuple[Callable[..., Any], dict[str, Any] | None, bytes]]:
        return (RoutedCall, (self.function, self.header, self.header_json))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = routing.set_origin(_parent(self.header, self.header_json))
        try:
            return self.function(*args, **kwargs)
        finally:
            routing.reset_origin(token)
            flush_std_streams()  # a task's partial line goes to its own cell


def _parent(header: dict[str, Any] | None, header_json: bytes) -> Parent | None:
    if header is None or not header_json:
        return None
    return Parent(header, header_json=header_json)
