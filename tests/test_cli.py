"""The command-line contract: outputs, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env, fence
from rlm_tui.core.session import load
from rlm_tui.scripted import ScriptedServer, is_rlm_call, turn_of


KEYS = ("sk-cli-test-key-9876", "sk-never-on-disk-5555")  # the keys the tests pass with --api-key


def answer_script(messages, model):
    if not is_rlm_call(messages):
        return "sub"
    if turn_of(messages) == 1:  # the model writes the keys into its code: the output must not show them
        return fence(f"print(llm_query('hi'), {KEYS!r})")
    return "FINAL(forty-two)"


def rlm_tui(*args: str, input: str | None = None, timeout: float = 120,
            **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "rlm_tui", *args], capture_output=True, text=True, input=input,
                          env=cli_env(**env), timeout=timeout)


@pytest.fixture
def server():
    with ScriptedServer(answer_script) as srv:
        yield srv


@pytest.mark.kernel
def test_headless_answer_on_stdout_progress_on_stderr(corpus: Path, tmp_path: Path, server) -> None:
    session = tmp_path / "s.jsonl"
    proc = rlm_tui(str(corpus), "q?", "--headless", "--model", "openai/scripted", "--api-base", server.url,
                   "--api-key", "sk-cli-test-key-9876", "--session", str(session))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "forty-two\n"
    assert "turn 1" in proc.stderr and "finished: 1 sub-calls" in proc.stderr
    assert "Traceback" not in proc.stderr
    text = session.read_text()
    assert "sub ('[REDACTED]', 'sk-never-on-disk-5555')" in text  # only the key given is known and redacted
    assert "sk-cli-test-key-9876" not in text + proc.stdout + proc.stderr


@pytest.mark.kernel
def test_headless_json_object(corpus: Path, tmp_path: Path, server) -> None:
    session = tmp_path / "s.jsonl"
    proc = rlm_tui(str(corpus), "q?", "--headless", "--json", "--model", "openai/scripted",
                   "--sub-model", "openai/scripted-sub", "--api-base", server.url, "--session", str(session))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] == "forty-two"
    assert out["calls"] == 1 and out["stopped_by"] is None and out["session"] == str(session)
    assert out["usage"]["total_tokens"] > 0 and out["usage"]["cost_usd"] == 0
    assert set(out["usage"]["per_model"]) == {"openai/scripted", "openai/scripted-sub"}


@pytest.mark.kernel
def test_headless_run_through_litellm_itself(corpus: Path, tmp_path: Path, server) -> None:
    """Providers other than an OpenAI-compatible --api-base go through litellm: the same run, that path."""
    proc = rlm_tui(str(corpus), "q?", "--headless", "--json", "--model", "openai/gpt-4o-mini", "--api-base",
                   server.url, "--session", str(tmp_path / "s.jsonl"), RLM_TUI_LITELLM_ONLY="1")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] == "forty-two" and out["calls"] == 1
    assert out["usage"]["cost_usd"] > 0  # litellm's price map knows this model
    assert len(server.requests) == 3 and server.requests[0]["stream"] is True


@pytest.mark.kernel
def test_stdin_context(tmp_path: Path) -> None:
    """Standard input is copied to a 0600 temporary file while the run goes, removed at the end."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    modes: dict[str, int] = {}

    def script(messages, model):
        if turn_of(messages) == 1:
            modes.update({p.name: p.stat().st_mode & 0o777 for p in tmp.glob("rlm-tui-stdin-*")})
            return fence("print(context.upper())")
        return "FINAL(" + messages[-1]["content"].split("\n")[1] + ")"

    with ScriptedServer(script) as srv:
        proc = rlm_tui("-", "shout", "--headless", "--model", "openai/s", "--api-base", srv.url,
                       "--session", str(tmp_path / "s.jsonl"), input="from stdin", TMPDIR=str(tmp))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "FROM STDIN"
    assert list(modes.values()) == [0o600], modes
    assert list(tmp.iterdir()) == []


def test_stdin_closed_is_a_usage_error(tmp_path: Path, server) -> None:
    """`rlm-tui - q <&-` (CI steps and daemons may have no fd 0): one line, not a traceback."""
    proc = subprocess.run([PYTHON, "-m", "rlm_tui", "-", "q", "--headless", "--model", "openai/s", "--api-base",
                           server.url, "--session", str(tmp_path / "s.jsonl")], capture_output=True, text=True,
                          env=cli_env(), timeout=60, preexec_fn=lambda: os.close(0))
    assert proc.returncode == 2
    assert proc.stderr == "rlm-tui: PATH is - but there is no standard input (it is closed)\n"
    assert not (tmp_path / "s.jsonl").exists()


