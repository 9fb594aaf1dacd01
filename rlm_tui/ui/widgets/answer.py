"""The end-of-run panel: the final answer, the totals and where the session was saved."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from ...model.tree import CallTree
from .. import fmt
from ...model.state import RunState, run_totals


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
        & > Markdown { margin: 0; padding: 0; background: $background; }
        & > Markdown > *:last-child { margin-bottom: 0; }
        & > #answer-totals { color: $foreground-muted; }
    }
    AnswerPanel.failed {
        border: round $error;
        border-title-color: $error;
        & > Markdown { color: $error; }
    }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="answer-totals")  # the answer's Markdown is mounted when first shown (see show)

    def show(self, run: RunState, tree: CallTree) -> None:
        """Fill in the answer (or why there is none) and the run's totals: the run's once it ended, else
        the latest question's (a session between questions)."""
        root = tree.nodes.get(tree.root or "")
        reason = ""  # why a question of a live session has no answer (its root's error: "timeout: ...")
        if run.finished or root is None:
            answer, error, stopped_by = run.answer, run.error, run.stopped_by
        else:
            answer, error = tree.answer, root.error if root.status == "failed" else None
            reason = root.error if root.status in ("killed", "limit") else ""
            limit = reason.partition(":")[0] if root.status == "limit" and reason else "a limit"
            stopped_by = {"killed": "killed", "limit": limit}.get(root.status)
        self.set_class(bool(error) or not answer, "failed")
        if error:
            self.border_title = "Run failed" if run.finished or root is None else "Question failed"
            body = error
        elif answer:
            self.border_title, body = "Final answer", answer
        else:
            self.border_title = f"No answer: stopped by {stopped_by or 'unknown'}"
            body = reason or "The run ended without a final answer."
        if len(run.asked) > 1:
            self.border_title += f" · question {len(run.asked)}"
        usage, calls = run_totals(tree)
        ended = "failed" if error else f"stopped by {stopped_by}" if stopped_by else "answered"
        saved = f"session saved to {fmt.home_path(run.session_path)}" if run.session_path else "session not saved"
        from textual.widgets import Markdown  # here: markdown-it is not needed for the first frame

        shown = self.query(Markdown)
        if shown:
            shown.first().update(body)
        else:
            self.mount(Markdown(body, id="answer-text"), before="#answer-totals")
        self.query_one("#answer-totals", Static).update(
            f"{ended} · {calls} sub-calls · {fmt.tokens(usage.total_tokens)} tok · {fmt.dollars(usage.cost_usd)}"
            f" · {fmt.seconds(run.duration_s or tree.now)} · {saved}")
        self.display = True
