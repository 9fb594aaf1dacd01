"""Pilot tests of the app fed a fixed event stream: what the tree, transcript, panels and keys do."""

from __future__ import annotations

import pytest
from textual.widgets import Markdown

from rlm_tui.core import events as ev
from rlm_tui.ui import prefs
from rlm_tui.ui.app import RlmApp
from rlm_tui.ui.help import HelpScreen
from rlm_tui.ui.widgets.answer import AnswerPanel
from rlm_tui.ui.widgets.call_tree import CallTreeView
from rlm_tui.ui.widgets.status import StatusBar
from rlm_tui.ui.widgets.transcript_view import TranscriptView

from screen import shown, tree_rows
from ui_sample import sample_events

pytestmark = [pytest.mark.ui, pytest.mark.usefixtures("isolated_dirs")]

SIZE = (160, 45)


async def fed(app: RlmApp, pilot, events) -> None:
    app.feed(events)
    await pilot.pause()


async def test_mid_run_tree_shows_nesting_status_and_totals() -> None:
    events, mid = sample_events()
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, events[:mid])
        rows = {node_id: (depth, label, expanded)
                for depth, node_id, label, expanded in tree_rows(app.query_one(CallTreeView).root)}
        assert [rows[n][0] for n in ("n0", "n1", "n5", "n6")] == [0, 1, 1, 2]
        assert rows["n0"][1].startswith("● root When is the launch")
        assert "Σ 5 calls" in rows["n0"][1] and "$0.02" in rows["n0"][1]
        assert rows["n1"][1].startswith("✓ batch llm_query_batched") and "3/3 done" in rows["n1"][1]
        assert not rows["n1"][2], "a batch is one collapsed node"
        assert rows["n5"][1].startswith("● rlm Who objected") and "Σ 1 call " in rows["n5"][1]
        assert rows["n6"][1].startswith("● llm Who objects here") and "running" in rows["n6"][1]
        assert "n2" not in rows, "a collapsed batch's prompts are added when it is opened"
        tree = app.query_one(CallTreeView)
        tree.root.children[0].expand()
        await pilot.pause()
        opened = {node_id: (depth, label) for depth, node_id, label, _ in tree_rows(tree.root)}
        assert [opened[n][0] for n in ("n2", "n3", "n4")] == [2, 2, 2]
        assert "✓ llm Summarise the decisions" in opened["n2"][1] and "1.7k→14" in opened["n2"][1]
        status = shown(app.query_one(StatusBar))
        assert "depth 2/2" in status and "turn 4/30" in status and "kernel 2 busy" in status
        assert not app.query_one(AnswerPanel).display


async def test_transcript_shows_root_then_any_selected_node() -> None:
    events, mid = sample_events()
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, events[:mid])
        view = app.query_one(TranscriptView)
        text = view.plain_text()
        assert view.node_id == "n0" and view.border_title == "Transcript · root"
        for expected in ("Question", "turn 1 · 2.1k in / 26 out · $0.0031 · 2.4s", "✓ cell 1 · 0.0s",
                         "notes/2024-03-12.md 7301", "✗ cell 3 error", "IndexError: list index out of range",
                         "↳ rlm Who objected to moving the launch date", "▶ cell 4 running…"):
            assert expected in text, expected
        assert "\x1b" not in text, "ANSI escapes are rendered as colour, not shown"
        tree = app.query_one(CallTreeView)
        tree.focus()
        await pilot.press("down", "down")  # root -> batch -> rlm child
        assert view.node_id == "n5"
        child = view.plain_text()
        assert "child RLM  depth 1" in child and "Who objected to moving" in child
        assert "↳ llm Who objects here, and why?" in child and "IndexError" not in child
        await pilot.press("down")
        assert view.node_id == "n6" and "llm call  depth 2" in view.plain_text()
        await pilot.press("r")
        assert view.node_id == "n0"


async def test_streamed_reply_grows_in_place_and_follows_the_end() -> None:
    events, _ = sample_events()
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        chunks = [i for i, e in enumerate(events) if e.kind == "lm_chunk"]
        await fed(app, pilot, events[:chunks[0] + 1])
        view = app.query_one(TranscriptView)
        assert "Let me look at the files first." in view.plain_text()
        assert "for name" not in view.plain_text()
        await fed(app, pilot, events[chunks[0] + 1:chunks[2] + 1])
        assert "for name, text in context.items():\n     print(name, len(text))" in view.plain_text()
        await fed(app, pilot, events[chunks[3] + 1:])
        await pilot.pause()
        assert view.scroll_offset.y == view.max_scroll_y > 0


async def test_finished_run_shows_the_answer_panel_until_hidden() -> None:
    events, _ = sample_events()
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, events)
        panel = app.query_one(AnswerPanel)
        assert panel.display and panel.border_title == "Final answer"
        assert "2024-05-16" in panel.query_one(Markdown).source
        totals = shown(panel.query_one("#answer-totals"))
        assert "answered · 5 sub-calls · 26.7k tok · $0.03" in totals
        assert "session saved to /home/user/.local/share/rlm-tui/sessions" in totals
        await pilot.press("a")
        assert not panel.display
        await pilot.press("a")
        assert panel.display


