"""Per-node transcripts: the events of each call node folded into display blocks.

The call tree (``core.tree``) answers "what ran and what did it cost"; this
answers "what did this node say and print", so the transcript pane can show
any node's own story. Blocks are plain data (no Textual, no Rich), append-mostly:
only the open reply, the last output chunk, a turn's separator and a cell's
status line change after they are added, and every change is recorded as the
lowest block index touched, so a view re-renders only from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core import events as ev
from ..core.tree import CallNode, CallTree

#: Output chunks of one stream are merged into one block up to this size.
MERGE_CHARS = 1024


@dataclass(slots=True)
class Block:
    """One piece of a node's transcript.

    kinds: header, turn, reply, cell, output, spawn, response, note, answer, end.
    """

    kind: str
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class NodeTranscript:
    """The blocks of one node plus where the still-open pieces are."""

    blocks: list[Block] = field(default_factory=list)
    reply: int | None = None  # index of the reply being streamed
    turn: int | None = None  # index of the current turn separator
    cells: dict[Any, int] = field(default_factory=dict)  # cell id -> index of its status line

    def __post_init__(self) -> None:
        if not self.blocks:  # index 0 is always the header, filled when the node starts
            self.blocks.append(Block("header", data={"kind": "", "model": "", "depth": 0, "size": 0}))

    def add(self, block: Block) -> int:
        self.blocks.append(block)
        return len(self.blocks) - 1


class Transcripts:
    """Folds events into a transcript per node; apply after ``CallTree.apply``."""

    def __init__(self, tree: CallTree) -> None:
        self.tree = tree
        self.nodes: dict[str, NodeTranscript] = {}
        self._changed: dict[str, int] = {}

    def blocks(self, node_id: str) -> list[Block]:
        """The live block list of a node (views keep it and are told when it changes)."""
        return self._entry(node_id).blocks

    def take_changes(self) -> dict[str, int]:
        """Node id -> lowest block index changed since the last call."""
        changes, self._changed = self._changed, {}
        return changes

    def _touch(self, node_id: str, index: int) -> None:
        self._changed[node_id] = min(index, self._changed.get(node_id, index))

    def _append(self, node_id: str, block: Block) -> int:
        entry = self._entry(node_id)
        index = entry.add(block)
        self._touch(node_id, index)
        return index

    def _update(self, node_id: str, index: int, **data: Any) -> None:
        self.nodes[node_id].blocks[index].data.update(data)
        self._touch(node_id, index)

    def apply(self, event: ev.Event) -> None:
        kind = event.kind
        node_id = event.node or self.tree.root
        if node_id is None:
            return
        node = self.tree.nodes.get(node_id)
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event, node_id, node)

    # --- one method per event kind -------------------------------------------------

    def _entry(self, node_id: str) -> NodeTranscript:
        return self.nodes.setdefault(node_id, NodeTranscript())

    def _node_started(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if node is None:
            return
        self._header(node)
        self._spawn_line(node, "started")

    def _header(self, node: CallNode) -> None:
        header = self._entry(node.id).blocks[0]
        header.text = node.prompt
        self._update(node.id, 0, kind=node.kind, model=node.model, depth=node.depth, size=node.size)

    def _spawn_decided(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if node is not None:  # an edited prompt replaces the requested one
            self._header(node)
            self._spawn_line(node, "decided", decision=event.get("decision", ""), by=event.get("by", ""),
                             reason=event.get("reason", ""))

    def _spawn_line(self, node: CallNode, phase: str, **extra: str) -> None:
        """A line in the parent's transcript when a child waits, is decided, starts or ends."""
        if node.parent is None or node.parent not in self.tree.nodes:
            return
        parent = self.tree.nodes[node.parent]
        if parent.kind == "batch" and phase in ("waiting", "decided"):
            return
        usage = self.tree.subtree_usage(node.id) if phase == "finished" else node.usage
        self._append(node.parent, Block("spawn", node.label, {
            "child": node.id, "kind": node.kind, "phase": phase, "status": node.status,
            "tokens": usage.total_tokens, "cost": usage.cost_usd,
            "elapsed": node.elapsed(self.tree.now), "result": node.error or node.result, **extra}))

    def _spawn_requested(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if node is not None:
            self._header(node)  # a waiting call's own transcript shows what it asks, while it waits
            self._spawn_line(node, "waiting")

    def _context_loaded(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        info = event.get("info") or {}
        text = info.get("description") or f"a {info.get('type', '?')} of {info.get('chars', 0):,} characters"
        self._append(node_id, Block("note", f"context: {text.removeprefix('Your context is ')}", {"level": "info"}))

    def _turn_started(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._entry(node_id)
        entry.turn = self._append(node_id, Block("turn", data={
            "turn": event.get("turn", 0), "tokens_in": 0, "tokens_out": 0, "cost": 0.0, "duration": None}))
        entry.reply = None
        entry.cells = {}

    def _turn_finished(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self.nodes.get(node_id)
        if entry is not None and entry.turn is not None:
            self._update(node_id, entry.turn, duration=event.get("duration_s"))

    def _lm_chunk(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._entry(node_id)
        if entry.reply is None:
            entry.reply = self._append(node_id, Block("reply", data={"done": False}))
        entry.blocks[entry.reply].text += event.get("text", "")
        self._touch(node_id, entry.reply)

    def _lm_retry(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self.nodes.get(node_id)
        if entry is not None and entry.reply is not None:  # the stream broke: its text is void
            entry.blocks[entry.reply].text = ""
            self._touch(node_id, entry.reply)
        wait = event.get("wait_s") or 0
        self._append(node_id, Block(
            "note", f"model call failed (attempt {event.get('attempt', '?')}): {event.get('error', '')}; "
                    f"retrying in {wait:.1f}s", {"level": "warning"}))

    def _lm_finished(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._entry(node_id)
        text = event.get("text", "") or ""
        if node is not None and node.kind == "llm":
            self._append(node_id, Block("response", text))
            return
        if entry.reply is None:
            entry.reply = self._append(node_id, Block("reply", data={"done": False}))
        block = entry.blocks[entry.reply]
        block.text = text or block.text
        block.data["done"] = True
        self._touch(node_id, entry.reply)
        entry.reply = None
        if entry.turn is not None:
            turn = entry.blocks[entry.turn].data
            self._update(node_id, entry.turn, tokens_in=turn["tokens_in"] + event.get("tokens_in", 0),
                         tokens_out=turn["tokens_out"] + event.get("tokens_out", 0),
                         cost=turn["cost"] + event.get("cost_usd", 0.0))

    def _cell_started(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._entry(node_id)
        cell = event.get("cell")
        entry.cells[cell] = self._append(node_id, Block("cell", data={
            "cell": cell, "status": "running", "duration": None, "truncated": 0}))

    def _cell_output(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._entry(node_id)
        cell, stream, text = event.get("cell"), event.get("stream", "stdout"), event.get("text", "")
        last = entry.blocks[-1] if entry.blocks else None
        if (last is not None and last.kind == "output" and last.data["cell"] == cell
                and last.data["stream"] == stream and len(last.text) < MERGE_CHARS):
            last.text += text
            self._touch(node_id, len(entry.blocks) - 1)
        else:
            self._append(node_id, Block("output", text, {"cell": cell, "stream": stream}))

    def _cell_finished(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self.nodes.get(node_id)
        index = entry.cells.get(event.get("cell")) if entry else None
        if index is not None:
            self._update(node_id, index, status=event.get("status", "ok"), duration=event.get("duration_s"),
                         truncated=event.get("truncated_chars", 0))

    def _note(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if event.kind == ev.LIMIT_REACHED:
            text, level = f"limit reached: {event.get('limit')}: {event.get('detail', '')}", "error"
        elif event.kind == ev.KERNEL:
            text, level = f"kernel {event.get('state')}: {event.get('detail', '')}", "warning"
        else:
            text, level = event.get("message", ""), "warning"
        self._append(node_id, Block("note", text, {"level": level}))

    def _kernel(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if event.get("state") in ("restarting", "dead"):  # idle/busy live in the status bar
            self._note(event, node_id, node)

    def _final_answer(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        self._append(node_id, Block("answer", event.get("answer", "") or "", {"source": event.get("source")}))

    def _node_finished(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if node is None:
            return
        self._append(node_id, Block("end", node.error or node.result, {
            "status": node.status, "elapsed": node.elapsed(self.tree.now)}))
        self._spawn_line(node, "finished")


_HANDLERS = {
    ev.NODE_STARTED: Transcripts._node_started,
    ev.SPAWN_REQUESTED: Transcripts._spawn_requested,
    ev.SPAWN_DECIDED: Transcripts._spawn_decided,
    ev.CONTEXT_LOADED: Transcripts._context_loaded,
    ev.TURN_STARTED: Transcripts._turn_started,
    ev.TURN_FINISHED: Transcripts._turn_finished,
    ev.LM_CHUNK: Transcripts._lm_chunk,
    ev.LM_RETRY: Transcripts._lm_retry,
    ev.LM_FINISHED: Transcripts._lm_finished,
    ev.CELL_STARTED: Transcripts._cell_started,
    ev.CELL_OUTPUT: Transcripts._cell_output,
    ev.CELL_FINISHED: Transcripts._cell_finished,
    ev.LIMIT_REACHED: Transcripts._note,
    ev.WARNING: Transcripts._note,
    ev.KERNEL: Transcripts._kernel,
    ev.FINAL_ANSWER: Transcripts._final_answer,
    ev.NODE_FINISHED: Transcripts._node_finished,
}
