"""IPython's input transformation, without tokenizing cells that have no IPython syntax.

IPython turns its own syntax (``%magic``, ``!cmd``, ``a = %magic``, ``a = !cmd``,
``obj?``, and the autocall escapes ``/f x``, ``,f x``, ``;f x``) into Python by
tokenizing the whole cell with the pure-Python ``tokenize`` and asking each
of its four token transformers to look. That is ~23 us of every execute round
trip here (A/B, fresh kernels, `pass`), most cells having none of that syntax.

Each of those transformers needs a token that is one of ``% ! ?`` anywhere,
or one of ``, ; /`` as the first token of a logical line -- which is the first
non-blank character of some physical line. A cell (after IPython's cleanup
and line transforms, unchanged) with neither comes out of the token
transforms exactly as it went in, so it is not tokenized. Anything else, and
any manager whose token transformers are not exactly IPython's four (an
extension added one), goes IPython's whole way.

One thing the skipped tokenization did besides: a cell whose dedent matches
no outer indentation level made ``tokenize`` raise ``IndentationError`` before
the cell was compiled, reported at ``File <tokenize>``. Here the compiler
reports the same error, at the cell's own line (docs/compatibility.md).
``check_complete`` (``is_complete_request``) is IPython's, unchanged -- which
is why the test sits in ``transform_cell`` (IPython's five lines, repeated
around it) and not in ``do_token_transforms``, which ``check_complete`` also
calls and which there turns that ``IndentationError`` into "invalid".
"""

from __future__ import annotations

import re

from IPython.core.inputtransformer2 import (
    EscapedCommand,
    HelpEnd,
    MagicAssign,
    SystemAssign,
    TransformerManager,
)

#: IPython's token transformers, which the test for their syntax below is about.
IPYTHON_TOKEN_TRANSFORMERS = (MagicAssign, SystemAssign, EscapedCommand, HelpEnd)

#: A character one of them needs: ``% ! ?`` anywhere, ``, ; /`` first on a line.
_MAYBE_IPYTHON_SYNTAX = re.compile(r"[%!?]|^[ \t\f]*[,;/]", re.MULTILINE)


class CellTransformer(TransformerManager):  # type: ignore[misc]
    """IPython's ``TransformerManager``, whose ``transform_cell`` skips tokenizing plain Python."""

    def transform_cell(self, cell: str) -> str:
        # As IPython's own transform_cell, but for the test before the token transforms.
        if not cell.endswith("\n"):
            cell += "\n"
        lines: list[str] = cell.splitlines(keepends=True)
        for transform in self.cleanup_transforms + self.line_transforms:
            lines = transform(lines)
        if may_need_token_transforms(lines, self.token_transformers):
            lines = self.do_token_transforms(lines)
        return "".join(lines)


def may_need_token_transforms(lines: list[str], transformers: list[type]) -> bool:
    """Whether the token transforms could change ``lines`` (False only when they surely cannot)."""
    if tuple(transformers) != IPYTHON_TOKEN_TRANSFORMERS:
        return True
    # Each line on its own: ``^`` must mean "after a line break" exactly where
    # tokenize reads a new line, and that is where ``splitlines`` cut them.
    return any(_MAYBE_IPYTHON_SYNTAX.search(line) for line in lines)
