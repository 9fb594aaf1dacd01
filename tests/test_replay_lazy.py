"""A replay folds an llm call's own transcript, and a small batch's, only when it is read, from the file
(pure, no kernels): the blocks are the eager fold's at every position, in any order of moves, and as safe
to draw."""

from __future__ import annotations

import gc
import random
import weakref
from pathlib import Path

import pytest

from model_state import model_state
from rlm_tui.core import events as ev
from rlm_tui.core.session import SessionWriter
from rlm_tui.model import transcript as transcript_mod
from rlm_tui.model.run import RunModel
from rlm_tui.sessions import replay as replay_mod
from rlm_tui.sessions.replay import Replayer
from rlm_tui.ui.app import shown

HOSTILE = "\x1b[2J\x1b]0;pwned\x07 cleared"


def E(kind: str, node: str | None = None, parent: str | None = None, **data: object) -> ev.Event:
    return ev.Event(kind, node, parent, dict(data))


def llm_call(node: str, parent: str, text: str, *, retry: bool = False) -> list[ev.Event]:
    return [E(ev.NODE_STARTED, node, parent, node_kind="llm", depth=1, model="s", prompt=f"ask {node}"),
            E(ev.LM_STARTED, node, parent, turn=None, model="s", messages=[]),
            *([E(ev.LM_RETRY, node, parent, attempt=1, error="503", wait_s=0.1),
               E(ev.WARNING, node, parent, message="slow")] if retry else []),
            E(ev.LM_FINISHED, node, parent, model="s", text=text, tokens_in=10, tokens_out=3, cost_usd=0.001),
            E(ev.NODE_FINISHED, node, parent, status="done", result=text)]


def session(path: Path) -> list[ev.Event]:
    """A root turn with a batch of three llm calls (one retried, one answering with terminal controls),
    an edited llm call straight under the root, a batch from a file older than ``item_kind``, and an llm
    call still running at the end."""
    events = [
        E(ev.RUN_STARTED, question="q?", path="/in", settings={"model": "m"}),
        E(ev.NODE_STARTED, "n0", node_kind="root", depth=0, model="m", prompt="q?", label="q?"),
        E(ev.TURN_STARTED, "n0", turn=1),
        E(ev.LM_FINISHED, "n0", model="m", text="```repl\nllm_query_batched(ps)\n```", tokens_in=100,
          tokens_out=9, cost_usd=0.01),
        E(ev.CELL_STARTED, "n0", cell=1, code="llm_query_batched(ps)"),
        E(ev.NODE_STARTED, "b1", "n0", node_kind="batch", depth=1, model="s", n=3, item_kind="llm", prompt="ps",
          label="llm_query_batched × 3"),
        *llm_call("l1", "b1", "one"), *llm_call("l2", "b1", "two", retry=True), *llm_call("l3", "b1", HOSTILE),
        E(ev.NODE_FINISHED, "b1", "n0", status="done", result="3 of 3"),
        E(ev.SPAWN_REQUESTED, "l4", "n0", node_kind="llm", depth=1, model="s", prompt="first ask", waiting=1),
        E(ev.SPAWN_DECIDED, "l4", "n0", decision="edit", by="user", prompt="edited ask", model="s"),
        *llm_call("l4", "n0", "four"),
        E(ev.NODE_STARTED, "b2", "n0", node_kind="batch", depth=1, model="s", n=1, prompt="old",
          label="llm_query_batched × 1"),
        *llm_call("l6", "b2", "six"),
        E(ev.NODE_FINISHED, "b2", "n0", status="done", result="1 of 1"),
        E(ev.CELL_OUTPUT, "n0", cell=1, stream="stdout", text="['one', 'two']\n"),
        E(ev.CELL_FINISHED, "n0", cell=1, status="ok", duration_s=1.0),
        E(ev.NODE_STARTED, "l5", "n0", node_kind="llm", depth=1, model="s", prompt="still running"),
        E(ev.LM_STARTED, "l5", "n0", turn=None, model="s", messages=[]),
    ]
    writer = SessionWriter(path)
    writer.write(writer.header())
    for seq, event in enumerate(events, 1):
        event.seq, event.t = seq, seq * 0.5
        writer.write(event)
    writer.close()
    return events


@pytest.fixture
def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Replayer:
    monkeypatch.setattr(replay_mod, "CHECKPOINT_EVENTS", 4)
    monkeypatch.setattr(replay_mod, "RESTORE_GAIN", 3)  # jumps forward restore too
    session(tmp_path / "s.jsonl")
    return Replayer.open(tmp_path / "s.jsonl")


def fold(replay: Replayer, position: int) -> dict:
    model = RunModel()
    model.extend(replay.index.iter_events(0, position))
    return model_state(model)


