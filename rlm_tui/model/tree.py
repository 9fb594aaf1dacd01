"""The call tree, one part of the run model (``run.RunModel``): nodes with their subtree totals.

The UI, the headless printer, replay and the exporters all read this one
tree, so what the tree shows and what the run reports cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ..core.safe_text import one_line
from ..core import events as ev


#: Statuses of a call still under way (running, waiting for approval, waiting for a slot).
ACTIVE = ("running", "waiting", "queued")

@dataclass(slots=True)
class Usage:
    """Tokens and dollars; adds up over a subtree."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    lm_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def copy(self) -> "Usage":
        return Usage(self.tokens_in, self.tokens_out, self.cost_usd, self.lm_calls)

    def add(self, other: "Usage") -> None:
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.cost_usd += other.cost_usd
        self.lm_calls += other.lm_calls


@dataclass(slots=True)
class CallNode:
    """One call in the tree: the root RLM, a child RLM, an llm call, or a batch."""

    id: str
    parent: str | None
    kind: str
    depth: int = 0
    model: str = ""
    label: str = ""
    prompt: str = ""
    status: str = "running"
    started_t: float = 0.0
    finished_t: float | None = None
    usage: Usage = field(default_factory=Usage)
    children: list[str] = field(default_factory=list)
    result: str = ""
    error: str = ""
    turns: int = 0
    size: int = 0  # prompts in a batch
    item_kind: str = ""  # a batch's calls: llm or rlm ("" in files written before it was recorded)
    subtree: Usage = field(default_factory=Usage)  # own usage plus all descendants', kept up to date
    calls_below: int = 0  # llm and rlm nodes below this one, kept up to date
    children_done: int = 0  # direct children no longer active (a batch's "12/40"), kept up to date

    def copy(self) -> "CallNode":
        """An independent copy (a replay checkpoint); tests/test_model.py checks no field is missed."""
        return CallNode(self.id, self.parent, self.kind, self.depth, self.model, self.label, self.prompt, self.status,
                        self.started_t, self.finished_t, self.usage.copy(), self.children.copy(), self.result,
                        self.error, self.turns, self.size, self.item_kind, self.subtree.copy(), self.calls_below,
                        self.children_done)

    def elapsed(self, now: float) -> float:
        end = self.finished_t if self.finished_t is not None else now
        return max(0.0, end - self.started_t)


