"""Reading a model's reply: code blocks to run and a final answer, if any.

Code fenced as ``repl``, ``python`` or ``py`` runs; other fences (shell, json)
are prose. FINAL(...) and FINAL_VAR(...) count only outside code blocks and
at the start of a line, so a model quoting them in prose mid-sentence does not end
the run. An unterminated block is reported, not run: a half-written cell is
more likely cut off than meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CODE_LANGS = {"repl", "python", "py", "python3"}
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*$", re.MULTILINE)
_FINAL = re.compile(r"^[ \t]*(?:\*\*)?FINAL\(", re.MULTILINE)
_FINAL_VAR = re.compile(r"^[ \t]*(?:\*\*)?FINAL_VAR\(\s*[\"']?([^)\"'\s]*)[\"']?\s*\)", re.MULTILINE)


@dataclass
class ParsedReply:
    code_blocks: list[str] = field(default_factory=list)
    final: str | None = None  # FINAL(text)
    final_var: str | None = None  # FINAL_VAR(name)
    unterminated: bool = False  # a code fence was opened and never closed


def parse_reply(text: str) -> ParsedReply:
    """Split a reply into runnable code blocks and prose, and find FINAL/FINAL_VAR in the prose."""
    parsed = ParsedReply()
    prose: list[str] = []
    pos = 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            prose.append(text[pos:])
            break
        prose.append(text[pos:opening.start()])
        fence, lang = opening.group(1), opening.group(2).lower()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        end = closing.search(text, opening.end())
        if end is None:
            if lang in CODE_LANGS:
                parsed.unterminated = True
            prose.append(text[opening.end():] if lang not in CODE_LANGS else "")
            break
        body = text[opening.end() + 1:end.start()]
        if lang in CODE_LANGS:
            if body.strip():
                parsed.code_blocks.append(body)
        else:
            prose.append(body)
        pos = end.end()
    outside = "".join(prose)
    match = _FINAL.search(outside)
    if match:
        parsed.final = _balanced(outside, match.end())
    var = _FINAL_VAR.search(outside)
    if var and var.group(1):
        parsed.final_var = var.group(1)
    return parsed


def _balanced(text: str, start: int) -> str:
    """The argument of FINAL( ... ): up to the matching parenthesis, else to the last one."""
    depth = 1
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return _unquote(text[start:i])
    last = text.rfind(")", start)
    return _unquote(text[start:last] if last != -1 else text[start:])


def _unquote(text: str) -> str:
    text = text.strip()
    for quote in ('"""', "'''", '"', "'"):
        if len(text) >= 2 * len(quote) and text.startswith(quote) and text.endswith(quote):
            return text[len(quote):-len(quote)].strip()
    return text
