"""The Jupyter project's own kernel conformance suite (jupyter_kernel_test), run on threadline."""

from __future__ import annotations

from typing import Any

import jupyter_kernel_test


class ThreadlineKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "threadline"
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('to stderr', file=sys.stderr)"

    completion_samples: list[dict[str, Any]] = [
        {"text": "zi", "matches": {"zip"}},
        {"text": "import itertoo", "matches": {"itertools"}},
        {"text": "from os.path import exist", "matches": {"exists"}},
        {"text": "'abc'.startsw", "matches": {"startswith"}},
        {"text": "[].app", "matches": {"append"}},
    ]

    complete_code_samples = [
        "1",
        "print('hello, world')",
        "def f(x):\n  return x*2\n\n",
        "import os",
        "x = [1,\n 2]",
    ]
    incomplete_code_samples = [
        "print('hello",
        "def f(x):",
        "for i in range(3):",
        "x = [1,",
        "if True:\n    pass\nelse:",
    ]
    invalid_code_samples = ["import = 7q", "x = = 1", "return )"]

    code_page_something = "zip?"

    code_generate_error = "raise ValueError('conformance error')"

    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n * n for n in range(4)]", "result": "[0, 1, 4, 9]"},
        {"code": "'threadline'.upper()", "result": "'THREADLINE'"},
        {"code": "{'a': 1}", "result": "{'a': 1}"},
        {
            "code": "from IPython.display import HTML\nHTML('<b>x</b>')",
            "mime": "text/html",
            "result": "<b>x</b>",
        },
        {
            "code": "from IPython.display import Math\nMath(r'\\alpha')",
            "mime": "text/latex",
            "result": "$\\displaystyle \\alpha$",
        },
    ]

    code_display_data = [
        {
            "code": "from IPython.display import HTML, display\ndisplay(HTML('<b>test</b>'))",
            "mime": "text/html",
        },
        {
            "code": "from IPython.display import Math, display\ndisplay(Math(r'\\frac{1}{2}'))",
            "mime": "text/latex",
        },
        {
            "code": "from IPython.display import Markdown, display\ndisplay(Markdown('# hi'))",
            "mime": "text/markdown",
        },
        {
            "code": "from IPython.display import JSON, display\ndisplay(JSON({'a': [1, 2]}))",
            "mime": "application/json",
        },
        {
            "code": "from IPython.display import SVG, display\n"
            'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\'))',
            "mime": "image/svg+xml",
        },
        {"code": "from IPython.display import display\ndisplay('plain text')", "mime": "text/plain"},
    ]

    # matches "[n * n for n in range(4)]" in code_execute_result
    code_history_pattern = "[[]n * n*"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "zip"

    code_clear_output = "from IPython.display import clear_output\nprint('soon gone')\nclear_output()"


class ThreadlineIopubWelcomeTests(jupyter_kernel_test.IopubWelcomeTests):
    kernel_name = "threadline"
    support_iopub_welcome = True
