"""The run model without kernels: typed events, the one fold, its checkpoints (pure, fast)."""

from __future__ import annotations

import dataclasses
import gc
import json
import re
import time
from pathlib import Path

import pytest

from model_state import model_state
from rlm_tui.core import events as ev
from rlm_tui.model import run as run_mod
from rlm_tui.model.questions import Question, Questions
from rlm_tui.model.run import Checkpoints, RunModel
from rlm_tui.model.state import RunState
from rlm_tui.model.transcript import Transcripts
from rlm_tui.model.tree import CallNode, CallTree, Usage

README = Path(__file__).resolve().parent.parent / "README.md"


def E(kind: str, node: str | None = None, parent: str | None = None, **data: object) -> ev.Event:
    return ev.Event(kind, node, parent, dict(data))


def story() -> list[ev.Event]:
    """A run touching every kind and every block that changes after it is added: a streamed reply
    over many chunks, a retry, output merged over several events, an edited and a denied spawn,
    a batch, a child RLM, step mode, kernel death, notes with and without a node, the last-chance turn."""
    events = [
        E(ev.SESSION, format=ev.FORMAT_NAME, version=1, created="2026-11-30T10:00:00+00:00"),
        E(ev.RUN_STARTED, question="q?", path="/in", settings={"model": "m", "approve": "ask", "step": "off",
                                                                 "limits": {"max_depth": 2}}),
        E(ev.QUESTION_ASKED, question="q?", index=1),
        E(ev.NODE_STARTED, "n0", node_kind="root", depth=0, model="m", prompt="q?", label="q?"),
        E(ev.KERNEL, "n0", state="starting"),
        E(ev.CONTEXT_LOADED, "n0", info={"type": "str", "chars": 10, "description": "Your context is a str."}),
        E(ev.KERNEL, "n0", state="idle"),
        E(ev.TURN_STARTED, "n0", turn=1),
        E(ev.LM_STARTED, "n0", turn=1, model="m", messages=[]),
        E(ev.LM_CHUNK, "n0", text="Let me "),
        E(ev.LM_RETRY, "n0", attempt=1, error="boom", wait_s=0.5),
        *[E(ev.LM_CHUNK, "n0", text=f"part{i} ") for i in range(6)],
        E(ev.LM_FINISHED, "n0", model="m", text="".join(f"part{i} " for i in range(6)), tokens_in=1000,
          tokens_out=20, cost_usd=0.01),
        E(ev.CELL_STARTED, "n0", cell=1, code="print(1)"),
        E(ev.KERNEL, "n0", state="busy"),
        *[E(ev.CELL_OUTPUT, "n0", cell=1, stream="stdout", text="x" * 300) for _ in range(5)],
        E(ev.CELL_OUTPUT, "n0", cell=1, stream="stderr", text="warn\n"),
        E(ev.SPAWN_REQUESTED, "n1", "n0", node_kind="llm", depth=1, model="s", prompt="first ask", waiting=1),
        E(ev.SPAWN_DECIDED, "n1", "n0", decision="edit", by="user", prompt="edited ask", model="s", waiting=0),
        E(ev.NODE_STARTED, "n1", "n0", node_kind="llm", depth=1, model="s", prompt="edited ask"),
        E(ev.LM_STARTED, "n1", "n0", turn=None, model="s", messages=[]),
        E(ev.LM_FINISHED, "n1", "n0", model="s", text="an answer", tokens_in=10, tokens_out=5, cost_usd=0.001),
        E(ev.NODE_FINISHED, "n1", "n0", status="done", result="an answer"),
        E(ev.SPAWN_REQUESTED, "n2", "n0", node_kind="llm", depth=1, model="s", prompt="no", waiting=1),
        E(ev.SPAWN_DECIDED, "n2", "n0", decision="deny", by="user", reason="too dear", waiting=0),
        E(ev.NODE_FINISHED, "n2", "n0", status="denied", result="", error="denied"),
        E(ev.NODE_STARTED, "n3", "n0", node_kind="batch", depth=1, model="s", n=2, prompt="many"),
        *[e for i in (4, 5) for e in (
            E(ev.NODE_STARTED, f"n{i}", "n3", node_kind="llm", depth=1, model="s", prompt=f"p{i}"),
            E(ev.LM_FINISHED, f"n{i}", "n3", model="s", text=f"r{i}", tokens_in=3, tokens_out=1, cost_usd=0.0),
            E(ev.NODE_FINISHED, f"n{i}", "n3", status="done", result=f"r{i}"))],
        E(ev.NODE_FINISHED, "n3", "n0", status="done", result="2 of 2"),
        E(ev.CELL_FINISHED, "n0", cell=1, status="ok", duration_s=1.5, output_chars=1505, truncated_chars=3),
        E(ev.TURN_FINISHED, "n0", turn=1, duration_s=2.0),
        E(ev.STEERING, action="step", by="user", mode="all"),
        E(ev.STEP_WAITING, "n0", gate="g1", what="cell", cell=2, code="1/0", waiting=1),
        E(ev.STEP_DECIDED, "n0", gate="g1", what="cell", decision="run", by="user", waiting=0),
        E(ev.STEERING, action="pause", by="user"),
        E(ev.STEERING, action="resume", by="user"),
        E(ev.TURN_STARTED, "n0", turn=2),
        E(ev.COMPACTED, "n0", turns=[1], chars_before=9000, chars_after=3000, reason="over the window", window=4096),
        E(ev.CELL_STARTED, "n0", cell=2, code="rlm_query('child')"),
        E(ev.NODE_STARTED, "n6", "n0", node_kind="rlm", depth=1, model="m", prompt="child"),
        E(ev.TURN_STARTED, "n6", "n0", turn=1),
        E(ev.LM_CHUNK, "n6", "n0", text="FINAL(ok)"),
        E(ev.LM_FINISHED, "n6", "n0", model="m", text="FINAL(ok)", tokens_in=7, tokens_out=2, cost_usd=0.0),
        E(ev.FINAL_ANSWER, "n6", "n0", answer="ok", source="FINAL"),
        E(ev.KERNEL, "n6", "n0", state="dead", detail="oom"),
        E(ev.NODE_FINISHED, "n6", "n0", status="done", result="ok"),
        E(ev.CELL_OUTPUT, "n0", cell=2, stream="error", text="ZeroDivisionError\n"),
        E(ev.CELL_FINISHED, "n0", cell=2, status="error", duration_s=0.1),
        E(ev.LIMIT_REACHED, "n0", limit="max_turns", detail="2 turns"),
        E(ev.WARNING, message="run-wide"),
        E(ev.LM_STARTED, "n0", turn=3, model="m", messages=[]),  # the last-chance call: no turn_started
        E(ev.LM_FINISHED, "n0", model="m", text="FINAL(done)", tokens_in=5, tokens_out=1, cost_usd=0.0,
          replayed=True),
        E(ev.FINAL_ANSWER, "n0", answer="done", source="FINAL"),
        E(ev.NODE_FINISHED, "n0", status="done", result="done"),
        E(ev.RUN_FINISHED, answer="done", stopped_by=None, usage={"tokens_in": 1025}, calls=6, duration_s=9.0),
    ]
    for seq, event in enumerate(events):
        event.seq, event.t = seq, seq * 0.1
    return events


