"""A big fan-out in the app: redrawn about once a second while events flood in, progress still shown,
and the model the app folds equal to a fold of every event (the app skips the ones no part reads)."""

from __future__ import annotations

import re
import time

import pytest

from rlm_tui.core import events as ev
from rlm_tui.model.run import RunModel
from rlm_tui.ui.app import FLOOD_FRAME_S, FRAME_S, RlmApp
from rlm_tui.ui.widgets.call_tree import CallTreeView
from rlm_tui.ui.widgets.status import RunHeader

from screen import shown

pytestmark = [pytest.mark.ui, pytest.mark.usefixtures("isolated_dirs")]

SIZE = (160, 45)
PROMPTS = 3000


def fan_out(prompts: int) -> tuple[list[ev.Event], list[ev.Event]]:
    """The start of a run with one ``llm_query_batched`` of ``prompts``, and each prompt's four
    events (started, lm_started, lm_finished, finished) in the order a batch at zero latency sends them."""
    events: list[ev.Event] = []

    def add(kind: str, node: str | None, parent: str | None = None, **data: object) -> None:
        events.append(ev.Event(kind, node, parent, data, seq=len(events) + 1, t=len(events) * 1e-4))

    add(ev.RUN_STARTED, None, question="Summarise every file", path="/data", settings={})
    add(ev.NODE_STARTED, "n0", None, node_kind="root", depth=0, model="m", label="Summarise", prompt="Summarise")
    add(ev.TURN_STARTED, "n0", turn=1)
    add(ev.CELL_STARTED, "n0", cell=1, code="llm_query_batched(prompts)")
    add(ev.NODE_STARTED, "b1", "n0", node_kind="batch", depth=1, model="m", label=f"llm_query_batched × {prompts}",
        prompt="p", n=prompts)
    start = len(events)
    for i in range(prompts):
        node = f"n{i + 2}"
        add(ev.NODE_STARTED, node, "b1", node_kind="llm", depth=1, model="m", label=f"prompt {i}", prompt=f"prompt {i}")
        add(ev.LM_STARTED, node, "b1", model="m", messages=[{"role": "user", "content": f"prompt {i}"}])
        add(ev.LM_FINISHED, node, "b1", model="m", text=f"pong {i}", tokens_in=10, tokens_out=2, cost_usd=1e-6,
            cost_known=True, latency_s=0.0)
        add(ev.NODE_FINISHED, node, "b1", status="done", result=f"pong {i}")
    return events[:start], events[start:]


def counting_redraws(app: RlmApp) -> list[int]:
    """The real app, its redraws of the panes counted (one item per redraw)."""
    redraws: list[int] = []
    render = app._render_changes

    def counted() -> None:
        render()
        redraws.append(1)

    app._render_changes = counted  # type: ignore[method-assign]
    return redraws


async def test_a_flood_is_redrawn_about_once_a_second_and_shows_progress() -> None:
    """Big batches (≥ FLOOD_EVENTS) alternate with small ones, frame after frame, as a fan-out's
    events arrive; the small ones must not bring a redraw each (they cost the engine as much again)."""
    head, prompts = fan_out(PROMPTS)
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    counted = counting_redraws(app)
    async with app.run_test(size=SIZE) as pilot:
        app.feed(head)
        await pilot.pause()
        before = len(counted)
        rows: list[str] = []  # the batch's row as drawn after each frame
        started = time.monotonic()
        sizes = [120, 12]  # events per frame, in turn: a batch of FLOOD_EVENTS or more, then fewer
        at = 0
        frame = 0
        while at < len(prompts):
            step = sizes[frame % 2]
            app.feed(prompts[at:at + step])
            at += step
            frame += 1
            await pilot.pause(FRAME_S)
            row = next((line for line in shown(app.query_one(CallTreeView)).splitlines() if "batch" in line), "")
            rows.append(row)
        took = time.monotonic() - started
        await pilot.pause(FLOOD_FRAME_S + 0.2)  # the last redraw of the flood comes at most this late
        redraws = len(counted) - before
        assert frame > 3 * redraws, f"{redraws} redraws in {frame} frames of a flood"
        # about took / FLOOD_FRAME_S + 1; redrawing at each small batch gave 1.6 times that
        assert redraws <= 1.25 * took / FLOOD_FRAME_S + 1, f"{redraws} redraws in {took:.1f} s"
        done = [int(m.group(1)) for row in rows if (m := re.search(r"(\d+)/\d+ ", row))]
        shown_mid_flood = sorted({d for d in done if 0 < d < PROMPTS})
        assert len(shown_mid_flood) >= 2, f"progress not shown live: {sorted(set(done))}"
        final = next(line for line in shown(app.query_one(CallTreeView)).splitlines() if "batch" in line)
        assert f"{PROMPTS}/{PROMPTS}" in final


async def test_the_app_folds_what_a_fold_of_every_event_gives() -> None:
    """The app counts, without folding, the events no model part reads; what it shows must not change."""
    head, prompts = fan_out(200)
    events = head + prompts
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        app.feed(events)
        await pilot.pause()
        full = RunModel()
        full.extend(events)
        assert app.model.events == full.events == len(events)
        assert app.calls.nodes.keys() == full.tree.nodes.keys()
        for node_id, node in full.tree.nodes.items():
            assert app.calls.nodes[node_id] == node, node_id
            assert app.transcripts.blocks(node_id) == full.transcripts.blocks(node_id), node_id
        assert app.calls.subtree_usage("n0") == full.tree.subtree_usage("n0")


async def test_the_header_is_redrawn_without_a_layout_pass() -> None:
    """The header is shown again at every redraw: unchanged, it is not refreshed at all; changed, it is
    repainted (one line high) without laying out the whole screen again."""
    head, _ = fan_out(1)
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        app.feed(head)
        await pilot.pause()
        header = app.query_one(RunHeader)
        assert "Summarise every file" in shown(header)
        header.show(app.run_state, app.palette, None)
        assert not header._repaint_required and not header._layout_required
        app.run_state.question = "Another question"
        header.show(app.run_state, app.palette, None)
        assert header._repaint_required and not header._layout_required
        await pilot.pause()
        assert "Another question" in shown(header)
