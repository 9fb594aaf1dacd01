"""Events: the one stream the engine emits and the UI, recorder and replay consume.

Every event names the call node it belongs to (``node``) and that node's parent,
so the recursion tree is a fold over the stream (see ``tree.py``). On disk an
event is one JSON object per line with the fixed keys ``seq``, ``t``, ``kind``,
``node``, ``parent`` and the kind's own fields flattened beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

FORMAT_NAME = "rlm-tui-session"
FORMAT_VERSION = 1

# Kinds of event, with the fields each carries (besides seq, t, kind, node, parent).
SESSION = "session"  # format, version, created, rlm_tui_version (always the first line)
RUN_STARTED = "run_started"  # question, path, settings{...}, resumed_from{path, at_turn, created}?
NODE_STARTED = "node_started"  # node_kind(root|rlm|llm|batch), depth, model, label, prompt, n?, context?
CONTEXT_LOADED = "context_loaded"  # info{type, chars, files, largest, skipped, description}
KERNEL = "kernel"  # state(starting|idle|busy|restarting|dead), detail?
TURN_STARTED = "turn_started"  # turn
LM_STARTED = "lm_started"  # turn, model, messages (only those added since this node's last call)
LM_CHUNK = "lm_chunk"  # text (streamed reply text; root and child RLM turns only)
LM_RETRY = "lm_retry"  # attempt, error, wait_s
LM_FINISHED = "lm_finished"  # model, text, tokens_in, tokens_out, cost_usd, cost_known, latency_s, replayed?
CELL_STARTED = "cell_started"  # cell, code
CELL_OUTPUT = "cell_output"  # cell, stream(stdout|stderr|error|result), text
CELL_FINISHED = "cell_finished"  # cell, status(ok|error|interrupted|timeout|died), duration_s, output_chars, truncated_chars
TURN_FINISHED = "turn_finished"  # turn, duration_s
SPAWN_REQUESTED = "spawn_requested"  # node_kind(llm|rlm|batch), depth, model, prompt, label, context?, item_kind?, n?, prompts?, waiting
SPAWN_DECIDED = "spawn_decided"  # decision(approve|edit|deny|open|kill), by(user|policy|run), at, waited_s, prompt, model, original_prompt?, original_model?, prompts?, original_prompts?, reason?, waiting
STEP_WAITING = "step_waiting"  # gate, what(turn|cell), turn?, cell?, code?, waiting (step mode: waits for the user)
STEP_DECIDED = "step_decided"  # gate, what, decision(run|edit|skip|kill), by, at, waited_s, code?, original_code?, reason?, waiting
STEERING = "steering"  # action(pause|resume|step|policy|always|kill|interrupt), by, at, mode?, policy?, spawn_kind?, nodes?
NODE_FINISHED = "node_finished"  # status(done|failed|killed|denied|limit), result, error?
LIMIT_REACHED = "limit_reached"  # limit, detail
WARNING = "warning"  # message
FINAL_ANSWER = "final_answer"  # answer, source(FINAL|FINAL_VAR|answer|forced)
RUN_FINISHED = "run_finished"  # answer, stopped_by, usage{...}, calls, duration_s, error?

#: Node statuses a UI can show.
NODE_STATUSES = ("waiting", "queued", "running", "done", "denied", "killed", "failed", "limit")


@dataclass(slots=True)
class Event:
    """One thing that happened in a run."""

    kind: str
    node: str | None = None
    parent: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    t: float = 0.0

    def to_json(self) -> str:
        """One line of the session file."""
        obj: dict[str, Any] = {"seq": self.seq, "t": round(self.t, 4), "kind": self.kind,
                               "node": self.node, "parent": self.parent}
        obj.update(self.data)
        return json.dumps(obj, ensure_ascii=False, default=str)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "Event":
        """Inverse of :meth:`to_json` (after ``json.loads``)."""
        data = dict(obj)
        return cls(kind=data.pop("kind"), node=data.pop("node", None), parent=data.pop("parent", None),
                   seq=data.pop("seq", 0), t=data.pop("t", 0.0), data=data)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


Sink = Callable[[Event], None]
