"""``rlm-tui replay FILE``: the same app, fed from a session file instead of a live engine.

``ReplayApp`` is ``RlmApp`` showing the ``Replayer``'s run model: playing moves
the position in recorded time (``ReplaySource.drain``, polled once per frame
like a live run) and stepping moves it by an event, cell or turn; the app
redraws the nodes a move changed, also when the move replaced the model (back,
or far forward: a checkpoint restored, ``Replayer.seek``): the tree drops the
nodes the new model lacks and the transcript shown re-renders from its first
block that is not shared with the checkpoint. A bar above the footer shows where the
replay stands (turn, recorded time, event n of N) and the keys.

With ``--follow`` the file is watched (``sessions.follow.changes``) and new
events are shown as they are appended while the position is at the end.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual.app import SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..core import events as ev
from ..core.safe_text import safe
from ..core.session import SessionFormatError
from ..sessions.follow import changes
from ..sessions.index import ANY, SessionChanged
from ..sessions.replay import Player, Replayer
from . import fmt
from .app import RlmApp, shown
from .widgets.call_tree import CallTreeView
from .widgets.transcript_view import TranscriptView

BAR_WIDTH = 24


class ReplaySource:
    """An EventSource over a Replayer: while playing, ``drain`` moves it to where playback reached.

    It returns no events: the replayer folds them into the model the app shows.
    """

    badge = "REPLAY"
    live = False

    def __init__(self, replayer: Replayer, player: Player) -> None:
        self.replayer = replayer
        self.player = player
        self.stop_follow = threading.Event()
        self._last: float | None = None

    def start(self) -> None:
        self._last = time.monotonic()

    def drain(self) -> list[ev.Event]:
        now = time.monotonic()
        elapsed = 0.0 if self._last is None else now - self._last
        self._last = now
        replayer = self.replayer
        target = self.player.advance(elapsed)
        if target > replayer.position:
            replayer.seek(target)
        return []

    def stop(self) -> None:
        self.stop_follow.set()
        self.player.pause()


class ReplayBar(Static):
    """``▶ playing 2x │ turn 3 · 12s │ event 512 of 1,204 ▕████░░░░▏ │ following: live │ the keys``."""

    DEFAULT_CSS = """
    ReplayBar {
        height: 1;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    def show(self, app: "ReplayApp") -> None:
        palette = app.palette
        replayer, player = app.replayer, app.player
        where = replayer.describe()
        sep = (" │ ", palette.muted)
        state = (("▶ playing", f"bold {palette.success}") if player.playing
                 else ("‖ paused", f"bold {palette.warning}"))
        speed = f"{player.speed:g}x"
        done = where.index / where.total if where.total else 0.0
        filled = round(done * BAR_WIDTH)
        text = Text.assemble(state, " ", (speed, palette.accent), sep,
                             (f"turn {where.turn}" if where.turn else "before turn 1", f"bold {palette.foreground}"),
                             (f" · {fmt.seconds(where.t)}", palette.foreground), sep,
                             (f"event {where.index:,} of {where.total:,} ", palette.foreground),
                             ("▕" + "█" * filled, palette.primary),
                             ("░" * (BAR_WIDTH - filled) + "▏", palette.muted),
                             no_wrap=True, overflow="ellipsis")
        if app.following:
            text.append_text(Text.assemble(sep, app.follow_state(), style=palette.accent))
        text.append_text(Text.assemble(sep, ("space play · ,/. event · [/] cell · {/} turn · g/G start/end · "
                                             "j jump to node", palette.muted)))
        self.update(text)


class ReplayApp(RlmApp):
    """Watch a recorded run unfold, step through it, and jump around in it."""

    BINDINGS = [
        *RlmApp.BINDINGS,
        Binding("space", "play_pause", "Play/pause", priority=True, tooltip="Play or pause the replay"),
        Binding("p", "play_pause", "Play/pause", show=False, tooltip="Play or pause the replay"),
        Binding("plus,equals_sign", "faster", "Faster", show=False, tooltip="Play faster (up to 128x)"),
        Binding("minus", "slower", "Slower", show=False, tooltip="Play slower (down to 0.25x)"),
        Binding("full_stop", "step(1)", "Step", show=False, tooltip="One event forward"),
        Binding("comma", "step(-1)", "Back", show=False, tooltip="One event back"),
        Binding("right_square_bracket", "cell(1)", "Next cell", show=False,
                tooltip="Forward to the end of the next cell (of the node shown, if it is an RLM)"),
        Binding("left_square_bracket", "cell(-1)", "Previous cell", show=False, tooltip="Back one cell"),
        Binding("right_curly_bracket", "turn(1)", "Next turn", show=False,
                tooltip="Forward to the start of the next turn (of the node shown, if it is an RLM; else the root)"),
        Binding("left_curly_bracket", "turn(-1)", "Previous turn", show=False, tooltip="Back to the start of a turn"),
        Binding("g", "to_start", "Start", show=False, tooltip="Jump to the start of the run"),
        Binding("G", "to_end", "End", show=False, tooltip="Jump to the end of the run (and follow it, if following)"),
        Binding("j", "jump_to_node", "Jump to node", tooltip="Jump to where the node under the tree cursor started"),
    ]

    def __init__(self, replayer: Replayer, *, end: bool = False, follow: bool = False, play: bool = True,
                 speed: float = 1.0, theme: str | None = None, remember_theme: bool = True) -> None:
        self.replayer = replayer
        replayer.sanitize = shown  # every string the model holds is safe to draw
        self.player = Player(replayer, speed=speed)
        super().__init__(ReplaySource(replayer, self.player), theme=theme, remember_theme=remember_theme)
        self.model = replayer.model
        self.following = follow
        self._start_at_end = end or follow
        self._autoplay = play and not self._start_at_end
        self._follow_ended = False

    @property
    def replay_source(self) -> ReplaySource:
        assert isinstance(self.source, ReplaySource)
        return self.source

    def on_mount(self) -> None:
        super().on_mount()
        self.mount(ReplayBar(id="replay-bar"), before=self.query_one(Footer))
        for _, why in self.replayer.bad_lines[:5]:
            self.notify(safe(f"skipped {why}"), title="Damaged session file", severity="warning", timeout=10,
                        markup=False)
        self.call_after_refresh(self._open)  # once laid out: the panes render once, at their real width

    def _open(self) -> None:
        if self._start_at_end:
            self.move_to(len(self.replayer))
        elif self._autoplay:
            self.player.play()
            self.replay_source.start()
        if self.following:
            self.run_worker(self._follow(), name="follow", group="follow", exclusive=True)
        self._refresh_bar()

    def _tick(self) -> None:
        playing = self.player.playing
        try:
            super()._tick()
            self._show_position()
        except NoMatches:  # a last frame while the app is closing: its widgets are already gone
            return
        if playing or self._frame % 15 == 0:
            self._refresh_bar()

    def _refresh_bar(self) -> None:
        for bar in self.query(ReplayBar):
            bar.show(self)

    # --- moving ---------------------------------------------------------------------

    def move_to(self, position: int) -> None:
        """Show the run as it was after ``position`` events."""
        self.replayer.seek(position)
        self._show_position()
        self.player.sync()
        self._refresh_bar()

    def _show_position(self) -> None:
        """Bring the panes to the replayer's model: only the nodes the move changed are redrawn,
        and a transcript shown is re-rendered from its first block that changed."""
        replayer = self.replayer
        changed = replayer.take_changed()
        if replayer.model is not self.model:  # restored from a checkpoint
            self.model = replayer.model
            self.tree_view.rebind(self.calls)
            view = self.transcript_view
            if view.node_id is not None and view.node_id in self.calls.nodes:
                view.rebind(self.transcripts.blocks(view.node_id))
            else:
                view.show(None, [], follow=True)  # the next render shows the root
            self.transcripts.take_changes()
            self._set_transcript_title()
            if not self.run_state.finished:
                self.answer_panel.display = False
        elif not changed and not self.transcripts.has_changes():
            return
        self._dirty.update(dict.fromkeys(changed))
        self.schedule_render()

    def _reselect(self, node_id: str) -> None:
        if node_id in self.calls.nodes:
            self.query_one(CallTreeView).move_to(node_id)
            self.show_node(node_id)

    def _focus_node(self) -> str | None:
        """The RLM node whose cells and turns the step keys follow: the one shown, if it is one."""
        node = self.calls.nodes.get(self.query_one(TranscriptView).node_id or "")
        return node.id if node is not None and node.kind in ("root", "rlm") else None

    def _stop(self, stops: list[int], direction: int) -> None:
        self.player.pause()
        replayer = self.replayer
        if direction > 0:
            after = [s for s in stops if s > replayer.position]
            self.move_to(after[0] if after else len(replayer))
        else:
            before = [s for s in stops if s < replayer.position]
            self.move_to(before[-1] if before else 0)

    def action_play_pause(self) -> None:
        if not self.player.playing and self.replayer.position >= len(self.replayer):
            self.move_to(0)  # at the end: play again from the start
        self.player.toggle()
        self.replay_source.start()  # the frame clock starts now, not at the last drain
        self._refresh_bar()

    def action_faster(self) -> None:
        self.player.faster()
        self._refresh_bar()

    def action_slower(self) -> None:
        self.player.slower()
        self._refresh_bar()

    def action_step(self, n: int) -> None:
        self.player.pause()
        self.move_to(self.replayer.position + n)

    def action_cell(self, direction: int) -> None:
        node = self._focus_node()
        self._stop(self.replayer.cell_stops(ANY if node is None else node), direction)

    def action_turn(self, direction: int) -> None:
        self._stop(self.replayer.turn_stops(self._focus_node()), direction)

    def action_to_start(self) -> None:
        self.player.pause()
        self.move_to(0)

    def action_to_end(self) -> None:
        self.player.pause()
        self.move_to(len(self.replayer))

    def action_jump_to_node(self) -> None:
        cursor = self.query_one(CallTreeView).cursor_node
        node_id = cursor.data if cursor is not None else None
        first = self.replayer.node_first(node_id) if node_id else None
        if first is None:
            self.notify("Put the tree cursor on a call first.")
            return
        self.player.pause()
        self.move_to(first + 1)
        self.call_later(self._reselect, node_id)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Replay: play or pause", "Play the recorded run in recorded time", self.action_play_pause)
        yield SystemCommand("Replay: jump to the start", "Show the run before its first event", self.action_to_start)
        yield SystemCommand("Replay: jump to the end", "Show the finished run", self.action_to_end)
        yield SystemCommand("Replay: jump to the selected node", "Where the node under the tree cursor started",
                            self.action_jump_to_node)

    # --- following a file that is still being written ---------------------------------

    def follow_state(self) -> str:
        if self._follow_ended:
            return "the run has ended"
        behind = len(self.replayer) - self.replayer.position
        return "following: live" if behind == 0 else f"following: {behind:,} newer events (G to catch up)"

    async def _follow(self) -> None:
        replayer = self.replayer
        async for _ in changes(replayer.index.path, self.replay_source.stop_follow):
            at_end = replayer.position >= len(replayer)
            try:
                added = replayer.refresh()
            except SessionChanged as exc:
                self.notify(safe(f"{exc}; stopped following"), severity="warning", markup=False)
                break
            except SessionFormatError as exc:
                self.notify(safe(str(exc)), severity="error", markup=False)
                break
            if added and at_end and not self.player.playing:
                self.move_to(len(replayer))
            if added and replayer.index.positions([ev.RUN_FINISHED], start=len(replayer) - added):
                replayer.index.finish()
                self._follow_ended = True
                if replayer.position >= len(replayer) - 1:
                    self.move_to(len(replayer))
                self.notify("The run has ended.", title="Following")
                break
            self._refresh_bar()
        self._refresh_bar()


def launch_replay(path: Path, *, end: bool = False, follow: bool = False, theme: str | None = None,
                  speed: float = 1.0, play: bool = True) -> int:
    """Open the replay app on a session file; returns the exit code (2: cannot open it)."""
    from .themes import theme_names

    if theme is not None and theme not in theme_names():
        print(f"rlm-tui: unknown theme {theme!r}; available: {', '.join(theme_names())}", file=sys.stderr)
        return 2
    if follow and not path.exists():
        print(f"waiting for {path} to appear ... (Ctrl+C to stop)", file=sys.stderr, flush=True)
        try:
            while not path.exists():
                time.sleep(0.2)
        except KeyboardInterrupt:
            return 130
    try:
        replayer = Replayer.open(path, follow=follow)
    except FileNotFoundError:
        print(f"rlm-tui replay: no such file: {path}", file=sys.stderr)
        return 2
    except (IsADirectoryError, PermissionError) as exc:
        print(f"rlm-tui replay: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except SessionFormatError as exc:
        print(f"rlm-tui replay: {safe(str(exc))}", file=sys.stderr)
        return 2
    try:
        ReplayApp(replayer, end=end, follow=follow, theme=theme, speed=speed, play=play).run()
    finally:
        replayer.close()
    return 0


async def screenshots(session: Path, out: Path, size: tuple[int, int] = (160, 45)) -> list[Path]:
    """SVGs of the replay app on a recorded session (``python -m rlm_tui.ui.screenshots`` calls this)."""
    replayer = Replayer.open(session)
    app = ReplayApp(replayer, play=False, theme="rlm-midnight", remember_theme=False)
    saved: list[Path] = []
    try:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            stops = replayer.turn_stops()
            app.move_to(stops[min(2, len(stops) - 1)] + 12 if stops else len(replayer) // 2)
            app.query_one(CallTreeView).root.expand_all()
            await pilot.pause(0.3)
            saved.append(Path(app.save_screenshot("replay.svg", str(out))))
            await pilot.press("q")
    finally:
        replayer.close()
    return saved
