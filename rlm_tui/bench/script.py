"""The benchmark's scripted model: one script that drives rlm-tui and ``rlms`` alike.

Both harnesses talk to the same OpenAI-compatible server (``rlm_tui.scripted``)
running in its own process (so it never competes for a harness's GIL). The
root question names a scenario as ``bench:{json}``; the script answers each
root turn with the same ```repl block for both systems, so the code that runs
in the REPL — and what it measures there — is identical. Requests are told
apart by shape, which works for both harnesses' prompts:

- no system message: a plain ``llm_query`` -> ``pong ...``;
- a system message and ``bench:`` in the first user message: a root turn;
- a system message without it: a child RLM, which answers at once from code.

A child's first request and a root's first request are logged with their
wall-clock arrival times to the file named by ``RLM_BENCH_LOG``, so the
benchmark can time ``rlm_query`` -> child and process start -> first request.
Run ``python -m rlm_tui.bench.script --latency S`` to serve it; the server
prints its URL on stdout and stops when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from typing import Any

_BENCH = re.compile(r"bench:(\{.*?\})(?:\s|$)", re.S)
_log_lock = threading.Lock()

ANSWER = 'answer["content"] = {text!r}\nanswer["ready"] = True\n'


def fence(code: str) -> str:
    return f"Running this.\n```repl\n{code.strip()}\n```\n"


def question(scenario: str, **params: Any) -> str:
    """The root question that selects a scenario (the same text for both harnesses)."""
    return "bench:" + json.dumps(dict(params, s=scenario), separators=(",", ":"))


def classify(messages: list[dict[str, Any]]) -> tuple[str, int, dict[str, Any] | None]:
    """(kind, turn, scenario) for a request: kind is llm, root or child."""
    if not messages or messages[0].get("role") != "system":
        return "llm", 0, None
    turn = 1 + sum(1 for m in messages if m.get("role") == "assistant")
    first = next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")
    match = _BENCH.search(first)
    if match is None:
        return "child", turn, None
    return "root", turn, json.loads(match.group(1))


def _log(kind: str) -> None:
    path = os.environ.get("RLM_BENCH_LOG")
    if path:
        with _log_lock, open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{kind} {time.time():.6f}\n")


def reply(messages: list[dict[str, Any]], model: str) -> str:
    kind, turn, scenario = classify(messages)
    if kind == "llm":
        return "pong " + str(messages[-1].get("content", ""))[:40]
    if kind == "child":
        if turn == 1:
            _log("child_first")
            return fence("_c = context if isinstance(context, str) else str(context)\n"
                         'answer["content"] = "child saw " + _c[:40]\nanswer["ready"] = True')
        return fence(ANSWER.format(text="child done"))
    assert scenario is not None
    if turn == 1:
        _log("root_first")
    turns = SCENARIOS[scenario["s"]](scenario)
    return fence(turns[min(turn, len(turns)) - 1])


# ---- scenarios: the code each root turn runs (in rlm-tui's kernel and in rlms's REPL alike) ----

OUT_MARK = "BENCH-OUT "


def _save(p: dict[str, Any], value: str) -> str:
    """Code that hands a measurement back: written to the file ``out``, or with ``out`` "-" printed
    as one OUT_MARK line (a sandboxed kernel cannot write outside its run's folder)."""
    if p["out"] == "-":
        return f"print({OUT_MARK!r} + _j.dumps({value}))\n"
    return f"with open({p['out']!r}, 'w') as _f:\n    _f.write(_j.dumps({value}))\n"


def _overhead(p: dict[str, Any]) -> list[str]:
    """Row 1: sequential llm_query round trips, timed inside the REPL."""
    return [f"""
import json as _j, time as _t
_lat = []
for _i in range({p['n']}):
    _s = _t.perf_counter()
    _r = llm_query("ping %d" % _i)
    _lat.append(_t.perf_counter() - _s)
    if not _r.startswith("pong"):
        raise RuntimeError(_r)
{_save(p, '{"lat": _lat}')}""" + ANSWER.format(text="overhead done")]


def _batch(p: dict[str, Any]) -> list[str]:
    """Row 2: llm_query_batched over n prompts, timed inside the REPL, ``reps`` times."""
    return [f"""
import json as _j, time as _t
_runs = []
for _k in range({p['reps']}):
    _s = _t.perf_counter()
    _r = llm_query_batched(["b%d" % _i for _i in range({p['n']})])
    _d = _t.perf_counter() - _s
    _bad = sum(1 for _x in _r if not str(_x).startswith("pong"))
    _runs.append({{"s": _d, "bad": _bad, "n": len(_r)}})
{_save(p, '{"runs": _runs}')}""" + ANSWER.format(text="batch done")]


def _child(p: dict[str, Any]) -> list[str]:
    """Row 3: sequential rlm_query calls, each after a pause; wall-clock time of each call."""
    return [f"""
import json as _j, time as _t
_calls = []
for _i in range({p['n']}):
    _t.sleep({p['gap']})
    _c = _t.time()
    _r = rlm_query("child %d" % _i)
    _calls.append([_c, _t.time(), str(_r)[:80]])
{_save(p, '{"calls": _calls}')}""" + ANSWER.format(text="child done")]


def _e2e(p: dict[str, Any]) -> list[str]:
    """Row 4: 3 root turns, 20 sequential sub-calls, one batch of 64, one child."""
    return [
        f"""
_seq = [llm_query("seq %d" % _i) for _i in range({p.get('seq', 20)})]
print(len(_seq), _seq[0])
""",
        f"""
_bat = llm_query_batched(["bat %d" % _i for _i in range({p.get('batch', 64)})])
_kid = rlm_query("child e2e")
print(len(_bat), sum(1 for _x in _bat if _x.startswith("pong")), _kid)
""",
        ANSWER.format(text="e2e ok"),
    ]


def _trivial(p: dict[str, Any]) -> list[str]:
    """Rows 7 and 8: one turn that looks at the context once and answers (start-up dominates)."""
    return ["print(len(context))\n" + ANSWER.format(text="trivial ok")]


def _load(p: dict[str, Any]) -> list[str]:
    """Row 5: after the context is loaded, report the REPL process's peak memory and the size seen."""
    return [f"""
import json as _j, resource as _res
_vals = context.values() if isinstance(context, dict) else [context]
{_save(p, '{"maxrss_kb": _res.getrusage(_res.RUSAGE_SELF).ru_maxrss, "files": len(context), '
            '"chars": sum(len(_v) for _v in _vals)}')}""" + ANSWER.format(text="load done")]


SCENARIOS = {"overhead": _overhead, "batch": _batch, "child": _child, "e2e": _e2e, "load": _load,
             "trivial": _trivial}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the benchmark's scripted model on 127.0.0.1.")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--log", help="file for child-RLM arrival times (RLM_BENCH_LOG)")
    args = parser.parse_args(argv)
    if args.log:
        os.environ["RLM_BENCH_LOG"] = args.log
    from ..scripted import ScriptedServer

    server = ScriptedServer(reply, latency=args.latency, keep_requests=0).start()
    print(server.url, flush=True)
    try:
        sys.stdin.read()  # the benchmark closes our stdin to stop us
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
