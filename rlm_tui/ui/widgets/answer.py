"""The end-of-run panel: the final answer, the totals and where the session was saved."""

from __future__ import annotations

from rich.console import Group
from rich.markdown import Markdown
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ...core.tree import CallTree
from .. import fmt
from ..render import Palette
from ..runstate import RunState


class AnswerPanel(VerticalScroll, can_focus=False):
    """Hidden until the run ends; then docked under the panes until the user hides it (``a``).

    Not focusable: Tab moves between the two panes only; the root transcript holds the answer too.
    """

    DEFAULT_CSS = """
    AnswerPanel {
        display: none;
        height: auto;
        max-height: 40%;
        border: round $success;
        border-title-color: $success;
        border-title-style: bold;
        background: $background;
        padding: 0 1;
    }
    AnswerPanel.failed {
        border: round $error;
        border-title-color: $error;
    }
    """

    def compose(self):
        yield Static(id="answer-text")

    def show(self, run: RunState, tree: CallTree, palette: Palette) -> None:
        """Fill in the answer (or why there is none) and the run's totals."""
        failed = bool(run.error) or not run.answer
        self.set_class(failed, "failed")
        if run.error:
            self.border_title = "Run failed"
            body = Text(run.error, style=palette.error)
        elif run.answer:
            self.border_title = "Final answer"
            body = Markdown(run.answer, code_theme=palette.code_theme)
        else:
            self.border_title = f"No answer: stopped by {run.stopped_by or 'unknown'}"
            body = Text("The run ended without a final answer.", style=palette.warning)
        usage = tree.total_usage()
        calls = tree.subtree_calls(tree.root) if tree.root else 0
        ended = f"stopped by {run.stopped_by}" if run.stopped_by else "answered"
        totals = (f"{ended} · {calls} sub-calls · {fmt.tokens(usage.total_tokens)} tok"
                  f" · {fmt.dollars(usage.cost_usd)} · {fmt.seconds(run.duration_s or tree.now)}")
        saved = f"session saved to {fmt.home_path(run.session_path)}" if run.session_path else "session not saved"
        footer = Text(f"{totals} · {saved}", style=palette.muted)
        self.query_one("#answer-text", Static).update(Group(body, footer))
        self.display = True
