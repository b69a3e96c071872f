"""Replies to the shell channel's questions, computed by IPython.

Each function takes the request content and returns the reply content. They
run on the thread that serves the shell (the main thread) and never touch a
socket; the caller sends the reply.
"""

from __future__ import annotations

from typing import Any

from IPython.utils.tokenutil import token_at_cursor

from threadline.kernel import info
from threadline.shell.interactive import ThreadlineShell


def kernel_info(shell: ThreadlineShell, supported_features: list[str]) -> dict[str, Any]:
    """The kernel_info_reply content (see ``kernel.info``: it does not need the shell)."""
    return info.kernel_info(supported_features)


def complete(shell: ThreadlineShell, content: dict[str, Any]) -> dict[str, Any]:
    # Imported here, as IPython does: the shell loads the completer when it is built.
    from IPython.core.completer import provisionalcompleter, rectify_completions

    code = str(content.get("code", ""))
    cursor_pos = content.get("cursor_pos")
    if not isinstance(cursor_pos, int) or not 0 <= cursor_pos <= len(code):
        cursor_pos = len(code)
    with provisionalcompleter():
        completions = list(rectify_completions(code, shell.Completer.completions(code, cursor_pos)))
    if completions:
        start, end = completions[0].start, completions[0].end
    else:
        start = end = cursor_pos
    types = [
        {"start": c.start, "end": c.end, "text": c.text, "type": c.type, "signature": c.signature}
        for c in completions
    ]
    return {
        "status": "ok",
        "matches": [c.text for c in completions],
        "cursor_start": start,
        "cursor_end": end,
        "metadata": {"_jupyter_types_experimental": types},
    }


def inspect(shell: ThreadlineShell, content: dict[str, Any]) -> dict[str, Any]:
    code = str(content.get("code", ""))
    cursor_pos = content.get("cursor_pos")
    if not isinstance(cursor_pos, int) or not 0 <= cursor_pos <= len(code):
        cursor_pos = len(code)
    detail_level = 1 if content.get("detail_level") == 1 else 0
    omit_sections = tuple(content.get("omit_sections", ()) or ())
    name = token_at_cursor(code, cursor_pos)
    try:
        bundle = shell.object_inspect_mime(name, detail_level=detail_level, omit_sections=omit_sections)
        found = True
    except KeyError:
        bundle, found = {}, False
    if not shell.enable_html_pager:
        bundle.pop("text/html", None)
    return {"status": "ok", "found": found, "data": bundle, "metadata": {}}


def history(shell: ThreadlineShell, content: dict[str, Any]) -> dict[str, Any]:
    manager = shell.history_manager
    kind = content.get("hist_access_type")
    output = bool(content.get("output", False))
    raw = bool(content.get("raw", True))
    if kind == "tail":
        entries = manager.get_tail(int(content.get("n", 10)), raw=raw, output=output, include_latest=True)
    elif kind == "range":
        entries = manager.get_range(
            int(content.get("session", 0)),
            int(content.get("start", 1)),
            content.get("stop"),
            raw=raw,
            output=output,
        )
    elif kind == "search":
        entries = manager.search(
            str(content.get("pattern", "*")),
            raw=raw,
            output=output,
            n=content.get("n"),
            unique=bool(content.get("unique", False)),
        )
    else:
        return {
            "status": "error",
            "ename": "ValueError",
            "evalue": f"unknown hist_access_type {kind!r}",
            "traceback": [],
            "history": [],
        }
    # IPython numbers the current session 0 in what it reads from memory; a client
    # needs the real number, to ask for the same entries again (e.g. by range).
    current = manager.session_number
    history = [(session or current, line, entry) for session, line, entry in entries]
    return {"status": "ok", "history": history}


def is_complete(shell: ThreadlineShell, content: dict[str, Any]) -> dict[str, Any]:
    status, indent = shell.input_transformer_manager.check_complete(str(content.get("code", "")))
    reply: dict[str, Any] = {"status": status}
    if status == "incomplete":
        reply["indent"] = " " * (indent or 0)
    return reply
