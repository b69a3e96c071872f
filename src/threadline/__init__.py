"""threadline: a Jupyter kernel for Python in which every thread is first-class.

Every thread may print, display, read input and drive widgets; its output goes
to the cell that started it. The public routing API lives here::

    import threadline
    cell = threadline.current_parent()      # in the cell you want output in
    with threadline.route_to(cell): ...     # in any thread, later
    with threadline.route_to(threadline.RUNNING): ...  # whatever cell runs now
"""

from __future__ import annotations

# Not ``typing.TYPE_CHECKING``: importing typing costs milliseconds before the
# kernel listens (threadline.io.listening); mypy treats this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from threadline.routing import RUNNING, Parent, bind, current_parent, route_to

__version__ = "0.1.0"

#: The routing API, imported on first use: ``python -m threadline`` imports this
#: package first, and the kernel binds its sockets before it needs routing
#: (see kernel/boot.py: every millisecond before the bind can cost the client a
#: 100 ms reconnect tick).
_ROUTING_NAMES = frozenset({"RUNNING", "Parent", "bind", "current_parent", "route_to"})


def __getattr__(name: str) -> Any:
    if name in _ROUTING_NAMES:
        from threadline import routing

        return getattr(routing, name)
    raise AttributeError(f"module 'threadline' has no attribute {name!r}")


__all__ = ["RUNNING", "Parent", "__version__", "bind", "current_parent", "route_to", "set_comm_handling"]


def set_comm_handling(mode: str) -> None:
    """How the running kernel handles comm messages (widget events) from the front end.

    ``"concurrent"`` (the default): as they arrive, on the kernel's comm thread,
    even while a cell runs -- so a cell can wait for a button click, and widget
    callbacks run concurrently with cell code. ``"serial"``: in order with the
    other shell requests, only between cells, as in most other kernels.
    """
    from IPython import get_ipython

    kernel: Any = getattr(get_ipython(), "kernel", None)
    if kernel is None or not hasattr(kernel, "set_comm_handling"):
        raise RuntimeError("set_comm_handling() needs a running threadline kernel")
    kernel.set_comm_handling(mode)
