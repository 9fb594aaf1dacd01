"""The call-tree pane: a Textual ``Tree`` mirroring ``CallTree``, relabelled in place.

Each widget node's data is a call-node id. ``sync`` adds nodes that appeared
and relabels the ones that changed plus their ancestors (whose subtree totals
moved); it is called once per frame with everything that changed since the
last one, so a burst of sub-calls costs one repaint, not one per event.
A batch is one collapsed node whose prompts are its children. Labels are
fitted to the pane: the prompt is shortened so the numbers stay visible.
"""

from __future__ import annotations

from typing import Iterable

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
        self._stale: set[str] = set()  # changed while hidden under a collapsed node: relabelled when shown
        #: A session of several questions: each question's root is a top-level entry under a hidden root.
        self._several = False

    def sync(self, changed: Iterable[str], now: float) -> None:
        """Add new nodes and relabel changed ones and their ancestors."""
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
            if self._shown(node_id):
                self._relabel(node_id)
            else:  # a batch's 20,000 prompts cost nothing while it is collapsed
                self._stale.add(node_id)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[str]) -> None:
        """Relabel what changed under a node while it was collapsed."""
        now_shown = [node_id for node_id in self._stale if self._shown(node_id)]
        for node_id in now_shown:
            self._relabel(node_id)
        self._stale.difference_update(now_shown)

    def _shown(self, node_id: str) -> bool:
        """True when every ancestor of the node's widget is expanded."""
        widget = self._widgets[node_id].parent
        while widget is not None:
            if not widget.is_expanded:
                return False
            widget = widget.parent
        return True

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
                if self._shown(node_id):
                    self._relabel(node_id)
                else:
                    self._stale.add(node_id)

    def move_to(self, node_id: str) -> None:
        """Put the cursor on a call node (the app then shows its transcript)."""
        if node_id in self._widgets:
            self.move_cursor(self._widgets[node_id])

    def on_resize(self, event: events.Resize) -> None:
        if self.scrollable_content_region.width != self._width:
            self.relabel_all(self._now)

    def _add(self, node: CallNode) -> None:
        if node.parent is None and self._widgets and not self._several and node.kind == "root":
            self._show_several()  # a follow-up question: every root becomes a top-level entry
            return
        if self._several and node.parent is None:
            widget, depth = self.root.add("", data=node.id, expand=True), 0
        elif node.id == self.calls.root or not self._widgets:
            widget, depth = self.root, 0
            widget.data = node.id
            widget.expand()
        else:
            parent_id = node.parent if node.parent in self._widgets else self.root.data
            parent = self._widgets.get(parent_id or "", self.root)
            widget = parent.add("", data=node.id, expand=node.kind in ("rlm", "root"),
                                allow_expand=node.kind != "llm")
            depth = self._depths.get(parent_id or "", 0) + 1
        self._widgets[node.id] = widget
        self._depths[node.id] = depth

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

    def _relabel(self, node_id: str) -> None:
        widget = self._widgets[node_id]
        self._width = self.scrollable_content_region.width
        indent = self.guide_depth * self._depths[node_id] + (len(self.ICON_NODE) if widget.allow_expand else 0)
        widget.set_label(self.label_for(self.calls.nodes[node_id], self._width - indent))

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
