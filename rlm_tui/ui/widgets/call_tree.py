"""The call-tree pane: a Textual ``Tree`` mirroring ``CallTree``, labelled when drawn.

Each widget node's data is a call-node id. ``sync`` adds nodes that appeared
and marks the ones that changed plus their ancestors (whose subtree totals
moved) for relabelling; it is called once per frame with everything that
changed since the last one, so a burst of sub-calls costs one repaint, not one
per event. A label is computed when its row is drawn (``render_label``), so a
change costs only the rows on screen: a replay that jumps to the end of a long
run marks 1,400 rows but labels the 40 shown.
A batch is one collapsed node whose prompts are its children. A node gets a
widget only once its parent's is expanded (a collapsed batch's prompts are
added when it is opened): Textual's ``Tree`` costs per widget node, and a jump
would otherwise add tens of thousands nobody sees. Labels are fitted to the
pane: the prompt is shortened so the numbers stay visible.
"""

from __future__ import annotations

from typing import Iterable

from rich.style import Style
from rich.text import Text
from textual import events
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ...model.tree import ACTIVE, CallNode, CallTree
from .. import fmt
from ..render import STATUS_ICONS, Palette

#: Below this many cells for the prompt, a node's own token counts are left out of its label.
MIN_LABEL = 16


class CallTreeView(Tree[str]):
    """The live recursion tree."""

    DEFAULT_CSS = """
    CallTreeView {
        background: $surface;
        scrollbar-gutter: stable;
        padding: 0 1;
    }
    """

    def __init__(self, calls: CallTree, palette: Palette, *, id: str | None = None) -> None:
        super().__init__("starting…", id=id)
        self.calls = calls
        self.palette = palette
        self.guide_depth = 3
        self._widgets: dict[str, TreeNode[str]] = {}
        self._depths: dict[str, int] = {}
        self._now = 0.0
        self._width = 0
        self._stale: set[str] = set()  # changed since their label was made: labelled when next drawn
        #: A session of several questions: each question's root is a top-level entry under a hidden root.
        self._several = False

    def sync(self, changed: Iterable[str], now: float) -> None:
        """Add new nodes and mark changed ones and their ancestors for relabelling."""
        self._now = now
        relabel: set[str] = set()
        for node_id in changed:
            node = self.calls.nodes.get(node_id)
            if node is None:
                continue
            if node_id not in self._widgets:
                self._add(node)
            while node is not None and node.id not in relabel:
                relabel.add(node.id)
                node = self.calls.nodes.get(node.parent or "")
        for node_id in relabel:
            self._mark(node_id)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[str]) -> None:
        """Add the children of a node opened for the first time."""
        if event.node.data is not None:
            self._add_children(event.node.data)

    def _add_children(self, node_id: str) -> None:
        """Add widgets for a node's children that have none (in the model's order), and for theirs
        while they are expanded."""
        node = self.calls.nodes.get(node_id)
        if node is None or node_id not in self._widgets:
            return
        for child_id in node.children:
            child = self.calls.nodes.get(child_id)
            if child is None:
                continue
            if child_id not in self._widgets:
                self._add(child)
            if child_id in self._widgets and self._widgets[child_id].is_expanded:
                self._add_children(child_id)

    def _mark(self, node_id: str) -> None:
        """Relabel a node when its row is next drawn (now, if it is on screen)."""
        widget = self._widgets.get(node_id)
        if widget is not None and node_id not in self._stale:
            self._stale.add(node_id)
            widget.refresh()

    def render_label(self, node: TreeNode[str], base_style: Style, style: Style) -> Text:
        """Label a changed node as its row is drawn (only rows on screen are drawn)."""
        if node.data in self._stale:
            self._stale.discard(node.data)
            call = self.calls.nodes.get(node.data)
            if call is not None:
                node.set_label(self._fitted(call, self._depths[node.data], node.allow_expand))
        return super().render_label(node, base_style, style)

    def get_label_width(self, node: TreeNode[str]) -> int:
        """The label's width without drawing it (Textual asks for every row each time rows change)."""
        return (len(self.ICON_NODE) if node.allow_expand else 0) + node.label.cell_len  # type: ignore[union-attr]

    def rebind(self, calls: CallTree) -> None:
        """Mirror another tree of the same run (a replay moved): drop the widgets of nodes it does
        not have; the caller then ``sync``s the nodes that changed."""
        self.calls = calls
        if self.root.data is not None and self.root.data not in calls.nodes:
            self.reset("starting…")
            self._widgets.clear()
            self._depths.clear()
            self._stale.clear()
            return
        removed: set[str] = set()
        for node_id in [n for n in self._widgets if n not in calls.nodes]:  # in creation order: parents first
            widget = self._widgets.pop(node_id)
            self._depths.pop(node_id, None)
            self._stale.discard(node_id)
            if widget.parent is None or widget.parent.data not in removed:
                widget.remove()
            removed.add(node_id)

    def relabel_all(self, now: float, only_active: bool = False) -> None:
        """Relabel every node (theme change, resize), or only active ones (their clocks tick)."""
        self._now = now
        for node_id in self._widgets:
            if not only_active or self.calls.nodes[node_id].status in ACTIVE:
                self._mark(node_id)

    def move_to(self, node_id: str) -> None:
        """Put the cursor on a call node (the app then shows its transcript), opening the nodes
        above it that are collapsed."""
        if node_id not in self._widgets:
            path = []
            node = self.calls.nodes.get(node_id)
            while node is not None and node.id not in self._widgets:
                path.append(node)
                node = self.calls.nodes.get(node.parent or "")
            if node is None:
                return
            for ancestor in reversed(path):
                self._widgets[node.id].expand()
                self._add_children(node.id)
                node = ancestor
            self._tree_lines  # noqa: B018  (builds the rows now: a node added just now has no row yet)
        self.move_cursor(self._widgets[node_id])

    def on_resize(self, event: events.Resize) -> None:
        if self.scrollable_content_region.width != self._width:
            self.relabel_all(self._now)

    def _add(self, node: CallNode) -> None:
        """Add a node's widget, unlabelled, if its parent's is expanded (else when that opens)."""
        if node.parent is None and self._widgets and not self._several and node.kind == "root":
            self._show_several()  # a follow-up question: every root becomes a top-level entry
            return
        if self._several and node.parent is None:
            widget, depth = self.root.add(Text(), data=node.id, expand=True), 0
        elif node.id == self.calls.root or not self._widgets:
            widget, depth = self.root, 0
            widget.data = node.id
            widget.expand()
        else:
            if node.parent in self.calls.nodes and node.parent not in self._widgets:
                return  # its parent is under a collapsed node
            parent_id = node.parent if node.parent in self._widgets else self.root.data
            parent = self._widgets.get(parent_id or "", self.root)
            if not parent.is_expanded:
                return
            widget = parent.add(Text(), data=node.id, expand=node.kind in ("rlm", "root"),
                                allow_expand=node.kind != "llm")
            depth = self._depths.get(parent_id or "", 0) + 1
        self._widgets[node.id] = widget
        self._depths[node.id] = depth
        self._stale.add(node.id)

    def _show_several(self) -> None:
        """Rebuild the tree with a hidden root and each question's root node at the top level."""
        self._several = True
        self.clear()
        self.root.data = None
        self.root.set_label("questions")  # never drawn (show_root is off)
        self.show_root = False
        self._widgets.clear()
        self._depths.clear()
        self._stale.clear()
        for node in list(self.calls.nodes.values()):  # parents come before their children
            self._add(node)
        self.relabel_all(self._now)

    def _fitted(self, node: CallNode, depth: int, allow_expand: bool) -> Text:
        """The node's label fitted to the pane at its depth."""
        self._width = self.scrollable_content_region.width
        indent = self.guide_depth * depth + (len(self.ICON_NODE) if allow_expand else 0)
        return self.label_for(node, self._width - indent)

    def label_for(self, node: CallNode, width: int) -> Text:
        """``✓ llm Summarise part 3…   1.2k→340 · $0.004 · 2.1s``, fitted to ``width`` cells.

        The numbers get shorter (``detail`` 2, 1, 0) before the prompt gets shorter than ``MIN_LABEL``.
        """
        palette = self.palette
        color = palette.status(node.status)
        head = Text.assemble((f"{STATUS_ICONS.get(node.status, '?')} ", f"bold {color}"),
                             (f"{node.kind} ", f"bold {palette.secondary if node.kind == 'llm' else palette.primary}"))
        for detail in (2, 1, 0):
            stats = self._stats(node, detail)
            room = width - head.cell_len - stats.cell_len - 2
            if room >= MIN_LABEL:
                break
        room = max(room, 8)
        label = node.label if len(node.label) <= room else node.label[: room - 1] + "…"
        head.append(label.ljust(room), style=palette.foreground)
        head.append("  ")
        head.append_text(stats)
        return head

    def _stats(self, node: CallNode, detail: int) -> Text:
        """A node's numbers: own tokens for a leaf, subtree totals (Σ) for an inner node.

        ``detail`` 2 adds an inner node's own tokens; 0 drops times and words.
        """
        palette, calls = self.palette, self.calls
        own = f"{fmt.tokens(node.usage.tokens_in)}→{fmt.tokens(node.usage.tokens_out)}"
        elapsed = f" · {fmt.seconds(node.elapsed(self._now))}" if detail else ""
        if not node.children:
            if not node.usage.lm_calls:
                status = "waiting for approval" if node.status == "waiting" else node.status
                return Text(f"{status}{elapsed}", style=palette.muted)
            return Text(f"{own} · {fmt.dollars(node.usage.cost_usd)}{elapsed}", style=palette.muted)
        total = calls.subtree_usage(node.id)
        tok = " tok" if detail else ""
        totals = f"{fmt.tokens(total.total_tokens)}{tok} · {fmt.dollars(total.cost_usd)}{elapsed}"
        if node.kind == "batch":
            done = node.children_done
            return Text.assemble((f"{done}/{len(node.children)}{' done' if detail else ''}", palette.status(node.status)),
                                 (f" · {totals}", palette.accent))
        text = Text()
        if detail == 2 and node.usage.lm_calls:
            text.append(f"{own} · ", style=palette.muted)
        count = calls.subtree_calls(node.id)
        calls_word = f" call{'s' if count != 1 else ''}" if detail else ""
        text.append(f"Σ {count}{calls_word} · {totals}", style=palette.accent)
        return text
