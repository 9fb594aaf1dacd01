"""One benchmark measurement in a fresh process: ``python -m rlm_tui.bench.worker JSON``.

JSON names the ``system`` (rlm-tui, rlms-ipython, rlms-local), the ``task``
(overhead, batch, child, load, e2e) and its parameters. The result is printed
as one ``BENCH-RESULT {json}`` line on stdout (a kernel may print other
lines). Nothing heavy is imported at module level, so the e2e timing from
process start is the harness's own.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .script import OUT_MARK, question

RESULT = "BENCH-RESULT "
MODEL_TUI = "openai/bench"
MODEL_RLMS = "bench"
API_KEY = "sk-bench-not-a-real-key"


def host_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- rlm-tui ----------------------------------------------------------------------------

def _tui_settings(url: str, work: Path, sandbox: str = "auto", **limits: Any) -> Any:
    from ..core.config import Limits, Settings

    return Settings(model=MODEL_TUI, api_base=url, api_key=API_KEY, limits=Limits(**limits),
                    session_path=work / "session.jsonl", lm_backoff=0.05, sandbox=sandbox)


async def _tui_direct(url: str, n: int) -> list[float]:
    """The LM client's own cost: the same call the harness makes, made directly."""
    from ..core.lm import LMClient

    client = LMClient(api_base=url, api_key=API_KEY, retries=0)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        result = await client.complete(MODEL_TUI, [{"role": "user", "content": f"ping {i}"}])
        samples.append(time.perf_counter() - started)
        assert result.text.startswith("pong"), result.text
    return samples


def run_tui(task: str, p: dict[str, Any], work: Path) -> dict[str, Any]:
    import asyncio

    from ..core import events as ev
    from ..core.engine import Engine

    out = "-"  # the kernel may be sandboxed: it prints its measurement, read back from the session file
    limits: dict[str, Any] = {"max_iterations": 6}
    if p.get("concurrency"):
        limits["concurrency"] = p["concurrency"]
    path = Path(p.get("path") or work / "context.txt")
    if not p.get("path"):
        path.write_text("a small context for the benchmark\n" * 10)
    if task == "overhead":
        q = question("overhead", n=p["n"], out=out)
    elif task == "batch":
        q = question("batch", n=p["n"], reps=p["reps"], out=out)
    elif task == "child":
        q = question("child", n=p["n"], gap=p["gap"], out=out)
        limits["max_depth"] = 2
    elif task == "load":
        q = question("load", out=out)
    elif task == "fanout":
        q = question("batch", n=p["n"], reps=1, out=out)
        limits["max_subcalls"] = p["n"]
    else:
        raise SystemExit(f"unknown task {task}")
    events: list[ev.Event] = []
    if task == "fanout" and p.get("app"):
        _run_in_app(_tui_settings(p["url"], work, **limits), q, path)
        return _printed(work / "session.jsonl")

    async def main() -> tuple[Any, list[float]]:
        # The direct calls run before and after the run (pooled), so neither sees only a cold or busy machine.
        direct = await _tui_direct(p["url"], p["n"]) if task == "overhead" else []
        engine = Engine(_tui_settings(p["url"], work, p.get("sandbox", "auto"), **limits), q, path,
                        sink=events.append)
        result = await engine.run()
        if task == "overhead":
            direct += await _tui_direct(p["url"], p["n"])
        return result, direct

    result, direct = asyncio.run(main())
    if result.error or not result.answer or "done" not in result.answer:
        raise SystemExit(f"rlm-tui run failed: answer={result.answer!r} error={result.error!r}")
    data = _printed(work / "session.jsonl")
    data["direct"] = direct
    root = [e for e in events if e.node == "n0" and e.kind == ev.KERNEL]
    starting = next(e.t for e in root if e.get("state") == "starting")
    data["kernel_start_s"] = next(e.t for e in root if e.get("state") == "loading context") - starting
    data["backend"] = next(e.get("kernel_backend") for e in events if e.kind == ev.RUN_STARTED)["name"]
    if task == "load":
        root = [e for e in events if e.node == "n0"]
        started = next(e.t for e in root if e.kind == ev.KERNEL and e.get("state") == "loading context")
        loaded = next(e for e in root if e.kind == ev.CONTEXT_LOADED)
        data.update(load_s=loaded.t - started, host_maxrss_mb=host_maxrss_mb(),
                    kernel_maxrss_mb=data["maxrss_kb"] / 1024)
    return data


def _printed(session: Path) -> dict[str, Any]:
    """The measurement the root's code printed (``script._save``), from the session file."""
    from ..core.session import load

    text = "".join(e.get("text", "") for e in load(session).events if e.kind == "cell_output" and e.node == "n0")
    line = next(line for line in text.splitlines() if line.startswith(OUT_MARK))
    return json.loads(line[len(OUT_MARK):])


