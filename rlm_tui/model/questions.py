"""What waits for the user, one part of the run model: spawns to approve, steps to take, pause and step state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

from ..core import events as ev


@dataclass
class Question:
    """Something the run waits for the user to decide: a spawn, or a step (turn or cell)."""

    id: str  # the gate id (a spawn's is its node id)
    kind: str  # spawn | turn | cell
    node: str
    parent: str | None
    t: float
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_batch(self) -> bool:
        return self.kind == "spawn" and self.data.get("node_kind") == "batch"

    @property
    def spawn_kind(self) -> str:
        """llm | rlm: what "always" would approve."""
        return self.data.get("item_kind") or self.data.get("node_kind", "llm")


class Questions:
    """What waits for the user, the pause and step state, and which cells run: a fold over events."""

    HANDLES: ClassVar[frozenset[str]] = frozenset({
        ev.SPAWN_REQUESTED, ev.STEP_WAITING, ev.SPAWN_DECIDED, ev.STEP_DECIDED, ev.STEERING, ev.RUN_STARTED,
        ev.CELL_STARTED, ev.CELL_FINISHED, ev.NODE_FINISHED, ev.RUN_FINISHED})

    def __init__(self) -> None:
        self.items: dict[str, Question] = {}
        self.paused = False
        self.step_mode = "off"
        self.policy = "auto"
        self.cells: set[str] = set()  # nodes with a cell running
        self.finished = False

    def apply(self, event: ev.Event) -> bool:
        """Fold one event; True when something the steering UI shows changed."""
        kind = event.kind
        if kind == ev.SPAWN_REQUESTED and event.node:
            self.items[event.node] = Question(event.node, "spawn", event.node, event.parent, event.t, event.data)
        elif kind == ev.STEP_WAITING and event.get("gate"):
            self.items[event.get("gate")] = Question(event.get("gate"), event.get("what", "cell"), event.node or "",
                                                     event.parent, event.t, event.data)
        elif kind == ev.SPAWN_DECIDED:
            return self.items.pop(event.node or "", None) is not None
        elif kind == ev.STEP_DECIDED:
            return self.items.pop(event.get("gate", ""), None) is not None
        elif kind == ev.STEERING:
            action = event.get("action")
            if action in ("pause", "resume"):
                self.paused = action == "pause"
            elif action == "step":
                self.step_mode = event.get("mode", "off")
            elif action == "policy":
                self.policy = event.get("policy", self.policy)
        elif kind == ev.RUN_STARTED:
            settings = event.get("settings") or {}
            self.policy = settings.get("approve", "auto")
            self.step_mode = settings.get("step", "off")
        elif kind == ev.CELL_STARTED and event.node:
            self.cells.add(event.node)
        elif kind in (ev.CELL_FINISHED, ev.NODE_FINISHED):
            self.cells.discard(event.node or "")
        elif kind == ev.RUN_FINISHED:
            self.finished = True
            self.items.clear()
            self.cells.clear()
            self.paused = False
        else:
            return False
        return True

    def copy(self) -> "Questions":
        """An independent copy (a replay checkpoint); a Question is never changed once made."""
        out = Questions()
        out.items, out.cells = dict(self.items), set(self.cells)
        out.paused, out.step_mode, out.policy, out.finished = self.paused, self.step_mode, self.policy, self.finished
        return out

    def extend(self, events: Iterable[ev.Event]) -> bool:
        changed = False
        for event in events:
            changed = self.apply(event) or changed
        return changed

    @property
    def spawns(self) -> list[Question]:
        return [q for q in self.items.values() if q.kind == "spawn"]

    @property
    def steps(self) -> list[Question]:
        return [q for q in self.items.values() if q.kind != "spawn"]

    def current(self, cursor: str | None) -> Question | None:
        """The question under the tree cursor if one waits there, else the oldest."""
        if cursor is not None:
            for question in self.items.values():
                if question.node == cursor:
                    return question
        return next(iter(self.items.values()), None)
