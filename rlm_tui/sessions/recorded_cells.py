"""The user's own recorded cells (``cell_started`` with ``by: "user"``), per question, for ``rlm-tui resume``.

Each keeps the root cell number it had, the turn whose model call came next,
and whether it ran while the model's cell numbered just before it waited at its
step gate (that cell then ran after it). Resume runs it again at the same point
of the root's turns and cells (``core.cells.Before``), so it keeps its number
and its place among the model's cells, and a later model cell finds what it
defined. Cells the user ran after a question's last turn run before the next
question starts; one that answered its question (``final_answer`` from the user) runs where the
question's next turn would have, and answers it again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

from ..core import events as ev
from ..core.cells import Before


@dataclass
class UserCell:
    number: int  # its root cell number
    code: str
    next_turn: int | None = None  # the root turn asked of the model after it (None: it ran after the last)
    at_gate: bool = False  # it ran while the model's cell numbered just before it waited at its step gate

    def due(self, before: Before) -> bool:
        """Whether it runs at ``before`` (a cell the replay has passed by runs at once)."""
        if self.number != before.next_cell:
            return self.number < before.next_cell
        if before.waiting:
            return self.at_gate
        if before.turn is not None:
            return self.next_turn is not None and self.next_turn <= before.turn
        return True


@dataclass
class RecordedUserCells:
    questions: list[deque[UserCell]] = field(default_factory=list)  # per question, in recorded order

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], until: tuple[int, int] | None = None) -> "RecordedUserCells":
        """``until`` = (question 0-based, turn): only what the user ran before that turn was asked of the
        model, and nothing of a later question (``resume --at``: from there on the run is written anew)."""
        cells = cls()
        question: dict[str, int] = {}  # root node -> its question, 0-based
        asked: dict[str, int] = {}  # root node -> the last turn asked of its model
        for event in events:
            node = event.node or ""
            if event.kind == ev.NODE_STARTED and event.parent is None and node not in question:
                if until is not None and len(cells.questions) > until[0]:
                    break
                question[node] = len(cells.questions)
                cells.questions.append(deque())
            elif node not in question:
                continue
            elif event.kind == ev.LM_STARTED and isinstance(event.get("turn"), int):
                if (question[node], event.get("turn")) == until:
                    break
                asked[node] = event.get("turn")
                for cell in cells.questions[question[node]]:
                    cell.next_turn = cell.next_turn or event.get("turn")
            elif event.kind == ev.FINAL_ANSWER and event.get("source") == "user":
                # The user's last cell answered the question: it stands where the next turn would have.
                waiting = [cell for cell in cells.questions[question[node]] if cell.next_turn is None]
                if waiting:
                    waiting[-1].next_turn = asked.get(node, 0) + 1
            elif event.kind == ev.CELL_STARTED and isinstance(event.get("cell"), int):
                number, code, queue = event.get("cell"), event.get("code"), cells.questions[question[node]]
                if event.get("by") == "user" and isinstance(code, str):
                    queue.append(UserCell(number, code))
                elif event.get("by") is None:  # the model's cell: did the user's next one run at its gate?
                    for cell in queue:
                        cell.at_gate = cell.at_gate or cell.number == number + 1
        return cells

    def due(self, question: int, before: Before) -> list[str]:
        """The code of ``question``'s (0-based) cells due ``before`` its root's next cell or model call."""
        queue = self._queue(question)
        due: list[str] = []
        while queue and queue[0].due(before):
            due.append(queue.popleft().code)
        return due

    def rest(self, question: int) -> list[str]:
        """Every cell of ``question`` not yet handed out: the ones the user ran after its last turn."""
        queue = self._queue(question)
        rest = [cell.code for cell in queue]
        queue.clear()
        return rest

    def _queue(self, question: int) -> deque[UserCell]:
        return self.questions[question] if 0 <= question < len(self.questions) else deque()

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.questions)
