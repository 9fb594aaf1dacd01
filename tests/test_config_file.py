"""config.toml under $XDG_CONFIG_HOME: what it may set, what overrides it, and one-line errors.

Through the real CLI with a real file. Model precedence is read from the preflight's refusal
(it names the model it checked) so those cases need no kernel; limits are read from a real
run's session file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env, fence
from rlm_tui.cli.run import build_parser, settings_from
from rlm_tui.core.config import OPTIONS, Limits
from rlm_tui.core.session import load
from rlm_tui.scripted import ScriptedServer, is_rlm_call, turn_of

NO_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "XAI_API_KEY", "RLM_TUI_MODEL")


def rlm_tui(config_home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in cli_env(XDG_CONFIG_HOME=str(config_home)).items() if k not in NO_KEYS}
    full.update(env)
    return subprocess.run([PYTHON, "-m", "rlm_tui", *args], capture_output=True, text=True, env=full, timeout=120)


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    (tmp_path / "xdg" / "rlm-tui").mkdir(parents=True)
    return tmp_path / "xdg"


def write(config_home: Path, text: str) -> Path:
    path = config_home / "rlm-tui" / "config.toml"
    path.write_text(text)
    return path


def test_model_precedence_flag_env_file_default(config_home: Path, corpus: Path) -> None:
    def refused_model(*args: str, **env: str) -> str:
        proc = rlm_tui(config_home, str(corpus), "q", "--headless", *args, **env)
        assert proc.returncode == 2, proc.stderr
        return proc.stderr.split("no API key for ", 1)[1].split(":", 1)[0]

    assert refused_model() == "openai/gpt-5-mini"  # no file: the built-in default
    write(config_home, 'model = "anthropic/from-file"\n')
    assert refused_model() == "anthropic/from-file"
    assert refused_model(RLM_TUI_MODEL="groq/from-env") == "groq/from-env"
    assert refused_model("--model", "xai/from-flag", RLM_TUI_MODEL="groq/from-env") == "xai/from-flag"


def test_sub_model_and_api_base_from_the_file(config_home: Path, corpus: Path) -> None:
    with ScriptedServer(lambda m, model: "FINAL(x)") as server:
        write(config_home, f'model = "openai/scripted"\napi_base = "{server.url}"\nsub_model = "groq/sub"\n')
        proc = rlm_tui(config_home, str(corpus), "q", "--headless")
    assert proc.returncode == 2
    assert proc.stderr == "rlm-tui: no API key for groq/sub: set GROQ_API_KEY or pass --api-key\n"


@pytest.mark.kernel
def test_limits_from_the_file_and_flags_over_them(config_home: Path, corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "sub"
        return fence("print(llm_query('hi'))") if turn_of(messages) == 1 else "FINAL(ok)"

    with ScriptedServer(script) as server:
        write(config_home, f'# my defaults\nmodel = "openai/scripted"\napi_base = "{server.url}"\n'
                           'max_depth = 3\nmax_iterations = 7\nbudget = 2\noutput_chars = 1234\n'
                           'cell_timeout = 45.5\napprove = "ask"\nstep = "cell"\ntheme = "rlm-paper"\n')
        session = tmp_path / "s.jsonl"
        proc = rlm_tui(config_home, str(corpus), "q", "--headless", "--max-depth", "2", "--session", str(session))
    assert proc.returncode == 0, proc.stderr
    settings = next(e for e in load(session).events if e.kind == "run_started").get("settings")
    limits = settings["limits"]
    assert limits["max_depth"] == 2  # the flag
    assert (limits["max_iterations"], limits["budget"], limits["output_chars"], limits["cell_timeout"]) == \
        (7, 2.0, 1234, 45.5)  # the file
    assert limits["max_subcalls"] == Limits().max_subcalls  # the default
    assert settings["model"] == "openai/scripted" and settings["api_base"] == server.url
    # approve = "ask" and step = "cell" are UI preferences: a --headless run has nobody to ask
    assert settings["approve"] == "auto" and settings["step"] == "off"


def test_file_approve_and_step_apply_to_ui_runs_and_deny_to_headless(config_home: Path) -> None:
    parser = build_parser()
    ui = settings_from(parser.parse_args(["p", "q"]), {"approve": "ask", "step": "cell"})
    assert (ui.approve, ui.step) == ("ask", "cell")
    headless = settings_from(parser.parse_args(["p", "q", "--headless"]), {"approve": "deny", "step": "cell"})
    assert (headless.approve, headless.step) == ("deny", "off")
    flag = settings_from(parser.parse_args(["p", "q", "--approve", "auto"]), {"approve": "ask"})
    assert flag.approve == "auto"


@pytest.mark.parametrize("text, message", [
    ("max_iteration = 3\n", "unknown key 'max_iteration' (did you mean max_iterations?)"),
    ("colour = 'red'\n", "unknown key 'colour' (known keys: " + ", ".join(o.name for o in OPTIONS) + ")"),
    ("[limits]\nbudget = 2\n", "unknown key 'limits' (known keys: " + ", ".join(o.name for o in OPTIONS) + ")"),
    ("max_depth = 0\n", "max_depth must be at least 1"),
    ("max_depth = 2.5\n", "max_depth must be a whole number of at least 1 (got 2.5)"),
    ("max_depth = true\n", "max_depth must be a whole number of at least 1 (got True)"),
    ("budget = -1\n", "budget must be greater than 0"),
    ("budget = 'lots'\n", "budget must be a number greater than 0 (got 'lots')"),
    ("model = 5\n", "model must be a non-empty string"),
    ("approve = 'sometimes'\n", "approve must be one of ask, rlm, auto, deny (got 'sometimes')"),
    ("model = \n", "not valid TOML: Invalid value (at line 1, column 9)"),
    ('api_key = "sk-file-secret-123"\n', "api_key is not read from a config file: API keys stay in the "
     "environment (e.g. OPENAI_API_KEY) or --api-key"),
], ids=["typo", "unknown", "table", "zero", "float-for-int", "bool", "negative", "text-for-number", "not-text",
        "bad-choice", "malformed", "api-key"])
def test_bad_file_is_one_line_naming_file_and_key(config_home: Path, corpus: Path, tmp_path: Path, text: str,
                                                   message: str) -> None:
    path = write(config_home, text)
    session = tmp_path / "s.jsonl"
    proc = rlm_tui(config_home, str(corpus), "q", "--headless", "--session", str(session))
    assert proc.returncode == 2
    assert proc.stderr == f"rlm-tui: {path}: {message}\n"
    assert not session.exists()
    assert "sk-file-secret-123" not in proc.stderr


def test_flag_validation_is_the_file_validation(config_home: Path) -> None:
    proc = rlm_tui(config_home, "x", "q", "--headless", "--max-depth", "2.5")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == ("rlm-tui: error: argument --max-depth: must be a whole number of "
                                            "at least 1 (got '2.5')")


def test_help_mentions_the_config_file(config_home: Path) -> None:
    proc = rlm_tui(config_home, "--help")
    assert proc.returncode == 0
    assert "~/.config/rlm-tui/config.toml" in proc.stdout and "$XDG_CONFIG_HOME" in proc.stdout


def test_bare_command_prints_a_short_usage(config_home: Path) -> None:
    proc = rlm_tui(config_home)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert 3 <= len(lines) <= 6
    assert "rlm-tui demo" in proc.stderr and "rlm-tui --help" in proc.stderr


def test_the_ui_keeps_its_theme_line_in_a_file_the_cli_reads(config_home: Path, corpus: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The UI rewrites only `theme`; the file stays valid for the CLI (no key the reader refuses)."""
    from rlm_tui.ui import prefs

    write(config_home, 'model = "anthropic/kept"\nmax_iterations = 4\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    prefs.save_theme_name("rlm-paper")
    assert prefs.config_path() == config_home / "rlm-tui" / "config.toml"
    proc = rlm_tui(config_home, str(corpus), "q", "--headless")
    assert proc.stderr == "rlm-tui: no API key for anthropic/kept: set ANTHROPIC_API_KEY or pass --api-key\n"
    assert json.dumps("rlm-paper") in (config_home / "rlm-tui" / "config.toml").read_text()
