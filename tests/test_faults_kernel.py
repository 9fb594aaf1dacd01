"""Kernel faults survived: death mid-cell, endless cells, SIGINT-proof cells, floods of output.

Real Jupyter kernels and real litellm against the scripted loopback model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import fence, run_script
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.scripted import turn_of

pytestmark = pytest.mark.kernel

KILLERS = {
    "os_exit": "import os\nos._exit(3)",
    "segfault": "import ctypes\nctypes.string_at(0)",
    "sigkill": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.mark.parametrize("how", sorted(KILLERS))
async def test_kernel_death_is_survived(how: str, corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence("kept = 41\nprint('before')")
        if turn == 2:
            return fence(KILLERS[how])
        fed.append(messages[-1]["content"])
        if turn == 3:
            return fence("print(type(context).__name__, len(context), 'kept' in globals())")
        fed.append(messages[-1]["content"])
        return "FINAL(survived)"

    run = await run_script(script, corpus, tmp_path, cell_timeout=120)
    assert run.result.answer == "survived" and run.result.error is None
    died = [e for e in run.kinds(ev.CELL_FINISHED) if e.get("status") == "died"]
    assert len(died) == 1
    assert died[0].get("duration_s") < 10  # noticed by polling, not by the 120 s cell timeout
    states = [e.get("state") for e in run.kinds(ev.KERNEL)]
    assert "dead" in states and "restarting" in states
    assert "kernel died" in fed[0]  # the model is told, as the cell's output
    assert "dict 22 False" in fed[1]  # a fresh kernel: context reloaded, old variables gone
    assert "kernel died" in run.cell_text()  # the transcript shows it too
    assert load(tmp_path / "session.jsonl").bad_lines == []


async def test_repeated_deaths_stop_the_run_cleanly(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        return fence(KILLERS["os_exit"])

    run = await run_script(script, corpus, tmp_path)
    assert run.result.answer is None
    assert run.result.stopped_by == "kernel_deaths"
    assert "died 3 times in a row" in (run.result.error or "")
    finished = run.kinds(ev.RUN_FINISHED)
    assert len(finished) == 1 and finished[0].get("stopped_by") == "kernel_deaths"
    assert len([e for e in run.kinds(ev.CELL_FINISHED) if e.get("status") == "died"]) == 3
    assert load(tmp_path / "session.jsonl").events[-1].kind == ev.RUN_FINISHED


async def test_endless_cell_is_interrupted_at_cell_timeout(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence("kept = 41\nwhile True:\n    pass")
        fed.append(messages[-1]["content"])
        if turn == 2:
            return fence("print('still here', kept + 1)")
        fed.append(messages[-1]["content"])
        return "FINAL(done)"

    run = await run_script(script, corpus, tmp_path, cell_timeout=2)
    assert run.result.answer == "done"
    first = run.kinds(ev.CELL_FINISHED)[0]
    assert first.get("status") == "timeout" and first.get("duration_s") < 30
    assert "stopped after 2 s" in fed[0] and "KeyboardInterrupt" in fed[0]
    assert "still here 42" in fed[1]  # an interrupt keeps the kernel and its variables


async def test_cell_ignoring_sigint_gets_a_restarted_kernel(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")
        fed.append(messages[-1]["content"])
        if turn == 2:
            return fence("print('fresh', type(context).__name__)")
        fed.append(messages[-1]["content"])
        return "FINAL(done)"

    run = await run_script(script, corpus, tmp_path, cell_timeout=2)
    assert run.result.answer == "done"
    assert run.kinds(ev.CELL_FINISHED)[0].get("status") == "timeout"
    assert "ignored the interrupt" in fed[0] and "restarted" in fed[0]
    assert "fresh dict" in fed[1]
    assert "restarting" in [e.get("state") for e in run.kinds(ev.KERNEL)]


def test_three_kernel_deaths_exit_1_in_the_cli(corpus: Path, tmp_path: Path) -> None:
    import json
    import subprocess

    from conftest import PYTHON, cli_env
    from rlm_tui.scripted import ScriptedServer

    with ScriptedServer(lambda messages, model: fence("import os\nos._exit(3)")) as server:
        proc = subprocess.run([PYTHON, "-m", "rlm_tui", str(corpus), "q", "--headless", "--json", "--model",
                               "openai/scripted", "--api-base", server.url, "--session", str(tmp_path / "s.jsonl")],
                              capture_output=True, text=True, timeout=240, env=cli_env())
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["stopped_by"] == "kernel_deaths"
    assert proc.stderr.strip().splitlines()[-1] == "rlm-tui: the kernel died 3 times in a row; stopping this RLM"
