"""The UI's pure folds (transcripts, run state, formatting) over the fixed stream of ui_sample.py."""

from __future__ import annotations

import pytest

from rlm_tui.core import events as ev
from rlm_tui.model.tree import CallTree
from rlm_tui.ui import fmt
from rlm_tui.model.state import RunState
from rlm_tui.model.transcript import Transcripts

from ui_sample import sample_events

pytestmark = pytest.mark.usefixtures("isolated_dirs")


def test_transcript_folds_each_node_separately() -> None:
    events, _ = sample_events()
    tree = CallTree()
    transcripts = Transcripts(tree)
    for event in events:
        tree.apply(event)
        transcripts.apply(event)
    root_kinds = [b.kind for b in transcripts.blocks("n0")]
    assert root_kinds[0] == "header" and root_kinds.count("turn") == 5
    assert [b.data["status"] for b in transcripts.blocks("n0") if b.kind == "cell"] == \
        ["ok", "ok", "error", "ok"]
    child = transcripts.blocks("n5")
    assert child[0].text.startswith("Who objected")
    assert any(b.kind == "answer" and "Dana" in b.text for b in child)
    llm = transcripts.blocks("n6")
    assert [b.kind for b in llm] == ["header", "response", "end"]
    spawns = [b for b in transcripts.blocks("n0") if b.kind == "spawn"]
    assert [(b.data["child"], b.data["phase"]) for b in spawns] == \
        [("n1", "started"), ("n1", "finished"), ("n5", "started"), ("n5", "finished")]


def test_streamed_reply_is_one_block_replaced_by_the_final_text() -> None:
    events, _ = sample_events()
    tree = CallTree()
    transcripts = Transcripts(tree)
    first_finish = next(i for i, e in enumerate(events) if e.kind == ev.LM_FINISHED)
    for event in events[:first_finish]:
        tree.apply(event)
        transcripts.apply(event)
    replies = [b for b in transcripts.blocks("n0") if b.kind == "reply"]
    assert len(replies) == 1 and replies[0].data["done"] is False
    assert replies[0].text.startswith("Let me look")
    transcripts.apply(events[first_finish])
    assert [b for b in transcripts.blocks("n0") if b.kind == "reply"] == replies
    assert replies[0].data["done"] is True and replies[0].text == events[first_finish].get("text")


def test_run_state_tracks_kernels_and_the_end() -> None:
    events, mid = sample_events()
    run = RunState()
    for event in events[:mid]:
        run.apply(event)
    assert run.kernel_summary() == "2 busy"
    assert run.limits["max_depth"] == 2 and not run.finished
    for event in events[mid:]:
        run.apply(event)
    assert run.finished and run.stopped_by is None and "2024-05-16" in (run.answer or "")


def test_formatting_is_short_and_exact_where_it_matters() -> None:
    assert [fmt.tokens(n) for n in (999, 37_500, 2_000_000)] == ["999", "37.5k", "2M"]
    assert [fmt.dollars(x) for x in (0, 0.00002, 0.0042, 0.04, 12.5)] == \
        ["$0", "<$0.0001", "$0.0042", "$0.04", "$12.50"]
    assert [fmt.seconds(s) for s in (0.4, 41, 185, 3720)] == ["0.4s", "41s", "3m05s", "1h02m"]


@pytest.mark.kernel
def test_the_stream_matches_what_the_engine_emits() -> None:
    """The hand-built stream must not drift from a real run (recorded once per session, sessions_sample.py):
    every kind it uses is emitted by the engine, on a node or run-wide alike, with no field the engine lacks."""
    from sessions_sample import recorded_sample

    real: dict[str, tuple[bool, set[str]]] = {}
    for event in recorded_sample().run.events:
        run_wide, fields = real.get(event.kind, (event.node is None, set()))
        real[event.kind] = (run_wide, fields | set(event.data))
    events, _ = sample_events()
    for event in events:
        assert event.kind in real, event.kind
        run_wide, fields = real[event.kind]
        assert (event.node is None) == run_wide, (event.kind, event.node)
        assert set(event.data) <= fields, (event.kind, set(event.data) - fields)
