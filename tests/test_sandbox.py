"""The kernel sandbox (--sandbox, core/backends/sandbox.py) with real bwrap, real kernels, the real CLI.

The attack test runs twice: sandboxed (the default) every attempt fails, and with
``--sandbox off`` every attempt succeeds, so the test shows what the sandbox stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env, fence, run_script
from rlm_tui.core.backends.sandbox import bwrap_binary, probe
from rlm_tui.core.bridge import Bridge
from rlm_tui.scripted import ScriptedServer, is_rlm_call, turn_of

def probe_binary() -> str:
    binary = bwrap_binary()
    assert binary is not None
    return binary


needs_bwrap = pytest.mark.skipif(probe() is not None, reason=f"no sandbox on this machine: {probe()}")

ATTACKS = ("read-home", "write-input", "write-home", "tcp-loopback")


class Listener:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def attack_script(home: Path, corpus: Path, port: int):
    code = f"""
import os, socket
def attempt(name, fn):
    try:
        fn()
        print(name, "SUCCEEDED")
    except Exception as exc:
        print(name, "FAILED", type(exc).__name__)
attempt("read-home", lambda: open({str(home / 'secret.txt')!r}).read())
attempt("write-input", lambda: open({str(corpus / 'planted.txt')!r}, "w").write("x"))
attempt("write-home", lambda: open(os.path.join(os.environ["HOME"], "planted.txt"), "w").write("x"))
attempt("tcp-loopback", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3).close())
needle = next(text for text in context.values() if "magic number" in text)
print("SUB:", llm_query("Which number is magic here? " + needle))
"""

    def script(messages, model):
        if not is_rlm_call(messages):  # the sub-call: read the number out of the prompt it was given
            found = re.search(r"magic number is (\d+)", messages[-1]["content"])
            return found.group(1) if found else "no number in the prompt"
        if turn_of(messages) == 1:
            return fence(code)
        found = re.search(r"SUB: (\d+)", messages[-1]["content"])
        return f"FINAL({found.group(1) if found else 'not found'})"

    return script


def rlm_tui(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "rlm_tui", *args], capture_output=True, text=True,
                          env=cli_env(**env), timeout=180)


def run_started(session: Path) -> dict:
    return next(e for e in map(json.loads, session.read_text().splitlines()) if e.get("kind") == "run_started")


@needs_bwrap
@pytest.mark.parametrize("flags,sandboxed", [((), True), (("--sandbox", "off"), False)], ids=["default", "off"])
def test_model_code_cannot_reach_home_input_or_network_but_answers(flags: tuple[str, ...], sandboxed: bool,
                                                                   corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text("the user's secret")
    listener = Listener()
    session = tmp_path / "s.jsonl"
    with ScriptedServer(attack_script(home, corpus, listener.port)) as server:
        proc = rlm_tui(str(corpus), "What is the magic number?", "--headless", "--model", "openai/scripted",
                       "--api-base", server.url, "--session", str(session), *flags, HOME=str(home))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "7316"  # llm_query reached the host from inside the sandbox
    text = session.read_text()
    outcomes = {name: re.search(rf"{name} (SUCCEEDED|FAILED)", text).group(1) for name in ATTACKS}
    planted = {"write-input": (corpus / "planted.txt").exists(), "write-home": (home / "planted.txt").exists()}
    backend = run_started(session)["kernel_backend"]
    if sandboxed:
        assert outcomes == dict.fromkeys(ATTACKS, "FAILED")
        assert planted == {"write-input": False, "write-home": False} and listener.accepted == 0
        assert backend["name"] == "sandbox" and "unsandboxed" not in proc.stderr
    else:
        assert outcomes == dict.fromkeys(ATTACKS, "SUCCEEDED")
        assert planted == {"write-input": True, "write-home": True} and listener.accepted == 1
        assert backend["name"] == "local" and "warning" not in backend  # asked for: nothing to warn about


def broken_bwrap(tmp_path: Path) -> Path:
    """A bwrap that fails as it does where AppArmor forbids unprivileged user namespaces."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    return fake


def test_sandbox_on_refuses_to_start_without_bwrap(corpus: Path, tmp_path: Path) -> None:
    session = tmp_path / "s.jsonl"
    with ScriptedServer(lambda m, model: "FINAL(x)") as server:
        proc = rlm_tui(str(corpus), "q?", "--headless", "--model", "openai/scripted", "--api-base", server.url,
                       "--session", str(session), "--sandbox", "on", RLM_TUI_BWRAP=str(broken_bwrap(tmp_path)))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "--sandbox on" in proc.stderr and "setting up uid map: Permission denied" in proc.stderr
    assert not session.exists() and server.requests == []


