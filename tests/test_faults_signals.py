"""Ctrl+C and SIGTERM on the headless CLI: no orphan kernels, an "interrupted" session that replays."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import PYTHON, cli_env, fence, sigint_default
from procs import alive, descendants, kernels_of
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.model.tree import CallTree
from rlm_tui.scripted import ScriptedServer, is_rlm_call

pytestmark = pytest.mark.kernel


def _script(messages, model):
    if not is_rlm_call(messages):
        return "sub"
    return fence("import time\nprint('sleeping', flush=True)\ntime.sleep(600)")


def _start(corpus: Path, session: Path, server: ScriptedServer,
           preexec: Callable[[], None]) -> subprocess.Popen[str]:
    # Its own temporary folder (next to the session): a host killed with -9 cannot remove its own.
    tmp = session.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    return subprocess.Popen([PYTHON, "-m", "rlm_tui", str(corpus), "q", "--headless", "--model",
                             "openai/scripted", "--api-base", server.url, "--session", str(session),
                             "--max-depth", "2"],  # depth 2 keeps warm spare kernels too
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(OPENAI_API_KEY="sk-test-signals", TMPDIR=str(tmp)), preexec_fn=preexec)


def _wait_for_cell(session: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if session.exists() and '"sleeping' in session.read_text():
            return
        time.sleep(0.2)
    raise AssertionError("the run never reached its sleeping cell")


def _wait_gone(pids: set[int], within: float) -> set[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    return {p for p in pids if alive(p)}


def _interrupt_mid_cell(corpus: Path, session: Path, act: Callable[[subprocess.Popen[str]], None],
                        preexec: Callable[[], None] = sigint_default) -> tuple[int, set[int], str]:
    """Start a run, wait for its sleeping cell, ``act`` on the process; (exit code, its kernels, stderr).

    ``preexec`` sets the child's signal state (default: SIGINT as from a terminal, whatever ours is).
    """
    with ScriptedServer(_script) as server:
        proc = _start(corpus, session, server, preexec)
        try:
            _wait_for_cell(session, proc)
            kernels = kernels_of(descendants(proc.pid))
            act(proc)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    return proc.returncode, kernels, err


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["ctrl-c", "sigterm", "sighup"])
def test_signal_shuts_kernels_down_and_records_interrupted(sig: int, code: int, corpus: Path,
                                                           tmp_path: Path) -> None:
    session = tmp_path / "s.jsonl"
    returncode, kernels, err = _interrupt_mid_cell(corpus, session, lambda proc: proc.send_signal(sig))
    assert returncode == code, err
    assert len(kernels) >= 2  # the root's kernel and a warm spare
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("rlm-tui: interrupted; session saved to")
    assert _wait_gone(kernels, within=10) == set()
    assert list((tmp_path / "tmp").iterdir()) == []  # the kernel-log folder is removed at the end
    loaded = load(session)
    assert loaded.bad_lines == []
    last = loaded.events[-1]
    assert last.kind == ev.RUN_FINISHED and last.get("stopped_by") == "interrupted"
    tree = CallTree()
    tree.extend(loaded.events)  # it replays: the tree folds from the file
    assert tree.nodes[tree.root].status == "killed"


def test_started_with_sigint_ignored_it_stays_ignored_and_sigterm_stops_it(corpus: Path, tmp_path: Path) -> None:
    """A background job of a script starts with SIGINT ignored (POSIX) so the terminal's Ctrl+C
    spares it; rlm-tui keeps that, as Unix programs do, and a plain `kill` (SIGTERM) stops it cleanly."""
    def ctrl_c_then_kill(proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGINT)
        time.sleep(1.5)
        assert proc.poll() is None, "SIGINT stopped a run that was started with SIGINT ignored"
        proc.send_signal(signal.SIGTERM)

    session = tmp_path / "s.jsonl"
    returncode, kernels, err = _interrupt_mid_cell(corpus, session, ctrl_c_then_kill,
                                                   preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("rlm-tui: interrupted; session saved to")
    assert _wait_gone(kernels, within=10) == set()
    assert load(session).events[-1].get("stopped_by") == "interrupted"


def test_kill_9_leaves_no_orphan_kernels(corpus: Path, tmp_path: Path) -> None:
    """Even a host killed without a chance to clean up: each kernel watches its parent and exits."""
    session = tmp_path / "s.jsonl"
    _, kernels, _ = _interrupt_mid_cell(corpus, session, lambda proc: proc.kill())
    assert kernels
    assert _wait_gone(kernels, within=30) == set()
    loaded = load(session)  # a torn last line at worst; everything before it reads
    assert loaded.events[0].kind == ev.SESSION and len(loaded.bad_lines) <= 1
    assert json.loads(session.read_text().splitlines()[1])["kind"] == ev.RUN_STARTED


async def test_cancelled_twice_the_run_still_shuts_down_and_records_its_end(corpus: Path, tmp_path: Path) -> None:
    """Two quit paths (a signal's watchdog and the app's own quit; Ctrl+C pressed twice) cancel twice."""
    from rlm_tui.core.config import Limits, Settings
    from rlm_tui.core.engine import Engine
    from rlm_tui.core.session import load

    with ScriptedServer(_script) as server:
        settings = Settings(model="openai/scripted", api_base=server.url, api_key="sk-test-twice",
                            limits=Limits(), session_path=tmp_path / "s.jsonl")
        engine = Engine(settings, "q", corpus)
        task = asyncio.ensure_future(engine.run())
        while not (tmp_path / "s.jsonl").exists() or not any(
                e.kind == "cell_started" for e in load(tmp_path / "s.jsonl").events):
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0)  # the engine begins to wind down...
        for _ in range(20):  # ...and is cancelled again while it shuts its kernels down
            await asyncio.sleep(0.01)
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    last = load(tmp_path / "s.jsonl").events[-1]
    assert last.kind == "run_finished" and last.get("stopped_by") == "interrupted"
