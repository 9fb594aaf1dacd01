"""The user's own recorded cells (``cell_started`` with ``by: "user"``), per question, for ``rlm-tui resume``.

Each keeps the root cell number it had, and whether it ran while the model's
cell numbered just before it waited at its step gate (that cell then ran after
it). Resume runs it again when the root's next cell gets that number
(``core.cells.RecordedCells``), so it lands between the same model cells as
when the user ran it and a later model cell finds what it defined. Cells the
user ran after a question ended run before the next question starts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..core import events as ev


@dataclass
class RecordedUserCells:
    #: per question, in recorded order: [cell number, ran at the gate of the model's cell before it, code]
    questions: list[deque[list[Any]]] = field(default_factory=list)

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], until: tuple[int, int] | None = None) -> "RecordedUserCells":
        """``until`` = (question 0-based, turn): only what the user ran before that turn was asked of the
        model, and nothing of a later question (``resume --at``: from there on the run is written anew)."""
        cells = cls()
        question: dict[str, int] = {}  # root node -> its question, 0-based
        for event in events:
            node = event.node or ""
            if event.kind == ev.NODE_STARTED and event.parent is None and node not in question:
                if until is not None and len(cells.questions) > until[0]:
                    break
                question[node] = len(cells.questions)
                cells.questions.append(deque())
            elif (until is not None and event.kind == ev.LM_STARTED and node in question
                  and (question[node], event.get("turn")) == until):
                break
            elif event.kind == ev.CELL_STARTED and node in question:
                number, code, queue = event.get("cell"), event.get("code"), cells.questions[question[node]]
                if event.get("by") == "user" and isinstance(number, int) and isinstance(code, str):
                    queue.append([number, False, code])
                elif isinstance(number, int):  # the model's cell: did the user's next one run at its gate?
                    for entry in queue:
                        entry[1] = entry[1] or entry[0] == number + 1
        return cells

    def due(self, question: int, next_cell: int, waiting: bool = False) -> list[str]:
        """The cells of ``question`` (0-based) not yet handed out that the user had run before its root's cell
        ``next_cell`` was numbered; ``waiting``: the model's cell before it is numbered and waits to run, so
        only one that ran at that cell's gate is due now."""
        queue = self._queue(question)
        due: list[str] = []
        while queue and (queue[0][0] < next_cell or (queue[0][0] == next_cell and (queue[0][1] or not waiting))):
            due.append(queue.popleft()[2])
        return due

    def rest(self, question: int) -> list[str]:
        """Every cell of ``question`` not yet handed out: the ones the user ran after it ended."""
        queue = self._queue(question)
        rest = [entry[2] for entry in queue]
        queue.clear()
        return rest

    def _queue(self, question: int) -> deque[list[Any]]:
        return self.questions[question] if 0 <= question < len(self.questions) else deque()

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.questions)
