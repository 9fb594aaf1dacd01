"""The replay app (pilot): the same app fed from a session file, with play, steps and jumps."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from rlm_tui.core import events as ev
from rlm_tui.model.tree import CallTree
from rlm_tui.sessions.replay import Replayer
from rlm_tui.ui.app import RlmApp
from rlm_tui.ui.render import STATUS_ICONS
from rlm_tui.ui.replay import ReplayApp, ReplayBar
from rlm_tui.ui.widgets.answer import AnswerPanel
from rlm_tui.ui.widgets.call_tree import CallTreeView
from rlm_tui.ui.widgets.transcript_view import TranscriptView
from screen import shown
from sessions_sample import ANSWER, Sample, recorded_sample

pytestmark = [pytest.mark.ui, pytest.mark.kernel, pytest.mark.usefixtures("isolated_dirs")]

SIZE = (160, 45)


@pytest.fixture
def sample() -> Sample:
    return recorded_sample()


def tree_ids(view: CallTreeView) -> list[str]:
    out: list[str] = []
    stack = [view.root]
    while stack:
        node = stack.pop()
        if node.data:
            out.append(node.data)
        stack.extend(reversed(node.children))
    return out


def rows_seen(view: CallTreeView) -> list[tuple[str, str]]:
    """(call-node id, label) of each row a user sees: the nodes under expanded nodes, depth first."""
    out: list[tuple[str, str]] = []
    stack = [view.root]
    while stack:
        node = stack.pop()
        out.append((node.data or "", str(node.label)))
        if node.is_expanded:
            stack.extend(reversed(node.children))
    return out


def state(app: RlmApp) -> dict:
    return {"nodes": {k: dataclasses.asdict(v) for k, v in app.calls.nodes.items()}, "answer": app.calls.answer,
            "finished": app.run_state.finished}


def recorded(events: list[ev.Event]) -> list[ev.Event]:
    return [ev.Event.from_dict(json.loads(e.to_json())) for e in events]


async def live_app_state(events: list[ev.Event]) -> tuple[dict, list[str], str]:
    """What the app shows when a live run's events are fed to it."""
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        app.feed(events)
        await pilot.pause()
        return state(app), tree_ids(app.query_one(CallTreeView)), app.query_one(TranscriptView).plain_text()


