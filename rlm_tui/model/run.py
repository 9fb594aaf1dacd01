"""The run model: ONE fold from events to everything a view needs, and checkpoints of it.

``RunModel.apply`` feeds an event to the model's four parts, each the owner of
one question a view asks:

- ``tree`` (``tree.CallTree``): what ran, its status and cost, with subtree totals;
- ``transcripts`` (``transcript.Transcripts``): what each node said and printed;
- ``run`` (``state.RunState``): question, settings, kernels, notes, answer, how it stopped;
- ``questions`` (``questions.Questions``): what waits for the user.

The app, the headless printer, ``replay --headless`` and the exporters read
these and only present them. Every kind in ``events.KINDS`` is read by some
part or listed in ``IGNORED`` (``tests/test_model.py`` fails otherwise), and
each part costs O(1) per event (O(depth) for usage totals).

``Checkpoints`` keep the whole model at positions of a replay, each holding
only what changed since the one before (the nodes whose tree entry or
transcript changed, plus the small run state and questions), so any position
is the nearest checkpoint plus a short fold, in either direction.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable

from ..core import events as ev
from .questions import Questions
from .state import RunState
from .transcript import NodeSnapshot, Transcripts
from .tree import CallNode, CallTree

#: Kinds no part reads (besides the clock); a kind must be here or handled by a part.
IGNORED: frozenset[str] = frozenset()


class RunModel:
    """Everything a view shows about a run, folded from its events."""

    def __init__(self) -> None:
        self.tree = CallTree()
        self.transcripts = Transcripts(self.tree)
        self.run = RunState()
        self.questions = Questions()
        self.events = 0  # events applied

    def apply(self, event: ev.Event) -> CallNode | None:
        """Fold one event; returns the tree node that changed, if any (views redraw it)."""
        self.events += 1
        kind = event.kind
        node = self.tree.apply(event)
        if kind in _RUN:
            self.run.apply(event)
        if kind in _TRANSCRIPT:
            self.transcripts.apply(event)
        if kind in _QUESTIONS:
            self.questions.apply(event)
        return node

    def extend(self, events: Iterable[ev.Event]) -> None:
        for event in events:
            self.apply(event)

    def reads(self, kind: str, node: str | None) -> bool:
        """False when an event of ``kind`` for ``node`` would change nothing but the clock: a reader
        may count it (``skip``) instead of decoding it. Unknown kinds, and an llm call's lm_started
        (its messages are the prompt node_started already carries; turns are RLM nodes')."""
        if kind not in HANDLED:
            return False
        if kind == ev.LM_STARTED:
            found = self.tree.nodes.get(node or "")
            return found is None or found.kind != "llm"
        return True

    def skip(self) -> None:
        """Count an event ``reads`` said changes nothing."""
        self.events += 1

    # ---- facts several views need ------------------------------------------------------

    @property
    def root(self) -> CallNode | None:
        return self.tree.nodes.get(self.tree.root or "")

    @property
    def answer(self) -> str | None:
        """The run's answer: what run_finished reported, else the root's final answer so far."""
        return self.run.answer if self.run.finished else self.tree.answer


HANDLED = CallTree.HANDLES | Transcripts.HANDLES | RunState.HANDLES | Questions.HANDLES
_RUN, _TRANSCRIPT, _QUESTIONS = RunState.HANDLES, Transcripts.HANDLES, Questions.HANDLES


def unhandled_kinds() -> set[str]:
    """Kinds in the registry that no part reads and ``IGNORED`` does not name (must be none)."""
    return set(ev.KINDS) - HANDLED - IGNORED


@dataclass(slots=True)
class Checkpoint:
    """The model at ``position``: what changed since the previous checkpoint, and the small parts whole."""

    position: int
    nodes: dict[str, CallNode]  # the tree nodes changed since the previous checkpoint (never changed again)
    transcripts: dict[str, NodeSnapshot]  # the transcripts changed since then
    tree_facts: tuple[str | None, tuple[str, ...], float, str | None, str | None, bool]  # root, roots, now, answer,
    # stopped_by, finished
    run: RunState
    questions: Questions
    events: int


class Checkpoints:
    """Checkpoints of one model, in position order; ``restore`` rebuilds the model at one of them."""

    def __init__(self) -> None:
        self.items: list[Checkpoint] = []

    def __len__(self) -> int:
        return len(self.items)

    def take(self, position: int, model: RunModel) -> None:
        """Record the model at ``position`` (beyond the last checkpoint)."""
        tree, transcripts = model.tree, model.transcripts
        nodes = tree.share_dirty()
        snaps = {node_id: transcripts.nodes[node_id].snapshot() for node_id in transcripts.take_dirty()
                 if node_id in transcripts.nodes}
        self.items.append(Checkpoint(position, nodes, snaps,
                                     (tree.root, tree.roots, tree.now, tree.answer, tree.stopped_by,
                                      tree.finished),
                                     model.run.copy(), model.questions.copy(), model.events))

    @property
    def last(self) -> int:
        return self.items[-1].position if self.items else -1

    def before(self, position: int) -> int:
        """The index of the last checkpoint at or before ``position`` (-1: none)."""
        return bisect.bisect_right(self.items, position, key=lambda c: c.position) - 1

    def restore(self, index: int) -> RunModel:
        """A new model equal to the one checkpoint ``index`` recorded (its parts are copies: fold on)."""
        nodes: dict[str, CallNode] = {}
        snaps: dict[str, NodeSnapshot] = {}
        for item in self.items[:index + 1]:
            nodes.update(item.nodes)
            snaps.update(item.transcripts)
        item = self.items[index]
        model = RunModel()
        tree = model.tree
        tree.freeze(nodes)
        tree.root, tree.roots, tree.now, tree.answer, tree.stopped_by, tree.finished = item.tree_facts
        model.transcripts.freeze(snaps)
        model.run = item.run.copy()
        model.questions = item.questions.copy()
        model.events = item.events
        return model
