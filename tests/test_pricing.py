"""Prices and windows read from litellm's price-map file agree with litellm; direct-path runs never import it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env, fence
from rlm_tui.core import pricing
from rlm_tui.scripted import ScriptedServer, turn_of

MODELS = ["openai/gpt-5-mini", "openai/gpt-5", "openai/gpt-4o-mini", "gpt-4o-mini",
          "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "mistral/mistral-large-latest"]


@pytest.mark.parametrize("model", MODELS)
def test_cost_and_window_match_litellm(model: str) -> None:
    import litellm

    cost_in, cost_out = litellm.cost_per_token(model=model, prompt_tokens=1234, completion_tokens=567)
    assert pricing.cost(model, 1234, 567) == pytest.approx(cost_in + cost_out, rel=1e-9)
    assert pricing.window(model) == litellm.get_model_info(model)["max_input_tokens"]


def test_unknown_models_have_no_price_and_no_window() -> None:
    assert pricing.cost("openai/scripted", 10, 10) is None and pricing.window("openai/scripted") is None
    assert pricing.cost("anthropic/gpt-5-mini", 10, 10) is None  # a known name under another provider


@pytest.mark.kernel
def test_a_run_against_an_openai_compatible_server_never_imports_litellm(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")

    def script(messages, model):
        return fence("print(len(context))") if turn_of(messages) == 1 else "FINAL(ok)"

    probe = ("import sys, runpy\nsys.argv = ['rlm-tui'] + sys.argv[1:]\n"
             "from rlm_tui.cli import main\ncode = main()\n"
             "print('LITELLM', 'litellm' in sys.modules, code)\n")
    with ScriptedServer(script) as server:
        proc = subprocess.run([PYTHON, "-c", probe, str(tmp_path / "notes.txt"), "q", "--headless", "--json",
                               "--model", "openai/gpt-4o-mini", "--api-base", server.url,
                               "--session", str(tmp_path / "s.jsonl")],
                              capture_output=True, text=True, timeout=300, env=cli_env(OPENAI_API_KEY="sk-test"))
    out = proc.stdout.splitlines()
    assert out[-1] == "LITELLM False 0", proc.stdout + proc.stderr
    assert json.loads(out[0])["usage"]["cost_usd"] > 0  # priced from the map file all the same