async def test_replay_at_the_end_shows_what_the_live_run_showed(sample: Sample) -> None:
    live_state, live_tree, live_text = await live_app_state(recorded(sample.run.events))
    app = ReplayApp(Replayer.open(sample.path), end=True, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert state(app) == live_state
        assert tree_ids(app.query_one(CallTreeView)) == live_tree
        assert app.query_one(TranscriptView).plain_text() == live_text
        assert app.run_state.answer == ANSWER and app.query_one(AnswerPanel).display
        bar = app.query_one(ReplayBar).render().plain  # type: ignore[union-attr]
        assert "paused" in bar and f"event {len(app.replayer):,} of {len(app.replayer):,}" in bar
        assert "turn 3" in bar


async def test_steps_back_and_forth_match_a_fold_from_the_start(sample: Sample) -> None:
    replayer = Replayer.open(sample.path)
    events = list(replayer.index.iter_events())
    app = ReplayApp(replayer, play=False, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert replayer.position == 0 and not app.calls.nodes

        view = app.query_one(CallTreeView)

        async def check(opened: bool = False) -> None:
            """The model is a fold from the start, and the tree shows it: every node not inside a
            collapsed batch (all of them once ``opened``), each labelled with its status and kind now."""
            await pilot.pause()
            tree = CallTree()
            tree.extend(events[:replayer.position])
            assert {k: dataclasses.asdict(v) for k, v in app.calls.nodes.items()} == \
                {k: dataclasses.asdict(v) for k, v in tree.nodes.items()}, replayer.position
            rows = rows_seen(view) if tree.nodes else []
            expected = {n.id for n in tree.nodes.values()
                        if opened or tree.nodes.get(n.parent or "") is None or tree.nodes[n.parent].kind != "batch"}
            assert {node_id for node_id, _ in rows} == expected, replayer.position
            screen = shown(view)
            for node_id, label in rows:
                node = tree.nodes[node_id]
                assert label.startswith(f"{STATUS_ICONS[node.status]} {node.kind} "), (node_id, label)
                assert label.split("  ")[0].strip() in screen, label

        await pilot.press("right_curly_bracket")  # turn 1 starts
        assert replayer.position == replayer.turn_stops()[0]
        await check()
        await pilot.press("right_curly_bracket", "right_curly_bracket")  # turn 3 starts
        assert app.calls.nodes["n0"].turns == 3
        await check()
        await pilot.press("left_curly_bracket")  # back to the start of turn 2
        assert app.calls.nodes["n0"].turns == 2 and replayer.position == replayer.turn_stops()[1]
        await check()
        assert "turn 3" not in app.query_one(TranscriptView).plain_text()
        await pilot.press("left_square_bracket")  # back one cell (the root is shown: its cells)
        assert replayer.position == replayer.cell_stops("n0")[0]
        await check()
        await pilot.press("full_stop", "full_stop", "full_stop", "comma")
        assert replayer.position == replayer.cell_stops("n0")[0] + 2
        await check()
        await pilot.press("G")
        assert replayer.position == len(replayer) and app.run_state.finished
        await check()
        batches = [w for w in view.root.children if app.calls.nodes[w.data].kind == "batch"]  # type: ignore[index]
        assert batches and all(not w.children for w in batches), "a collapsed batch's prompts are added when opened"
        for widget in batches:
            widget.expand()
        await check(opened=True)  # opening a batch shows its prompts, labelled
        await pilot.press("left_curly_bracket", "comma")  # moved back with the batches open: still shown right
        await check(opened=True)
        await pilot.press("g")
        assert replayer.position == 0 and not app.calls.nodes
        await check()


async def test_jump_to_the_selected_node(sample: Sample) -> None:
    app = ReplayApp(Replayer.open(sample.path), end=True, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        child = next(n for n in app.calls.nodes.values() if n.kind == "rlm")
        view = app.query_one(CallTreeView)
        view.move_to(child.id)
        await pilot.pause()
        await pilot.press("j")
        await pilot.pause()
        assert app.replayer.position == app.replayer.node_first(child.id) + 1
        assert app.calls.nodes[child.id].status == "running"
        assert app.query_one(TranscriptView).node_id == child.id
        assert not app.run_state.finished


async def until_finished(app: ReplayApp, pilot, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        if app.run_state.finished:
            break
        await asyncio.sleep(0.05)
    await pilot.pause()


async def test_play_reaches_the_end(sample: Sample) -> None:
    app = ReplayApp(Replayer.open(sample.path), speed=128, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        assert app.run_state.finished and app.run_state.answer == ANSWER
        assert not app.player.playing
        app.player.speed = 0.25
        await pilot.press("space")  # at the end, play starts over
        assert app.player.playing and app.replayer.position < len(app.replayer)
        await pilot.press("space")
        assert not app.player.playing


def test_paused_and_speed_set_how_replay_starts(sample: Sample) -> None:
    """`replay --paused --speed X`: the flags reach the app, which opens at the start, still, at that speed."""
    from rlm_tui.cli import SUBCOMMANDS

    seen: dict[str, object] = {}

    async def drive(app: ReplayApp) -> None:
        async with app.run_test(size=SIZE) as pilot:
            await asyncio.sleep(1.0)
            await pilot.pause()
            seen.update(speed=app.player.speed, playing=app.player.playing, position=app.replayer.position,
                        bar=app.query_one(ReplayBar).render().plain)  # type: ignore[union-attr]
            await pilot.press("space")
            await until_finished(app, pilot)  # at 4x the sample plays through in a few seconds
            seen["finished"] = app.run_state.finished

    run = ReplayApp.run
    ReplayApp.run = lambda app: asyncio.run(drive(app))  # type: ignore[method-assign]  # pilot, not a tty
    try:
        assert SUBCOMMANDS["replay"]([str(sample.path), "--paused", "--speed", "4"]) == 0
    finally:
        ReplayApp.run = run  # type: ignore[method-assign]
    assert seen["speed"] == 4 and seen["playing"] is False and seen["position"] == 0
    assert "‖ paused" in str(seen["bar"]) and seen["finished"] is True


async def test_follow_shows_a_file_as_it_grows(sample: Sample, tmp_path: Path) -> None:
    lines = sample.path.read_bytes().splitlines(keepends=True)
    path = tmp_path / "live.jsonl"
    path.write_bytes(b"".join(lines[:10]))
    app = ReplayApp(Replayer.open(path, follow=True), follow=True, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.replayer.position == 10  # following opens at the end
        with open(path, "ab") as handle:
            for start in range(10, len(lines), 15):
                handle.write(b"".join(lines[start:start + 15]))
                handle.flush()
                await asyncio.sleep(0.3)
        await until_finished(app, pilot)
        assert app.run_state.finished and app.run_state.answer == ANSWER
        assert app.replayer.position == len(lines)
        assert "the run has ended" in app.query_one(ReplayBar).render().plain  # type: ignore[union-attr]


async def test_help_and_palette_list_the_replay_keys(sample: Sample) -> None:
    from rlm_tui.ui.help import HelpScreen

    app = ReplayApp(Replayer.open(sample.path), play=False, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(str(t) for t in app.screen.sections[0][1])
        for action in ("play_pause", "step(1)", "cell(-1)", "turn(1)", "to_end", "jump_to_node", "quit"):
            assert action in text
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Replay: jump to the end" in titles and "Show root transcript" in titles


async def test_the_replay_model_holds_no_control_sequences(tmp_path: Path) -> None:
    """Replay folds events into the model the app draws: a hostile session's strings arrive escaped,
    and plain lines (most of a file) skip the sanitizing pass without letting anything through."""
    from rlm_tui.core.session import SessionWriter

    attack = "\x1b]52;c;UFdORUQ=\x07\u202e"
    writer = SessionWriter(tmp_path / "hostile.jsonl")
    writer.write(writer.header())
    for seq, event in enumerate([
        ev.Event(ev.RUN_STARTED, data={"question": f"q{attack}", "path": "/", "settings": {}}),
        ev.Event(ev.NODE_STARTED, "n0", data={"node_kind": "root", "depth": 0, "model": "m", "prompt": "q"}),
        ev.Event(ev.TURN_STARTED, "n0", data={"turn": 1}),
        ev.Event(ev.NODE_STARTED, "n1", "n0", data={"node_kind": "llm", "depth": 1, "model": "m",
                                                    "prompt": f"label{attack}"}),
        ev.Event(ev.CELL_STARTED, "n0", data={"cell": 1, "code": f"print(1){attack}"}),
        ev.Event(ev.CELL_OUTPUT, "n0", data={"cell": 1, "stream": "stdout", "text": f"out{attack}"}),
        ev.Event(ev.CELL_OUTPUT, "n0", data={"cell": 1, "stream": "stderr", "text": "ascii \x1b]0;title\x07"}),
        ev.Event(ev.CELL_OUTPUT, "n0", data={"cell": 1, "stream": "stdout", "text": "plain"}),
    ], 1):
        event.seq, event.t = seq, seq * 0.1
        writer.write(event)
    writer.close()
    replayer = Replayer.open(tmp_path / "hostile.jsonl")
    app = ReplayApp(replayer, end=True, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        texts = [app.run_state.question, app.calls.nodes["n1"].label, app.calls.nodes["n1"].prompt]
        texts += [b.text for b in app.transcripts.blocks("n0")] + [str(b.data) for b in app.transcripts.blocks("n0")]
        assert any("\\x1b]52" in text for text in texts)
        for text in texts:
            assert "\x1b]" not in text and "\x07" not in text and "\u202e" not in text, text
        assert any("ascii \\x1b]0;title" in text for text in texts)