def test_sandbox_on_from_config_file_is_refused_too(corpus: Path, tmp_path: Path) -> None:
    (tmp_path / "cfg" / "rlm-tui").mkdir(parents=True)
    (tmp_path / "cfg" / "rlm-tui" / "config.toml").write_text('sandbox = "on"\n')
    proc = rlm_tui(str(corpus), "q?", "--headless", "--model", "openai/scripted", "--api-base", "http://127.0.0.1:9",
                   XDG_CONFIG_HOME=str(tmp_path / "cfg"), RLM_TUI_BWRAP=str(tmp_path / "no-such-bwrap"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--sandbox on" in proc.stderr and "no-such-bwrap" in proc.stderr


def test_sandbox_auto_without_bwrap_runs_unsandboxed_and_says_so(corpus: Path, tmp_path: Path) -> None:
    session = tmp_path / "s.jsonl"
    script = lambda m, model: fence("print(1)") if turn_of(m) == 1 else "FINAL(done)"  # noqa: E731
    with ScriptedServer(script) as server:
        proc = rlm_tui(str(corpus), "q?", "--headless", "--model", "openai/scripted", "--api-base", server.url,
                       "--session", str(session), RLM_TUI_BWRAP=str(broken_bwrap(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    warning = [line for line in proc.stderr.splitlines() if "unsandboxed" in line]
    assert len(warning) == 1 and "setting up uid map: Permission denied" in warning[0]
    backend = run_started(session)["kernel_backend"]
    assert backend["name"] == "local" and "setting up uid map" in backend["warning"]
    events = [json.loads(line) for line in session.read_text().splitlines()]
    assert any(e.get("kind") == "warning" and "unsandboxed" in e.get("message", "") for e in events)


async def test_bridge_unix_socket_is_owner_only_and_wants_the_secret(tmp_path: Path) -> None:
    """The sandbox's way back to the host: a Unix socket, private to the user, hello with the secret."""
    calls: list[str] = []

    async def handler(kernel: str, request: dict) -> str:
        calls.append(kernel)
        return "answered"

    bridge = Bridge(handler)
    await bridge.start(unix_path=tmp_path / "bridge.sock")
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "bridge.sock").st_mode) & 0o077 == 0
        replies = []
        for secret in ("wrong", bridge.secret):
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "bridge.sock"))
            writer.write(json.dumps({"op": "hello", "secret": secret, "kernel": "k1"}).encode() + b"\n")
            writer.write(json.dumps({"op": "llm", "id": 1, "prompt": "p"}).encode() + b"\n")
            await writer.drain()
            replies.append(b"".join([await asyncio.wait_for(reader.readline(), 5) for _ in range(2)]))
            writer.close()
        assert replies[0] == b"" and b'"answered"' in replies[1]
        assert calls == ["k1"]
    finally:
        await bridge.close()


async def test_engine_from_code_refuses_sandbox_on_before_any_file(corpus: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the CLI's preflight (README: From code) the engine itself refuses, leaving nothing."""
    from rlm_tui.core.backends import sandbox
    from rlm_tui.core.config import Settings
    from rlm_tui.core.engine import Engine, SetupError

    monkeypatch.setenv("RLM_TUI_BWRAP", str(broken_bwrap(tmp_path)))
    sandbox.probe.cache_clear()  # the probe runs once per process: this test is a new "machine"
    try:
        engine = Engine(Settings(sandbox="on", session_path=tmp_path / "s.jsonl"), "q?", corpus)
        with pytest.raises(SetupError, match="--sandbox on, but no sandbox can be made here: bwrap: setting up"):
            await engine.run()
        assert not (tmp_path / "s.jsonl").exists()
    finally:
        monkeypatch.undo()
        sandbox.probe.cache_clear()


@needs_bwrap
@pytest.mark.parametrize("sandbox,leaked", [("auto", False), ("off", True)])
async def test_a_symlink_in_the_input_cannot_pull_in_a_file_from_outside(sandbox: str, leaked: bool,
                                                                         tmp_path: Path) -> None:
    """A hostile repository links ``notes.txt`` to a secret elsewhere: the sandbox does not mount it."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "id_rsa").write_text("PRIVATE KEY")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README").write_text("a repository")
    (repo / "notes.txt").symlink_to(tmp_path / "home" / "id_rsa")

    def script(messages, model):
        return fence("print(context.get('notes.txt'))") if turn_of(messages) == 1 else "FINAL(done)"

    run = await run_script(script, repo, tmp_path, settings={"sandbox": sandbox})
    assert ("PRIVATE KEY" in run.cell_text()) is leaked
    if not leaked:
        (loaded,) = run.kinds("context_loaded")
        assert loaded.get("info")["skipped"]["unreadable (No such file or directory)"]["examples"] == ["notes.txt"]


@needs_bwrap
def test_a_sandbox_that_cannot_start_the_kernel_says_why_in_one_line(corpus: Path, tmp_path: Path) -> None:
    """bwrap passes the probe but fails the kernel (as where /proc cannot be mounted): one clear line."""
    fake = tmp_path / "bwrap"
    fake.write_text(f"#!/bin/sh\nfor last; do :; done\nif [ \"$last\" = true ]; then exec {probe_binary()} \"$@\"; fi\n"
                    "echo \"bwrap: Can't mount proc on /newroot/proc: Operation not permitted\" >&2\nexit 1\n")
    fake.chmod(0o755)
    with ScriptedServer(lambda m, model: fence("print(1)") if turn_of(m) == 1 else "FINAL(x)") as server:
        proc = rlm_tui(str(corpus), "q?", "--headless", "--model", "openai/scripted", "--api-base", server.url,
                       "--session", str(tmp_path / "s.jsonl"), RLM_TUI_BWRAP=str(fake))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("rlm-tui: the kernel did not start: bwrap: Can't mount proc on "
                                                    "/newroot/proc: Operation not permitted")