def test_every_kind_is_handled_or_declared_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_mod.unhandled_kinds() == set()
    assert not run_mod.HANDLED & run_mod.IGNORED
    for part in (CallTree, Transcripts, RunState, Questions):
        assert part.HANDLES <= set(ev.KINDS), part
    assert set(story_kinds()) == set(ev.KINDS)  # the story below shows every kind
    # A kind added to the registry and handled nowhere is caught.
    monkeypatch.setitem(ev.KINDS, "sandbox_started", ev.Kind("sandbox_started", "new", ()))
    assert run_mod.unhandled_kinds() == {"sandbox_started"}


def story_kinds() -> list[str]:
    return [e.kind for e in story()]


def test_the_parts_declare_every_kind_they_read() -> None:
    """RunModel gives a part only the kinds in its HANDLES: feeding each part every event gives the same."""
    events = story()
    model = RunModel()
    model.extend(events)
    whole = RunModel()
    for event in events:
        whole.tree.apply(event)
        whole.transcripts.apply(event)
        whole.run.apply(event)
        whole.questions.apply(event)
        whole.events += 1
    assert model_state(model) == model_state(whole)


def test_checkpoints_restore_the_whole_model_at_every_position() -> None:
    """A checkpoint after every event, restored at every position, then folded on to the end: equal
    to a fold from the start at each step (open replies, merged outputs, turn totals, questions)."""
    events = story()
    expected = []
    for position in range(len(events) + 1):
        model = RunModel()
        model.extend(events[:position])
        expected.append(model_state(model))
    model = RunModel()
    checkpoints = Checkpoints()
    checkpoints.take(0, model)
    for position, event in enumerate(events, 1):
        model.apply(event)
        checkpoints.take(position, model)
    for index in list(range(len(events) + 1))[::-1]:
        restored = checkpoints.restore(index)
        assert model_state(restored) == expected[index], index
        for position in range(index + 1, min(index + 6, len(events) + 1)):  # folding on from a restore
            restored.apply(events[position - 1])
            assert model_state(restored) == expected[position], (index, position)
    assert checkpoints.before(3) == 3 and checkpoints.before(-1) == -1


