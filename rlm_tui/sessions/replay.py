"""A position in a recorded run, and the run model at that position.

The position ``p`` means "events ``0 .. p-1`` have happened" (``0 <= p <= N``).
The state at a position is the ``RunModel`` fold of those events (tree,
transcripts, run state, questions: everything a view shows). Moving forward
folds the new events; moving back, or far forward to where the replay has
been before, restores the nearest checkpoint of the whole model
(``model.run.Checkpoints``, taken every ``CHECKPOINT_EVENTS`` events) and
folds on from there, so every move costs a restore plus a short fold, on a
100 MB file as on a small one. An llm call's own transcript is folded when it
is first read, from its events in the file (``Transcripts.load``), and so is a
small batch's: most of a long run's sub-calls are never opened.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..core.safe_text import is_plain
from ..core import events as ev
from ..model.run import Checkpoints, RunModel
from ..model.tree import CallTree
from .index import ANY, SessionIndex

#: A checkpoint is taken every CHECKPOINT_EVENTS events (and where a jump lands, if that is a quarter
#: as far): a move then folds at most that many events after restoring. A checkpoint shares what did
#: not change, so it holds tens of KB (README: Performance), and their number is bounded by the file's.
CHECKPOINT_EVENTS = 250
#: Moving forward restores a checkpoint instead of folding when it saves more events than this.
RESTORE_GAIN = 200


@dataclass(frozen=True)
class Position:
    """Where a replay stands, for the position indicator."""

    index: int  # events applied
    total: int  # events in the file (so far, when following)
    turn: int  # the root's current turn (0 before the first)
    t: float  # seconds since the run started, at this position
    finished: bool  # run_finished is applied

    def describe(self) -> str:
        turn = f"turn {self.turn}" if self.turn else "before turn 1"
        return f"{turn} · {self.t:.1f}s · event {self.index:,} of {self.total:,}"


class Replayer:
    """A recorded run with a movable position; ``model`` is the run model at ``position``.

    A move back (or a long jump forward) replaces ``model`` with one restored from a
    checkpoint: views compare it with the model they show. ``take_changed`` lists the
    tree nodes that may have changed since it was last called (views redraw only those).
    """

    def __init__(self, index: SessionIndex) -> None:
        self.index = index
        self.position = 0
        self.model = self._lazy(RunModel())
        self._checkpoints = Checkpoints()
        self._checkpoints.take(0, self.model)
        self._changed: dict[str, None] = {}
        self._root: str | None = None
        #: Applied before folding to each event whose line is not plain (``core.safe_text.is_plain``):
        #: the app makes every string safe to draw; a plain line holds nothing to change.
        self.sanitize: Callable[[ev.Event], ev.Event] | None = None

    @classmethod
    def open(cls, path: Path | str, *, follow: bool = False) -> "Replayer":
        """Index ``path`` (raises FileNotFoundError or SessionFormatError); the position is 0."""
        return cls(SessionIndex.open(path, complete=not follow))

    def close(self) -> None:
        self.index.close()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def tree(self) -> CallTree:
        return self.model.tree

    # ---- facts about the whole file ---------------------------------------------------

    @property
    def header(self) -> dict | None:
        return self.index.header

    @property
    def bad_lines(self) -> list[tuple[int, str]]:
        return self.index.bad_lines

    def run_started(self) -> ev.Event | None:
        found = self.index.positions([ev.RUN_STARTED], stop=64)
        return self.index.event(found[0]) if found else None

    def run_finished(self) -> ev.Event | None:
        found = self.index.positions([ev.RUN_FINISHED])
        return self.index.event(found[-1]) if found else None

    @property
    def root(self) -> str | None:
        """The root node's id (known once its node_started is indexed)."""
        if self._root is None:
            for i in self.index.positions([ev.NODE_STARTED], stop=256):
                event = self.index.event(i)
                if event.get("node_kind") == "root" or event.parent is None:
                    self._root = event.node
                    break
        return self._root

    # ---- moving -----------------------------------------------------------------------

    def seek(self, position: int) -> CallTree:
        """Move to ``position`` (clamped to 0..N); returns the tree there."""
        position = max(0, min(position, len(self.index)))
        checkpoints = self._checkpoints
        at = checkpoints.before(position)
        start = checkpoints.items[at].position
        if position < self.position or start > self.position + RESTORE_GAIN:
            self.model = self._lazy(checkpoints.restore(at))
            self._moved_over(min(start, self.position), max(start, self.position))
            self.position = start
        if position > self.position:
            paused = gc.isenabled() and position - self.position >= CHECKPOINT_EVENTS
            if paused:  # a long fold makes only objects that live on: a cycle search over them finds nothing
                gc.disable()
            try:
                self._fold(self.position, position)
            finally:
                if paused:
                    _to_oldest_generation()
                    gc.enable()
        self.position = position
        self.model.tree.now = self.time_at(position)
        return self.model.tree

    def take_changed(self) -> list[str]:
        """Tree nodes that may differ from what they were at the last call: those of the events
        moved over (forward or back), so a view redraws only those (and drops nodes the model lost)."""
        changed, self._changed = self._changed, {}
        return list(changed)

    def _moved_over(self, start: int, stop: int) -> None:
        names = self.index.node_names
        for code in set(self.index.nodes[start:stop]):
            if names[code] is not None:
                self._changed[names[code]] = None  # type: ignore[index]

    def step(self, n: int = 1) -> CallTree:
        """Forward (n > 0) or back (n < 0) by ``n`` events."""
        return self.seek(self.position + n)

    def to_start(self) -> CallTree:
        return self.seek(0)

    def to_end(self) -> CallTree:
        return self.seek(len(self.index))

    def next_stop(self, stops: list[int]) -> CallTree:
        """Forward to the first stop after the position (or the end)."""
        i = bisect.bisect_right(stops, self.position)
        return self.seek(stops[i] if i < len(stops) else len(self.index))

    def prev_stop(self, stops: list[int]) -> CallTree:
        """Back to the last stop before the position (or the start)."""
        i = bisect.bisect_left(stops, self.position) - 1
        return self.seek(stops[i] if i >= 0 else 0)

    def next_cell(self, node: object = ANY) -> CallTree:
        return self.next_stop(self.cell_stops(node))

    def prev_cell(self, node: object = ANY) -> CallTree:
        return self.prev_stop(self.cell_stops(node))

    def next_turn(self, node: object = None) -> CallTree:
        return self.next_stop(self.turn_stops(node))

    def prev_turn(self, node: object = None) -> CallTree:
        return self.prev_stop(self.turn_stops(node))

    def to_node(self, node: str) -> CallTree:
        """Just after ``node`` appeared in the tree (its spawn request or start)."""
        first = self.node_first(node)
        if first is None:
            raise KeyError(f"no node {node!r} in this session")
        return self.seek(first + 1)

    # ---- stops ------------------------------------------------------------------------

    def cell_stops(self, node: object = ANY) -> list[int]:
        """Positions just after each finished cell (of one node, or of any)."""
        return [i + 1 for i in self.index.positions([ev.CELL_FINISHED], node)]

    @property
    def roots(self) -> list[str]:
        """Every question's root node, in order (a session may ask several; each starts with
        ``question_asked``, its root's ``node_started`` soon after); the one root of an older file."""
        roots: list[str] = []
        for asked in self.index.positions([ev.QUESTION_ASKED]):
            for i in self.index.positions([ev.NODE_STARTED], start=asked + 1, stop=asked + 16):
                event = self.index.event(i)
                if event.parent is None:
                    roots.append(event.node or "")
                    break
        return roots or ([self.root] if self.root is not None else [])

    def turn_stops(self, node: object = None) -> list[int]:
        """Positions just after each turn of a node started; of every question's root for a root or None.

        Stepping a turn forward shows the previous turn complete and the next
        one's beginning; stepping back lands at the start of the current turn.
        """
        roots = self.roots
        nodes = roots if node is None or node in roots else [node]
        return sorted(i + 1 for node_id in nodes for i in self.index.positions([ev.TURN_STARTED], node_id))

    def node_first(self, node: str) -> int | None:
        found = self.index.positions([ev.SPAWN_REQUESTED, ev.NODE_STARTED], node)
        return found[0] if found else None

    # ---- what is shown at the position ------------------------------------------------

    def time_at(self, position: int) -> float:
        """The recorded clock after ``position`` events (0 at the start)."""
        return self.index.event(position - 1).t if position > 0 else 0.0

    def describe(self) -> Position:
        root = self.tree.nodes.get(self.tree.root or "")
        return Position(self.position, len(self.index), root.turns if root else 0,
                        self.time_at(self.position), self.tree.finished)

    def events(self, start: int, stop: int) -> list[ev.Event]:
        """Events ``start .. stop-1`` decoded."""
        return [self.index.event(i) for i in range(max(0, start), min(stop, len(self.index)))]

    def refresh(self) -> int:
        """Index events appended to the file since (following); returns how many."""
        return self.index.refresh()

    # ---- folding ----------------------------------------------------------------------

    def _lazy(self, model: RunModel) -> RunModel:
        """The model, with its llm calls' and small batches' own transcripts folded from the file when first
        read, up to its own position. Held weakly: a model a move replaced (100 MB at the end of a big file) is
        freed at once, not left to a cycle search."""
        replayer, folded = weakref.ref(self), weakref.ref(model)
        model.transcripts.load = (  # type: ignore[union-attr]
            lambda nodes: replayer()._node_events(nodes, folded().events))  # type: ignore[union-attr]
        return model

    def _node_events(self, nodes: list[str], stop: int) -> Iterator[ev.Event]:
        """The events of ``nodes`` before ``stop``, in file order (the events its model has folded: mid-fold,
        fewer than ``position``; a model a view still holds after a move, its own)."""
        for i in heapq.merge(*(self.index.node_positions(node) for node in nodes)):
            if i >= stop:
                break
            yield self._decoded(i)

    def _decoded(self, i: int) -> ev.Event:
        """Event ``i`` as the model folds it: made safe to draw when the app asks and its line is not plain."""
        raw = self.index.raw(i)
        event = self.index.decode(i, raw)
        if self.sanitize is not None and not is_plain(raw):
            event = self.sanitize(event)
        return event

    def _fold(self, start: int, stop: int) -> None:
        """Fold events ``start .. stop-1``, taking checkpoints past the last one on the way.

        Events the model would not read (``RunModel.reads``) are counted, not decoded, and so
        are the streamed chunks of a reply whose lm_finished (the whole text) comes before
        ``stop``; no checkpoint is taken while such a reply is open, so each holds its chunks.
        """
        index, model, checkpoints, changed = self.index, self.model, self._checkpoints, self._changed
        decoded, reads = self._decoded, model.reads
        kinds, nodes, kind_names, node_names = index.kinds, index.nodes, index.kind_names, index.node_names
        chunk, finished = index.kind_code(ev.LM_CHUNK), index.kind_code(ev.LM_FINISHED)
        covered = self._covered_chunks(start, stop)
        open_replies: set[int] = set()  # nodes whose skipped chunks wait for their lm_finished
        for i in range(start, stop):
            kind, node_code = kinds[i], nodes[i]
            if kind == chunk and i in covered:
                open_replies.add(node_code)
                model.skip()
            elif not reads(kind_names[kind], node_names[node_code]):
                model.skip()
            else:
                node = model.apply(decoded(i))
                if node is not None:
                    changed[node.id] = None
                if kind == finished:
                    open_replies.discard(node_code)
            if i + 1 - checkpoints.last >= CHECKPOINT_EVENTS and not open_replies:
                checkpoints.take(i + 1, model)
        jumped = stop - start >= CHECKPOINT_EVENTS  # moving back from where a jump landed is quick too
        if jumped and not open_replies and stop - checkpoints.last >= CHECKPOINT_EVENTS // 4:
            checkpoints.take(stop, model)

    def _covered_chunks(self, start: int, stop: int) -> set[int]:
        """Positions of lm_chunk events in ``start .. stop-1`` whose reply's lm_finished comes before ``stop``
        (no lm_started or lm_retry of that node in between: a retried reply keeps what streamed)."""
        index = self.index
        code = index.kind_code
        chunk, finished, started, retry = code(ev.LM_CHUNK), code(ev.LM_FINISHED), code(ev.LM_STARTED), code(ev.LM_RETRY)
        if chunk is None or finished is None:
            return set()
        kinds, nodes = index.kinds, index.nodes
        ends: set[int] = set()  # nodes whose next model event (looking back from the end) finishes a reply
        covered: set[int] = set()
        for i in range(stop - 1, start - 1, -1):
            kind = kinds[i]
            if kind == chunk:
                if nodes[i] in ends:
                    covered.add(i)
            elif kind == finished:
                ends.add(nodes[i])
            elif kind == started or kind == retry:
                ends.discard(nodes[i])
        return covered


