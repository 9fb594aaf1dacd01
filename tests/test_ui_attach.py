"""The command palette's "Kernel: attach a console" on a live (sandboxed by default) run, and the
status bar naming the kernel backend.

The command it shows is used as ``jupyter console --existing`` would use it: a
client from that connection file reaches the root's kernel and sees its
``context``, from outside the sandbox, with nothing opened up for it.
"""

from __future__ import annotations

import pytest
from jupyter_client import BlockingKernelClient
from textual.command import CommandList, CommandPalette

from rlm_tui.core import events as ev
from rlm_tui.demo import BADGE, QUESTION, start_demo
from rlm_tui.ui.app import RlmApp
from rlm_tui.ui.runner import EngineSource
from rlm_tui.ui.widgets.status import StatusBar

from test_ui_app import shown
from test_ui_live import SIZE, wait_for
from test_ui_sample import isolated_dirs, sample_events  # noqa: F401 - isolated_dirs is an autouse fixture


def paused_demo(sandbox: str) -> EngineSource:
    """The demo, held before its first turn (step mode) while its root kernel starts and loads."""
    settings, folder, stack = start_demo(0.0)
    settings.step, settings.sandbox = "turn", sandbox
    return EngineSource(settings, QUESTION, folder, badge=BADGE, on_finish=stack.close)


def context_type_seen_through(connection_file: str) -> str:
    client = BlockingKernelClient(connection_file=connection_file)
    client.load_connection_file()
    client.start_channels()
    try:
        reply = client.execute_interactive("", user_expressions={"t": "type(context).__name__"}, timeout=60,
                                           allow_stdin=False, output_hook=lambda msg: None)
        return reply["content"]["user_expressions"]["t"]["data"]["text/plain"]
    finally:
        client.stop_channels()


async def run_command(pilot, app: RlmApp, search: str) -> None:
    """Open the command palette, search, and run the first match, as a person would."""
    await pilot.press("ctrl+p")
    await pilot.press(*search)
    await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette)
                   and app.screen.query_one(CommandList).option_count > 0)
    await pilot.press("enter")


async def attach_through_the_palette(sandbox: str) -> tuple[str, str, str]:
    source = paused_demo(sandbox)
    app = RlmApp(source, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "idle" in app.run_state.kernels.values())  # started, context loaded
        await run_command(pilot, app, "attach")
        await wait_for(pilot, lambda: app.clipboard.startswith("jupyter console --existing "))
        command = app.clipboard
        assert any(command in n.message for n in app._notifications)
        seen = context_type_seen_through(command.removeprefix("jupyter console --existing "))
        backend = app.run_state.backend["name"]
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)
    return command, seen, backend


async def test_palette_attaches_to_the_sandboxed_root_kernel() -> None:
    command, seen, backend = await attach_through_the_palette("auto")
    assert backend == "sandbox" and seen == "'dict'"


async def test_palette_attaches_to_the_local_root_kernel() -> None:
    command, seen, backend = await attach_through_the_palette("off")
    assert backend == "local" and seen == "'dict'"


async def test_palette_says_when_there_is_no_kernel_to_attach_to() -> None:
    app = RlmApp(theme="rlm-midnight", remember_theme=False)  # no run: as in a replay
    async with app.run_test(size=SIZE) as pilot:
        await run_command(pilot, app, "attach")
        await wait_for(pilot, lambda: any("no live root kernel" in n.message for n in app._notifications))
        assert app.clipboard == ""


@pytest.mark.parametrize("backend,said", [
    ({"name": "sandbox", "description": "sandboxed kernel"}, "kernel 2 busy · sandbox"),
    ({"name": "local", "description": "local kernel", "warning": "the model's code runs unsandboxed ..."},
     "kernel 2 busy · local NOT SANDBOXED"),
])
async def test_status_bar_says_which_backend_runs_the_code(backend: dict, said: str) -> None:
    events, mid = sample_events()
    events = [ev.Event(e.kind, e.node, e.parent, dict(e.data, kernel_backend=backend), e.seq, e.t)
              if e.kind == ev.RUN_STARTED else e for e in events[:mid]]
    app = RlmApp(theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=(200, 45)) as pilot:
        app.feed(events)
        await pilot.pause()
        assert said in shown(app.query_one(StatusBar))