def test_sparse_checkpoints_keep_only_what_changed() -> None:
    events = story()
    model = RunModel()
    checkpoints = Checkpoints()
    checkpoints.take(0, model)
    model.extend(events[:40])
    checkpoints.take(40, model)
    model.extend(events[40:])
    checkpoints.take(len(events), model)
    last = checkpoints.items[-1]
    assert "n1" not in last.nodes and "n1" not in last.transcripts  # finished before event 40
    assert "n6" in last.nodes and "n0" in last.transcripts
    reference = RunModel()
    reference.extend(events[:40])
    assert model_state(checkpoints.restore(1)) == model_state(reference)


def test_what_the_model_holds() -> None:
    model = RunModel()
    model.extend(story())
    tree, run, questions = model.tree, model.run, model.questions
    assert tree.nodes["n0"].status == "done" and tree.nodes["n2"].status == "denied"
    assert tree.subtree_calls("n0") == 5 and tree.nodes["n3"].children_done == 2
    assert tree.subtree_usage("n0").total_tokens == 1000 + 20 + 15 + 8 + 9 + 6
    assert model.answer == "done" and run.finished and run.calls == 6 and run.notes == ["warning: run-wide"]
    assert run.header["created"].startswith("2026") and run.question == "q?"
    assert questions.items == {} and questions.step_mode == "all" and not questions.paused
    blocks = model.transcripts.blocks("n0")
    kinds = [b.kind for b in blocks]
    assert kinds.count("turn") == 3  # turn 3 is the last-chance call's
    reply = blocks[kinds.index("reply")]
    assert reply.text == "".join(f"part{i} " for i in range(6)) and reply.data["done"]  # the retry voided "Let me "
    outputs = [b for b in blocks if b.kind == "output"]
    assert [len(b.text) for b in outputs] == [1200, 300, 5, 18]  # merged up to MERGE_CHARS, per stream
    first = [b.data for b in blocks if b.kind == "spawn" and b.data.get("first")]
    assert [(d["child"], d["cell"]) for d in first] == [("n1", 1), ("n2", 1), ("n3", 1), ("n6", 2)]
    header = model.transcripts.blocks("n1")[0]
    assert header.text == "edited ask"