async def test_failed_run_says_why() -> None:
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, [ev.Event(ev.RUN_FINISHED, data={"answer": None, "stopped_by": "error",
                                                               "error": "no text files to read in /tmp/x"})])
        panel = app.query_one(AnswerPanel)
        assert panel.display and panel.border_title == "Run failed" and panel.has_class("failed")
        assert "no text files to read" in panel.query_one(Markdown).source


async def test_help_lists_every_app_key() -> None:
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        listed = {binding.key for _, bindings in app.screen.sections for binding in bindings}
        assert {b.key for b in RlmApp.BINDINGS} <= listed
        assert {"ctrl+p", "ctrl+q", "shift+space", "pageup"} <= listed
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_ctrl_c_quits_only_when_pressed_twice() -> None:
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert not app.is_running and app.return_code == 0


async def test_theme_switch_recolours_and_is_remembered() -> None:
    prefs.config_path().parent.mkdir(parents=True, exist_ok=True)
    prefs.config_path().write_text('# mine\nmodel = "openai/x"\n\n[limits]\nbudget = 2\n')
    events, mid = sample_events()
    app = RlmApp(theme="rlm-midnight")
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, events[:mid])
        dark_label = app.query_one(CallTreeView).root.label
        app.theme = "rlm-paper"
        await pilot.pause()
        assert app.palette.dark is False
        assert app.query_one(CallTreeView).root.label.spans != dark_label.spans
    assert prefs.load_theme_name() == "rlm-paper"
    text = prefs.config_path().read_text()
    assert text.startswith('theme = "rlm-paper"\n# mine\nmodel = "openai/x"') and "[limits]\nbudget = 2" in text
    assert prefs.config_path().stat().st_mode & 0o777 == 0o600
    app = RlmApp()
    async with app.run_test(size=SIZE):
        assert app.theme == "rlm-paper"


async def test_user_theme_files_load_and_bad_ones_are_reported() -> None:
    folder = prefs.user_themes_dir()
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text('name = "my-theme"\ndark = false\nprimary = "#224488"\n')
    (folder / "broken.toml").write_text('name = "broken"\nprimary = "#224488"\nprimay = "#fff"\n')
    app = RlmApp(theme="my-theme", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "my-theme" and not app.palette.dark
        notes = [n.message for n in app._notifications]
        assert any("broken.toml: unknown key(s) primay" in message for message in notes)


async def test_unknown_theme_falls_back_with_a_notice() -> None:
    app = RlmApp(theme="nope", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "rlm-midnight"
        assert any("theme 'nope' not found" in n.message for n in app._notifications)


async def test_footer_is_rebuilt_only_when_its_keys_change() -> None:
    """Textual's footer rebuilds every key widget on each bindings refresh (six times while a replay
    opens at the end of a big session); ours keeps them while the keys shown stay the same."""
    from textual.widgets._footer import FooterKey

    from rlm_tui.ui.widgets.footer import KeysFooter

    events, _ = sample_events()
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, events)
        footer = app.query_one(KeysFooter)
        before = list(footer.query(FooterKey))
        assert before
        for _ in range(3):
            app.refresh_bindings()
        await pilot.pause()
        assert list(footer.query(FooterKey)) == before  # the same widgets: nothing was rebuilt
        app.bind("f9", "bell", description="Ring")
        app.refresh_bindings()
        await pilot.pause()
        after = list(footer.query(FooterKey))
        assert "Ring" in [key.description for key in after] and after != before


async def test_a_long_transcript_opens_as_a_window_at_its_end_and_widens_up_to_its_top() -> None:
    """300 cells of 8 lines: the end is drawn from a window of a few screens (not all 2,400+ lines),
    and scrolling to the top renders the rest, block by block, down to the first cell."""
    def cell(n: int) -> list[ev.Event]:
        return [ev.Event(ev.TURN_STARTED, "n0", None, {"turn": n}),
                ev.Event(ev.CELL_STARTED, "n0", None, {"cell": n, "code": f"print_part({n})"}),
                ev.Event(ev.CELL_OUTPUT, "n0", None, {"cell": n, "stream": "stdout",
                                                     "text": "".join(f"part {n} line {k}\n" for k in range(8))}),
                ev.Event(ev.CELL_FINISHED, "n0", None, {"cell": n, "status": "ok", "duration_s": 0.1})]

    events = [ev.Event(ev.NODE_STARTED, "n0", None, {"node_kind": "root", "depth": 0, "model": "m",
                                                    "prompt": "q", "label": "q"})]
    for n in range(1, 301):
        events += cell(n)
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, events)
        view = app.query_one(TranscriptView)
        full = view.plain_text().splitlines()
        assert len(full) > 3000
        assert "part 300 line 5" in shown(view)  # at the end
        assert view.virtual_size.height < len(full) // 5  # a window, not the whole transcript
        for _ in range(200):  # scroll to the top: each approach to the window's edge renders more above
            if view.scroll_offset.y == 0 and "part 1 line 0" in shown(view):
                break
            view.scroll_home(animate=False, immediate=True)
            await pilot.pause()
        assert "✓ cell 1 · 0.1s" in shown(view) and "part 1 line 0" in shown(view)
        assert view.virtual_size.height >= len(full) - 1  # all rendered now
