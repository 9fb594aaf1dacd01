"""Text from a repository, a model or a session file, made safe to show on a terminal.

Untrusted text may carry terminal control sequences: OSC (set the title, write
the clipboard with OSC 52), CSI (clear the screen, leave the alternate screen,
ask for the cursor position, which the terminal answers into our stdin), DCS,
BEL, and the 8-bit C1 forms of all of them (U+009B is CSI). Every presenter
(the app, headless output, replay, the sessions listing, the Markdown export)
passes what it shows through ``safe`` once, where it draws; the session file
and the notebook export keep the raw text.

A control character is never dropped silently: it is shown as its Python
escape (ESC as ``\\x1b``, BEL as ``\\x07``, U+009B as ``\\x9b``, a bidi override
as ``\\u202e``), so a reader sees that something was there. Newline and tab are
kept; ``\\r\\n`` becomes ``\\n``. No Textual or Rich import: headless code uses it.
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 controls but tab and newline, DEL, C1, and the bidi controls that reorder what is shown
# (Trojan Source): everything a terminal may act on instead of printing.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# What JSON output escapes beyond json.dumps (which already escapes C0 as \u00XX).
_JSON_CONTROL = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The one sequence kept where we render it ourselves (cell output through Text.from_ansi): SGR colour.
_SGR = re.compile(r"\x1b\[[0-9;:]{0,64}m")
# The JSON escapes that can stand for a control character (\n and \t are kept by ``safe``).
_ESCAPED_CONTROL = re.compile(rb"\\[ubfr]")
# A carriage return that only ends a line (CRLF); a lone one would let text overwrite what was shown.
_CRLF = re.compile(r"\r+\n")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def as_text(value: Any) -> str:
    """Any recorded field as text: a str as is, None as "", anything else (a list of content
    parts, a number, a dict from a damaged file) as compact JSON, so no reader trips on it."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        return f"<{type(value).__name__}>"


def safe(value: Any, *, sgr: str = "show") -> str:
    """``value`` as text with every control character shown as its escape (see the module doc).

    ``sgr`` says what happens to SGR colour sequences (``ESC [ ... m``): ``show`` them escaped
    like any other; ``drop`` them (cell output printed as plain text: a traceback's colours are
    noise there, not content); ``keep`` them, and carriage returns, for text then parsed by
    Rich's ``Text.from_ansi``, which draws the colour and resolves ``\r`` itself.
    """
    text = as_text(value)
    if "\r" in text:
        text = _CRLF.sub("\n", text)
    if not _CONTROL.search(text):
        return text
    if sgr == "show":
        return _CONTROL.sub(_visible, text)
    keep = sgr == "keep"
    escape = _visible_keep_cr if keep else _visible
    out: list[str] = []
    pos = 0
    for match in _SGR.finditer(text):
        out.append(_CONTROL.sub(escape, text[pos:match.start()]))
        if keep:
            out.append(match.group())
        pos = match.end()
    out.append(_CONTROL.sub(escape, text[pos:]))
    return "".join(out)


def _visible_keep_cr(match: re.Match[str]) -> str:
    return "\r" if match.group() == "\r" else _visible(match)


def is_plain(line: bytes) -> bool:
    """True when a JSON line can only decode to strings ``safe`` leaves as they are: ASCII with no
    ``\\u``, ``\\r``, ``\\b`` or ``\\f`` escape (strict JSON has no raw control characters). A reader
    that sanitizes decoded events may skip such lines: most of a big session file is plain."""
    return line.isascii() and _ESCAPED_CONTROL.search(line) is None


def safe_json(obj: Any) -> str:
    """``json.dumps`` for a terminal: UTF-8 kept, but DEL, C1 and bidi controls escaped as
    ``\\u00XX`` (json.dumps leaves them raw), so the decoded value is unchanged."""
    text = json.dumps(obj, ensure_ascii=False, default=str)
    return _JSON_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def safe_data(value: Any, *, depth: int = 0) -> Any:
    """A copy of decoded JSON data with every string made ``safe`` (dict keys too).

    For presenters that draw many fields of an event (the app): one pass where events
    enter, instead of one call per widget. Nesting past 64 levels becomes its text form.
    """
    if isinstance(value, str):
        return safe(value)
    if isinstance(value, dict):
        if depth > 64:
            return safe(value)
        return {safe(k) if isinstance(k, str) else k: safe_data(v, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if depth > 64:
            return safe(value)
        return [safe_data(v, depth=depth + 1) for v in value]
    return value


# A CSI sequence (colour, cursor moves): what the model reads of a traceback needs none of them.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    """Cell output as the model reads it: without the colour codes of IPython's tracebacks."""
    return _ANSI.sub("", text)


def one_line(text: str, width: int = 60) -> str:
    """A node label: the first non-empty line of a prompt, shortened."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""
