"""Snapshot tests (pytest-textual-snapshot): the main screen mid-run, a finished run, the help screen.

The app is fed the fixed stream from ``ui_sample`` (no live source, so
no clocks tick) at a fixed size and theme. Update after a deliberate change
with ``pytest tests/test_ui_snapshots.py --snapshot-update`` and look at the
SVGs in ``tests/__snapshots__/`` before committing them.
"""

from __future__ import annotations

import pytest

from rlm_tui.ui.app import RlmApp

from ui_sample import sample_events

pytestmark = [pytest.mark.ui, pytest.mark.usefixtures("isolated_dirs")]

SIZE = (160, 45)


def fed_app(finished: bool = False) -> tuple[RlmApp, object]:
    """An app and a ``run_before`` that feeds it the sample run, cut mid-run unless ``finished``."""
    events, mid = sample_events()
    app = RlmApp(theme="rlm-midnight", remember_theme=False)

    async def feed(pilot) -> None:
        app.feed(events if finished else events[:mid])
        await pilot.pause()

    return app, feed


def test_main_screen_mid_run(snap_compare) -> None:
    app, feed = fed_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=feed)


def test_finished_run(snap_compare) -> None:
    app, feed = fed_app(finished=True)
    assert snap_compare(app, terminal_size=SIZE, run_before=feed)


def test_help_screen(snap_compare) -> None:
    app, feed = fed_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=feed, press=["question_mark"])
