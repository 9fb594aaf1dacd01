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


#: Upper bound on waiting for the engine, in pilot pauses; a guard against hanging, not a timing test.
MAX_PAUSES = 1200


async def wait_for(pilot, condition, what: str = "the expected state") -> None:  # type: ignore[no-untyped-def]
    """Pause the pilot until ``condition()`` holds (then once more, so the screen has caught up)."""
    for _ in range(MAX_PAUSES):
        if condition():
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError(f"the run never reached {what}")