def _to_oldest_generation() -> None:
    """Move every tracked object to the oldest generation without a collection (CPython counts only
    those a younger collection moves there towards the next full one): otherwise the 100,000 a long
    fold leaves cost two searches of the whole heap (0.1 s at open-at-end, in the app). They are still
    searched by the next full collection, which comes when the run's own objects call for it."""
    gc.freeze()
    gc.unfreeze()


class Player:
    """Plays a replay in recorded time: ``advance(wall_seconds)`` says how far to move.

    The recorded gaps between events are kept (times ``speed``), except that a
    wait longer than ``max_gap`` recorded seconds (a model thinking, a slow
    cell) is shortened to it, so playback never sits still for long.
    """

    SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)

    def __init__(self, replayer: Replayer, speed: float = 1.0, max_gap: float = 1.0) -> None:
        self.replayer = replayer
        self.speed = speed
        self.max_gap = max_gap
        self.playing = False
        self._cursor: float | None = None  # recorded time reached between events

    def play(self) -> None:
        if self.replayer.position >= len(self.replayer):
            return
        self.playing = True
        self.sync()

    def pause(self) -> None:
        self.playing = False

    def toggle(self) -> bool:
        self.pause() if self.playing else self.play()
        return self.playing

    def faster(self) -> float:
        self.speed = next((s for s in self.SPEEDS if s > self.speed), self.SPEEDS[-1])
        return self.speed

    def slower(self) -> float:
        self.speed = next((s for s in reversed(self.SPEEDS) if s < self.speed), self.SPEEDS[0])
        return self.speed

    def sync(self) -> None:
        """The position moved by other means (a step, a jump): play on from there."""
        self._cursor = self.replayer.time_at(self.replayer.position)

    def advance(self, wall_seconds: float) -> int:
        """The position playback has reached after ``wall_seconds`` more (not moved yet)."""
        replayer = self.replayer
        position = replayer.position
        if not self.playing:
            return position
        if self._cursor is None:
            self.sync()
        assert self._cursor is not None
        budget = wall_seconds * self.speed
        cursor = self._cursor
        total = len(replayer)
        while position < total:
            t_next = replayer.index.event(position).t
            cursor = max(cursor, t_next - self.max_gap)  # a long wait is shortened to max_gap
            gap = max(0.0, t_next - cursor)
            if gap > budget:
                cursor += budget
                break
            budget -= gap
            cursor = max(cursor, t_next)
            position += 1
        self._cursor = cursor
        if position >= total:
            self.playing = False
        return position
