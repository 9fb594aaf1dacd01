"""The steering panel: what waits for the user, in full, with the keys that decide it.

Docked under the panes while something waits (a spawn to approve, a turn or a
cell to step) or while the run is paused; hidden otherwise. It shows one
question, the one under the tree cursor or else the oldest, and how many
wait in all, so a spawn arriving while the user decides never hides another.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ...model.tree import CallTree
from .. import fmt
from ..render import Palette, code
from ..steering import Question, Questions

#: Characters of a prompt shown; the rest is summarised (the edit modal has it all).
PROMPT_CHARS = 4000
BATCH_SHOWN = 8


class ApprovalPanel(VerticalScroll, can_focus=False):
    """Hidden unless a question waits or the run is paused."""

    DEFAULT_CSS = """
    ApprovalPanel {
        display: none;
        height: auto;
        max-height: 40%;
        border: round $warning;
        border-title-color: $warning;
        border-title-style: bold;
        border-subtitle-color: $foreground-muted;
        background: $background;
        padding: 0 1;
    }
    """

    def compose(self):
        yield Static(id="approval-body")

    def show(self, questions: Questions, current: Question | None, calls: CallTree, palette: Palette,
             live: bool) -> None:
        if not live or (current is None and not questions.paused):
            self.display = False
            return
        self.display = True
        waiting = len(questions.items)
        body = self.query_one("#approval-body", Static)
        if current is None:
            self.border_title = "⏸ Paused"
            self.border_subtitle = "space resume · s step"
            body.update(Text("Nothing new starts while paused; calls already running finish.",
                             style=palette.muted))
            return
        more = f" · {waiting} waiting" if waiting > 1 else ""
        self.border_title = f"⏸ {self._title(current, calls)}{more}"
        self.border_subtitle = self._keys(current, waiting)
        body.update(self._body(current, palette))

    @staticmethod
    def _title(question: Question, calls: CallTree) -> str:
        data = question.data
        if question.kind == "turn":
            return f"Step: before the root's model call for turn {data.get('turn')}"
        if question.kind == "cell":
            who = "the root" if question.node == calls.root else question.node
            return f"Step: before cell {data.get('cell')} of {who} runs"
        parent = calls.nodes.get(question.parent or "")
        origin = f" from {parent.kind} {parent.id}" if parent is not None else ""
        if question.is_batch:
            what = f"{question.spawn_kind}_query_batched × {data.get('n', 0)}"
        else:
            what = "rlm_query (a child RLM)" if question.spawn_kind == "rlm" else "llm_query"
        return f"Waiting for approval: {what} {question.node}{origin}"

    @staticmethod
    def _keys(question: Question, waiting: int) -> str:
        if question.kind == "turn":
            return "s step · c continue"
        if question.kind == "cell":
            return "y run · e edit · n skip · c continue"
        keys = ["y approve", "e edit", "n deny", "A always"]
        if question.is_batch:
            keys.insert(1, "o one by one")
        if waiting > 1:
            keys.insert(1, "a approve all")
        return " · ".join(keys)

    @staticmethod
    def _body(question: Question, palette: Palette) -> RenderableType:
        data = question.data
        if question.kind == "turn":
            return Text("The root model is called next. s lets it go; c runs freely again.", style=palette.muted)
        if question.kind == "cell":
            return code(str(data.get("code", "")).rstrip("\n"), palette)
        parts: list[RenderableType] = [Text.assemble(("model ", palette.muted), (data.get("model", ""), "bold"))]
        if question.is_batch:
            prompts = data.get("prompts") or []
            for i, prompt in enumerate(prompts[:BATCH_SHOWN]):
                parts.append(Text.assemble((f"[{i}] ", palette.accent), _short(" ".join(prompt.split()), 300)))
            if len(prompts) > BATCH_SHOWN:
                parts.append(Text(f"… and {len(prompts) - BATCH_SHOWN} more prompts", style=palette.muted))
        else:
            parts.append(Text(_short(data.get("prompt", ""), PROMPT_CHARS)))
        context = data.get("context")
        if isinstance(context, dict):
            parts.append(_context_line(context, palette))
        elif isinstance(context, list) and context:
            parts.append(Text(f"contexts: {len(context)} (first: ", style=palette.muted)
                         + _context_line(context[0], palette) + Text(")", style=palette.muted))
        return Group(*parts)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit:,} more characters]"


def _context_line(context: dict[str, Any], palette: Palette) -> Text:
    """``context: str · 12,345 chars · "first words…"`` for a child RLM's context."""
    size = []
    if context.get("chars") is not None:
        size.append(f"{context['chars']:,} chars")
    if context.get("items") is not None:
        size.append(f"{context['items']:,} items")
    if context.get("bytes"):
        size.append(f"{fmt.tokens(context['bytes'])}B pickled")
    head = " · ".join([str(context.get("type", "?")), *size])
    preview = " ".join(str(context.get("preview", "")).split())
    text = Text.assemble(("context ", palette.muted), (head, "bold"))
    if preview:
        text.append(f"  {_short(preview, 200)}", style=palette.muted)
    return text
