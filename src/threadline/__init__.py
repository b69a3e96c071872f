"""threadline: a Jupyter kernel for Python in which every thread is first-class.

Every thread may print, display, read input and drive widgets; its output goes
to the cell that started it. The public routing API lives here::

    import threadline
    cell = threadline.current_parent()      # in the cell you want output in
    with threadline.route_to(cell): ...     # in any thread, later
    with threadline.route_to(threadline.RUNNING): ...  # whatever cell runs now
"""

from threadline.routing import RUNNING, Parent, bind, current_parent, route_to

__version__ = "0.1.0"

__all__ = ["RUNNING", "Parent", "__version__", "bind", "current_parent", "route_to"]
