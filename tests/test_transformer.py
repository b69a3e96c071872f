"""``shell/transformer.py``: IPython's cell transformation, skipping the tokenizer for plain Python.

The transformation must be IPython's exactly, for every cell: each cell below
(IPython syntax of every kind, look-alikes in strings and comments, prompts,
indentation, odd line breaks, broken code, and every code cell of the
examples) is transformed by both managers and compared. The one deliberate
difference (an inconsistent dedent) is checked as such. And the skip must
happen: a plain cell never reaches the token transforms; any cell with a
trigger, or a manager with an extra token transformer, does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import execute
from threadline.shell.transformer import CellTransformer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CELLS: list[object] = [
    "pass",
    "",
    "\n\n",
    "x = 1\ny = x + 2\nprint(x, y)",
    "def f(a, b):\n    return a / b\n\nf(1, 2)",
    "a, b = 1, 2; c = a // b",
    "%ls",
    "%time x = 1",
    "%%timeit\nx = 1",
    "  %ls",
    "!echo hi",
    "!!echo hi",
    "files = !ls",
    "x = %pwd",
    "x?",
    "x??",
    "?x",
    "os.path.join?",
    "%magic?",
    "/print 1 2",
    ",print a b",
    ";print a b",
    "if True:\n    /print 1\n",
    "s = '100%'",
    "s = 'what?'",
    "s = 'bang!'",
    "print('a' != 'b')",
    "x = 5 % 3",
    "# a comment with % ! ? in it\npass",
    '"""\n/not a command\n"""',
    "x = (1,\n     2)",
    "x = [1,\n 2]",
    "x = 1 \\\n  / 2",
    ">>> x = 1\n>>> print(x)",
    ">>> /print 1",
    "In [1]: x = 1\n   ...: print(x)",
    "In [2]: %ls",
    "    x = 1\n    y = 2",
    "\tx = 1",
    "\fx = 1",
    "x = 1\r\ny = 2\r\n",
    "x = 1\ry = 2",
    "x = 1\x0by = 2",
    # IPython warns that a U+2028 line break is not one tokenize knows; so does this.
    pytest.param("x = 1\u2028/print 1", marks=pytest.mark.filterwarnings("ignore::UserWarning")),
    "s = 'unterminated",
    "x = (1,",
    "def f(:\n  pass",
    "x = 1\x0c/print 2",
    "async def f():\n    await g()\nawait f()",
    "lambda: (yield)",
    "f'{x!r}'",
    "f'{x=}'",
    "print(f'{1+1}')",
    "%%bash\necho hi\n",
    "  \n\nx = 1",
]


def example_cells() -> list[str]:
    cells = []
    for notebook in sorted(EXAMPLES.glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] == "code":
                source = cell["source"]
                cells.append("".join(source) if isinstance(source, list) else source)
    return cells


@pytest.mark.parametrize("cell", [*CELLS, *example_cells()])
def test_the_transformation_is_ipythons(cell: str) -> None:
    expected = TransformerManager().transform_cell(cell)
    assert CellTransformer().transform_cell(cell) == expected


def test_the_examples_are_in_the_corpus() -> None:
    assert len(example_cells()) >= 10


def test_an_inconsistent_dedent_is_left_to_the_compiler() -> None:
    cell = "if True:\n        a = 1\n    b = 2\n"
    with pytest.raises(IndentationError):
        TransformerManager().transform_cell(cell)
    assert CellTransformer().transform_cell(cell) == cell
    with pytest.raises(IndentationError):
        compile(cell, "<cell>", "exec")


class Recording(CellTransformer):
    def __init__(self) -> None:
        super().__init__()
        self.tokenized: list[list[str]] = []

    def do_token_transforms(self, lines: list[str]) -> list[str]:
        self.tokenized.append(lines)
        result: list[str] = super().do_token_transforms(lines)
        return result


@pytest.mark.parametrize(
    ("cell", "tokenized"),
    [
        ("x = 1\nprint(x / 2, x, x; 1)", False),
        ("pass", False),
        ("%ls", True),
        ("s = 'what?'", True),
        ("x = (1,\n, 2)", True),
        ("  /f 1", True),
        (">>> ;f a", True),
    ],
)
def test_only_cells_with_a_trigger_are_tokenized(cell: str, tokenized: bool) -> None:
    manager = Recording()
    manager.transform_cell(cell)
    assert bool(manager.tokenized) is tokenized


def test_an_extra_token_transformer_gets_every_cell() -> None:
    manager = Recording()
    extra = type("Extra", (), {"find": classmethod(lambda cls, tokens: None)})
    manager.token_transformers = [*manager.token_transformers, extra]
    manager.transform_cell("pass")
    assert manager.tokenized == [["pass\n"]]


def test_the_kernel_transforms_with_it(kc: BlockingKernelClient) -> None:
    code = "print(type(get_ipython().input_transformer_manager).__name__)\nx = !echo hi\nprint(x)"
    result = execute(kc, code)
    assert result.reply["content"]["status"] == "ok"
    assert result.stdout.split() == ["CellTransformer", "['hi']"]
