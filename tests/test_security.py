"""Security: the bridge's secret, secrets kept out of every artefact, private files."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import PYTHON, cli_env, fence, run_script
from rlm_tui.core.bridge import Bridge
from rlm_tui.core.redaction import kernel_env, known_secrets, redact
from rlm_tui.core.session import SessionWriter
from rlm_tui.scripted import Fault, ScriptedServer, is_rlm_call, turn_of


# ---- the kernel-to-host channel ---------------------------------------------------------

async def _bridge() -> tuple[Bridge, list[tuple[str, dict[str, Any]]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def handler(kernel: str, request: dict[str, Any]) -> Any:
        calls.append((kernel, request))
        return "answered"

    bridge = Bridge(handler)
    await bridge.start()
    return bridge, calls


async def _talk(port: int, *lines: dict[str, Any] | bytes) -> list[bytes]:
    """Send lines, then read what comes back until the server closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for line in lines:
        writer.write(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n")
    await writer.drain()
    got: list[bytes] = []
    try:
        while line := await asyncio.wait_for(reader.readline(), timeout=8):
            got.append(line)
    except asyncio.TimeoutError:
        pass
    writer.close()
    return got


async def test_bridge_listens_on_loopback_only() -> None:
    bridge, _ = await _bridge()
    try:
        assert {s.getsockname()[0] for s in bridge._server.sockets} == {"127.0.0.1"}
    finally:
        await bridge.close()


async def test_bridge_serves_a_client_with_the_secret() -> None:
    bridge, calls = await _bridge()
    try:
        got = await _talk(bridge.port, {"op": "hello", "secret": bridge.secret, "kernel": "k1"},
                          {"op": "llm", "id": 1, "prompt": "hi"})
        assert [json.loads(g) for g in got] == [{"ok": True}, {"id": 1, "result": "answered"}]
        assert calls == [("k1", {"op": "llm", "id": 1, "prompt": "hi"})]
    finally:
        await bridge.close()


@pytest.mark.parametrize("first", [
    {"op": "llm", "id": 1, "prompt": "no hello at all"},
    {"op": "hello", "kernel": "k1"},
    {"op": "hello", "secret": "0" * 64, "kernel": "k1"},
    {"op": "hello", "secret": "", "kernel": "k1"},
    {"op": "hello", "secret": None, "kernel": "k1"},
    b"not json\n",
    b"[1, 2, 3]\n",
    b"\n",
], ids=["no-hello", "no-secret", "wrong-secret", "empty-secret", "null-secret", "garbage", "not-an-object",
        "blank"])
async def test_bridge_drops_clients_without_the_secret(first: dict[str, Any] | bytes) -> None:
    bridge, calls = await _bridge()
    try:
        got = await _talk(bridge.port, first, {"op": "llm", "id": 2, "prompt": "sneaky"})
        assert got == [] and calls == [] and bridge.rejected == 1
    finally:
        await bridge.close()


async def test_bridge_drops_an_authenticated_client_that_sends_garbage() -> None:
    bridge, calls = await _bridge()
    try:
        got = await _talk(bridge.port, {"op": "hello", "secret": bridge.secret, "kernel": "k1"}, b"[1]\n",
                          {"op": "llm", "id": 1, "prompt": "after garbage"})
        assert [json.loads(g) for g in got] == [{"ok": True}] and calls == []
    finally:
        await bridge.close()


async def test_bridge_drops_a_silent_client() -> None:
    bridge, calls = await _bridge()
    try:
        assert await _talk(bridge.port) == []  # says nothing: dropped after the hello timeout
        assert calls == [] and bridge.rejected == 1
    finally:
        await bridge.close()


async def test_secret_prefix_is_not_enough() -> None:
    bridge, calls = await _bridge()
    try:
        got = await _talk(bridge.port, {"op": "hello", "secret": bridge.secret[:-1], "kernel": "k"},
                          {"op": "llm", "id": 1, "prompt": "x"})
        assert got == [] and calls == []
    finally:
        await bridge.close()


# ---- secrets never written down ---------------------------------------------------------

KEY = "sk-live-DO-NOT-LEAK-7f3a9c2e41b8"


@pytest.mark.kernel
def test_no_secret_in_any_artefact_of_a_run(corpus: Path, tmp_path: Path) -> None:
    """A run with a key: kernel code hunting for it, a provider echoing it in errors. Grep everything."""
    hidden = base64.b64encode(KEY.encode()).decode()  # the model's code rebuilds the key; its reply never holds it

    def script(messages, model):
        if not is_rlm_call(messages):
            return "sub"
        return fence(f"""
import os, base64
print('env key:', os.environ.get('OPENAI_API_KEY'), os.environ.get('MY_SERVICE_TOKEN'))
print('credential-like names:', [k for k in os.environ if 'KEY' in k or 'TOKEN' in k])
print('printed on purpose:', base64.b64decode('{hidden}').decode())
print(llm_query('will fail once'))
""")

    session = tmp_path / "s.jsonl"
    (tmp_path / "tmp").mkdir()  # the run's temporary files (kernel logs) land here, and are grepped if left
    env = cli_env(OPENAI_API_KEY=KEY, MY_SERVICE_TOKEN="tok-" + KEY[::-1], XDG_DATA_HOME=str(tmp_path / "data"),
                  TMPDIR=str(tmp_path / "tmp"))
    with ScriptedServer(script) as server:
        # root turn 1 fine; the sub-call gets a 500 echoing the key, then succeeds on retry;
        # root turn 2 gets a 401 echoing it: the run stops with an error message.
        server.faults.extend([Fault(), Fault(status=500, body=f"upstream said: bad key {KEY}"), Fault(),
                              Fault(status=401, body=f"Incorrect API key provided: {KEY}")])
        proc = subprocess.run([PYTHON, "-m", "rlm_tui", str(corpus), "q", "--headless", "--model",
                               "openai/scripted", "--api-base", server.url, "--session", str(session)],
                              capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        sent_to_model = json.dumps(server.requests)
    assert proc.returncode == 1 and "authentication failed" in proc.stderr
    text = session.read_text()
    assert "env key: None None" in text and "credential-like names: []" in text
    assert "printed on purpose: [REDACTED]" in text and "printed on purpose: [REDACTED]" in sent_to_model
    assert "bad key [REDACTED]" in text  # the retry's error, as recorded
    assert list((tmp_path / "tmp").iterdir()) == []  # the private kernel-log folder was removed at the end
    artefacts = {"stdout": proc.stdout, "stderr": proc.stderr, "session": text, "sent to the model": sent_to_model}
    artefacts.update({str(p): p.read_text(errors="replace") for p in tmp_path.rglob("*")
                      if p.is_file() and p != session and "corpus" not in p.parts})
    for name, content in artefacts.items():
        for secret in (KEY, KEY[::-1], KEY[-12:]):
            assert secret not in content, name


@pytest.mark.kernel
async def test_bridge_secret_shown_by_kernel_code_is_redacted(corpus: Path, tmp_path: Path) -> None:
    """The kernel's code could learn the bridge secret (it holds the connection): showing it leaks nothing."""
    from rlm_tui.core.config import Settings
    from rlm_tui.core.engine import Engine

    engine: list[Engine] = []

    def script(messages, model):  # the model writes the secret into its code, then into its answer
        if turn_of(messages) == 1:
            return fence(f"print('secret:', {engine[0].bridge.secret!r})")
        return f"FINAL(the secret is {engine[0].bridge.secret})"

    session = tmp_path / "s.jsonl"
    with ScriptedServer(script) as server:
        engine.append(Engine(Settings(model="openai/scripted", api_base=server.url, session_path=session),
                             "q", corpus))
        result = await engine[0].run()
        # What rlm-tui tells the model (the model's own replies hold the secret: it wrote it).
        sent_to_model = json.dumps([m for r in server.requests for m in r["messages"] if m["role"] != "assistant"])
    secret = engine[0].bridge.secret
    text = session.read_text()
    assert result.answer == "the secret is [REDACTED]"
    assert "secret: [REDACTED]" in text and "secret: [REDACTED]" in sent_to_model
    for name, content in {"session": text, "sent to the model": sent_to_model, "answer": result.answer}.items():
        assert secret not in content, name


@pytest.mark.kernel
async def test_final_answer_holding_a_secret_is_redacted(corpus: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_SERVICE_API_KEY", KEY)
    hidden = base64.b64encode(KEY.encode()).decode()

    def script(messages, model):
        if turn_of(messages) == 1:
            return fence(f"import base64\nk = base64.b64decode('{hidden}').decode()")
        return "FINAL_VAR(k)"

    run = await run_script(script, corpus, tmp_path)
    assert run.result.answer == "[REDACTED]"
    assert KEY not in (tmp_path / "session.jsonl").read_text()


def test_kernel_environment_has_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "a" * 20)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b" * 20)
    monkeypatch.setenv("GITHUB_TOKEN", "c" * 20)
    monkeypatch.setenv("DB_PASSWORD", "d" * 20)
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent")
    monkeypatch.setenv("HARMLESS_SETTING", "kept")
    env = kernel_env()
    assert env["HARMLESS_SETTING"] == "kept" and env["PATH"] == os.environ["PATH"]
    for name in ("ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "DB_PASSWORD", "SSH_AUTH_SOCK"):
        assert name not in env
    secrets = known_secrets(["explicit-key-123456"])
    assert {"a" * 20, "b" * 20, "c" * 20, "d" * 20, "explicit-key-123456"} <= set(secrets)
    assert redact("x " + "a" * 20 + " y", secrets) == "x [REDACTED] y"


def test_known_secrets_are_long_key_like_values_longest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """What counts as a secret (found by mutation testing: these rules had no test)."""
    monkeypatch.setenv("SHORT_TOKEN", "a" * 15)  # under 16 characters: a setting, not a key
    monkeypatch.setenv("EDGE_TOKEN", "b" * 16)  # exactly 16: a key
    monkeypatch.setenv("MY_KEY_FILE", "/home/user/.ssh/id_ed25519")  # a path
    monkeypatch.setenv("AUTH_MODE", "use the default one")  # prose
    monkeypatch.setenv("HARMLESS_SETTING", "c" * 30)  # not a credential's name
    monkeypatch.setenv("INNER_API_KEY", "abcdefgh12345678")
    monkeypatch.setenv("OUTER_API_KEY", "0-abcdefgh12345678")  # contains the other; sorts before it
    secrets = known_secrets(["short", "", None, "explicit-key-123456", "8-chars!"])  # given: 8 characters are enough
    for value in ("b" * 16, "explicit-key-123456", "8-chars!", "abcdefgh12345678", "0-abcdefgh12345678"):
        assert value in secrets, value
    for value in ("short", "", "a" * 15, "/home/user/.ssh/id_ed25519", "use the default one", "c" * 30):
        assert value not in secrets, value
    assert secrets.index("0-abcdefgh12345678") < secrets.index("abcdefgh12345678")
    assert redact("key: 0-abcdefgh12345678", secrets) == "key: [REDACTED]"


# ---- files readable by the user only ----------------------------------------------------

def test_session_file_and_folder_are_private_even_with_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "data" / "rlm-tui" / "sessions" / "s.jsonl"
        writer = SessionWriter(path)
        writer.write(writer.header())
        writer.close()
        existing = tmp_path / "existing.jsonl"
        existing.write_text("")
        existing.chmod(0o644)
        SessionWriter(existing, overwrite=True).close()  # replacing a file makes it private too
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600
    for folder in (path.parent, path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_config_file_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlm_tui.ui import prefs  # never skipped: if the config writer moves, this test must follow it

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    old = os.umask(0)
    try:
        prefs.save_theme_name("rlm-paper")
    finally:
        os.umask(old)
    assert stat.S_IMODE(prefs.config_path().stat().st_mode) == 0o600
