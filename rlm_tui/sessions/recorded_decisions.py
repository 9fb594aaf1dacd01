"""rlm-tui resume: the user's recorded decisions at gates, to apply again while the recording replays.

A replay must reproduce what the user decided, not only what the models said: a sub-call the user denied
would otherwise run (and, with no recorded reply, be paid for live), a cell they skipped (perhaps because it
was destructive) would run, and in step mode every replayed turn and cell would wait for them again.

Steps (turns and cells) belong to an owner: a question's root (its 0-based ordinal) or a child RLM (its first
user message), as recorded turns do; a cell's decision applies only to the exact code it was made on. A
sub-call's decision is found by what was asked (kind, prompt or prompts; not the model, which a resume may
change: a prompt the user refused to send stays refused), in recorded order. Only decisions the user made are
kept: a policy decides again by itself, and what the run decided (a gate settled as its question ended)
follows again from its cause.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..core import events as ev
from ..core.control import Decision, Gate
from ..core.safe_text import as_text

#: (question 0-based or a child RLM's first user message, "turn" or "cell", its number)
StepKey = tuple[int | str, str, int]
#: (the sub-call's kind, prompt, the batch's prompts)
SpawnKey = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class RecordedStep:
    """The user's decision at a step gate, as recorded."""

    decision: Decision  # run, skip, edit (``decision.code``: what ran instead), kill
    code: str  # a cell's code that waited at the gate: the decision applies to that code only ("" for a turn)


@dataclass
class RecordedDecisions:
    """The user's decisions read from a session's events (``step_waiting``/``step_decided``,
    ``spawn_requested``/``spawn_decided``), handed out once each."""

    #: The events ``read`` takes.
    KINDS = frozenset({ev.STEP_WAITING, ev.STEP_DECIDED, ev.SPAWN_REQUESTED, ev.SPAWN_DECIDED})

    steps: dict[StepKey, deque[RecordedStep]] = field(default_factory=dict)
    spawns: dict[SpawnKey, deque[Decision]] = field(default_factory=dict)
    _step_gates: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # gate -> (what, number, code)
    _spawn_gates: dict[str, SpawnKey] = field(default_factory=dict)  # a waiting sub-call's node -> what it asked

    def read(self, event: ev.Event, owner: int | str | None) -> None:
        """Take one recorded event; ``owner`` is its node's (for a step gate), None when it has none."""
        node = as_text(event.node)
        if event.kind == ev.STEP_WAITING:
            what, number = event.get("what"), event.get("cell" if event.get("what") == "cell" else "turn")
            code = event.get("code") if what == "cell" else ""
            if what in ("turn", "cell") and isinstance(number, int) and isinstance(code, str):
                self._step_gates[as_text(event.get("gate"))] = (what, number, code)
        elif event.kind == ev.STEP_DECIDED:
            gate = self._step_gates.pop(as_text(event.get("gate")), None)
            decision = _step_decision(event)
            if gate is not None and owner is not None and decision is not None:
                what, number, code = gate
                self.steps.setdefault((owner, what, number), deque()).append(RecordedStep(decision, code))
        elif event.kind == ev.SPAWN_REQUESTED:
            key = _spawn_key(event.get("node_kind"), event.get("item_kind"), event.get("prompt"), event.get("prompts"))
            if key is not None:
                self._spawn_gates[node] = key
        elif event.kind == ev.SPAWN_DECIDED:
            key = self._spawn_gates.pop(node, None)
            decision = _spawn_decision(event)
            if key is not None and decision is not None:
                self.spawns.setdefault(key, deque()).append(decision)

    def step(self, owner: int | str, gate: Gate) -> Decision | None:
        """The recorded decision at ``owner``'s turn or cell ``gate`` (None: none, or made on other code)."""
        number = gate.cell if gate.kind == "cell" else gate.turn
        queue = self.steps.get((owner, gate.kind, number)) if number is not None else None
        if not queue or queue[0].code != (gate.code if gate.kind == "cell" else ""):
            return None
        return queue.popleft().decision

    def spawn(self, gate: Gate) -> Decision | None:
        """The recorded decision on a sub-call asking what ``gate`` asks."""
        key = _spawn_key("batch" if gate.batch else gate.item_kind, gate.item_kind, gate.prompt, gate.prompts)
        queue = self.spawns.get(key) if key is not None else None
        return queue.popleft() if queue else None


def _spawn_key(kind: Any, item_kind: Any, prompt: Any, prompts: Any) -> SpawnKey | None:
    """What a sub-call asked, as a key (None for a damaged event's fields)."""
    if kind == "batch":
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            return None
        kind = f"batch of {as_text(item_kind)}"
    else:
        prompts = []
    if kind not in ("llm", "rlm") and not str(kind).startswith("batch of "):
        return None
    return str(kind), as_text(prompt), tuple(prompts)


def _step_decision(decided: ev.Event) -> Decision | None:
    """A step decision the user made: run, skip, edit (with the code that ran), kill. One the run made (a gate
    settled because its question ended, say by the user's own cell answering it) is not kept: the replay
    reproduces its cause."""
    action, code = decided.get("decision"), decided.get("code")
    if (decided.get("by") != "user" or action not in ("run", "skip", "edit", "kill")
            or (action == "edit" and not isinstance(code, str))):
        return None
    return Decision(action, by="user", code=code if action == "edit" else None, reason=as_text(decided.get("reason")),
                    replayed=True)


def _spawn_decision(decided: ev.Event) -> Decision | None:
    """A sub-call decision the user made (a policy's is made again by the policy), with what they edited."""
    action = decided.get("decision")
    if decided.get("by") != "user" or action not in ("approve", "edit", "deny", "open", "kill"):
        return None
    prompt, model, prompts = decided.get("prompt"), decided.get("model"), decided.get("prompts")
    edited_prompts = prompts if decided.get("original_prompts") is not None else None
    if edited_prompts is not None and (not isinstance(edited_prompts, list)
                                       or not all(isinstance(p, str) for p in edited_prompts)):
        return None
    return Decision(action, by="user", reason=as_text(decided.get("reason")), replayed=True,
                    prompt=prompt if decided.get("original_prompt") is not None and isinstance(prompt, str) else None,
                    model=model if decided.get("original_model") is not None and isinstance(model, str) else None,
                    prompts=list(edited_prompts) if edited_prompts is not None else None)