def test_copies_miss_no_field() -> None:
    """CallNode, RunState and Questions copies (checkpoints) carry every field, independently."""
    node = CallNode(**{f.name: _sample_value(f) for f in dataclasses.fields(CallNode)})
    copy = node.copy()
    assert dataclasses.asdict(copy) == dataclasses.asdict(node)
    copy.children.append("x")
    copy.usage.tokens_in += 1
    copy.subtree.cost_usd += 1
    assert node.children == ["v"] and node.usage.tokens_in == 3 and node.subtree.cost_usd == 3
    state = RunState(**{f.name: _sample_value(f) for f in dataclasses.fields(RunState)})
    copied = state.copy()
    assert dataclasses.asdict(copied) == dataclasses.asdict(state)
    copied.kernels["k"] = "dead"
    copied.notes.append("n")
    assert "k" not in state.kernels and state.notes == ["v"]
    questions = Questions()
    questions.items["g"] = Question("g", "cell", "n0", None, 1.0)
    questions.cells.add("n0")
    questions.paused, questions.step_mode, questions.policy, questions.finished = True, "all", "ask", True
    other = questions.copy()
    assert vars(other) == vars(questions)
    other.items.clear()
    other.cells.clear()
    assert questions.items and questions.cells


def _sample_value(f: dataclasses.Field) -> object:
    """A value unlike the field's default."""
    if f.default_factory is Usage:  # type: ignore[comparison-overlap]
        return Usage(3, 3, 3.0, 3)
    if f.default_factory is list:  # type: ignore[comparison-overlap]
        return ["v"]
    if f.default_factory is dict:  # type: ignore[comparison-overlap]
        return {"v": "v"}
    hint = str(f.type)
    if "bool" in hint:
        return True
    if "float" in hint:
        return 3.5
    if "int" in hint:
        return 3
    if "dict" in hint:
        return {"v": 1}
    return "v"


def test_coerce_fixes_wrong_types_and_keeps_unknown_kinds_and_fields() -> None:
    obj = {"seq": 3, "t": "soon", "kind": "lm_finished", "node": 5, "parent": None, "text": [{"t": "hi"}],
           "tokens_in": "many", "tokens_out": True, "cost_usd": None, "replayed": 1, "future_field": [1]}
    problems = ev.coerce(obj)
    assert obj["text"] == '[{"t": "hi"}]' and obj["tokens_in"] == 0 and obj["tokens_out"] == 0
    assert obj["cost_usd"] == 0 and obj["replayed"] is True and obj["node"] == "5" and obj["t"] == 0.0
    assert obj["future_field"] == [1]  # unknown fields are kept and ignored
    assert len(problems) == 7
    nested = {"kind": "run_finished", "usage": {"tokens_in": "x", "per_model": {"m": 5, "n": {"cost_usd": "y"}}},
              "calls": 2, "duration_s": 1.0}
    assert len(ev.coerce(nested)) == 3 and nested["usage"] == {"tokens_in": 0, "per_model": {
        "m": {}, "n": {"cost_usd": 0}}}
    context = {"kind": "context_loaded", "info": {"description": 5, "skipped": {"x": 1}}}
    assert len(ev.coerce(context)) == 2 and context["info"]["description"] == "5"
    unknown = {"kind": "sandbox_started", "node": "n0", "weird": {"a": 1}}
    assert ev.coerce(unknown) == [] and unknown["weird"] == {"a": 1}
    optional = {"kind": "lm_started", "turn": None, "model": "m", "messages": []}
    assert ev.coerce(optional) == []  # an optional field may be null
    model = RunModel()
    model.apply(ev.Event.from_dict(unknown))  # an unknown kind moves only the clock
    assert model.tree.nodes == {} and model.events == 1


def test_readme_session_format_table_is_the_registry() -> None:
    """README's table of kinds is ``format_table()``: a new kind or field shows up there or this fails."""
    text = README.read_text()
    assert ev.format_table() in text, "regenerate README's table: python -c 'from rlm_tui.core.events " \
                                      "import format_table; print(format_table())'"
    assert set(re.findall(r"^\| `(\w+)` \|", text, re.MULTILINE)) >= set(ev.KINDS) - {ev.SESSION}


