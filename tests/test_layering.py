"""The layering rules of DESIGN.md, checked on the source of every module.

Dependencies point down: ``protocol`` uses nothing of the project and no IO
(no zmq, threads, event loops or sockets); only ``io`` talks to zmq, and it uses
only ``protocol``; nothing in ``protocol`` or ``io`` reaches up into ``kernel``
or ``shell``; ``shell`` does not import ``kernel``; ``gui`` (the toolkits in the
main thread's idle wait) uses nothing else of the project, and kernel and shell
use it.

Imports are read from the AST (so comments and strings do not count, and
imports inside functions or ``TYPE_CHECKING`` blocks do), relative imports are
resolved, and a string literal passed to ``importlib.import_module`` or
``__import__`` counts as an import too. A violation names the file and line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "threadline"

#: What "no IO" means for the protocol package.
IO_MODULES = frozenset(
    {
        "zmq",
        "threading",
        "_thread",
        "asyncio",
        "socket",
        "selectors",
        "select",
        "concurrent",
        "multiprocessing",
    }
)


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    line: int


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    module: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module} ({self.rule})"


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(
    source: str, module: str, *, is_package: bool = False, filename: str = "<string>"
) -> list[Import]:
    """Every module ``source`` imports, as absolute names, with line numbers.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule).
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(Import(base, node.lineno))
            found.extend(
                Import(f"{base}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*"
            )
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.append(Import(node.args[0].value, node.lineno))
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def top(module: str) -> str:
    return module.partition(".")[0]


def check_module(module: str, imports: list[Import], path: str) -> list[Violation]:
    """The layering rules applied to one module's imports."""
    violations: list[Violation] = []

    def refuse(imported: Import, rule: str) -> None:
        violations.append(Violation(path, imported.line, imported.module, rule))

    for imported in imports:
        name = imported.module
        ours = within(name, "threadline")
        if within(module, "threadline.protocol"):
            if top(name) in IO_MODULES:
                refuse(imported, "threadline.protocol is sans-IO")
            if ours and not within(name, "threadline.protocol"):
                refuse(imported, "threadline.protocol uses nothing else of threadline")
        if top(name) == "zmq" and not within(module, "threadline.io"):
            refuse(imported, "only threadline.io imports zmq")
        if (
            within(module, "threadline.io")
            and ours
            and not (within(name, "threadline.protocol") or within(name, "threadline.io"))
        ):
            refuse(imported, "threadline.io uses only threadline.protocol")
        lower = within(module, "threadline.protocol") or within(module, "threadline.io")
        if lower and (within(name, "threadline.kernel") or within(name, "threadline.shell")):
            refuse(imported, "protocol and io never reach up into kernel or shell")
        if within(module, "threadline.shell") and within(name, "threadline.kernel"):
            refuse(imported, "threadline.shell does not import threadline.kernel")
        if within(module, "threadline.gui") and ours and not within(name, "threadline.gui"):
            refuse(imported, "threadline.gui (toolkits in the idle wait) uses nothing else of threadline")
        if lower and within(name, "threadline.gui"):
            refuse(imported, "protocol and io never reach up into gui")
        if (
            within(name, "threadline.compat")
            and not within(module, "threadline.compat")
            and module != "threadline.app"
        ):
            refuse(imported, "only threadline.app imports threadline.compat")
    return violations


def check_source(
    source: str, module: str, *, is_package: bool = False, path: str = "<string>"
) -> list[Violation]:
    return check_module(module, imports_in(source, module, is_package=is_package, filename=path), path)


def source_files() -> Iterator[Path]:
    return iter(sorted(PACKAGE_ROOT.rglob("*.py")))


def check_tree() -> list[Violation]:
    violations: list[Violation] = []
    for path in source_files():
        violations += check_source(
            path.read_text(encoding="utf-8"),
            module_name(path),
            is_package=path.name == "__init__.py",
            path=str(path.relative_to(PACKAGE_ROOT.parents[1])),
        )
    return violations


# -- the rules hold for the real tree ----------------------------------------------------


def test_the_tree_is_where_we_look() -> None:
    names = {module_name(path) for path in source_files()}
    for expected in (
        "threadline",
        "threadline.protocol",
        "threadline.protocol.session",
        "threadline.io.iothread",
        "threadline.io.outbox",
        "threadline.kernel",
        "threadline.shell",
    ):
        assert expected in names


def test_the_checker_sees_the_real_imports() -> None:
    """Guard against a checker that passes by seeing nothing."""
    path = PACKAGE_ROOT / "io" / "iothread.py"
    imported = {i.module for i in imports_in(path.read_text(), "threadline.io.iothread")}
    assert {"zmq", "threadline.io.outbox", "threadline.protocol"} <= imported


def test_layering_rules_hold() -> None:
    violations = check_tree()
    assert not violations, "layering violations:\n" + "\n".join(map(str, violations))


# -- the checker would catch a violation --------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source", "rule_fragment", "line"),
    [
        ("threadline.protocol.session", "import os\nimport zmq\n", "sans-IO", 2),
        ("threadline.protocol.session", "from threading import Lock\n", "sans-IO", 1),
        ("threadline.protocol.session", "def f():\n    import asyncio.events\n", "sans-IO", 2),
        (
            "threadline.protocol.session",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import socket\n",
            "sans-IO",
            3,
        ),
        ("threadline.protocol.session", "from threadline.routing import bind\n", "nothing else", 1),
        ("threadline.protocol.session", "from .. import routing\n", "nothing else", 1),
        ("threadline.protocol.session", "import importlib\nimportlib.import_module('zmq')\n", "sans-IO", 2),
        ("threadline.kernel.kernel", "import zmq.asyncio\n", "only threadline.io imports zmq", 1),
        ("threadline.routing", "from zmq import Context\n", "only threadline.io imports zmq", 1),
        ("threadline.io.outbox", "from threadline.routing import bind\n", "uses only threadline.protocol", 1),
        ("threadline.io.outbox", "from threadline.kernel import kernel\n", "reach up", 1),
        ("threadline.io", "from ..shell import display\n", "reach up", 1),
        ("threadline.io.sender", "from threadline import shell\n", "reach up", 1),
        ("threadline.shell.display", "from threadline.kernel.comms import x\n", "shell does not import", 1),
        ("threadline.shell.display", "from ..kernel import comms\n", "shell does not import", 1),
        ("threadline.gui.tk", "from threadline.kernel import kernel\n", "gui (toolkits", 1),
        ("threadline.gui.qt", "from threadline import routing\n", "gui (toolkits", 1),
        ("threadline.io.iothread", "from threadline.gui import idle\n", "reach up into gui", 1),
        ("threadline.kernel.kernel", "from threadline.compat import attach\n", "only threadline.app", 1),
        ("threadline.shell.interactive", "from ..compat.zmqshell import x\n", "only threadline.app", 1),
    ],
)
def test_the_checker_catches(module: str, source: str, rule_fragment: str, line: int) -> None:
    violations = check_source(source, module, is_package=module == "threadline.io", path="synthetic.py")
    assert any(rule_fragment in v.rule and v.line == line for v in violations), violations
    assert all(str(v).startswith(f"synthetic.py:{v.line}: imports ") for v in violations)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        (
            "threadline.protocol.session",
            "import os, hmac, itertools\nfrom .errors import LocalProtocolError\n",
        ),
        ("threadline.protocol.session", "# import zmq\ntext = 'import threading'\n"),
        ("threadline.io.outbox", "import socket, threading\nfrom threadline.protocol import Frame\n"),
        ("threadline.io.iothread", "import zmq\nfrom threadline.io.outbox import Outbox\n"),
        ("threadline.kernel.kernel", "from threadline.io import IOThread\nfrom threadline.shell import x\n"),
        ("threadline.shell.streams", "from threadline.io import Sender\nfrom threadline import routing\n"),
        ("threadline.gui.qt", "from threadline.gui.idle import IdleContext\nimport PySide6\n"),
        ("threadline.kernel.kernel", "from threadline import gui\n"),
        ("threadline.shell.interactive", "from threadline import gui\n"),
        ("threadline.app", "from threadline import compat\n"),
        ("threadline.compat.zmqshell", "from threadline.shell.interactive import ThreadlineShell\n"),
    ],
)
def test_the_checker_allows(module: str, source: str) -> None:
    assert check_source(source, module) == []
