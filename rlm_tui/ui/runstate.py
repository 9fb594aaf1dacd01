"""Run-level facts for the header and status bar that the call tree does not hold.

Question, settings and limits (from ``run_started``), kernel states, the
deepest running level, the final answer and how the run stopped. Usage and
node counts come from ``CallTree`` so there is one fold for numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core import events as ev
from ..core.tree import CallTree, Usage


def run_totals(tree: CallTree) -> tuple[Usage, int]:
    """The whole run's usage and number of sub-calls: the root's subtree."""
    if tree.root is None:
        return Usage(), 0
    return tree.subtree_usage(tree.root), tree.subtree_calls(tree.root)


@dataclass
class RunState:
    question: str = ""
    path: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    backend: dict[str, Any] = field(default_factory=dict)  # what ran the code: run_started's kernel_backend
    kernels: dict[str, str] = field(default_factory=dict)  # node id -> starting|idle|busy|restarting|dead
    session_path: str | None = None
    finished: bool = False
    answer: str | None = None
    stopped_by: str | None = None
    error: str | None = None
    duration_s: float | None = None

    @property
    def limits(self) -> dict[str, Any]:
        return self.settings.get("limits") or {}

    def apply(self, event: ev.Event) -> None:
        kind = event.kind
        if kind == ev.RUN_STARTED:
            self.question = event.get("question", "")
            self.path = str(event.get("path", "") or "")
            self.settings = event.get("settings") or {}
            self.backend = event.get("kernel_backend") or {}
            self.session_path = self.settings.get("session_path") or self.session_path
        elif kind == ev.KERNEL and event.node:
            self.kernels[event.node] = event.get("state", "")
        elif kind == ev.NODE_FINISHED:
            self.kernels.pop(event.node or "", None)  # its kernel went back to the pool
        elif kind == ev.RUN_FINISHED:
            self.finished = True
            self.answer = event.get("answer")
            self.stopped_by = event.get("stopped_by")
            self.error = event.get("error")
            self.duration_s = event.get("duration_s")

    def kernel_summary(self) -> str:
        """``busy``, or ``2 busy · 1 idle`` when children have kernels too."""
        live = [state for state in self.kernels.values() if state != "dead"]
        if not live:
            return "off" if self.finished else ("dead" if self.kernels else "starting")
        if len(live) == 1:
            return live[0]
        counts: dict[str, int] = {}
        for state in live:
            counts[state] = counts.get(state, 0) + 1
        return " · ".join(f"{n} {state}" for state, n in sorted(counts.items()))
