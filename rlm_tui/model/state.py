"""Run-level facts that the call tree does not hold, one part of the run model.

The file's header, the question, input, settings and limits (``run_started``),
kernel states, run-wide notes, the final answer, how the run stopped and what
it reported spent (``run_finished``). Usage and node counts come from
``CallTree`` so there is one fold for numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..core import events as ev
from .tree import CallTree, Usage


def run_totals(tree: CallTree) -> tuple[Usage, int]:
    """The whole run's usage and number of sub-calls: every question's root's subtree, added up."""
    usage = Usage()
    for root in tree.roots:
        usage.add(tree.nodes[root].subtree)
    return usage, sum(tree.nodes[root].calls_below for root in tree.roots)


#: The key of the root's kernel in ``RunState.kernels``: one kernel for every question of a session.
ROOT_KERNEL = "root"


def _kernel_key(event: ev.Event) -> str:
    return ROOT_KERNEL if event.parent is None else event.node or ""


@dataclass
class RunState:
    HANDLES: ClassVar[frozenset[str]] = frozenset({ev.SESSION, ev.RUN_STARTED, ev.QUESTION_ASKED, ev.KERNEL, ev.NODE_FINISHED,
                                                   ev.LIMIT_REACHED, ev.WARNING, ev.RUN_FINISHED})

    header: dict[str, Any] = field(default_factory=dict)  # the session event's fields
    question: str = ""  # the latest question
    asked: tuple[str, ...] = ()  # every question of the session, in order (question_asked)
    path: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    backend: dict[str, Any] = field(default_factory=dict)  # what ran the code: run_started's kernel_backend
    resumed_from: dict[str, Any] | None = None
    kernels: dict[str, str] = field(default_factory=dict)  # node id -> starting|idle|busy|restarting|dead
    notes: list[str] = field(default_factory=list)  # run-wide warnings and limits (no node)
    session_path: str | None = None
    started: bool = False  # run_started seen
    finished: bool = False
    answer: str | None = None
    stopped_by: str | None = None
    error: str | None = None
    duration_s: float | None = None
    usage: dict[str, Any] = field(default_factory=dict)  # as run_finished reported it
    calls: int | None = None

    def copy(self) -> "RunState":
        """An independent copy (a replay checkpoint): the dicts and lists that change are copied."""
        return dataclasses.replace(self, kernels=dict(self.kernels), notes=list(self.notes))

    @property
    def limits(self) -> dict[str, Any]:
        return self.settings.get("limits") or {}

    def apply(self, event: ev.Event) -> None:
        kind = event.kind
        if kind == ev.SESSION:
            self.header = dict(event.data)
        elif kind == ev.RUN_STARTED:
            self.started = True
            self.question = event.get("question", "")
            self.path = event.get("path", "")
            self.settings = event.get("settings", {})
            self.backend = event.get("kernel_backend", {})
            self.resumed_from = event.get("resumed_from")
            self.session_path = self.settings.get("session_path") or self.session_path
        elif kind == ev.QUESTION_ASKED:
            self.question = event.get("question", "")
            self.asked += (self.question,)
        elif kind == ev.KERNEL and event.node:
            self.kernels[_kernel_key(event)] = event.get("state", "")
        elif kind == ev.NODE_FINISHED:
            if event.parent is None and ROOT_KERNEL in self.kernels:
                if self.kernels[ROOT_KERNEL] != "dead":  # a dead one is restarted by the next question
                    self.kernels[ROOT_KERNEL] = "idle"  # the root's kernel lives on for the next question
            else:
                self.kernels.pop(event.node or "", None)  # its kernel went back to the pool
        elif kind in (ev.LIMIT_REACHED, ev.WARNING) and event.node is None:
            self.notes.append(f"limit {event.get('limit')}: {event.get('detail')}" if kind == ev.LIMIT_REACHED
                              else f"warning: {event.get('message')}")
        elif kind == ev.RUN_FINISHED:
            self.finished = True
            self.answer = event.get("answer")
            self.stopped_by = event.get("stopped_by")
            self.error = event.get("error")
            self.duration_s = event.get("duration_s")
            self.usage = event.get("usage", {})
            self.calls = event.get("calls")

    def kernel_summary(self) -> str:
        """``busy``, or ``2 busy · 1 idle`` when children have kernels too."""
        if self.finished:
            return "off"
        live = [state for state in self.kernels.values() if state != "dead"]
        if not live:
            return "dead" if self.kernels else "starting"
        if len(live) == 1:
            return live[0]
        counts: dict[str, int] = {}
        for state in live:
            counts[state] = counts.get(state, 0) + 1
        return " · ".join(f"{n} {state}" for state, n in sorted(counts.items()))
