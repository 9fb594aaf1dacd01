"""The question box: where the next question of a session is typed (``rlm-tui PATH`` without a question,
and after each answer or stop). Enter sends it (``Input.Submitted``); the app hands it to the engine (``EngineSource.ask``)."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class QuestionBox(Input):
    """Hidden while a question runs; shown and focused when the session waits for the next one."""

    DEFAULT_CSS = """
    QuestionBox {
        display: none;
        border: round $accent;
        border-title-color: $accent;
        border-title-style: bold;
        background: $background;
    }
    QuestionBox:focus { border: round $accent; }
    """
    BINDINGS = [Binding("escape", "leave", "Leave the box", tooltip="Back to the call tree (q quits from there)")]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(placeholder="Type a question about the input, then Enter", **kwargs)  # type: ignore[arg-type]

    def open(self, first: bool, focus: bool = True) -> None:
        """Show the box for the first question or a follow-up; focused unless the user is reading an answer
        (then ``/`` or tab focuses it, and ``q`` still quits)."""
        self.border_title = ("Your question" if first else
                             "Ask a follow-up: / (the REPL's variables live on)" if not focus else
                             "Ask a follow-up (the REPL's variables live on)")
        self.display = True
        if focus:
            self.focus()

    def close(self) -> None:
        self.value = ""
        self.display = False

    def action_leave(self) -> None:
        self.screen.focus_next()
