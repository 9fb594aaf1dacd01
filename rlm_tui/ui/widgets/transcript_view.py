"""The transcript pane: one node's blocks, rendered once each, shown as lines.

Unlike ``RichLog`` it can re-render a block that changed (a streaming reply,
a cell's status line) and re-wrap everything on resize or theme change, and it
follows new output only while the user is at the bottom. A long transcript (a
root with a thousand turns of 20 KB outputs) is rendered as a window of about
``PAGE_LINES`` lines around what is shown, widened as the user scrolls toward
an edge, so showing any node costs about the same. Rendered blocks are kept by
content (``CACHE_LINES`` lines at most): a replay that moves back gets copies of
the blocks it showed, and showing them again costs a lookup, not a render.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .. import render
from ..render import Palette
from ...model.transcript import Block


#: Lines rendered around what is shown when a transcript is longer (more as the user scrolls): a few
#: screens, so the first frame of a long transcript renders one or two big outputs, not ten screens' worth.
PAGE_LINES = 160
#: New blocks rendered at once below the window; more while following re-windows at the end.
PAGE_BLOCKS = 64
#: Rendered lines kept for blocks of the same content (all dropped when more are rendered).
CACHE_LINES = 20_000


class TranscriptView(ScrollView, can_focus=True):
    """Shows ``blocks`` (a live list owned by the run model's transcripts) for one node."""

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
        self._lo = 0  # blocks[lo:hi] are rendered; a marker line stands for those above and below
        self._hi = 0
        self._count = 0  # len(blocks) when last rendered: did the window reach the end?
        self._starts: list[int] = []  # first line (in _lines) of each rendered block
        self._lines: list[Strip] = []  # the rendered blocks' lines, at self._width
        self._width = 0
        self._cache: dict[tuple[str, str, str], list[Strip]] = {}  # (kind, text, data) -> lines, at _width
        self._cached_lines = 0
        self._follow = True  # keep showing the end; false once the user scrolls up

    def show(self, node_id: str | None, blocks: list[Block], follow: bool) -> None:
        """Switch to another node's transcript: at its end if ``follow`` (a live node), else its top."""
        self.node_id = node_id
        self._blocks = blocks
        self._window(at_end=follow or self._follow)
        if follow:
            self._follow = True
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        else:
            self.scroll_home(animate=False)

    def rebind(self, blocks: list[Block]) -> None:
        """The same node's transcript in another model (a replay moved): re-render only from the
        first block that is not the very same object (a checkpoint shares unchanged blocks)."""
        old, self._blocks = self._blocks, blocks
        self._count = len(old)
        first = min(len(old), len(blocks), self._hi)
        for i in range(self._lo, first):
            if old[i] is not blocks[i]:
                first = i
                break
        if len(blocks) < self._lo:
            self._window(at_end=self._follow)
        else:
            self._rerender(first)

    def blocks_changed(self, first: int) -> None:
        """Blocks from index ``first`` on were added or changed."""
        self._rerender(first)

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self._drop_cache()
        self._rerender(self._lo, full=True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._follow = new_value >= self.max_scroll_y and self._hi >= len(self._blocks)
        page = max(self.size.height, 1)
        if self._lo > 0 and new_value < page:  # near the top of what is rendered: render more above
            added = self._extend_up()
            self.scroll_to(y=new_value + added, animate=False, immediate=True)
        elif self._hi < len(self._blocks) and new_value > self.max_scroll_y - page:
            self._extend_down()

    def on_resize(self) -> None:
        if self._content_width() != self._width:
            self._rerender(self._lo, full=True)
        elif self._follow:  # shorter pane (the answer panel opened): stay at the end
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def plain_text(self) -> str:
        """The whole transcript as plain text (the "copy transcript" command, tests): all of it,
        rendered for this, not only the window shown."""
        lines = [line for block in self._blocks for line in self._render(block)]
        return "\n".join(strip.text.rstrip() for strip in lines)

    def _content_width(self) -> int:
        return max(20, self.scrollable_content_region.width)

    def _render(self, block: Block) -> list[Strip]:
        """A block's lines at the window's width: from the cache when a block of the same content was
        rendered at this width and palette."""
        width = self._width or self._content_width()
        key = (block.kind, block.text, repr(block.data))
        lines = self._cache.get(key)
        if lines is not None:
            return lines
        console = self.app.console
        options = console.options.update_width(width)
        with console.use_theme(self.palette.markdown_styles()):
            lines = [Strip(line) for line in console.render_lines(render.block(block, self.palette), options,
                                                                  pad=False)]
        if self._cached_lines + len(lines) > CACHE_LINES:
            self._drop_cache()
        self._cache[key] = lines
        self._cached_lines += len(lines)
        return lines

    def _drop_cache(self) -> None:
        self._cache.clear()
        self._cached_lines = 0

    def _window(self, at_end: bool) -> None:
        """Render about PAGE_LINES lines from the end (``at_end``) or from the start."""
        if self._content_width() != self._width:
            self._drop_cache()
        self._width = self._content_width()
        self._lines, self._starts = [], []
        self._count = count = len(self._blocks)
        self._lo = self._hi = count if at_end else 0
        if at_end:
            self._extend_up()
        else:
            self._extend_down()

    def _extend_up(self) -> int:
        """Render about PAGE_LINES more lines above the window; returns how many lines were added."""
        new: list[list[Strip]] = []
        total = 0
        while self._lo > 0 and total < PAGE_LINES:
            self._lo -= 1
            new.append(self._render(self._blocks[self._lo]))
            total += len(new[-1])
        starts, lines = [], []
        for block_lines in reversed(new):
            starts.append(len(lines))
            lines.extend(block_lines)
        self._starts = starts + [start + total for start in self._starts]
        self._lines = lines + self._lines
        self._resize()
        return total - (0 if self._lo else 1)  # the marker line above is gone once the top is rendered

    def _extend_down(self) -> None:
        """Render about PAGE_LINES more lines below the window."""
        added = 0
        while self._hi < len(self._blocks) and added < PAGE_LINES:
            self._starts.append(len(self._lines))
            block_lines = self._render(self._blocks[self._hi])
            self._lines.extend(block_lines)
            added += len(block_lines)
            self._hi += 1
        self._resize()

    def _rerender(self, first: int, full: bool = False) -> None:
        """Blocks from ``first`` changed or were added (``full``: re-render the window: width, palette).

        Changed blocks in the window are rendered again; new blocks after a window that reached
        the end are rendered too, up to PAGE_BLOCKS of them (a flood while following moves the
        window to the end instead), so a transcript that grows fast costs what is shown.
        """
        width = self._content_width()
        if width != self._width:
            self._drop_cache()
        if width != self._width or full:
            self._width, first = width, self._lo
        first = max(first, self._lo)
        count = len(self._blocks)
        reached_end = self._hi >= self._count
        self._count = count
        if first > self._hi or (first == self._hi and not reached_end):
            self._resize()  # below the window: only the count on the marker changes
            return
        stop = min(self._hi, count)
        if reached_end and count > stop:
            if self._follow and count - max(first, stop) > PAGE_BLOCKS:
                self._window(at_end=True)
                return
            stop = min(count, max(stop, first) + PAGE_BLOCKS)
        k = first - self._lo
        del self._lines[self._starts[k] if k < len(self._starts) else len(self._lines):]
        del self._starts[k:]
        self._hi = first
        while self._hi < stop:
            self._starts.append(len(self._lines))
            self._lines.extend(self._render(self._blocks[self._hi]))
            self._hi += 1
        self._resize()

    def _resize(self) -> None:
        if self._follow and self._hi < len(self._blocks):  # following: the window belongs at the end
            self._window(at_end=True)
            return
        self.virtual_size = Size(self._width, len(self._lines) + (self._lo > 0) + (self._hi < len(self._blocks)))
        self.refresh()
        if self._follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        style: Style = self.rich_style
        if self._lo > 0:
            if index == 0:
                return self._marker(f"… {self._lo:,} earlier blocks: scroll up to show them", width, style)
            index -= 1
        if index == len(self._lines) and self._hi < len(self._blocks):
            return self._marker(f"… {len(self._blocks) - self._hi:,} more blocks: scroll down to show them",
                                width, style)
        if index >= len(self._lines):
            return Strip.blank(width, style)
        return self._lines[index].crop_extend(0, width, style).apply_style(style)

    def _marker(self, text: str, width: int, style: Style) -> Strip:
        return Strip([Segment(text, Style.parse(self.palette.muted))]).crop_extend(0, width, style).apply_style(style)
