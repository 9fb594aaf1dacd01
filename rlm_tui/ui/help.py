"""The ``?`` screen: every key, read from the bindings themselves so it cannot go stale."""

from __future__ import annotations

from typing import Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.scroll_view import ScrollView
from textual.widgets import Static

from .widgets.call_tree import CallTreeView


def _bindings(items: Iterable[BindingType]) -> list[Binding]:
    return [item for item in items if isinstance(item, Binding)]


def key_sections(app_bindings: Iterable[BindingType], palette_key: str) -> list[tuple[str, list[Binding]]]:
    """Sections of (title, bindings) for every key the main screen answers to."""
    general = _bindings(app_bindings) + [
        Binding(palette_key, "command_palette", "Command palette: themes, answer, help, screenshot…"),
        *_bindings(Screen.BINDINGS)[:2],
    ]
    tree = _bindings(CallTreeView.BINDINGS) + [Binding("click", "select", "Show that node's transcript")]
    return [("General", general),
            ("Call tree (when focused): moving the cursor shows that node's transcript", tree),
            ("Transcript (when focused)", _bindings(ScrollView.BINDINGS))]


class HelpScreen(ModalScreen[None]):
    """A modal table of keys; any of ``?``, ``escape`` or ``q`` closes it."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close help")]
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 84;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: round $primary;
        border-title-color: $primary;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    """

    def __init__(self, sections: list[tuple[str, list[Binding]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Keys"
            box.border_subtitle = "esc / ? to close"
            yield Static(self._tables())

    def _tables(self) -> Group:
        tables = []
        for title, bindings in self.sections:
            table = Table(box=None, show_header=False, expand=True, padding=(0, 1), title_justify="left",
                          title=Text(title, style="bold underline"))
            table.add_column(style="bold", no_wrap=True, width=14)
            table.add_column(ratio=1)
            seen: set[str] = set()
            for binding in bindings:
                keys = ", ".join(self.app.get_key_display(Binding(key, binding.action))
                                 for key in binding.key.split(","))
                if keys not in seen:
                    seen.add(keys)
                    table.add_row(keys, binding.tooltip or binding.description)
            tables.append(table)
        return Group(*tables)
