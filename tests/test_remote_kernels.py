"""Kernels on a real Jupyter Server (`--jupyter-server`): started by it, driven over its websocket.

The server is started here on 127.0.0.1 with a random port and token, in its
own folder. Its kernel cannot import rlm_tui and cannot open anything under
the inputs' folder (rlm_tui/bench/jupyter_remote.py), as a kernel on another machine:
so a run that answers proves the bootstrap ships with the run and the context
was shipped, not opened by path.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from conftest import PYTHON, cli_env, fence, run_script
from rlm_tui.bench.jupyter_remote import Server, start_server, stop_server
from rlm_tui.core import events as ev
from rlm_tui.core.backends.jupyter_api import JupyterApi
from rlm_tui.core.backends.jupyter_server import RemoteKernel
from rlm_tui.core.config import ConfigError, read_config
from rlm_tui.scripted import ScriptedServer, is_rlm_call, question_of, turn_of

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every input of this module lives: the server's kernels cannot open anything here."""
    return tmp_path_factory.mktemp("host-inputs")


@pytest.fixture(scope="module")
def jupyter(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("jupyter"), inputs)
    yield server
    stop_server(server)


@pytest.fixture(scope="module", params=["jupyter-server", "kernel-gateway"])
def any_server(request: pytest.FixtureRequest, jupyter: Server, inputs: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Jupyter Server, then Kernel Gateway: the same API, so the same runs must work on both."""
    if request.param == "jupyter-server":
        yield jupyter
        return
    server = start_server(tmp_path_factory.mktemp("gateway"), inputs, "kernel-gateway")
    yield server
    stop_server(server)


@pytest.fixture
def needle_dir(inputs: Path, request: pytest.FixtureRequest) -> Path:
    root = inputs / request.node.name
    (root / "src" / "deep").mkdir(parents=True)
    for i in range(10):
        (root / "src" / f"file{i}.txt").write_text(f"line of filler {i}\n" * 50)
    (root / "src" / "deep" / "needle.txt").write_text("nothing\nthe magic number is 7316\nnothing\n")
    (root / "big.txt").write_text("x" * 2_500_000 + "\n")  # several chunks: progress is reported
    return root


def remote(server: Server, **extra: object) -> dict[str, object]:
    return {"jupyter_server": server.url, "jupyter_token": server.token, **extra}


def test_headless_run_answers_with_kernels_on_the_server(any_server: Server, needle_dir: Path,
                                                         tmp_path: Path) -> None:
    jupyter = any_server
    host_path = needle_dir / "src" / "deep" / "needle.txt"
    before = set(jupyter.started_kernel_ids())

    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence(
                "import os\n"
                "found = [k for k, v in context.items() if 'magic number' in v]\n"
                "print('found', found, context[found[0]].split()[5])\n"
                f"try:\n    open({str(host_path)!r}).read()\n    print('host path: readable')\n"
                "except OSError as exc:\n    print('host path:', type(exc).__name__)\n"
                "print('cwd', os.getcwd())\n"
                "try:\n    import rlm_tui\n    print('rlm_tui importable: True')\n"
                "except ImportError:\n    print('rlm_tui importable: False')\n"
                "import threading\n"  # the model's own input(), from a thread while a sub-call waits
                "asked = []\n"
                "def ask():\n    try:\n        input('name?')\n    except Exception as exc:\n"
                "        asked.append(type(exc).__name__)\n"
                "t = threading.Thread(target=ask)\nt.start()\nprint(llm_query('ping'))\nt.join()\n"
                "print('input:', asked)")
        return "FINAL(7316)"

    with ScriptedServer(script) as model:
        proc = subprocess.run(
            [PYTHON, "-m", "rlm_tui", str(needle_dir), "What is the magic number?", "--headless", "--json",
             "--model", "openai/scripted", "--api-base", model.url, "--jupyter-server", jupyter.url,
             "--session", str(tmp_path / "s.jsonl")],
            capture_output=True, text=True, timeout=180, env=cli_env(JUPYTER_TOKEN=jupyter.token))
        fed = [m["content"] for r in model.requests for m in r["messages"] if m.get("role") == "user"]
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "7316"
    told = "\n".join(fed)
    assert "found ['src/deep/needle.txt'] 7316" in told
    assert "host path: PermissionError" in told  # the kernel cannot read the input where the host has it...
    assert f"cwd {jupyter.root}" in told  # ...it runs in the server's folder...
    assert "rlm_tui importable: False" in told  # ...where rlm-tui is not installed
    assert "input: ['StdinNotImplementedError']" in told  # the model's input() is refused, sub-calls unharmed
    # The loader never tried a host path: the only attempt under the inputs' folder is the model's own.
    assert jupyter.opened().count(str(host_path)) == 1 and all(str(needle_dir) not in p or p == str(host_path)
                                                                for p in jupyter.opened())
    started = set(jupyter.started_kernel_ids()) - before
    assert len(started) == 1  # the root kernel, started by the server
    assert jupyter.kernels() == []  # and shut down through it at the end
    events = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    shipped = [e["detail"] for e in events if e["kind"] == "kernel" and "shipped" in (e.get("detail") or "")]
    assert shipped and shipped[-1] == "shipped 2.5 MB of 2.5 MB"
    started_event = next(e for e in events if e["kind"] == "run_started")
    assert started_event["kernel_backend"] == {"name": "jupyter-server",
                                               "description": f"kernels on the Jupyter server at {jupyter.url}"}
    settings = started_event["settings"]
    assert settings["jupyter_server"] == jupyter.url and settings["jupyter_token_set"] is True
    assert "jupyter_token" not in settings


async def test_llm_query_rlm_query_and_threads_through_the_server(any_server: Server, needle_dir: Path,
                                                                    tmp_path: Path) -> None:
    jupyter = any_server
    before = set(jupyter.started_kernel_ids())

    def script(messages, model):
        if not is_rlm_call(messages):
            time.sleep(0.5)
            return "pong:" + messages[-1]["content"]
        turn = turn_of(messages)
        if question_of(messages) == "child task":
            if turn == 1:
                return fence("print(type(context).__name__, context['rows'][1], llm_query('from child'))")
            return "FINAL(child saw it)"
        if turn == 1:
            return fence(
                "import time\nfrom concurrent.futures import ThreadPoolExecutor\n"
                "t = time.perf_counter()\n"
                "with ThreadPoolExecutor(8) as pool:\n    got = list(pool.map(lambda i: llm_query(f'p{i}'), range(8)))\n"
                "print(got[7], 'threads took', round(time.perf_counter() - t, 1))\n"
                "print(llm_query_batched(['a', 'b']))\n"
                "print(rlm_query('child task', context={'rows': ['r0', 'r1']}))")
        return "FINAL(done)"

    run = await run_script(script, needle_dir, tmp_path, max_depth=2, settings=remote(jupyter))
    assert run.result.answer == "done", run.result.error
    text = run.cell_text()
    assert "pong:p7 threads took" in text
    took = float(text.split("threads took ")[1].split()[0])
    # Eight 0.5 s calls from eight threads run at once (4 s one after another); a thread that queues a
    # call while another polls wakes the host (without the wake: 1.06 s measured, with it 0.55 s).
    assert took < 0.95, text
    assert "['pong:a', 'pong:b']" in text
    assert "dict r1 pong:from child" in text  # the child's kernel got the value, shipped inline
    assert "child saw it" in text
    assert len(set(jupyter.started_kernel_ids()) - before) >= 2  # the root's and the child's
    assert jupyter.kernels() == []


async def test_a_single_file_input_is_shipped_as_a_str(jupyter: Server, inputs: Path, tmp_path: Path) -> None:
    path = inputs / "notes.txt"
    path.write_text("filler\n" * 1_000_000 + "the needle is 7316\n")  # 7 MB: two requests' worth

    def script(messages, model):
        if turn_of(messages) == 1:
            return fence("print(type(context).__name__, len(context), context.splitlines()[-1])")
        return "FINAL(done)"

    run = await run_script(script, path, tmp_path, settings=remote(jupyter))
    assert run.result.answer == "done", run.result.error
    assert "str 7000019 the needle is 7316" in run.cell_text()
    assert str(path) not in jupyter.opened()  # shipped, not opened


async def test_cell_timeout_interrupts_through_the_server(jupyter: Server, needle_dir: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            time.sleep(30)
            return "too late"
        turn = turn_of(messages)
        if turn == 1:
            return fence("kept = 41\nwhile True:\n    pass")
        if turn == 2:
            return fence("print(llm_query('slow'))")
        if turn == 3:
            return fence("print('still here', kept + 1)")
        return "FINAL(done)"

    started = time.perf_counter()
    run = await run_script(script, needle_dir, tmp_path, cell_timeout=2, settings=remote(jupyter))
    assert run.result.answer == "done", run.result.error
    cells = run.kinds(ev.CELL_FINISHED)
    assert [c.get("status") for c in cells] == ["timeout", "timeout", "ok"]
    assert "KeyboardInterrupt" in run.cell_text()
    assert "still here 42" in run.cell_text()  # interrupted, not restarted: the namespace survived
    llm = [e for e in run.kinds(ev.NODE_FINISHED) if e.node != "n0"]
    assert llm and llm[0].get("status") == "killed"  # the slow sub-call was cancelled on the host...
    assert llm[0].seq < run.kinds(ev.CELL_STARTED)[2].seq  # ...when its cell was interrupted, not at the end
    assert time.perf_counter() - started < 25


async def test_answers_over_the_servers_message_cap_arrive_whole(jupyter: Server, needle_dir: Path,
                                                                  tmp_path: Path) -> None:
    """Three 4 MB replies in one batch: 12 MB of answer, over the 10 MiB a Jupyter server accepts at once."""
    def script(messages, model):
        if not is_rlm_call(messages):
            return messages[-1]["content"][0] * 4_000_000
        if turn_of(messages) == 1:
            return fence("got = llm_query_batched(['a', 'b', 'c'])\nprint([(g[0], len(g)) for g in got])")
        return "FINAL(done)"

    run = await run_script(script, needle_dir, tmp_path, settings=remote(jupyter))
    assert run.result.answer == "done", run.result.error
    assert "[('a', 4000000), ('b', 4000000), ('c', 4000000)]" in run.cell_text()


@pytest.mark.parametrize("how", ["dies", "ignores the interrupt"])
async def test_a_kernel_that_dies_or_hangs_is_restarted_through_the_server(how: str, jupyter: Server,
                                                                          needle_dir: Path, tmp_path: Path) -> None:
    fed: list[str] = []
    code = {"dies": "import os\nos._exit(3)",
            "ignores the interrupt": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"}

    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence("kept = 41\n" + code[how])
        fed.append(messages[-1]["content"])
        if turn == 2:
            return fence("print(type(context).__name__, len(context), 'kept' in globals())")
        fed.append(messages[-1]["content"])
        return "FINAL(survived)"

    run = await run_script(script, needle_dir, tmp_path, cell_timeout=2, settings=remote(jupyter))
    assert run.result.answer == "survived", run.result.error
    assert [c.get("status") for c in run.kinds(ev.CELL_FINISHED)] == [
        "died" if how == "dies" else "timeout", "ok"]
    assert "dict 12 False" in fed[1]  # the same server kernel, fresh: context shipped again, variables gone
    assert jupyter.kernels() == []


class LossyRelay:
    """A Jupyter kernel API on 127.0.0.1 whose relay loses iopub messages the ways a real one can.

    - A new websocket's iopub is deaf for ``LATE_S``. A Jupyter server relays each websocket
      through its own zmq sockets; the iopub subscription may reach the kernel after the shell
      does, and what the kernel publishes before then is lost. Jupyter Server waits for iopub
      itself ("nudge"), but not for a kernel it records as busy, which after restarting a kernel
      stuck in a cell it does (its --debug log: "Nudge: not nudging busy kernel", then a cell
      whose status messages never came). Here the race is made certain.
    - A cell whose code is ``LOSE_IDLE`` has its ``idle`` status lost, as a PUB socket at its
      high-water mark drops messages; its shell reply comes.

    Its kernel echoes a cell's code on stdout.
    """

    LATE_S = 1.0
    LOSE_IDLE = "# this cell's idle is lost"

    def __init__(self) -> None:
        from tornado.httpserver import HTTPServer
        from tornado.netutil import bind_sockets
        from tornado.web import Application, RequestHandler
        from tornado.websocket import WebSocketHandler

        relay = self
        self.connections = 0

        class Kernels(RequestHandler):
            def post(self, kernel: str = "", action: str = "") -> None:
                self.write({"id": "0000-lossy-relay", "name": "python3"} if not kernel else {})

            def get(self, kernel: str = "", action: str = "") -> None:
                self.write({"id": kernel, "execution_state": "idle"})

            def delete(self, kernel: str = "", action: str = "") -> None:
                self.set_status(204)

        class Channels(WebSocketHandler):
            def open(self, kernel: str) -> None:
                relay.connections += 1
                self.deaf_until = time.monotonic() + relay.LATE_S

            def on_message(self, raw: str | bytes) -> None:
                msg = json.loads(raw)
                kind, code = msg["header"]["msg_type"], msg["content"].get("code")
                self.publish(msg, "status", {"execution_state": "busy"})
                if code is not None:
                    self.publish(msg, "stream", {"name": "stdout", "text": code})
                self.send(msg, "shell", kind.replace("_request", "_reply"), {"status": "ok", "user_expressions": {}})
                if code != relay.LOSE_IDLE:
                    self.publish(msg, "status", {"execution_state": "idle"})

            def publish(self, parent: dict, kind: str, content: dict) -> None:
                if time.monotonic() >= self.deaf_until:  # before that the relay's subscription had not joined
                    self.send(parent, "iopub", kind, content)

            def send(self, parent: dict, channel: str, kind: str, content: dict) -> None:
                self.write_message(json.dumps({"channel": channel, "header": {"msg_id": uuid.uuid4().hex,
                                               "msg_type": kind}, "parent_header": parent["header"],
                                               "metadata": {}, "content": content}))

        sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        self.server = HTTPServer(Application([(r"/api/kernels/([^/]+)/channels", Channels),
                                              (r"/api/kernels(?:/([^/]+))?(?:/(restart|interrupt))?", Kernels)]))
        self.server.add_sockets(sockets)

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
async def lossy() -> AsyncIterator[tuple[LossyRelay, RemoteKernel]]:
    """A kernel on a LossyRelay, started."""
    async def no_calls(owner: str, request: dict) -> str:
        raise AssertionError("no sub-call here")

    relay = LossyRelay()
    kernel = RemoteKernel(JupyterApi(relay.url, "token"), no_calls)
    try:
        await kernel.start()
        yield relay, kernel
    finally:
        await kernel.shutdown()
        kernel.api.close()
        relay.close()


async def test_a_new_socket_waits_until_it_hears_the_kernels_iopub(lossy: tuple[LossyRelay, RemoteKernel]) -> None:
    """A cell sent before the new socket's iopub is heard loses its output and its ``idle`` (the restart bug)."""
    relay, kernel = lossy
    for life in ("started", "restarted"):
        if life == "restarted":
            await kernel.restart()
        out: list[str] = []
        result = await asyncio.wait_for(kernel.execute("x = 1", lambda stream, text: out.append(text)), 10)
        assert (result.status, out) == ("ok", ["x = 1"]), life
    assert relay.connections == 2


async def test_a_cell_whose_idle_is_lost_ends_after_its_shell_reply(lossy: tuple[LossyRelay, RemoteKernel]) -> None:
    """Without its idle a cell would wait for its timeout, or forever (the context's loading call has none)."""
    relay, kernel = lossy
    started = time.perf_counter()
    out: list[str] = []
    result = await asyncio.wait_for(kernel.execute(relay.LOSE_IDLE, lambda stream, text: out.append(text)), 15)
    assert (result.status, out) == ("ok", [relay.LOSE_IDLE])
    assert time.perf_counter() - started < 8  # IDLE_GRACE_S after the reply, not the 15 s guard
    result = await asyncio.wait_for(kernel.execute("x = 2"), 10)  # the next cell is not confused by it
    assert result.status == "ok"


async def test_a_server_that_goes_away_mid_run_stops_the_run_cleanly(inputs: Path, needle_dir: Path,
                                                                     tmp_path: Path) -> None:
    server = start_server(tmp_path / "doomed", inputs)
    try:
        def script(messages, model):
            if not is_rlm_call(messages):
                stop_server(server)  # while the cell waits for this call
                return "the server is gone"
            turn = turn_of(messages)
            return {1: fence("print(llm_query('now'))"), 2: fence("print('after')")}.get(turn, "FINAL(x)")

        started = time.perf_counter()
        run = await run_script(script, needle_dir, tmp_path, settings=remote(server))
    finally:
        stop_server(server)
    assert run.result.answer is None
    assert run.result.stopped_by == "kernel_deaths"
    assert "the kernel's server failed: cannot reach" in (run.result.error or "")
    assert run.kinds(ev.RUN_FINISHED) and time.perf_counter() - started < 60


def test_the_token_never_reaches_a_file_or_the_screen(jupyter: Server, needle_dir: Path, tmp_path: Path) -> None:
    token = jupyter.token

    def script(messages, model):
        if turn_of(messages) == 1:  # the model writes the token into its code: the output must not show it
            return fence(f"print({token!r})")
        return f"FINAL(the token is {token})"

    with ScriptedServer(script) as model:
        env = cli_env()
        env.pop("JUPYTER_TOKEN", None)  # given only as a flag: redacted because it is the token, not by its name
        proc = subprocess.run(
            [PYTHON, "-m", "rlm_tui", str(needle_dir), "q", "--headless", "--json", "--model", "openai/scripted",
             "--api-base", model.url, "--jupyter-server", jupyter.url, "--jupyter-token", token,
             "--session", str(tmp_path / "s.jsonl")],
            capture_output=True, text=True, timeout=180, env=env)
        sent = json.dumps([m for r in model.requests for m in r["messages"] if m["role"] != "assistant"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "the token is [REDACTED]"
    for where in (proc.stdout, proc.stderr, (tmp_path / "s.jsonl").read_text(), sent):
        assert token not in where
    assert "[REDACTED]" in (tmp_path / "s.jsonl").read_text()


@pytest.mark.parametrize("case", ["refused", "bad token", "no token", "not jupyter", "sandbox on"])
def test_preflight_refuses_an_unusable_server(case: str, jupyter: Server, needle_dir: Path, tmp_path: Path) -> None:
    with ScriptedServer(lambda m, model: "FINAL(x)") as model:
        url, token = {"refused": ("http://127.0.0.1:9", jupyter.token),
                      "bad token": (jupyter.url, "wrong-token-0123456789"),
                      "no token": (jupyter.url, ""),
                      "not jupyter": (model.url, jupyter.token),
                      "sandbox on": (jupyter.url, jupyter.token)}[case]
        env = cli_env(JUPYTER_TOKEN=token)
        started = time.perf_counter()
        proc = subprocess.run(
            [PYTHON, "-m", "rlm_tui", str(needle_dir), "q", "--headless", "--model", "openai/scripted",
             "--api-base", model.url, "--jupyter-server", url, "--session", str(tmp_path / "s.jsonl"),
             *(["--sandbox", "on"] if case == "sandbox on" else [])],
            capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlm-tui: "), proc.stderr
    expected = {"refused": "cannot reach --jupyter-server at http://127.0.0.1:9: connection refused",
                "bad token": "its token was refused (HTTP 403)", "no token": "it needs a token (HTTP 403)",
                "not jupyter": "answered GET /api/kernelspecs with HTTP 501: is it a Jupyter Server",
                "sandbox on": "--sandbox on is for kernels on this machine"}[case]
    assert expected in lines[0]
    assert not (tmp_path / "s.jsonl").exists()  # refused before a session file exists
    assert time.perf_counter() - started < 15


def test_a_token_in_the_url_is_used_and_redacted(jupyter: Server, needle_dir: Path, tmp_path: Path) -> None:
    def script(messages, model):
        return fence("print(len(context))") if turn_of(messages) == 1 else "FINAL(ok)"

    with ScriptedServer(script) as model:
        env = cli_env()
        env.pop("JUPYTER_TOKEN", None)
        proc = subprocess.run(
            [PYTHON, "-m", "rlm_tui", str(needle_dir), "q", "--headless", "--model", "openai/scripted",
             "--api-base", model.url, "--jupyter-server", f"{jupyter.url}/?token={jupyter.token}",
             "--session", str(tmp_path / "s.jsonl")],
            capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    assert jupyter.token not in (tmp_path / "s.jsonl").read_text()


def test_the_token_is_not_read_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('jupyter_server = "http://127.0.0.1:8888"\n')
    assert read_config(path) == {"jupyter_server": "http://127.0.0.1:8888"}
    path.write_text('jupyter_token = "abc123abc123"\n')
    with pytest.raises(ConfigError, match="jupyter_token is not read from a config file: it is a secret"):
        read_config(path)


def test_bootstrap_and_loader_import_nothing_from_rlm_tui() -> None:
    """What is shipped to a kernel is plain source: no import of rlm_tui in it (the server test proves it runs)."""
    import ast

    from rlm_tui.core.backends import kernel_source

    for name in ("bootstrap.py", "loader.py"):
        tree = ast.parse(kernel_source(name))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(m.split(".")[0] == "rlm_tui" for m in imported), (name, imported)
