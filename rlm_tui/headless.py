"""Running without the UI: progress on stderr, the answer (or JSON) on stdout."""

from __future__ import annotations

import sys
from typing import TextIO

from .core import events as ev
from .core.safe_text import one_line, safe
from .model.fmt import tokens
from .model.run import RunModel
from .model.transcript import compacted_line


class ProgressPrinter:
    """An event sink that writes one short line per meaningful step to stderr."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.model = RunModel()  # the one fold the app and replay use; this prints from its tree

    def __call__(self, event: ev.Event) -> None:
        self.model.apply(event)
        line = self._line(event)
        if line:
            print(safe(line), file=self.stream, flush=True)

    def _line(self, event: ev.Event) -> str | None:
        kind = event.kind
        node = self.model.tree.nodes.get(event.node or "")
        indent = "  " * (node.depth if node else 0)
        if kind == ev.CONTEXT_LOADED and node is not None and node.kind == "root":
            info = event.get("info") or {}
            line = f"[{event.t:6.1f}s] context: {(info.get('description') or '?').splitlines()[0]}"
            skipped = info.get("skipped") or {}
            if skipped:  # what was left out, so a user is never surprised by a missing file
                line += "\n         skipped: " + ", ".join(f"{v.get('count', '?')} {why}" for why, v in skipped.items())
            if info.get("truncated_bytes"):
                line += f"\n         cut: the last {info['truncated_bytes']:,} bytes were not loaded"
            return line
        if kind == ev.KERNEL and node is not None and node.kind == "root" and event.get("state") not in ("idle", "busy"):
            # The slow parts before the first turn (start, loading or shipping the input) and a restart.
            detail = event.get("detail")
            return f"[{event.t:6.1f}s] kernel: {event.get('state')}" + (f" ({one_line(detail)})" if detail else "")
        if kind == ev.QUESTION_ASKED and event.get("index", 1) > 1:  # a follow-up (resume --ask)
            return f"[{event.t:6.1f}s] question {event.get('index')}: {one_line(event.get('question', ''))}"
        if kind == ev.TURN_STARTED:
            return f"[{event.t:6.1f}s] {indent}{node.kind if node else ''} {event.node} turn {event.get('turn')}"
        if kind == ev.CELL_FINISHED:
            return (f"[{event.t:6.1f}s] {indent}  cell {event.get('cell')} {event.get('status')} "
                    f"({event.get('duration_s', 0):.2f}s, {event.get('output_chars', 0):,} chars out)")
        if kind == ev.NODE_FINISHED and node is not None and node.kind in ("rlm", "batch"):
            usage = self.model.tree.subtree_usage(node.id)
            return (f"[{event.t:6.1f}s] {indent}{node.kind} {node.id} {node.status}: "
                    f"{self.model.tree.subtree_calls(node.id)} calls · {tokens(usage.total_tokens)} tok · "
                    f"${usage.cost_usd:.4f}")
        if kind == ev.LM_RETRY:
            return f"[{event.t:6.1f}s] {indent}retry {event.get('attempt')} in {event.get('wait_s')}s: {event.get('error')}"
        if kind == ev.COMPACTED:
            return f"[{event.t:6.1f}s] {indent}{event.node}: {compacted_line(event)}"
        if kind in (ev.LIMIT_REACHED, ev.WARNING):
            text = event.get("detail") if kind == ev.LIMIT_REACHED else event.get("message")
            label = f"limit {event.get('limit')}" if kind == ev.LIMIT_REACHED else "warning"
            return f"[{event.t:6.1f}s] {label}: {text}"
        if kind == ev.RUN_FINISHED:
            calls = event.get("calls", 0)
            total = self.model.tree.total_usage()  # once, at the end: it walks every node
            return (f"[{event.t:6.1f}s] finished: {calls} sub-calls · {tokens(total.total_tokens)} tok · "
                    f"${total.cost_usd:.4f}" + (f" · stopped by {event.get('stopped_by')}"
                                                if event.get("stopped_by") else ""))
        return None
