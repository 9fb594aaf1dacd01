"""Session-file trouble: an unwritable path fails at start; a disk that fills mid-run only stops recording."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env, fence, run_script
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.scripted import ScriptedServer, turn_of


def _two_turns(messages, model):
    return fence("print(len(context))") if turn_of(messages) == 1 else "FINAL(ok)"


def _cli(corpus: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    with ScriptedServer(_two_turns) as server:
        return subprocess.run([PYTHON, "-m", "rlm_tui", str(corpus), "q", "--headless", "--model",
                               "openai/scripted", "--api-base", server.url, *args],
                              capture_output=True, text=True, timeout=300,
                              env=env or cli_env(OPENAI_API_KEY="sk-test-disk"))


def _one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("rlm-tui: cannot write the session file") and needle in proc.stderr


def test_session_path_under_a_file(corpus: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    _one_line_error(_cli(corpus, "--session", str(blocker / "s.jsonl")), f"{blocker} is not a directory")


def test_sessions_folder_that_cannot_be_made(corpus: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "data-home"
    blocker.write_text("")  # the default folder would be data-home/rlm-tui/sessions
    proc = _cli(corpus, env=cli_env(OPENAI_API_KEY="sk-test-disk", XDG_DATA_HOME=str(blocker)))
    _one_line_error(proc, f"{blocker} is not a directory")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_at_start(corpus: Path) -> None:
    mode = os.stat("/dev/full").st_mode
    _one_line_error(_cli(corpus, "--session", "/dev/full"), "No space left on device")
    assert os.stat("/dev/full").st_mode == mode  # a device is never chmod-ed


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.kernel
async def test_disk_full_mid_run_warns_and_the_run_continues(corpus: Path, tmp_path: Path) -> None:
    session = tmp_path / "session.jsonl"

    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence("print('first cell')")
        if turn == 2:  # the disk "fills": every later write to the session file fails with ENOSPC
            full = os.open("/dev/full", os.O_WRONLY)
            for fd in os.listdir("/proc/self/fd"):
                try:
                    if os.readlink(f"/proc/self/fd/{fd}") == str(session):
                        os.dup2(full, int(fd))
                except OSError:
                    pass
            os.close(full)
            return fence("print('second cell')")
        return "FINAL(finished anyway)"

    run = await run_script(script, corpus, tmp_path)
    assert run.result.answer == "finished anyway" and run.result.error is None
    warnings = [e.get("message") for e in run.kinds(ev.WARNING)]
    assert any(m.startswith("recording stopped: cannot write") and "No space left" in m for m in warnings)
    loaded = load(session)
    assert loaded.bad_lines == []
    assert "first cell" in session.read_text() and "second cell" not in session.read_text()
