"""Stable file names for cells, as the Jupyter debugger protocol names them.

A cell's file name is a prefix, the Murmur2 hash of its code (seeded with
``HASH_SEED``) and ``.py``; the front end computes the same name from the
``debugInfo`` reply (``kernel/debugger.py``). ``install`` makes IPython compile
every cell under that name from the first cell on, so a breakpoint set on the
name before a cell runs is hit when it runs, whenever the debugger attaches.
The debugger itself is built only when the first ``debug_request`` comes.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import TYPE_CHECKING, Final

from IPython.core.compilerop import CachingCompiler

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

#: The seed of the cell-name hash; the front end reads it from ``debugInfo``.
HASH_SEED: Final = 0x2F6B_1D47
FILE_SUFFIX: Final = ".py"


@functools.cache
def file_prefix() -> str:
    """Where the debugger writes cells (``dumpCell``): a folder per kernel process."""
    import tempfile  # here: IPython's shell imports it when it is built

    return os.path.join(tempfile.gettempdir(), f"threadline_{os.getpid()}") + os.sep


def murmur2(data: bytes, seed: int) -> int:
    """MurmurHash2 (32 bits), as JupyterLab's debugger computes it."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (seed ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for (block,) in struct.iter_unpack("<I", data[:whole]):
        k = (block * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def cell_file_name(code: str) -> str:
    """The stable file name of a cell with this code.

    ``IPYKERNEL_CELL_NAME``, when set, names every cell, as in ipykernel: tools
    that compare tracebacks across runs (nbclient's tests, nbval) set it so that
    no random path shows up in them.
    """
    fixed = os.environ.get("IPYKERNEL_CELL_NAME")
    if fixed is not None:
        return fixed
    return f"{file_prefix()}{_hash(code)}{FILE_SUFFIX}"


class CellCompiler(CachingCompiler):  # type: ignore[misc]
    """IPython's compiler, naming each cell by the hash of its code (tracebacks still say In[n])."""

    def get_code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        return cell_file_name(raw_code)


def install(shell: InteractiveShell) -> None:
    """Make ``shell`` compile cells under their stable file names (before any cell runs)."""
    shell.compiler_class = CellCompiler
    shell.compile = CellCompiler()


@functools.lru_cache(maxsize=256)  # a cell run again is named without hashing it again
def _hash(code: str) -> int:
    return murmur2(code.encode("utf-8"), HASH_SEED)