class CallTree:
    """Folds events into nodes; ``apply`` is O(depth) per event.

    Checkpoints (``run.Checkpoints``) share node objects with the tree instead of copying
    them all: ``share_dirty`` hands over the nodes changed since the last call, and a node
    a checkpoint holds is copied before it is next changed (``_write``).
    """

    #: The kinds this fold reads (besides every event's clock).
    HANDLES = frozenset({ev.NODE_STARTED, ev.SPAWN_REQUESTED, ev.RUN_FINISHED, ev.FINAL_ANSWER, ev.LM_FINISHED,
                         ev.TURN_STARTED, ev.SPAWN_DECIDED, ev.NODE_FINISHED})

    def __init__(self) -> None:
        self.nodes: dict[str, CallNode] = {}
        self.root: str | None = None  # the latest question's root node
        self.roots: tuple[str, ...] = ()  # every question's root, in order (a session may ask several)
        self.now: float = 0.0
        self.answer: str | None = None
        self.stopped_by: str | None = None
        self.finished: bool = False
        self.created: str | None = None  # the node the last event added (its first line in the parent's transcript)
        self._dirty: set[str] = set()  # changed since the last share_dirty
        self._shared: set[str] = set()  # held by a checkpoint: copy before changing

    def share_dirty(self) -> dict[str, CallNode]:
        """The nodes changed since the last call, for a checkpoint to keep (they are not copied now)."""
        shared = {node_id: self.nodes[node_id] for node_id in self._dirty}
        self._shared.update(self._dirty)
        self._dirty = set()
        return shared

    def freeze(self, nodes: dict[str, CallNode]) -> None:
        """Start from checkpointed nodes (shared with the checkpoint: copied when first changed)."""
        self.nodes, self._shared, self._dirty = dict(nodes), set(nodes), set()

    def _write(self, node_id: str | None) -> CallNode | None:
        """The node, ready to change (a checkpoint's is copied first), marked as changed."""
        node = self.nodes.get(node_id)  # type: ignore[arg-type]
        if node is None:
            return None
        if self._shared and node_id in self._shared:
            node = self.nodes[node.id] = node.copy()
            self._shared.discard(node.id)
        self._dirty.add(node.id)
        return node

    def apply(self, event: ev.Event) -> CallNode | None:
        """Update the tree; returns the node that changed, if any."""
        self.now = max(self.now, event.t)
        self.created = None
        kind = event.kind
        if kind in (ev.NODE_STARTED, ev.SPAWN_REQUESTED):
            node = self._write(event.node)
            if node is None:
                self.created = event.node or ""
                node = CallNode(id=event.node or "", parent=event.parent, kind=event.get("node_kind", "llm"),
                                started_t=event.t)
                self.nodes[node.id] = node
                self._dirty.add(node.id)
                parent = self._write(event.parent)
                if parent is not None:
                    parent.children.append(node.id)
                    if node.kind != "batch":
                        for ancestor in self._ancestors(event.parent):
                            ancestor.calls_below += 1
                elif event.parent is None and (kind == ev.NODE_STARTED or self.root is None):
                    self.root = node.id
                    self.roots += (node.id,)
                    self.answer = None  # the answer shown is the latest question's
            node.depth = event.get("depth", node.depth)
            node.model = event.get("model", node.model)
            node.prompt = event.get("prompt", node.prompt)
            node.label = event.get("label") or one_line(node.prompt)
            node.size = event.get("n", node.size)
            node.item_kind = event.get("item_kind", node.item_kind)
            self._set_status(node, "waiting" if kind == ev.SPAWN_REQUESTED else "running")
            if kind == ev.NODE_STARTED:
                node.started_t = event.t
            return node
        if kind == ev.RUN_FINISHED:
            self.finished = True
            self.answer = event.get("answer")
            self.stopped_by = event.get("stopped_by")
            return None
        if kind == ev.FINAL_ANSWER:
            if event.node is not None and event.node == self.root:
                self.answer = event.get("answer")
            return None
        if kind not in self.HANDLES:
            return None
        node = self._write(event.node)
        if node is None:
            return None
        if kind == ev.LM_FINISHED:
            usage = Usage(event.get("tokens_in", 0), event.get("tokens_out", 0), event.get("cost_usd", 0.0), 1)
            node.usage.add(usage)
            for ancestor in self._ancestors(node.id):
                ancestor.subtree.add(usage)
        elif kind == ev.TURN_STARTED:
            node.turns = event.get("turn", node.turns)
        elif kind == ev.SPAWN_DECIDED:
            node.prompt = event.get("prompt", node.prompt)
            decision = event.get("decision")
            self._set_status(node, "denied" if decision == "deny" else "killed" if decision == "kill" else "queued")
        elif kind == ev.NODE_FINISHED:
            self._set_status(node, event.get("status", "done"))
            node.finished_t = event.t
            node.result = event.get("result", "") or ""
            node.error = event.get("error", "") or ""
        return node

    def _set_status(self, node: CallNode, status: str) -> None:
        """Change a node's status, keeping its parent's count of finished children (O(1) for live views)."""
        if node.parent in self.nodes and (node.status in ACTIVE) != (status in ACTIVE):
            parent = self._write(node.parent)
            assert parent is not None
            parent.children_done += 1 if status not in ACTIVE else -1
        node.status = status

    def extend(self, events: Iterable[ev.Event]) -> None:
        for event in events:
            self.apply(event)

    def _ancestors(self, node_id: str | None) -> Iterator[CallNode]:
        """The node itself, then its parent, up to the root: the nodes whose totals an event moves
        (each ready to change)."""
        node = self._write(node_id)
        while node is not None:
            yield node
            node = self._write(node.parent)

    def subtree_usage(self, node_id: str) -> Usage:
        """A node's own usage plus all its descendants' (kept as events arrive: O(1), for live views)."""
        total = Usage()
        total.add(self.nodes[node_id].subtree)
        return total

    def subtree_calls(self, node_id: str) -> int:
        """How many sub-calls (llm and rlm nodes) lie below a node."""
        return self.nodes[node_id].calls_below

    def total_usage(self) -> Usage:
        total = Usage()
        for node in self.nodes.values():
            total.add(node.usage)
        return total
