"""The transcript pane: one node's blocks, rendered once each, shown as lines.

Unlike ``RichLog`` it can re-render a block that changed (a streaming reply,
a cell's status line) and re-wrap everything on resize or theme change, and it
follows new output only while the user is at the bottom.
"""

from __future__ import annotations

from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .. import render
from ..render import Palette
from ...model.transcript import Block


class TranscriptView(ScrollView, can_focus=True):
    """Shows ``blocks`` (a live list owned by ``Transcripts``) for one node."""

    DEFAULT_CSS = """
    TranscriptView {
        background: $background;
        color: $foreground;
        overflow-y: scroll;
        scrollbar-gutter: stable;
        padding: 0 1;
    }
    """

    def __init__(self, palette: Palette, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.palette = palette
        self.node_id: str | None = None
        self._blocks: list[Block] = []
        self._starts: list[int] = []  # first line of each rendered block
        self._lines: list[Strip] = []  # all blocks' lines, rendered at self._width
        self._width = 0
        self._follow = True  # keep showing the end; false once the user scrolls up

    def show(self, node_id: str | None, blocks: list[Block], follow: bool) -> None:
        """Switch to another node's transcript: at its end if ``follow`` (a live node), else its top."""
        self.node_id = node_id
        self._blocks = blocks
        self._rerender(0)
        if follow:
            self._follow = True
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        else:
            self.scroll_home(animate=False)

    def blocks_changed(self, first: int) -> None:
        """Blocks from index ``first`` on were added or changed."""
        self._rerender(first)

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self._rerender(0)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._follow = new_value >= self.max_scroll_y

    def on_resize(self) -> None:
        if self._content_width() != self._width:
            self._rerender(0)
        elif self._follow:  # shorter pane (the answer panel opened): stay at the end
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def plain_text(self) -> str:
        """The whole transcript as plain text (the "copy transcript" command, tests)."""
        return "\n".join(strip.text.rstrip() for strip in self._lines)

    def _content_width(self) -> int:
        return max(20, self.scrollable_content_region.width)

    def _rerender(self, first: int) -> None:
        width = self._content_width()
        if width != self._width:
            self._width, first = width, 0
        first = min(first, len(self._starts))
        del self._lines[self._starts[first] if first < len(self._starts) else len(self._lines):]
        del self._starts[first:]
        console = self.app.console
        options = console.options.update_width(width)
        with console.use_theme(self.palette.markdown_styles()):
            for item in self._blocks[first:]:
                self._starts.append(len(self._lines))
                lines = console.render_lines(render.block(item, self.palette), options, pad=False)
                self._lines.extend(Strip(line) for line in lines)
        self.virtual_size = Size(width, len(self._lines))
        self.refresh()
        if self._follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        style: Style = self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, style)
        return self._lines[index].crop_extend(0, width, style).apply_style(style)