def _run_in_app(settings: Any, q: str, path: Path) -> None:
    """The run in the real app (engine thread, frames drawn on a headless terminal) until it ends."""
    import asyncio

    from ..ui.app import RlmApp
    from ..ui.runner import EngineSource

    settings.approve = "auto"
    app = RlmApp(EngineSource(settings, q, path), theme="rlm-midnight", remember_theme=False)

    async def main() -> None:
        async with app.run_test(size=(160, 45)) as pilot:
            while not app.run_state.finished:
                await pilot.pause(0.1)

    asyncio.run(main())


# ---- rlms -------------------------------------------------------------------------------

def _rlms(system: str, url: str, max_depth: int = 1, concurrency: int | None = None) -> Any:
    from rlm import RLM

    if concurrency:  # rlms fixes llm_query_batched's concurrency at 16 (LMHandler's default)
        from rlm.core import lm_handler

        defaults = list(lm_handler.LMHandler.__init__.__defaults__ or ())
        defaults[-1] = concurrency
        lm_handler.LMHandler.__init__.__defaults__ = tuple(defaults)
    env = "ipython" if system == "rlms-ipython" else "local"
    env_kwargs = {"kernel_mode": "subprocess"} if env == "ipython" else {}
    return RLM(backend="openai", backend_kwargs={"model_name": MODEL_RLMS, "base_url": url, "api_key": API_KEY},
               environment=env, environment_kwargs=env_kwargs, max_depth=max_depth, max_iterations=6)


def run_rlms(system: str, task: str, p: dict[str, Any], work: Path) -> dict[str, Any]:
    out = str(work / "out.json")
    context: Any = "a small context for the benchmark\n" * 10
    depth = 1
    data: dict[str, Any] = {"direct": []}

    def direct() -> None:  # the LM client's own cost, before and after the run (pooled)
        from rlm.clients.openai import OpenAIClient

        client = OpenAIClient(api_key=API_KEY, model_name=MODEL_RLMS, base_url=p["url"])
        for i in range(p["n"]):
            started = time.perf_counter()
            text = client.completion(f"ping {i}")
            data["direct"].append(time.perf_counter() - started)
            assert text.startswith("pong"), text

    if task == "overhead":
        direct()
        q = question("overhead", n=p["n"], out=out)
    elif task == "batch":
        q = question("batch", n=p["n"], reps=p["reps"], out=out)
    elif task == "child":
        q = question("child", n=p["n"], gap=p["gap"], out=out)
        depth = 2
    elif task == "load":
        q = question("load", out=out)
        env_cls = _env_class(system)
        original = env_cls.load_context
        timings: list[float] = []

        def timed_load(self: Any, payload: Any) -> None:
            started = time.perf_counter()
            original(self, payload)
            timings.append(time.perf_counter() - started)

        env_cls.load_context = timed_load
        from .corpus import read_dir

        started = time.perf_counter()
        context = read_dir(p["path"])  # rlms takes data, not a path: the user reads the directory
        data["read_s"] = time.perf_counter() - started
    else:
        raise SystemExit(f"unknown task {task}")
    rlm = _rlms(system, p["url"], depth, p.get("concurrency"))
    completion = rlm.completion(context, root_prompt=q)
    if "done" not in str(completion.response):
        raise SystemExit(f"rlms run failed: {completion.response!r}")
    data.update(json.loads(Path(out).read_text()))
    if task == "overhead":
        direct()
    if task == "load":
        data.update(load_s=data["read_s"] + timings[0], host_maxrss_mb=host_maxrss_mb(),
                    kernel_maxrss_mb=data["maxrss_kb"] / 1024)
    return data


def _env_class(system: str) -> Any:
    if system == "rlms-ipython":
        from rlm.environments.ipython_repl import IPythonREPL

        return IPythonREPL
    from rlm.environments.local_repl import LocalREPL

    return LocalREPL


def run_rlms_e2e(system: str, p: dict[str, Any]) -> dict[str, Any]:
    """The rlms equivalent of ``rlm-tui DIR QUESTION --headless``: read the directory, run, print."""
    from .corpus import read_dir

    context = read_dir(p["path"])
    completion = _rlms(system, p["url"], max_depth=p.get("depth", 2)).completion(context, root_prompt=p["question"])
    return {"answer": completion.response}


# ---- entry ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    system, task = spec["system"], spec["task"]
    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        work = Path(tmp)
        if task == "e2e":
            data = run_rlms_e2e(system, spec)
        elif system == "rlm-tui":
            data = run_tui(task, spec, work)
        else:
            data = run_rlms(system, task, spec, work)
    print(RESULT + json.dumps(data), flush=True)
    return 0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    sys.exit(main())
