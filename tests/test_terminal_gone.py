"""The app exits when its terminal goes away (a window closed, tmux killed), mid-run or after the answer.

The terminal is a real pseudo-terminal; closing its master side is what a terminal emulator does
when its window closes: the kernel sends SIGHUP, and the terminal can no longer be written.
Textual's last writes (restoring the terminal) then block for ever; the app must still exit, with
the run stopped, its kernels shut down and the session file closed.
"""

from __future__ import annotations

import os
import pty
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from procs import alive, descendants, drain, kernels_of

pytestmark = [pytest.mark.ui, pytest.mark.kernel]

DEADLINE_S = 60.0  # a guard against hanging; the exit is expected within seconds of the stop


def _session(tmp_path: Path) -> Path | None:
    found = list((tmp_path / "data" / "rlm-tui" / "sessions").glob("*.jsonl"))
    return found[0] if found else None


def _finished(tmp_path: Path) -> bool:
    path = _session(tmp_path)
    return path is not None and any(e.kind == ev.RUN_FINISHED for e in load(path).events)


@pytest.mark.parametrize("when", ["mid-run", "after the answer"])
def test_closing_the_terminal_ends_the_app(when: str, tmp_path: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command in a real (pseudo) terminal, SIGHUP as a terminal sends it
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"),
                          TERM="xterm-256color", LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=str(ROOT))
        os.execv(PYTHON, [PYTHON, "-m", "rlm_tui", "demo", "--pace", "1" if when == "mid-run" else "0"])
    reader = threading.Thread(target=drain, args=(fd,), daemon=True)  # a terminal nobody reads blocks
    reader.start()
    kernels: list[int] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            kernels = kernels_of(descendants(pid)) or kernels
            if (when == "mid-run" and kernels) or (when == "after the answer" and _finished(tmp_path)):
                break
            time.sleep(0.1)
        assert kernels, "the demo never started a kernel"
        closed = time.monotonic()
        os.close(fd)  # the window closes
        status = None
        while time.monotonic() - closed < DEADLINE_S:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        exited_after = time.monotonic() - closed
        assert status is not None and done, f"the app was still running {DEADLINE_S:g} s after its terminal closed"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert exited_after < 30
    assert not any(alive(k) for k in kernels)
    session = _session(tmp_path)
    assert session is not None
    last = load(session).events[-1]
    assert last.kind == ev.RUN_FINISHED
    if when == "mid-run":
        assert last.get("stopped_by") == "interrupted"
    else:
        assert last.get("answer")

