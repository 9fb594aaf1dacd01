"""A position in a recorded run, and the state of the run at that position.

The position ``p`` means "events ``0 .. p-1`` have happened" (``0 <= p <= N``).
The state at a position is the ``CallTree`` fold of those events. Moving
forward applies the new events; moving back starts from the nearest
checkpoint (a copy of the tree taken every so many tree events on the way)
and folds forward from there, so stepping back is as fast on a 100 MB file as
on a small one. Only events that change the tree are decoded for this; the
transcript of a node is read on demand (``node_events``).
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..model import events as ev
from ..model.tree import CallNode, CallTree
from .index import ANY, SessionIndex

#: Kinds of event that never change the CallTree (besides its clock). Everything
#: else is folded, so a kind the tree learns later is not skipped by mistake.
#: tests/test_replay.py checks that skipping these gives the same tree.
NON_TREE_KINDS = frozenset({
    ev.SESSION, ev.RUN_STARTED, ev.CONTEXT_LOADED, ev.KERNEL, ev.LM_STARTED, ev.LM_CHUNK, ev.LM_RETRY,
    ev.CELL_STARTED, ev.CELL_OUTPUT, ev.CELL_FINISHED, ev.TURN_FINISHED, ev.LIMIT_REACHED, ev.WARNING,
})

#: A checkpoint (a copy of the tree) is taken after every CHECKPOINT_SECONDS of folding, or
#: after CHECKPOINT_RATIO times as long as the last copy took if that is longer: stepping back
#: then costs at most about that much folding, and copies never dominate the work.
CHECKPOINT_SECONDS = 0.02
CHECKPOINT_RATIO = 4.0


def clone_tree(tree: CallTree) -> CallTree:
    """An independent copy of a tree (nodes, their usage and child lists)."""
    out = copy.copy(tree)
    clone = _clone_node
    out.nodes = {key: clone(node) for key, node in tree.nodes.items()}
    return out


def _make_cloner(cls: type) -> Any:
    """A fast copy function for a dataclass: fields made by a factory (lists, dicts, nested
    dataclasses) are copied one level down, the others (str, int, float, None) shared."""
    namespace: dict[str, Any] = {"cls": cls}
    args = []
    for f in dataclasses.fields(cls):
        factory = f.default_factory
        if factory in (list, dict, set):
            args.append(f"{f.name}=n.{f.name}.copy()")
        elif factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory):
            namespace[f"clone_{f.name}"] = _make_cloner(factory)  # type: ignore[arg-type]
            args.append(f"{f.name}=clone_{f.name}(n.{f.name})")
        else:
            args.append(f"{f.name}=n.{f.name}")
    exec(f"def clone(n):\n    return cls({', '.join(args)})\n", namespace)  # noqa: S102 - our own field names
    return namespace["clone"]


_clone_node = _make_cloner(CallNode)


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
    """A recorded run with a movable position; ``tree`` is the state at ``position``."""

    def __init__(self, index: SessionIndex) -> None:
        self.index = index
        self.position = 0
        self.tree = CallTree()
        self._checkpoints: list[tuple[int, CallTree]] = [(0, CallTree())]
        self._since_checkpoint = 0.0  # seconds spent folding past the last checkpoint
        self._copy_cost = 0.0  # seconds the last checkpoint copy took
        self._counted_to = 0  # position up to which tree events were counted
        self._root: str | None = None

    @classmethod
    def open(cls, path: Path | str, *, follow: bool = False) -> "Replayer":
        """Index ``path`` (raises FileNotFoundError or SessionFormatError); the position is 0."""
        return cls(SessionIndex.open(path, complete=not follow))

    def close(self) -> None:
        self.index.close()

    def __len__(self) -> int:
        return len(self.index)

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
        if position < self.position:
            at = bisect.bisect_right(self._checkpoints, position, key=lambda c: c[0]) - 1
            start, tree = self._checkpoints[at]
            self.tree = clone_tree(tree)
            self.position = start
        if position > self.position:
            self._fold(self.position, position)
        self.position = position
        self.tree.now = self.time_at(position)
        return self.tree

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

    def turn_stops(self, node: object = None) -> list[int]:
        """Positions just after each turn of a node (the root by default) started.

        Stepping a turn forward shows the previous turn complete and the next
        one's beginning; stepping back lands at the start of the current turn.
        """
        node_id = self.root if node is None else node
        return [i + 1 for i in self.index.positions([ev.TURN_STARTED], node_id)]

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

    def node_events(self, node: str | None, upto: int | None = None,
                    kinds: Iterable[str] | None = None) -> Iterator[ev.Event]:
        """One node's events before ``upto`` (the position by default): its transcript."""
        upto = self.position if upto is None else upto
        found = self.index.node_positions(node)
        wanted = None if kinds is None else {c for c in (self.index.kind_code(k) for k in kinds) if c is not None}
        kinds_ = self.index.kinds
        for i in found[:bisect.bisect_left(found, upto)]:
            if wanted is None or kinds_[i] in wanted:
                yield self.index.event(i, keep=False)

    def transcript_events(self, node: str | None, upto: int | None = None) -> list[ev.Event]:
        """A node's events before ``upto``, less the streamed chunks of replies that finished.

        A finished reply is whole on its lm_finished event, so only the chunks of
        a reply still streaming at ``upto`` (or of one that failed or was retried)
        are kept: a node's transcript decodes a few events per turn, not thousands.
        """
        upto = self.position if upto is None else upto
        found = self.index.node_positions(node)
        return self._without_finished_chunks(found[:bisect.bisect_left(found, upto)])

    def rebuild_events(self, upto: int | None = None) -> list[ev.Event]:
        """Every event before ``upto`` that matters to a view rebuilt from scratch.

        Folding these gives the same tree, run state and transcripts as folding
        all of them: only chunks of replies whose lm_finished came before
        ``upto`` are left out (the lm_finished text is the whole reply).
        """
        upto = len(self.index) if upto is None else min(upto, len(self.index))
        return self._without_finished_chunks(range(upto))

    def _without_finished_chunks(self, positions: Iterable[int]) -> list[ev.Event]:
        code = self.index.kind_code
        chunk, started, finished, retry = (code(ev.LM_CHUNK), code(ev.LM_STARTED), code(ev.LM_FINISHED),
                                           code(ev.LM_RETRY))
        kinds, nodes = self.index.kinds, self.index.nodes
        keep: list[int] = []
        pending: dict[int, list[int]] = {}  # node -> chunks of its reply being streamed
        for i in positions:
            kind = kinds[i]
            if kind == chunk:
                pending.setdefault(nodes[i], []).append(i)
                continue
            if kind == finished:
                pending.pop(nodes[i], None)
            elif kind == started or kind == retry:  # a reply that never finished: keep what streamed
                keep.extend(pending.pop(nodes[i], ()))
            keep.append(i)
        for chunks in pending.values():
            keep.extend(chunks)
        keep.sort()
        return [self.index.event(i, keep=False) for i in keep]

    def refresh(self) -> int:
        """Index events appended to the file since (following); returns how many."""
        return self.index.refresh()

    # ---- folding ----------------------------------------------------------------------

    def _fold(self, start: int, stop: int) -> None:
        index = self.index
        skip = {c for c in (index.kind_code(k) for k in NON_TREE_KINDS) if c is not None}
        wanted = [name for code, name in enumerate(index.kind_names) if code not in skip]
        tree = self.tree
        clock = time.perf_counter
        last = clock()
        for i in index.positions(wanted, start=start, stop=stop):
            tree.apply(index.event(i, keep=False))
            if i + 1 > self._counted_to:
                self._counted_to = i + 1
                now = clock()
                self._since_checkpoint += now - last
                last = now
                if self._since_checkpoint >= max(CHECKPOINT_SECONDS, CHECKPOINT_RATIO * self._copy_cost):
                    self._checkpoints.append((i + 1, clone_tree(tree)))
                    last = clock()
                    self._copy_cost = last - now
                    self._since_checkpoint = 0.0
            else:
                last = clock()


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