def test_a_header_line_round_trips() -> None:
    event = E(ev.SESSION, format=ev.FORMAT_NAME, version=ev.FORMAT_VERSION)
    assert ev.Event.from_dict(json.loads(event.to_json())) == event


@pytest.mark.parametrize("n", [50_000])
def test_a_huge_batch_folds_in_linear_time(n: int) -> None:
    """O(1) per event: a batch of 50,000 prompts costs about ten times one of 5,000, not a hundred."""
    def batch(size: int) -> float:
        events = [E(ev.NODE_STARTED, "n0", node_kind="root", depth=0, model="m", prompt="q"),
                  E(ev.NODE_STARTED, "b", "n0", node_kind="batch", depth=1, model="s", n=size, prompt="p")]
        for i in range(size):
            events += [E(ev.NODE_STARTED, f"c{i}", "b", node_kind="llm", depth=1, model="s", prompt="p"),
                       E(ev.LM_FINISHED, f"c{i}", "b", model="s", text="a", tokens_in=1, tokens_out=1, cost_usd=0.0),
                       E(ev.NODE_FINISHED, f"c{i}", "b", status="done", result="a")]
        model = RunModel()
        gc.collect()
        gc.disable()  # the fold's own cost: full collections scale with the whole test process's heap
        try:
            started = time.perf_counter()
            model.extend(events)
            return time.perf_counter() - started
        finally:
            gc.enable()

    small = min(batch(n // 10) for _ in range(3))
    big = min(batch(n) for _ in range(2))
    assert big < 30 * small, (big, small)


def test_one_token_formatter_for_every_presenter() -> None:
    """The app, the headless printer and the exports print 1000 tokens the same way (they once disagreed)."""
    import io

    from rlm_tui.headless import ProgressPrinter
    from rlm_tui.model.fmt import tokens
    from rlm_tui.ui import fmt

    assert fmt.tokens is tokens
    assert [tokens(n) for n in (999, 1000, 1050, 37_500, 2_000_000)] == ["999", "1k", "1.1k", "37.5k", "2M"]
    out = io.StringIO()
    printer = ProgressPrinter(out)
    for event in (E(ev.NODE_STARTED, "n0", node_kind="root", depth=0, model="m", prompt="q"),
                  E(ev.LM_FINISHED, "n0", model="m", text="x", tokens_in=990, tokens_out=10, cost_usd=0.0),
                  E(ev.RUN_FINISHED, answer="x", usage={}, calls=0, duration_s=1.0)):
        printer(event)
    assert "sub-calls · 1k tok ·" in out.getvalue().splitlines()[-1]


def test_headless_progress_shows_the_root_kernels_slow_steps() -> None:
    """Before the first answer a headless user sees the kernel start and the input load (shipped to a
    remote kernel, MB by MB); a cell's busy/idle flips are not printed (the cell lines say it)."""
    import io

    from rlm_tui.headless import ProgressPrinter

    out = io.StringIO()
    printer = ProgressPrinter(out)
    for event in (E(ev.NODE_STARTED, "n0", node_kind="root", depth=0, model="m", prompt="q"),
                  E(ev.KERNEL, "n0", state="starting"),
                  E(ev.KERNEL, "n0", state="loading context", detail="shipped 1.0 MB of 2.5 MB\x1b[2J"),
                  E(ev.KERNEL, "n0", state="idle"), E(ev.KERNEL, "n0", state="busy"),
                  E(ev.NODE_STARTED, "n1", "n0", node_kind="rlm", depth=1, model="m", prompt="c"),
                  E(ev.KERNEL, "n1", "n0", state="starting")):
        printer(event)
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[0] == "kernel: starting" and len(lines) == 2
    assert lines[1].startswith("kernel: loading context (shipped 1.0 MB of 2.5 MB")
    assert "\x1b" not in out.getvalue()  # a server's text never reaches the terminal raw
