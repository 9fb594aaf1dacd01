"""Runaway recursion: loops of sub-calls, endless rlm_query, huge batches. The caps stop them.

"Promptly" here means tens of seconds, not the hours an uncapped run would take.
"""

from __future__ import annotations

from pathlib import Path

from conftest import fence, run_script
from rlm_tui.core import events as ev
from rlm_tui.core.backends import strip_ansi
from rlm_tui.core.session import load
from rlm_tui.core.tree import CallTree
from rlm_tui.scripted import Script, is_rlm_call, question_of, turn_of


def _one_cell(code: str, sub_reply: str = "ok", final: str = "FINAL(done)") -> Script:
    """A root that runs ``code`` on turn 1 and then answers; sub-calls get ``sub_reply``."""
    def script(messages, model):
        if not is_rlm_call(messages):
            return sub_reply
        return fence(code) if turn_of(messages) == 1 else final
    return script


def _nodes(run, kind: str) -> int:
    return len([e for e in run.kinds(ev.NODE_STARTED) if e.get("node_kind") == kind])


def _session_ok(tmp_path: Path, max_bytes: int) -> None:
    path = tmp_path / "session.jsonl"
    loaded = load(path)
    assert loaded.bad_lines == [] and loaded.events[-1].kind == ev.RUN_FINISHED
    assert path.stat().st_size < max_bytes


