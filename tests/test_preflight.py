"""Fail fast: a run that cannot reach its models stops in one line, before anything is created.

Each case runs the real CLI in a subprocess with a clean environment (no provider keys), its
own HOME, XDG folders and TMPDIR, so "nothing left behind" is checked on real folders.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PYTHON, cli_env, fence
from rlm_tui.core import preflight
from rlm_tui.core.config import Settings
from rlm_tui.scripted import ScriptedServer

#: The real CLI's main, then whether litellm was imported (stdout), so a test sees the import it must avoid.
DRIVER = ("import sys\nfrom rlm_tui.cli import main\nrc = main(sys.argv[1:])\n"
          "print('litellm imported' if 'litellm' in sys.modules else 'litellm not imported')\nsys.exit(rc)")
KEY_NAMES = {name for names in preflight.KEY_VARS.values() for name in names} | {"RLM_TUI_MODEL", "OLLAMA_API_BASE"}


class Home:
    """A private HOME, XDG folders and TMPDIR for one CLI run, and what the run left in them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.data = root / "data"
        root.mkdir()
        for folder in (self.tmp, self.data, root / "home", root / "config"):
            folder.mkdir()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in cli_env().items() if k not in KEY_NAMES}
        env.update(HOME=str(self.root / "home"), XDG_DATA_HOME=str(self.data),
                   XDG_CONFIG_HOME=str(self.root / "config"), TMPDIR=str(self.tmp), **extra)
        return env

    def left_behind(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in (*self.tmp.iterdir(), *self.data.rglob("*")))

    def run(self, *args: str, input: str | None = None, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.perf_counter()
        proc = subprocess.run([PYTHON, "-c", DRIVER, *args], capture_output=True, text=True, input=input,
                              env=self.env(**env), timeout=120)
        return proc, time.perf_counter() - started


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home-root")


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A 127.0.0.1 port nobody listens on (bound, never listening: connections are refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections (the backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


def assert_refused(proc: subprocess.CompletedProcess[str], seconds: float, home: Home, message: str,
                   within: float = 3.0) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"rlm-tui: {message}\n"  # exactly one line
    assert home.left_behind() == []  # no session file, no rlm-tui-* folder, no stdin copy
    assert seconds < within, seconds


@pytest.mark.parametrize("args, message", [
    ([], "no API key for openai/gpt-5-mini: set OPENAI_API_KEY or pass --api-key"),
    (["--model", "anthropic/claude-sonnet-4-5"],
     "no API key for anthropic/claude-sonnet-4-5: set ANTHROPIC_API_KEY or pass --api-key"),
    (["--model", "gemini/gemini-2.5-flash"], "no API key for gemini/gemini-2.5-flash: set GEMINI_API_KEY or pass --api-key"),
    (["--model", "openrouter/x/y"], "no API key for openrouter/x/y: set OPENROUTER_API_KEY or pass --api-key"),
    (["--model", "local/no-such-model"], "unknown local model 'no-such-model'; known: smollm2"),
], ids=["openai-default", "anthropic", "gemini", "openrouter", "local-unknown"])
def test_unusable_model_is_one_line_before_anything_starts(home: Home, corpus: Path, args: list[str],
                                                           message: str) -> None:
    proc, seconds = home.run(str(corpus), "q", "--headless", *args)
    assert_refused(proc, seconds, home, message)
    assert proc.stdout == "litellm not imported\n"


def test_the_sub_model_is_checked_too(home: Home, corpus: Path) -> None:
    with ScriptedServer(lambda m, model: "FINAL(x)") as server:
        proc, seconds = home.run(str(corpus), "q", "--headless", "--model", "openai/scripted", "--api-base",
                                 server.url, "--sub-model", "groq/llama-3.3-70b")
    assert_refused(proc, seconds, home, "no API key for groq/llama-3.3-70b: set GROQ_API_KEY or pass --api-key")


def test_the_ui_path_is_checked_before_the_app_starts(home: Home, corpus: Path) -> None:
    proc, seconds = home.run(str(corpus), "q", "--model", "xai/grok-4")
    assert_refused(proc, seconds, home, "no API key for xai/grok-4: set XAI_API_KEY or pass --api-key")
    assert proc.stdout == "litellm not imported\n"  # and textual never drew a frame: no escape codes


def test_stdin_is_not_waited_for_by_a_run_that_cannot_start(home: Home) -> None:
    """`producer | rlm-tui - q` with no key: refused at once, not after the producer finishes."""
    started = time.perf_counter()
    proc = subprocess.Popen([PYTHON, "-c", DRIVER, "-", "q", "--headless"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=home.env())
    try:
        assert proc.stdin is not None
        proc.stdin.write("the producer has not finished yet\n")
        proc.stdin.flush()  # and stdin stays open
        proc.wait(timeout=10)
        seconds = time.perf_counter() - started
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    completed = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    assert_refused(completed, seconds, home, "no API key for openai/gpt-5-mini: set OPENAI_API_KEY or pass --api-key")


def test_a_key_in_the_environment_or_on_the_command_line_passes(home: Home, corpus: Path, refused_url: str) -> None:
    """With the key there, the next check (the unreachable server) is what stops it: the key check passed."""
    unreachable = f"cannot reach --api-base at {refused_url}: connection refused"
    proc, seconds = home.run(str(corpus), "q", "--headless", "--model", "anthropic/x", "--api-base", refused_url,
                             ANTHROPIC_API_KEY="sk-ant-test")
    assert_refused(proc, seconds, home, unreachable)
    proc, seconds = home.run(str(corpus), "q", "--headless", "--model", "mistral/x", "--api-base", refused_url,
                             "--api-key", "sk-test")
    assert_refused(proc, seconds, home, unreachable)


def test_unknown_provider_is_one_line(home: Home, corpus: Path) -> None:
    """A provider outside the table costs litellm's import (seconds), and only then is refused."""
    proc, seconds = home.run(str(corpus), "q", "--headless", "--model", "opneai/gpt-5-mini")
    assert_refused(proc, seconds, home, "unknown provider 'opneai' in model 'opneai/gpt-5-mini': write it as "
                   "PROVIDER/NAME, e.g. openai/gpt-5-mini, anthropic/claude-sonnet-4-5, ollama_chat/qwen3 "
                   "(see litellm's provider list)", within=30)


def test_unreachable_api_base_refused(home: Home, corpus: Path, refused_url: str) -> None:
    proc, seconds = home.run(str(corpus), "q", "--headless", "--model", "openai/m", "--api-base", refused_url)
    assert_refused(proc, seconds, home, f"cannot reach --api-base at {refused_url}: connection refused")
    assert proc.stdout == "litellm not imported\n"


def test_unreachable_api_base_unknown_host(home: Home, corpus: Path) -> None:
    url = "http://no-such-host.invalid/v1"
    proc, seconds = home.run(str(corpus), "q", "--headless", "--model", "openai/m", "--api-base", url)
    assert proc.returncode == 2 and proc.stderr.startswith(f"rlm-tui: cannot reach --api-base at {url}: ")
    assert_refused(proc, seconds, home, proc.stderr.removeprefix("rlm-tui: ").rstrip("\n"))


def test_silent_api_base_times_out(home: Home, corpus: Path, silent_url: str) -> None:
    proc, seconds = home.run(str(corpus), "q", "--headless", "--model", "openai/m", "--api-base", silent_url)
    assert_refused(proc, seconds, home, f"cannot reach --api-base at {silent_url}: no answer within 2 s",
                   within=preflight.PROBE_TIMEOUT + 3)
    assert seconds >= preflight.PROBE_TIMEOUT


def test_ollama_needs_no_key_but_its_server(home: Home, corpus: Path, refused_url: str) -> None:
    base = refused_url.removesuffix("/v1")
    proc, seconds = home.run(str(corpus), "q", "--headless", "--model", "ollama_chat/qwen3", OLLAMA_API_BASE=base)
    assert_refused(proc, seconds, home, f"cannot reach ollama_chat's server at {base}: connection refused "
                   "(start it, or pass --api-base)")


def test_usage_error_leaves_no_session_and_no_tempdir(home: Home, corpus: Path) -> None:
    """The session file cannot be written: the engine fails before it made its scratch folder."""
    blocker = home.root / "file"
    blocker.write_text("")
    with ScriptedServer(lambda m, model: "FINAL(x)") as server:
        proc, _ = home.run(str(corpus), "q", "--headless", "--model", "openai/s", "--api-base", server.url,
                           "--session", str(blocker / "s.jsonl"))
    assert proc.returncode == 2 and proc.stderr.startswith("rlm-tui: cannot write the session file"), proc.stderr
    assert home.left_behind() == []


@pytest.mark.kernel
def test_a_run_that_passes_preflight_still_runs(home: Home, corpus: Path) -> None:
    """An OpenAI-compatible server of one's own needs no key; the scripted server answers GET /models with 501."""
    def script(messages, model):
        return fence("print(1)") if len(messages) < 3 else "FINAL(done)"

    with ScriptedServer(script) as server:
        proc, _ = home.run(str(corpus), "q", "--headless", "--model", "openai/scripted", "--api-base", server.url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("done\n")
    assert [p.name for p in (home.data / "rlm-tui" / "sessions").iterdir()][0].endswith(".jsonl")
    assert list(home.tmp.glob("rlm-tui-*")) == []  # the run removed its scratch folder


class _Lister(BaseHTTPRequestHandler):
    """GET /v1/models like vLLM or llama.cpp: {"data": [{"id": ...}]}."""

    models = ["served-model"]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def lister() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Lister)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_model_the_server_does_not_list_is_a_warning(lister: str) -> None:
    listed = preflight.check(Settings(model="openai/served-model", api_base=lister))
    assert listed == []
    warnings = preflight.check(Settings(model="openai/served-model", sub_model="openai/other", api_base=lister))
    assert warnings == [f"{lister} does not list other (it lists: served-model); some servers answer any "
                        "name, others will refuse it"]


def test_the_key_table_names_what_litellm_reads() -> None:
    """The table's first variable per provider is one litellm itself asks for when it is missing."""
    from rlm_tui.core.lm import litellm_module

    litellm = litellm_module()
    clean = {k: v for k, v in os.environ.items() if k not in KEY_NAMES}
    for provider, names in preflight.KEY_VARS.items():
        if not names:
            continue
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(clean)
            asked = "cohere" if provider == "cohere_chat" else provider  # litellm lists cohere_chat's keys there
            missing = litellm.validate_environment(model=f"{asked}/some-model")["missing_keys"]
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert names[0] in missing or set(names) & set(missing), (provider, missing)


@pytest.mark.kernel
def test_resume_checks_the_live_model_before_replaying(home: Home) -> None:
    from sessions_sample import recorded_sample

    sample = recorded_sample()
    out = home.data / "resumed.jsonl"
    proc, seconds = home.run("resume", str(sample.path), "--at", "2", "--model", "anthropic/claude-x", "--headless",
                             "--session", str(out))
    assert_refused(proc, seconds, home, "no API key for anthropic/claude-x: set ANTHROPIC_API_KEY or pass --api-key")


def test_a_server_cannot_write_escape_sequences_through_the_warning(lister: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The model list comes from the server: a hostile id must reach the terminal escaped."""
    from rlm_tui.cli.run import preflight as cli_preflight

    _Lister.models = ["\x1b]0;owned\x07\x1b[2J"]
    try:
        assert cli_preflight(Settings(model="openai/wanted", api_base=lister)) is None
    finally:
        _Lister.models = ["served-model"]
    err = capsys.readouterr().err
    assert err.startswith("rlm-tui: warning: ") and "\x1b" not in err and "\x07" not in err
    assert "\\x1b]0;owned\\x07" in err
