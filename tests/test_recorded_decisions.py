"""The user's recorded decisions at gates (rlm-tui resume): which are kept, how they are found, and that a
damaged or hostile session file cannot make reading them fail. Pure: no kernel, no model."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st

from rlm_tui.core import events as ev
from rlm_tui.core.control import Gate
from rlm_tui.sessions.recorded_decisions import RecordedDecisions


def event(kind: str, node: str = "n1", **data: Any) -> ev.Event:
    return ev.Event(kind=kind, node=node, parent="n0", data=data)


def spawn(node: str, asked: str, decision: str, by: str = "user", **decided: Any) -> list[ev.Event]:
    return [event(ev.SPAWN_REQUESTED, node, node_kind="llm", depth=1, model="m", prompt=asked),
            event(ev.SPAWN_DECIDED, node, decision=decision, by=by, **decided)]


def llm_gate(prompt: str, model: str = "another-model") -> Gate:
    return Gate("n9", "spawn", "n9", "n0", item_kind="llm", prompt=prompt, model=model)


def read(events: list[ev.Event], owner: int | str | None = 0) -> RecordedDecisions:
    decisions = RecordedDecisions()
    for e in events:
        decisions.read(e, owner)
    return decisions


def test_a_denial_applies_once_to_the_same_prompt_whatever_the_model() -> None:
    decisions = read(spawn("n1", "secret", "deny", reason="no") + spawn("n2", "fine", "approve"))
    denied = decisions.spawn(llm_gate("secret"))
    assert denied is not None and (denied.action, denied.reason) == ("deny", "no")
    assert decisions.spawn(llm_gate("secret")) is None  # one recorded denial, one sub-call
    assert decisions.spawn(llm_gate("fine")).action == "approve"


def test_a_policys_decision_is_not_replayed_and_an_edit_keeps_what_was_edited() -> None:
    decisions = read(spawn("n1", "a", "deny", by="policy")
                     + spawn("n2", "b", "edit", prompt="b, edited", original_prompt="b", model="m"))
    assert decisions.spawn(llm_gate("a")) is None
    edited = decisions.spawn(llm_gate("b"))
    assert (edited.action, edited.prompt, edited.model) == ("edit", "b, edited", None)  # the model was not edited


def test_a_cells_decision_applies_only_to_the_code_it_was_made_on() -> None:
    decisions = read([event(ev.STEP_WAITING, "n0", gate="n0/cell1", what="cell", cell=1, code="rm()"),
                      event(ev.STEP_DECIDED, "n0", gate="n0/cell1", what="cell", decision="skip", by="user")])
    other = Gate("n0/cell1", "cell", "n0", None, cell=1, code="print(1)")
    same = Gate("n0/cell1", "cell", "n0", None, cell=1, code="rm()")
    assert decisions.step(0, other) is None and decisions.step(1, same) is None  # other code, other question
    assert decisions.step(0, same).action == "skip"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=8)
#: Each kind's fields as a real file has them: a hostile file replaces any of them with anything.
REAL = {ev.STEP_WAITING: {"gate": "g", "what": "cell", "cell": 1, "turn": 1, "code": ""},
        ev.STEP_DECIDED: {"gate": "g", "what": "cell", "decision": "edit", "by": "user", "code": ""},
        ev.SPAWN_REQUESTED: {"node_kind": "batch", "item_kind": "llm", "prompt": "", "prompts": [""]},
        ev.SPAWN_DECIDED: {"decision": "edit", "by": "user", "prompt": "", "prompts": [""], "model": "",
                           "original_prompt": "", "original_prompts": [""], "original_model": ""}}


def hostile_event(kind: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """``kind`` with some of its fields replaced by anything (a list of anything, often)."""
    return st.tuples(st.just(kind), st.dictionaries(st.sampled_from(sorted(REAL[kind])),
                                                    JSON | st.lists(JSON, min_size=1, max_size=3), max_size=3))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(sorted(REAL)).flatmap(hostile_event), max_size=6),
       st.sampled_from([0, "first message", None]))
def test_hostile_decision_events_are_read_without_failing(events: list[tuple[str, dict[str, Any]]],
                                                          owner: int | str | None) -> None:
    decisions = read([event(kind, "n1", **{**REAL[kind], **hostile}) for kind, hostile in events], owner)
    for gate in (llm_gate(""), Gate("n1", "spawn", "n1", "n0", item_kind="llm", batch=True, prompts=[""]),
                 Gate("g", "cell", "n1", None, cell=1, code=""), Gate("g", "turn", "n1", None, turn=1)):
        found = decisions.spawn(gate) if gate.kind == "spawn" else decisions.step(0, gate)
        assert found is None or found.action in ("approve", "edit", "deny", "open", "kill", "run", "skip")
