"""Replaying a recorded run: positions, stops, checkpoints, and the headless transcript."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env
from rlm_tui.core import events as ev
from rlm_tui.model.run import RunModel
from rlm_tui.model.tree import CallTree
from rlm_tui.sessions import replay as replay_mod
from rlm_tui.sessions.replay import Replayer
from model_state import model_state
from sessions_sample import ANSWER, QUESTION, Sample, recorded_sample

pytestmark = pytest.mark.kernel


@pytest.fixture
def sample() -> Sample:
    return recorded_sample()


def snapshot(tree: CallTree) -> dict:
    return {"nodes": {k: dataclasses.asdict(v) for k, v in tree.nodes.items()}, "root": tree.root,
            "answer": tree.answer, "stopped_by": tree.stopped_by, "finished": tree.finished}


def fold(events: list[ev.Event]) -> CallTree:
    tree = CallTree()
    tree.extend(events)
    return tree


def as_recorded(events: list[ev.Event]) -> list[ev.Event]:
    """Events as a file holds them (times rounded to 0.1 ms)."""
    return [ev.Event.from_dict(json.loads(e.to_json())) for e in events]


def test_replay_to_end_matches_the_live_run(sample: Sample) -> None:
    live = fold(as_recorded(sample.run.events))
    with_header = 1  # the file starts with the session header, which the live sink never saw
    replay = Replayer.open(sample.path)
    assert len(replay) == len(sample.run.events) + with_header
    replay.to_end()
    assert snapshot(replay.tree) == snapshot(live)
    assert replay.tree.answer == sample.run.result.answer == ANSWER
    assert replay.describe().finished and replay.describe().turn == 3
    assert replay.run_started().get("question") == QUESTION
    assert replay.run_finished().get("answer") == ANSWER
    assert replay.bad_lines == []


@pytest.mark.parametrize("every", [1, None])
def test_every_position_equals_a_fold_from_the_start(sample: Sample, monkeypatch: pytest.MonkeyPatch,
                                                     every: int | None) -> None:
    """Restoring checkpoints of the whole model (tree, transcripts, run state, questions) and folding
    on, in any order of moves, gives the model a fold from the start gives."""
    if every is not None:
        monkeypatch.setattr(replay_mod, "CHECKPOINT_EVENTS", every)  # a checkpoint after every event
    monkeypatch.setattr(replay_mod, "RESTORE_GAIN", 3)  # jumps forward restore too
    replay = Replayer.open(sample.path)
    events = list(replay.index.iter_events())
    replay.to_end()
    expected = []
    for position in range(len(events) + 1):
        model = RunModel()
        model.extend(events[:position])
        expected.append(model_state(model))
    positions = list(range(len(events) + 1))
    random.Random(5).shuffle(positions)
    for position in positions + positions[::-1] + [0, len(events), 5, len(events) - 3]:
        replay.seek(position)
        assert model_state(replay.model) == expected[position], position
    if every is not None:  # one after every event, but inside a streamed reply (its chunks were skipped)
        assert len(events) * 0.8 < len(replay._checkpoints) <= len(events) + 1
    replay.to_end()
    assert snapshot(replay.tree) == snapshot(fold(events))  # the tree alone, as before


def test_other_kinds_really_leave_the_tree_alone(sample: Sample) -> None:
    """CallTree.HANDLES is exact: the kinds it does not name change nothing but the clock."""
    events = Replayer.open(sample.path).index.iter_events()
    tree = CallTree()
    seen = set()
    for event in events:
        before = snapshot(tree)
        tree.apply(event)
        if event.kind not in CallTree.HANDLES:
            seen.add(event.kind)
            assert snapshot(tree) == before, event.kind
    assert {ev.LM_CHUNK, ev.CELL_OUTPUT, ev.KERNEL} <= seen


def test_stepping_by_event_cell_turn_and_node(sample: Sample) -> None:
    replay = Replayer.open(sample.path)
    root = replay.root
    assert root == "n0"
    kinds = [replay.index.kind(i) for i in range(len(replay))]

    replay.next_turn()
    assert kinds[replay.position - 1] == ev.TURN_STARTED and replay.describe().turn == 1
    replay.next_turn()
    assert replay.describe().turn == 2
    assert replay.tree.nodes[root].usage.lm_calls == 1  # turn 1's reply, not yet turn 2's
    replay.prev_turn()
    assert replay.describe().turn == 1 and replay.position == replay.turn_stops()[0]
    replay.prev_turn()
    assert replay.position == 0 and replay.describe().turn == 0

    cells = replay.cell_stops()
    assert len(cells) == 5  # root: 1 + 2 + 1, the child: 1
    replay.next_cell()
    assert replay.position == cells[0] and kinds[cells[0] - 1] == ev.CELL_FINISHED
    replay.next_cell(node=root)
    assert replay.position == replay.cell_stops(root)[1]
    replay.prev_cell()
    assert replay.position == cells[0]

    replay.step(3)
    assert replay.position == cells[0] + 3
    replay.step(-2)
    assert replay.position == cells[0] + 1

    child = next(n for n in replay.index.node_names if n and n != root and replay.index.event(
        replay.node_first(n)).get("node_kind") == "rlm")
    replay.to_node(child)
    assert child in replay.tree.nodes and replay.tree.nodes[child].status == "running"
    assert replay.tree.nodes[replay.tree.nodes[child].parent].id == root

    replay.to_end()
    assert replay.position == len(replay) and replay.tree.finished
    replay.next_turn()  # at the end: stays there
    assert replay.position == len(replay)
    position = replay.describe()
    assert position.describe().startswith("turn 3 · ") and f"of {len(replay)}" in position.describe()


def test_headless_replay_prints_the_transcript(sample: Sample) -> None:
    done = subprocess.run([PYTHON, "-m", "rlm_tui", "replay", str(sample.path), "--headless"],
                          capture_output=True, text=True, env=cli_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert QUESTION in out
    for turn in (1, 2, 3):
        assert f"root n0 · turn {turn}" in out
    assert "found = len(context)" in out and "files 22" in out  # code and its output
    assert "ZeroDivisionError: division by zero" in out and "\x1b[" not in out
    assert "rlm n" in out and "child task" in out and "child done" in out  # the nested child RLM
    assert "llm_query_batched × 3" in out
    assert "Call tree" in out and "└─" in out and "$" in out  # the tree with usage
    tree = fold(sample.run.events)
    usage = tree.total_usage()
    assert f"{usage.total_tokens:,} tokens" in out
    assert out.rstrip().endswith(ANSWER)


def test_replay_app_without_a_file_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([PYTHON, "-m", "rlm_tui", "replay", str(tmp_path / "nope.jsonl"), "--headless"],
                          capture_output=True, text=True, env=cli_env(), timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no such file" in done.stderr
    done = subprocess.run([PYTHON, "-m", "rlm_tui", "replay"], capture_output=True, text=True, env=cli_env(),
                          timeout=60)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "FILE" in done.stderr


def write_timed(path: Path, times: list[float]) -> Path:
    from rlm_tui.core.session import SessionWriter

    writer = SessionWriter(path)
    writer.write(writer.header())
    for seq, t in enumerate(times, 1):
        writer.write(ev.Event(ev.WARNING, data={"message": str(seq)}, seq=seq, t=t))
    writer.close()
    return path


def test_player_keeps_recorded_time_and_shortens_long_waits(tmp_path: Path) -> None:
    # the header is at t=0; then events at 0.5, 1.0, 11.0 (a 10 s wait), 11.5
    replay = Replayer.open(write_timed(tmp_path / "timed.jsonl", [0.5, 1.0, 11.0, 11.5]))
    player = replay_mod.Player(replay, speed=1.0, max_gap=2.0)
    assert player.advance(10) == 0  # paused: nothing moves
    player.play()
    assert replay.seek(player.advance(0.01)) and replay.position == 1  # the header (t=0) at once
    assert player.advance(0.4) == 1
    replay.seek(player.advance(0.1))
    assert replay.position == 2  # t=0.5 reached after 0.5 s
    replay.seek(player.advance(0.5))
    assert replay.position == 3  # t=1.0
    steps = [player.advance(0.25) for _ in range(7)]  # the 10 s wait lasts 2 s
    assert steps == [3] * 7 and replay.seek(player.advance(0.25)) is not None and replay.position == 4
    player.faster()
    assert player.speed == 2.0
    replay.seek(player.advance(0.25))  # 0.5 recorded seconds at 2x
    assert replay.position == 5 and not player.playing  # the end stops playback
    player.play()
    assert not player.playing
    replay.seek(1)
    player.play()
    player.slower(), player.slower()
    assert player.speed == 0.5
    assert player.advance(0.9) == 1 and player.advance(0.2) == 2  # from t=0: 0.5 s at half speed


def test_a_recorded_run_matches_the_event_definitions(sample: Sample) -> None:
    """Every field the engine wrote has the type its kind declares: reading coerces nothing."""
    seen = set()
    for line in sample.path.read_text().splitlines():
        obj = json.loads(line)
        seen.add(obj["kind"])
        assert ev.coerce(obj) == [], obj["kind"]
        assert obj["kind"] in ev.KINDS
        declared = set(ev.KINDS[obj["kind"]].field_names()) | {"seq", "t", "kind", "node", "parent"}
        assert set(obj) <= declared, (obj["kind"], set(obj) - declared)
    assert len(seen) >= 15
