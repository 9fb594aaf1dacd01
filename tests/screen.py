"""What the app shows, read back for assertions: a widget's text, the call tree's rows."""

from __future__ import annotations

from textual.geometry import Region
from textual.widget import Widget
from textual.widgets.tree import TreeNode


def tree_rows(node: TreeNode[str], depth: int = 0) -> list[tuple[int, str, str, bool]]:
    """(depth, call-node id, label text, expanded) for every node, depth first."""
    rows = [(depth, node.data or "", str(node.label), node.is_expanded)]
    for child in node.children:
        rows.extend(tree_rows(child, depth + 1))
    return rows


def shown(widget: Widget) -> str:
    """The text a widget draws on screen."""
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.size)))