def test_llm_calls_and_small_batches_are_folded_only_when_read(replay: Replayer) -> None:
    replay.to_end()
    transcripts = replay.model.transcripts
    assert {"n0", "b2"} <= set(transcripts.nodes)  # the root, and a batch of unknown calls: as they come
    assert not {"b1", "l1", "l2", "l3", "l4", "l5"} & set(transcripts.nodes)  # not yet
    blocks = transcripts.blocks("l2")  # now, from the file
    assert [(b.kind, b.text) for b in blocks][2:] == [("note", "slow"), ("response", "two"), ("end", "two")]
    assert "l2" in transcripts.nodes and not {"b1", "l1", "l3"} & set(transcripts.nodes)
    lines = [(b.data["child"], b.data["phase"]) for b in transcripts.blocks("b1") if b.kind == "spawn"]
    assert lines == [(f"l{i}", phase) for i in (1, 2, 3) for phase in ("started", "finished")]
    assert "b1" in transcripts.nodes and not {"l1", "l3"} & set(transcripts.nodes)


def test_a_batch_bigger_than_lazy_batch_is_folded_as_it_comes(replay: Replayer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Folded again after every restore, a batch of 50,000 calls would make each step back slow."""
    monkeypatch.setattr(transcript_mod, "LAZY_BATCH", 2)
    replay.to_end()
    assert "b1" in replay.model.transcripts.nodes


def test_every_position_in_any_order_equals_the_eager_fold(replay: Replayer) -> None:
    """Read (model_state reads every node's blocks) at each position, moving back and forth: restored
    models fold their llm calls again, read ones fold on as events come, and all equal a fold from 0."""
    n = len(replay)
    expected = [fold(replay, position) for position in range(n + 1)]
    positions = list(range(n + 1))
    random.Random(3).shuffle(positions)
    for position in [n, *positions, *range(n + 1), *range(n, -1, -1)]:
        replay.seek(position)
        assert model_state(replay.model) == expected[position], position


def test_a_read_call_folds_on_in_the_list_a_view_keeps(replay: Replayer) -> None:
    started = replay.index.positions([ev.NODE_STARTED], "l1")[0]
    replay.seek(started + 1)
    blocks = replay.model.transcripts.blocks("l1")  # the transcript pane keeps this list
    assert [b.kind for b in blocks] == ["header"]
    replay.model.transcripts.take_changes()
    replay.step(3)  # lm_started, lm_finished, node_finished
    assert [b.kind for b in blocks] == ["header", "response", "end"]
    assert replay.model.transcripts.take_changes()["l1"] == 1


def test_a_call_folded_when_read_is_made_safe_to_draw(replay: Replayer) -> None:
    replay.sanitize = shown  # as the replay app does
    replay.to_end()
    texts = [b.text for b in replay.model.transcripts.blocks("l3")]
    assert any("cleared" in t for t in texts)
    assert not any("\x1b" in t or "\x07" in t for t in texts), texts


def test_a_call_read_earlier_is_not_restored_from_an_old_checkpoint(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A call read (and folded on) before a checkpoint, then not read in a model restored from an
    earlier one that folds on past its end: the later checkpoints must not bring back its old blocks."""
    monkeypatch.setattr(replay_mod, "CHECKPOINT_EVENTS", 1)
    session(tmp_path / "s.jsonl")
    replay = Replayer.open(tmp_path / "s.jsonl")
    started, finished = (replay.index.positions([kind], "l2")[0] for kind in (ev.NODE_STARTED, ev.NODE_FINISHED))
    for _ in range(started + 1):
        replay.step(1)
    replay.model.transcripts.blocks("l2")  # read while it runs
    for _ in range(finished - started - 1):
        replay.step(1)  # its response is folded in; a checkpoint is taken after every event
    replay.to_start()
    replay.to_end()  # folded on from the start (no restore: the last checkpoint is near), l2 not read
    replay.step(-1)  # restores the checkpoint just before the end
    assert model_state(replay.model) == fold(replay, len(replay) - 1)


def test_a_model_a_view_still_holds_reads_at_its_own_position(replay: Replayer) -> None:
    started = replay.index.positions([ev.NODE_STARTED], "l3")[0]
    replay.seek(started + 2)  # l3 asked, its response not yet in
    held = replay.model
    replay.seek(1)  # back: a restored model; the view's is the old one until it rebinds
    assert replay.model is not held
    assert model_state(held) == fold(replay, started + 2)


def test_a_model_a_move_replaced_is_freed_at_once(replay: Replayer) -> None:
    """No reference cycle through the loader: a replaced model (all of a big file's) goes with its last
    reference, not at some later full collection."""
    replay.to_end()
    replaced = weakref.ref(replay.model)
    gc.disable()
    try:
        replay.seek(1)
        assert replaced() is None
    finally:
        gc.enable()
