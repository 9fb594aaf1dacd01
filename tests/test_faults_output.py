"""A flood of output: the model sees a cut, the host's memory and the session file stay small."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env, fence, run_script
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.scripted import ScriptedServer, turn_of

pytestmark = pytest.mark.kernel

# Runs the real CLI, then reports the host process's peak memory (the kernel is another process).
MEASURE = """
import resource, sys
from rlm_tui.cli import main
code = main(sys.argv[1:])
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def _peak_kb(code: str, corpus: Path, session: Path) -> tuple[int, str]:
    def script(messages, model):
        return fence(code) if turn_of(messages) == 1 else "FINAL(done)"

    with ScriptedServer(script) as server:
        proc = subprocess.run(
            [PYTHON, "-c", MEASURE, str(corpus), "q", "--headless", "--model", "openai/scripted",
             "--api-base", server.url, "--session", str(session), "--output-chars", "5000"],
            capture_output=True, text=True, timeout=300, env=cli_env(OPENAI_API_KEY="sk-test-measure"))
        fed = server.requests[-1]["messages"][-1]["content"]
    assert proc.returncode == 0, proc.stderr
    peak = int(proc.stderr.split("MAXRSS_KB")[1].split()[0])
    return peak, fed


def test_100_mb_print_keeps_host_memory_and_session_small(corpus: Path, tmp_path: Path) -> None:
    small, _ = _peak_kb("print('x' * 1000)", corpus, tmp_path / "small.jsonl")
    big, fed = _peak_kb("print('x' * 100_000_000)\nfor i in range(20_000):\n    print('y' * 99)",
                        corpus, tmp_path / "big.jsonl")
    print("peak host memory, KB:", small, big)
    assert big - small < 60_000, (small, big)  # KB: nowhere near the 102 MB printed
    assert "[... 101,995,001 more characters]" in fed and len(fed) < 10_000
    session = tmp_path / "big.jsonl"
    assert session.stat().st_size < 200_000
    finished = [e for e in load(session).events if e.kind == ev.CELL_FINISHED][0]
    assert finished.get("output_chars") == 102_000_001 and finished.get("truncated_chars") == 101_995_001


async def test_huge_result_and_traceback_are_cut(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence("'r' * 30_000_000")
        fed.append(messages[-1]["content"])
        if turn == 2:
            return fence("raise ValueError('e' * 30_000_000)")
        fed.append(messages[-1]["content"])
        return "FINAL(done)"

    run = await run_script(script, corpus, tmp_path, output_chars=2000)
    assert run.result.answer == "done"
    assert all(len(text) < 20_000 for text in fed), [len(t) for t in fed]
    assert "more characters]" in fed[0]
    assert "ValueError" in fed[1] and "characters cut" in fed[1]
    assert (tmp_path / "session.jsonl").stat().st_size < 200_000
    assert json.loads((tmp_path / "session.jsonl").read_text().splitlines()[-1])["kind"] == "run_finished"