@pytest.mark.kernel
def test_limit_without_answer_exits_3(corpus: Path, tmp_path: Path) -> None:
    with ScriptedServer(lambda m, model: fence("print(1)")) as srv:
        proc = rlm_tui(str(corpus), "q", "--headless", "--json", "--model", "openai/s", "--api-base", srv.url,
                       "--max-tokens", "10", "--session", str(tmp_path / "s.jsonl"))
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["stopped_by"] == "max_tokens"
    assert proc.stderr.strip().splitlines()[-1] == "rlm-tui: stopped by max_tokens without an answer"


@pytest.mark.parametrize("args, message", [
    (["/no/such/dir", "q", "--headless"], "no such file or directory: /no/such/dir"),
    (["x", "q", "--headless", "--max-depth", "0"], "must be at least 1"),
    (["x", "q", "--headless", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["x", "q", "--json"], "--json needs --headless"),
    (["x", "--headless"], "--headless needs a QUESTION"),
    (["x", " ", "--headless"], "--headless needs a QUESTION"),
])
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    proc = rlm_tui(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.kernel
def test_empty_directory_is_a_usage_error(tmp_path: Path, server) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blob.bin").write_bytes(b"\x00\x01")
    proc = rlm_tui(str(empty), "q", "--headless", "--model", "openai/s", "--api-base", server.url,
                   "--session", str(tmp_path / "s.jsonl"))
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("(skipped: 1 binary)")
    assert "Traceback" not in proc.stderr


@pytest.mark.kernel
def test_unwritable_session_path_is_a_clear_error(corpus: Path, tmp_path: Path, server) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    target = locked / "file-not-dir"
    target.write_text("")
    proc = rlm_tui(str(corpus), "q", "--headless", "--model", "openai/s", "--api-base", server.url,
                   "--session", str(target / "s.jsonl"))
    assert proc.returncode == 2
    assert "cannot write the session file" in proc.stderr


@pytest.mark.kernel
def test_headless_run_never_imports_textual(corpus: Path, tmp_path: Path, server) -> None:
    code = (
        "import sys\nfrom rlm_tui.cli import main\n"
        f"rc = main([{str(corpus)!r}, 'q', '--headless', '--model', 'openai/s', '--api-base', {server.url!r},"
        f" '--session', {str(tmp_path / 's.jsonl')!r}])\n"
        "assert rc == 0, rc\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print('textual modules:', bad)\n"
    )
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "textual modules: []" in proc.stdout


@pytest.mark.kernel
def test_session_file_reads_back(corpus: Path, tmp_path: Path, server) -> None:
    session = tmp_path / "s.jsonl"
    proc = rlm_tui(str(corpus), "q?", "--headless", "--model", "openai/scripted", "--api-base", server.url,
                   "--api-key", "sk-never-on-disk-5555", "--session", str(session))
    assert proc.returncode == 0, proc.stderr
    assert session.stat().st_mode & 0o777 == 0o600
    loaded = load(session)
    assert not loaded.bad_lines
    kinds = [e.kind for e in loaded.events]
    assert kinds[0] == "session" and loaded.events[0].get("version") == 1
    assert kinds[1] == "run_started" and kinds[-1] == "run_finished"
    started = loaded.events[1]
    assert started.get("settings")["api_key_set"] is True and "api_key" not in started.get("settings")
    assert loaded.events[-1].get("answer") == "forty-two"
    assert [e.seq for e in loaded.events[1:]] == list(range(1, len(loaded.events)))
    assert "sub ('sk-cli-test-key-9876', '[REDACTED]')" in session.read_text()
    assert "sk-never-on-disk-5555" not in session.read_text() + proc.stdout + proc.stderr


@pytest.mark.kernel
async def test_output_into_a_closed_pipe_is_not_an_error(corpus: Path, tmp_path: Path) -> None:
    from conftest import run_script

    def script(messages, model):
        if turn_of(messages) == 1:
            return fence("print('line\\n' * 100_000)")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path, output_chars=500_000)  # more than a pipe buffer
    proc = subprocess.Popen([PYTHON, "-m", "rlm_tui", "replay", str(run.result.session), "--headless", "--full"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in proc.stderr.read().decode()