async def test_100k_llm_query_loop_stops_at_max_subcalls(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        if not is_rlm_call(messages):
            return "ok"
        if turn_of(messages) == 1:
            return fence("n = 0\nfor i in range(100_000):\n    llm_query(f'q{i}')\n    n += 1")
        fed.append(messages[-1]["content"])
        return "FINAL(stopped)"

    run = await run_script(script, corpus, tmp_path, max_subcalls=100, concurrency=8)
    assert run.result.answer == "stopped"
    assert run.result.calls == 100
    assert run.result.duration_s < 120
    assert "max_subcalls" in fed[0] and "REPL variables: n: int, i: int" in fed[0]
    limits = run.kinds(ev.LIMIT_REACHED)
    assert [e.get("limit") for e in limits] == ["max_subcalls"]
    assert _nodes(run, "llm") == 100
    _session_ok(tmp_path, 2_000_000)


async def test_refusals_swallowed_in_a_loop_are_cheap_and_leave_no_trace(corpus: Path, tmp_path: Path) -> None:
    script = _one_cell("""
refused = 0
for i in range(20_000):
    try:
        llm_query('q')
    except RuntimeError as exc:
        refused += 1
        last = str(exc)
print(refused, last)
""")
    run = await run_script(script, corpus, tmp_path, max_subcalls=50, cell_timeout=120)
    assert run.result.answer == "done"
    assert "19950 limit reached (max_subcalls)" in run.cell_text()
    assert run.kinds(ev.CELL_FINISHED)[0].get("status") == "ok"
    _session_ok(tmp_path, 1_000_000)  # a refusal records nothing: only the 50 calls made


async def test_endless_rlm_query_recursion_stops_at_max_depth(tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "bottom"
        if turn_of(messages) == 1:
            return fence("r = rlm_query('go one level deeper')\nprint(r)")
        return "FINAL_VAR(r)"

    path = tmp_path / "in.txt"
    path.write_text("start\n")
    run = await run_script(script, path, tmp_path, max_depth=6, timeout=600)
    assert run.result.answer == "bottom"  # the deepest level's plain call, passed back up
    tree = CallTree()
    tree.extend(run.events)
    depths = sorted(n.depth for n in tree.nodes.values())
    assert depths == [0, 1, 2, 3, 4, 5, 6]  # five child RLMs, then a plain call at depth 6
    assert all(n.status == "done" for n in tree.nodes.values())


async def test_endless_rlm_query_recursion_stops_at_max_subcalls(tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "bottom"
        if turn_of(messages) == 1:
            return fence("try:\n    r = rlm_query('deeper')\nexcept RuntimeError as exc:\n    r = f'refused: {exc}'\nprint(r)")
        return "FINAL_VAR(r)"

    path = tmp_path / "in.txt"
    path.write_text("start\n")
    run = await run_script(script, path, tmp_path, max_depth=50, max_subcalls=4, timeout=600)
    assert run.result.answer.startswith("refused: limit reached (max_subcalls)")
    assert run.result.calls == 4
    assert _nodes(run, "rlm") == 4
    _session_ok(tmp_path, 2_000_000)


async def test_50k_prompt_batch_is_capped(corpus: Path, tmp_path: Path) -> None:
    script = _one_cell("""
out = llm_query_batched([f'p{i}' for i in range(50_000)])
print(len(out), out.count('a'), out[-1])
""", sub_reply="a")
    run = await run_script(script, corpus, tmp_path, max_subcalls=300, concurrency=16)
    assert run.result.answer == "done"
    assert "50000 300 Error: limit reached (max_subcalls)" in run.cell_text()
    assert run.result.calls == 300 and run.result.duration_s < 120
    _session_ok(tmp_path, 3_000_000)


async def test_batch_after_the_cap_raises(corpus: Path, tmp_path: Path) -> None:
    script = _one_cell("llm_query_batched(['x'] * 5)\nllm_query_batched(['y'] * 5)", sub_reply="a")
    run = await run_script(script, corpus, tmp_path, max_subcalls=5)
    assert "RuntimeError: limit reached (max_subcalls)" in strip_ansi(run.cell_text())


async def test_token_cap_stops_a_loop(corpus: Path, tmp_path: Path) -> None:
    script = _one_cell("for i in range(10_000):\n    llm_query('x' * 4000)", sub_reply="short")
    run = await run_script(script, corpus, tmp_path, max_tokens=30_000)
    assert run.result.stopped_by == "max_tokens"
    assert "limit reached (max_tokens)" in run.cell_text()
    assert run.result.usage["total_tokens"] < 30_000 + 2_000  # at most one call over
    assert run.result.calls <= 32


async def test_budget_stops_a_loop(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "short"
        if turn_of(messages) == 1:
            return fence("for i in range(10_000):\n    llm_query('x' * 4000)")
        return "FINAL(done)"

    # gpt-4o-mini: $0.15 per million input tokens, so a 1,000-token prompt costs $0.00015.
    run = await run_script(script, corpus, tmp_path, model="openai/gpt-4o-mini", budget=0.002)
    assert run.result.stopped_by == "budget"
    assert "limit reached (budget)" in run.cell_text()
    assert run.result.usage["cost_usd"] < 0.002 + 0.0003
    assert run.result.answer is None  # the root's next turn is refused too


async def test_wall_time_stops_an_endless_run(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "again"
        return fence("while True:\n    llm_query('more')")

    run = await run_script(script, corpus, tmp_path, latency=0.01, timeout=8, max_subcalls=1_000_000)
    assert run.result.stopped_by == "timeout"
    assert run.result.duration_s < 60
    _session_ok(tmp_path, 5_000_000)


async def test_child_rlms_run_at_most_four_at_a_time_per_depth(corpus: Path, tmp_path: Path) -> None:
    """rlm_query_batched of 6 children at --concurrency 32: 4 run, the others queue for a slot."""
    def script(messages, model):
        if not is_rlm_call(messages):
            return "sub"
        if question_of(messages).startswith("child task"):
            return fence("import time\ntime.sleep(1)") if turn_of(messages) == 1 else "FINAL(child ok)"
        if turn_of(messages) == 1:
            return fence("print(rlm_query_batched([f'child task {i}' for i in range(6)]))")
        return "FINAL(done)"

    run = await run_script(script, corpus, tmp_path, max_depth=2)
    assert run.result.answer == "done"
    assert str(["child ok"] * 6) in run.cell_text()
    running, most = set(), 0
    for event in run.events:
        if event.kind == ev.NODE_STARTED and event.get("node_kind") == "rlm":
            running.add(event.node)
            most = max(most, len(running))
        elif event.kind == ev.NODE_FINISHED:
            running.discard(event.node)
    assert most == 4
