"""Modals for steering: edit a waiting call, deny it with a reason, edit a waiting cell, write your own cell.

Each question's modal is dismissed with the keyword arguments of its steering
command (``edit`` or ``deny``), or None when cancelled with Esc, which leaves
the question waiting. Ctrl+S confirms an edit or runs your cell; Enter confirms
a denial.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static, TextArea

from ..model.questions import Question


def describe(question: Question) -> str:
    """``llm_query n5`` / ``rlm_query n7`` / ``llm_query_batched × 3 n9`` / ``cell 2 of n0``."""
    data = question.data
    if question.kind == "cell":
        return f"cell {data.get('cell')} of {question.node}"
    if question.kind == "turn":
        return f"turn {data.get('turn')} of {question.node}"
    if question.is_batch:
        return f"{question.spawn_kind}_query_batched × {data.get('n', 0)} ({question.node})"
    return f"{question.spawn_kind}_query ({question.node})"


class QuestionScreen(ModalScreen[dict[str, Any] | None]):
    """A modal about one waiting question; dismissed with the command's arguments, or None (Esc)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    QuestionScreen {
        align: center middle;
    }
    QuestionScreen > Vertical {
        width: 100;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: round $warning;
        border-title-color: $warning;
        border-title-style: bold;
        border-subtitle-color: $foreground-muted;
        background: $surface;
        padding: 0 1;
    }
    QuestionScreen Label {
        color: $foreground-muted;
        margin-top: 1;
    }
    QuestionScreen TextArea {
        height: auto;
        max-height: 20;
        min-height: 4;
    }
    QuestionScreen .hint {
        color: $foreground-muted;
        margin-top: 1;
    }
    """

    def __init__(self, question: Question) -> None:
        super().__init__()
        self.question = question

    def action_cancel(self) -> None:
        self.dismiss(None)


class EditSpawnScreen(QuestionScreen):
    """The waiting call's model and prompt, editable; a batch's prompts are edited one by one after ``o``."""

    BINDINGS = [Binding("ctrl+s", "save", "Run it edited")]

    def compose(self) -> ComposeResult:
        data = self.question.data
        with Vertical() as box:
            box.border_title = f"Edit {describe(self.question)} before it runs"
            box.border_subtitle = "ctrl+s run it edited · esc cancel"
            yield Label("Model")
            yield Input(data.get("model", ""), id="model")
            if self.question.is_batch:
                yield Static(f"{data.get('n', 0)} prompts: to change them, cancel and press o to decide "
                             "the batch prompt by prompt.", classes="hint")
            else:
                yield Label("Prompt (what the sub-model receives)")
                yield TextArea(data.get("prompt", ""), id="prompt", soft_wrap=True)

    def on_mount(self) -> None:
        if self.question.is_batch:
            self.query_one("#model", Input).focus()
        else:
            self.query_one("#prompt", TextArea).focus()

    def action_save(self) -> None:
        model = self.query_one("#model", Input).value.strip()
        result: dict[str, Any] = {}
        if model and model != self.question.data.get("model"):
            result["model"] = model
        if not self.question.is_batch:
            result["prompt"] = self.query_one("#prompt", TextArea).text
        self.dismiss(result)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()


class DenyScreen(QuestionScreen):
    """An optional reason; the code that asked receives ``Error: denied by user: <reason>``."""

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"Deny {describe(self.question)}"
            box.border_subtitle = "enter deny · esc cancel"
            yield Label("Reason (optional): the model's code receives it as the call's result")
            yield Input(placeholder="e.g. too broad: search with a regex first", id="reason")
            yield Static("The call returns the string \"Error: denied by user: <reason>\" and the run goes on.",
                         classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss({"reason": event.value.strip()})


class EditCellScreen(QuestionScreen):
    """A waiting cell's code, editable: what is saved is what runs, and what the session records."""

    BINDINGS = [Binding("ctrl+s", "save", "Run it edited")]

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"Edit {describe(self.question)} before it runs"
            box.border_subtitle = "ctrl+s run it edited · esc cancel"
            area = TextArea(self.question.data.get("code", "").rstrip("\n"), id="code", show_line_numbers=True,
                            tab_behavior="indent")
            yield area
            yield Static("The model is told its block was edited and sees what ran.", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#code", TextArea).focus()

    def action_save(self) -> None:
        self.dismiss({"code": self.query_one("#code", TextArea).text})


class UserCellScreen(ModalScreen[str | None]):
    """Your own code for the root's REPL; dismissed with the code to run (ctrl+s), or None (esc)."""

    # Priority: in the editor (tab indents) escape would only move the focus away, leaving the modal open.
    BINDINGS = [Binding("ctrl+s", "run", "Run it"), Binding("escape", "cancel", "Cancel", priority=True)]
    DEFAULT_CSS = QuestionScreen.DEFAULT_CSS.replace("QuestionScreen", "UserCellScreen").replace(
        "$warning", "$accent")

    def __init__(self, draft: str = "") -> None:
        super().__init__()
        #: The editor's text when it was closed (the app keeps a cancelled one for next time).
        self.draft = draft

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Your cell: Python in the root's REPL"
            box.border_subtitle = "ctrl+s run · esc cancel"
            yield TextArea(self.draft, id="code", show_line_numbers=True, tab_behavior="indent")
            yield Static("It runs now, next to the model's variables (context, llm_query, ...); its output "
                         "appears in the root's transcript as yours, and the model is told what you ran and "
                         "what it printed with its next message.", classes="hint")

    def on_mount(self) -> None:
        area = self.query_one("#code", TextArea)
        area.move_cursor(area.document.end)
        area.focus()

    def action_run(self) -> None:
        self.draft = self.query_one("#code", TextArea).text
        self.dismiss(self.draft)

    def action_cancel(self) -> None:
        self.draft = self.query_one("#code", TextArea).text
        self.dismiss(None)
