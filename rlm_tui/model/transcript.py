"""Per-node transcripts, one part of the run model: each node's events as a list of blocks.

The call tree (``tree``) answers "what ran and what did it cost"; this answers
"what did this node say and print": the app's transcript pane draws a node's
blocks, and the headless transcript and the exporters group them into turns
and cells (``sessions.transcript.node_log``). Blocks are plain data (no
Textual, no Rich), append-mostly: only a node's header, the open reply, the
last block, the current turn's separator and the open cells' status lines
change after they are added. Every change is recorded as the lowest block
index touched, so a view re-renders only from there, and a checkpoint
(``snapshot``) is a list length plus copies of those few open blocks.

A replay sets ``Transcripts.load``: then an llm call's own blocks (its prompt,
response, notes and end; a replay of 12,780 sub-calls opens a few of them), and
a batch's of at most ``LAZY_BATCH`` llm calls (a line per call starting and
ending), are folded only when first read, from the events of that node (and of
a batch's calls) so far, and are kept out of checkpoints (a restored model folds
them again when read: bounded work). The lines its parent shows about it are
folded as they come, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable

from ..core import events as ev
from .tree import CallNode, CallTree

#: Output chunks of one stream are merged into one block up to this size.
MERGE_CHARS = 1024
#: A replay folds the blocks of a batch of at most this many llm calls when they are read (about four
#: events a call: a few milliseconds, again after each restore); a bigger batch's as they come.
LAZY_BATCH = 256


@dataclass(slots=True)
class Block:
    """One piece of a node's transcript.

    kinds: header, turn, reply, cell, output, spawn, response, note, answer, end.
    A note's ``data["about"]`` says what it is: context, retry, limit, warning, kernel,
    compacted
    (``data["run"]`` marks a run-wide one shown in the root's transcript).
    """

    kind: str
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> "Block":
        return Block(self.kind, self.text, dict(self.data))


@dataclass
class NodeTranscript:
    """The blocks of one node plus where the still-open pieces are."""

    blocks: list[Block] = field(default_factory=list)
    reply: int | None = None  # index of the reply being streamed
    turn: int | None = None  # index of the current turn separator
    cells: dict[Any, int] = field(default_factory=dict)  # cell id -> index of its status line (this turn)
    open_cell: Any = None  # the cell running now: the sub-calls that appear belong to it

    def __post_init__(self) -> None:
        if not self.blocks:  # index 0 is always the header, filled when the node starts
            self.blocks.append(Block("header", data={"kind": "", "model": "", "depth": 0, "size": 0}))

    def add(self, block: Block) -> int:
        self.blocks.append(block)
        return len(self.blocks) - 1

    def snapshot(self) -> "NodeSnapshot":
        """What ``restore`` needs to bring this transcript back to now: blocks added later are cut
        off, and the blocks that may still change (header, last, open turn, reply, cells) are copied."""
        blocks = self.blocks
        open_ = {0, len(blocks) - 1, *self.cells.values()}
        open_.update(i for i in (self.turn, self.reply) if i is not None)
        return NodeSnapshot(blocks, len(blocks), {i: blocks[i].copy() for i in open_ if i >= 0},
                            self.reply, self.turn, dict(self.cells), self.open_cell)


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    blocks: list[Block]  # the live list then (later blocks are cut off, open ones patched back)
    length: int
    open_blocks: dict[int, Block]
    reply: int | None
    turn: int | None
    cells: dict[Any, int]
    open_cell: Any

    def restore(self) -> NodeTranscript:
        blocks = self.blocks[:self.length]
        for i, block in self.open_blocks.items():
            blocks[i] = block.copy()
        return NodeTranscript(blocks, self.reply, self.turn, dict(self.cells), self.open_cell)


class Transcripts:
    """Folds events into a transcript per node; apply after ``CallTree.apply``."""

    HANDLES: ClassVar[frozenset[str]]  # the kinds this fold reads (set below its handlers)

    def __init__(self, tree: CallTree) -> None:
        self.tree = tree
        self.nodes: dict[str, NodeTranscript] = {}
        self._changed: dict[str, int] = {}
        self.dirty: set[str] = set()  # nodes changed since the last take_dirty (for checkpoints)
        self._frozen: dict[str, NodeSnapshot] = {}  # restored from a checkpoint, rebuilt when first used
        #: The events of some nodes folded so far, in order (a replay's file): set, an llm call's own blocks,
        #: and a small batch's, wait until read.
        self.load: Callable[[list[str]], Iterable[ev.Event]] | None = None
        self._loaded: set[str] = set()  # folded when read: never checkpointed

    def freeze(self, snapshots: dict[str, NodeSnapshot]) -> None:
        """Start from checkpointed transcripts; each is rebuilt only when it is read or changed."""
        self.nodes, self._frozen = {}, dict(snapshots)
        self._changed, self.dirty, self._loaded = {}, set(), set()

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def blocks(self, node_id: str) -> list[Block]:
        """The live block list of a node (views keep it and are told when it changes)."""
        return self._entry(node_id).blocks

    def has_changes(self) -> bool:
        return bool(self._changed)

    def take_changes(self) -> dict[str, int]:
        """Node id -> lowest block index changed since the last call."""
        changes, self._changed = self._changed, {}
        return changes

    def _touch(self, node_id: str, index: int) -> None:
        self._changed[node_id] = min(index, self._changed.get(node_id, index))
        if node_id not in self._loaded:
            self.dirty.add(node_id)

    def _append(self, node_id: str, block: Block) -> int:
        entry = self._entry(node_id)
        index = entry.add(block)
        self._touch(node_id, index)
        return index

    def _update(self, node_id: str, index: int, **data: Any) -> None:
        self._entry(node_id).blocks[index].data.update(data)
        self._touch(node_id, index)

    def apply(self, event: ev.Event) -> None:
        kind = event.kind
        node_id = event.node or self.tree.root
        if node_id is None:
            return
        node = self.tree.nodes.get(node_id)
        handler = _HANDLERS.get(kind)
        if handler is not None and (self.load is None or kind in _PARENT_LINES or not self._deferred(node)):
            handler(self, event, node_id, node)

    def _deferred(self, node: CallNode | None) -> bool:
        """An llm call, or a batch of at most LAZY_BATCH llm calls, whose own blocks are not folded yet
        (``load`` folds them when they are read)."""
        return (self.load is not None and node is not None and node.id not in self.nodes
                and node.id not in self._frozen
                and (node.kind == "llm" or (node.kind == "batch" and node.item_kind == "llm"
                                            and node.size <= LAZY_BATCH)))

    def _fold_loaded(self, node: CallNode) -> NodeTranscript:
        """A deferred node's blocks, folded from its events so far: what the eager fold gives it. An llm
        call's header, response, notes and end depend only on its own events; a batch's lines on its own
        and its calls' (each an llm call: its usage is its own)."""
        assert self.load is not None
        tree = CallTree()
        alone = Transcripts(tree)
        for event in self.load([node.id, *node.children] if node.kind == "batch" else [node.id]):
            tree.apply(event)
            alone.apply(event)
        self._loaded.add(node.id)
        return alone.nodes.get(node.id) or NodeTranscript()

    # --- one method per event kind -------------------------------------------------

    def _entry(self, node_id: str) -> NodeTranscript:
        entry = self.nodes.get(node_id)
        if entry is None:
            snapshot = self._frozen.pop(node_id, None)
            node = self.tree.nodes.get(node_id)
            if snapshot is not None:
                entry = snapshot.restore()
            elif node is not None and self._deferred(node):
                entry = self._fold_loaded(node)
            else:
                entry = NodeTranscript()
            self.nodes[node_id] = entry
        return entry

    def _known(self, node_id: str) -> bool:
        return node_id in self.nodes or node_id in self._frozen

    def _get(self, node_id: str) -> NodeTranscript | None:
        return self._entry(node_id) if self._known(node_id) else None

    def _node_started(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if node is None:
            return
        if not self._deferred(node):
            self._header(node)
        self._spawn_line(node, "started", self.tree.created == node.id)

    def _header(self, node: CallNode) -> None:
        header = self._entry(node.id).blocks[0]
        header.text = node.prompt
        self._update(node.id, 0, kind=node.kind, model=node.model, depth=node.depth, size=node.size)

    def _spawn_decided(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if node is not None:  # an edited prompt replaces the requested one
            if not self._deferred(node):
                self._header(node)
            self._spawn_line(node, "decided", decision=event.get("decision", ""), by=event.get("by", ""),
                             reason=event.get("reason", ""), replayed=bool(event.get("replayed")))

    def _spawn_line(self, node: CallNode, phase: str, first: bool = False, **extra: Any) -> None:
        """A line in the parent's transcript when a child waits, is decided, starts or ends."""
        if node.parent is None or node.parent not in self.tree.nodes:
            return
        parent = self.tree.nodes[node.parent]
        if self._deferred(parent):  # a (damaged) file's call under an llm call: not in its lazily folded blocks
            return
        if parent.kind == "batch" and phase in ("waiting", "decided"):
            return
        usage = node.subtree if phase == "finished" else node.usage  # read, not kept: no copy
        if first:  # where the call appeared: the cell of the parent running then
            extra = {**extra, "first": True, "cell": self._entry(node.parent).open_cell}
        self._append(node.parent, Block("spawn", node.label, {
            "child": node.id, "kind": node.kind, "phase": phase, "status": node.status,
            "tokens": usage.total_tokens, "cost": usage.cost_usd,
            "elapsed": node.elapsed(self.tree.now), "result": node.error or node.result, **extra}))

    def _spawn_requested(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if node is not None:
            if not self._deferred(node):
                self._header(node)  # a waiting call's own transcript shows what it asks, while it waits
            self._spawn_line(node, "waiting", self.tree.created == node.id)

    def _context_loaded(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        info = event.get("info") or {}
        text = info.get("description") or f"a {info.get('type', '?')} of {info.get('chars', 0):,} characters"
        self._append(node_id, Block("note", f"context: {text.removeprefix('Your context is ')}",
                                    {"level": "info", "about": "context", "info": info}))

    def _turn_started(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._entry(node_id)
        entry.turn = self._append(node_id, Block("turn", data={
            "turn": event.get("turn", 0), "tokens_in": 0, "tokens_out": 0, "cost": 0.0, "duration": None}))
        entry.reply = None
        entry.cells = {}

    def _lm_started(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        """The last-chance call after the turn limit has a turn number but no turn_started: give it a turn."""
        turn = event.get("turn")
        if turn is None or (node is not None and node.kind == "llm"):  # an llm call has no turns
            return
        entry = self._entry(node_id)
        if entry.turn is not None and entry.blocks[entry.turn].data["turn"] == turn:
            return
        self._turn_started(event, node_id, node)

    def _turn_finished(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._get(node_id)
        if entry is not None and entry.turn is not None:
            self._update(node_id, entry.turn, duration=event.get("duration_s"))

    def _lm_chunk(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._entry(node_id)
        if entry.reply is None:
            entry.reply = self._append(node_id, Block("reply", data={"done": False}))
        entry.blocks[entry.reply].text += event.get("text", "")
        self._touch(node_id, entry.reply)

    def _lm_retry(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._get(node_id)
        if entry is not None and entry.reply is not None:  # the stream broke: its text is void
            entry.blocks[entry.reply].text = ""
            self._touch(node_id, entry.reply)
        wait = event.get("wait_s") or 0
        self._append(node_id, Block(
            "note", f"model call failed (attempt {event.get('attempt', '?')}): {event.get('error', '')}; "
                    f"retrying in {wait:.1f}s", {"level": "warning", "about": "retry"}))

    def _lm_finished(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._entry(node_id)
        text = event.get("text", "") or ""
        if node is not None and node.kind == "llm":
            self._append(node_id, Block("response", text))
            return
        if entry.reply is None:
            entry.reply = self._append(node_id, Block("reply", data={"done": False}))
        block = entry.blocks[entry.reply]
        block.text = text  # the whole reply: what streamed before it is only a preview
        block.data["done"] = True
        self._touch(node_id, entry.reply)
        entry.reply = None
        if entry.turn is not None:
            turn = entry.blocks[entry.turn].data
            self._update(node_id, entry.turn, tokens_in=turn["tokens_in"] + event.get("tokens_in", 0),
                         tokens_out=turn["tokens_out"] + event.get("tokens_out", 0),
                         cost=turn["cost"] + event.get("cost_usd", 0.0),
                         replayed=turn.get("replayed", False) or bool(event.get("replayed")))

    def _cell_started(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        entry = self._entry(node_id)
        cell = event.get("cell")
        entry.cells[cell] = self._append(node_id, Block("cell", data={
            "cell": cell, "code": event.get("code", ""), "status": "running", "duration": None, "truncated": 0,
            "by": event.get("by")}))
        entry.open_cell = cell

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
        entry = self._get(node_id)
        index = entry.cells.get(event.get("cell")) if entry else None
        if entry is not None and entry.open_cell == event.get("cell"):
            entry.open_cell = None
        if index is not None:
            self._update(node_id, index, status=event.get("status", "ok"), duration=event.get("duration_s"),
                         truncated=event.get("truncated_chars", 0))

    def _note(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if event.kind == ev.LIMIT_REACHED:
            text, level, about = f"limit reached: {event.get('limit')}: {event.get('detail', '')}", "error", "limit"
        elif event.kind == ev.KERNEL:
            text, level, about = f"kernel {event.get('state')}: {event.get('detail', '')}", "warning", "kernel"
        else:
            text, level, about = event.get("message", ""), "warning", "warning"
        self._append(node_id, Block("note", text, {"level": level, "about": about, "run": event.node is None}))

    def _compacted(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        self._append(node_id, Block("note", compacted_line(event), {"level": "info", "about": "compacted"}))

    def _kernel(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if event.get("state") in ("restarting", "dead"):  # idle/busy live in the status bar
            self._note(event, node_id, node)

    def _final_answer(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        self._append(node_id, Block("answer", event.get("answer", "") or "", {"source": event.get("source")}))

    def _node_finished(self, event: ev.Event, node_id: str, node: CallNode | None) -> None:
        if node is None:
            return
        if not self._deferred(node):
            self._append(node_id, Block("end", node.error or node.result, {
                "status": node.status, "elapsed": node.elapsed(self.tree.now)}))
        self._spawn_line(node, "finished")


_HANDLERS = {
    ev.LM_STARTED: Transcripts._lm_started,
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
    ev.COMPACTED: Transcripts._compacted,
    ev.FINAL_ANSWER: Transcripts._final_answer,
    ev.NODE_FINISHED: Transcripts._node_finished,
}
Transcripts.HANDLES = frozenset(_HANDLERS)
#: The kinds that add a line to the parent's transcript: folded also for an llm call whose own blocks wait.
_PARENT_LINES = frozenset({ev.NODE_STARTED, ev.SPAWN_REQUESTED, ev.SPAWN_DECIDED, ev.NODE_FINISHED})


def compacted_line(event: ev.Event) -> str:
    """What a ``compacted`` event says, in one line (the transcript's note and the headless progress line)."""
    turns = ", ".join(str(t) for t in event.get("turns", []))
    window = f" to fit a {event.get('window'):,}-token window" if event.get("window") else ""
    return (f"compacted turns {turns}{window}: {event.get('chars_before', 0):,} → "
            f"{event.get('chars_after', 0):,} characters ({event.get('reason', '')})")
