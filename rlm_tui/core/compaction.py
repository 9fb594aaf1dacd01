"""Keep an RLM's conversation inside its model's window: compact older turns instead of failing.

An RLM's messages grow by a reply and its output every turn; a llama.cpp server
with a 4,096-token slot refused the root's 4th turn. Before each request the
prompt is estimated (characters per token, 4 until the server says otherwise)
against the model's window — the one the server reported in an "exceeds the
context size" error, else ``--context-window``, else litellm's price map, else
the local model's own — minus room for the reply. When it does not fit, older
turns are shortened in steps until it does:

1. their prose goes, the code that ran stays, their outputs are cut short;
2. their outputs go entirely, and only the latest turn stays whole;
3. their code becomes a line naming what it defined (the variables live on in the REPL);
4. the newest message itself is cut in the middle.

The system prompt and the first user message (the question and the context's
shape) are never touched. A server's refusal teaches the window and its token
count (so the estimate is scaled to its tokenizer) and the request is sent again
at once. The messages keep their number and roles: only their text shrinks.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Callable

from . import events as ev
from . import pricing
from .lm import LMWindowError
from .parsing import parse_reply

CHARS_PER_TOKEN = 4.0  # the estimate until a server's refusal gives its own count
MESSAGE_TOKENS = 8  # the chat template's tokens around one message
HEAD = 2  # the system prompt and the first user message: never compacted
OLD_OUTPUT_CHARS = 300  # step 1 keeps this much of an old turn's output
REPLY_ROOM = 4  # without --max-reply-tokens, a quarter of the window (at most MAX_REPLY_ROOM) is left for the reply
MAX_REPLY_ROOM = 4096
MIN_CUT_CHARS = 200  # step 4 never cuts the newest message below this
CUT_MARK_CHARS = 60  # what _cut's "[... N characters dropped ...]" line adds

Message = dict[str, Any]


def estimate(messages: list[Message], chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Tokens the messages take, estimated from their characters."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return int(chars / chars_per_token) + MESSAGE_TOKENS * len(messages)


def turn_of(index: int) -> int:
    """The turn a message belongs to: after the head, each turn is a reply and its output."""
    return (index - HEAD) // 2 + 1


def compact(messages: list[Message], limit: int, chars_per_token: float = CHARS_PER_TOKEN,
            keep: int = 2) -> tuple[list[Message], list[int]]:
    """``messages`` shortened until their estimate is at most ``limit`` tokens (or as short as they go),
    and the turns whose text changed. The ``keep`` latest turns stay whole until step 4."""
    out = [dict(m) for m in messages]

    def fits() -> bool:
        return estimate(out, chars_per_token) <= limit

    if fits() or len(out) <= HEAD:
        return out, []
    last_turn = turn_of(len(out) - 1)
    for step, whole in ((1, keep), (2, 1), (3, 1)):
        for i in range(HEAD, len(out)):
            if turn_of(i) <= last_turn - whole:
                out[i]["content"] = _shorten(out[i], turn_of(i), step)
        if fits():
            break
    if not fits():  # step 4: the newest message, cut in the middle to what room is left
        room = limit - estimate(out[:-1], chars_per_token) - MESSAGE_TOKENS
        keep_chars = int(room * chars_per_token) - CUT_MARK_CHARS
        out[-1]["content"] = _cut(str(out[-1].get("content") or ""), max(MIN_CUT_CHARS, keep_chars))
    changed = sorted({turn_of(i) for i in range(HEAD, len(out)) if out[i].get("content") != messages[i].get("content")})
    return out, changed


_DONE = {"output shortened": 1, "the prose was dropped": 1, "output dropped": 2, "no code ran": 3, "its code ran": 3}


def _shorten(message: Message, turn: int, step: int) -> str:
    """The message of an old turn as compaction step ``step`` leaves it (a step already taken is kept)."""
    text = str(message.get("content") or "")
    header = f"[turn {turn} compacted: "
    if text.startswith(header):
        done = next((level for words, level in _DONE.items() if text.startswith(header + words)), 0)
        if done >= (step if message.get("role") == "assistant" else min(step, 2)):  # outputs end at step 2
            return text
        text = text.split("\n", 1)[1] if "\n" in text else ""
    if message.get("role") == "assistant":
        code = parse_reply(text).code_blocks
        if not code:
            return f"[turn {turn} compacted: no code ran]"
        if step < 3:
            return f"[turn {turn} compacted: the prose was dropped; the code that ran:]\n" + "\n".join(
                f"```repl\n{c.rstrip()}\n```" for c in code)
        names = sorted({n for c in code for n in defined(c)})
        return f"[turn {turn} compacted: its code ran and defined {', '.join(names) or 'nothing new'}]"
    if step == 1:
        return f"[turn {turn} compacted: output shortened]\n" + _cut(text, OLD_OUTPUT_CHARS)
    return f"[turn {turn} compacted: output dropped ({len(text):,} characters)]"


def defined(code: str) -> list[str]:
    """Top-level names a cell assigns, defines or imports (what an old turn leaves behind in the REPL)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.extend((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.With)):
            targets = node.targets if isinstance(node, ast.Assign) else [
                getattr(node, "target", None), *[i.optional_vars for i in getattr(node, "items", [])]]
            names.extend(n.id for t in targets if t is not None for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _cut(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters: its start and end, saying how much went."""
    if len(text) <= limit:
        return text
    half = max(1, limit // 2)
    return f"{text[:half]}\n[... {len(text) - 2 * half:,} characters dropped by compaction ...]\n{text[-half:]}"


@dataclass
class Compaction:
    """One per run: each model's window and token scale as learnt, and the ``compacted`` events."""

    emit: Callable[..., Any]
    context_window: int | None = None  # --context-window
    max_reply_tokens: int | None = None  # --max-reply-tokens: the room left for a reply
    learnt: dict[str, int] = field(default_factory=dict)  # model -> the window its server reported
    scale: dict[str, float] = field(default_factory=dict)  # model -> characters per token, from its server

    def window(self, model: str) -> int | None:
        """The model's window: as its server said, else as configured, else as litellm's map or the local model says."""
        if model in self.learnt:
            return self.learnt[model]
        if self.context_window:
            return self.context_window
        if model.startswith("local/"):
            from .local_model import N_CTX

            return N_CTX
        return pricing.window(model)

    def limit(self, model: str) -> int | None:
        """Prompt tokens that leave room for the reply, or None when the window is unknown."""
        window = self.window(model)
        if window is None:
            return None
        room = self.max_reply_tokens or min(MAX_REPLY_ROOM, window // REPLY_ROOM)
        if model.startswith("local/"):
            from .local_model import MAX_REPLY_TOKENS

            room = min(room, MAX_REPLY_TOKENS)
        return max(1, window - room)

    def fit(self, node: str, parent: str | None, model: str, messages: list[Message], reason: str = "") -> bool:
        """Compact ``messages`` in place when they would not fit ``model``'s window; True if they changed."""
        limit = self.limit(model)
        per_token = self.scale.get(model, CHARS_PER_TOKEN)
        if limit is None or estimate(messages, per_token) <= limit:
            return False
        before = sum(len(str(m.get("content") or "")) for m in messages)
        tokens = estimate(messages, per_token)
        shorter, turns = compact(messages, limit, per_token)
        if not turns:
            return False
        messages[:] = shorter
        after = sum(len(str(m.get("content") or "")) for m in messages)
        self.emit(ev.COMPACTED, node, parent, turns=turns, chars_before=before, chars_after=after,
                  reason=reason or f"the next request (~{tokens:,} tokens) would not fit {model}'s window "
                                   f"({limit:,} tokens left for the prompt)", window=self.window(model))
        return True

    def refused(self, node: str, parent: str | None, model: str, messages: list[Message],
                error: LMWindowError) -> bool:
        """The server refused ``messages`` as over its window: learn what it said and compact again.

        False when nothing new was learnt or nothing more can go (the caller then fails as before)."""
        per_token = self.scale.get(model, CHARS_PER_TOKEN)
        guess = estimate(messages, per_token)
        if error.prompt_tokens and error.prompt_tokens > guess:  # the server counts more tokens than the estimate
            chars = max(1, sum(len(str(m.get("content") or "")) for m in messages))
            self.scale[model] = chars / max(1, error.prompt_tokens - MESSAGE_TOKENS * len(messages))
        window = error.window or int(guess * 0.75)  # it said no number: assume a quarter less than this prompt
        known = self.window(model)
        self.learnt[model] = min(window, known) if known else window
        if self.scale.get(model) == per_token and known is not None and self.learnt[model] >= known:
            return False  # nothing new: compacting again would send the same request
        reason = f"the server refused the request: {error}"
        return self.fit(node, parent, model, messages, reason)
