"""The RLM loop end to end: real kernel, real litellm, scripted model on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import fence, run_script
from rlm_tui.core import events as ev
from rlm_tui.model.tree import CallTree
from rlm_tui.scripted import is_rlm_call, question_of, turn_of

pytestmark = pytest.mark.kernel


async def test_needle_found_by_code_in_directory(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if turn_of(messages) == 1:
            return fence("""
hits = [k for k, v in context.items() if 'magic number' in v]
print(hits, type(context).__name__, len(context))
import re
number = re.search(r'magic number is (\\d+)', context[hits[0]]).group(1)
print(number)
""")
        return "The number was found.\nFINAL_VAR(number)"

    run = await run_script(script, corpus, tmp_path)
    assert run.result.answer == "7316"
    assert "['src/deep/needle.txt'] dict 22" in run.cell_text()
    info = run.kinds(ev.CONTEXT_LOADED)[0].get("info")
    assert info["files"] == 22  # 20 filler, the needle, .gitignore
    assert info["skipped"]["binary"]["examples"] == ["image.bin"]
    assert info["skipped"]["gitignored"]["count"] == 2
    first_prompt = run.server.requests[0]["messages"][1]["content"]
    # The first request goes out before the kernel has read anything: the shape comes from file sizes,
    # so the binary file is still counted; the model is told the loaded shape after its first cell.
    assert "dict of about 17,568 characters in about 23 files" in first_prompt
    assert "magic number" not in first_prompt  # the content never goes into the prompt
    second_prompt = run.server.requests[1]["messages"][-1]["content"]
    assert "the context as loaded differs" in second_prompt and "in 22 files" in second_prompt
    assert "1 binary" in second_prompt


async def test_multi_turn_state_persists_and_output_fed_back(corpus: Path, tmp_path: Path) -> None:
    seen: list[str] = []

    def script(messages, model):
        turn = turn_of(messages)
        if turn > 1:
            seen.append(messages[-1]["content"])
        if turn == 1:
            return fence("count = len(context)\nprint('files:', count)")
        if turn == 2:
            return fence("count += 1\nprint('now', count)")
        return "FINAL(done after three turns)"

    run = await run_script(script, corpus, tmp_path)
    assert run.result.answer == "done after three turns"
    assert "files: 22" in seen[0] and "REPL variables: count: int" in seen[0]
    assert "now 23" in seen[1]
    assert [e.get("turn") for e in run.kinds(ev.TURN_STARTED)] == [1, 2, 3]


async def test_batch_of_100_returns_in_order(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "echo:" + messages[-1]["content"]
        if turn_of(messages) == 1:
            return fence("""
out = llm_query_batched([f'p{i}' for i in range(100)])
assert out == [f'echo:p{i}' for i in range(100)], out[:5]
print('ordered', len(out))
""")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path, latency=0.01, concurrency=16)
    assert "ordered 100" in run.cell_text()
    assert run.result.calls == 100
    batch = [e for e in run.kinds(ev.NODE_STARTED) if e.get("node_kind") == "batch"]
    assert len(batch) == 1 and batch[0].get("n") == 100 and batch[0].get("item_kind") == "llm"  # replay folds it lazily
    llm_nodes = [e for e in run.kinds(ev.NODE_STARTED) if e.get("node_kind") == "llm"]
    assert len(llm_nodes) == 100 and {e.parent for e in llm_nodes} == {batch[0].node}


async def test_failed_prompt_in_batch_is_error_string_in_its_slot(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            if messages[-1]["content"] == "bad":
                raise ValueError("scripted failure")
            return "fine"
        if turn_of(messages) == 1:
            return fence("r = llm_query_batched(['a', 'bad', 'c'])\nprint([x[:6] for x in r])")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path, concurrency=3)
    assert "['fine', 'Error:', 'fine']" in run.cell_text()


async def test_recursion_to_depth_two(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "leaf answer to: " + messages[-1]["content"]
        question = question_of(messages)
        turn = turn_of(messages)
        if question.startswith("child task"):
            if turn == 1:
                return fence("print(type(context).__name__, context)\nleaf = rlm_query('grandchild?')\nprint(leaf)")
            return "FINAL(child saw " + ("leaf" if "leaf answer to: grandchild?" in messages[-1]["content"] else "?") + ")"
        if turn == 1:
            return fence("res = rlm_query('child task', context=['a', 'b'])\nprint(res)")
        return "FINAL_VAR(res)"

    run = await run_script(script, corpus, tmp_path, max_depth=2)
    assert run.result.answer == "child saw leaf"
    tree = CallTree()
    tree.extend(run.events)
    root = tree.nodes[tree.root]
    (child_id,) = root.children
    child = tree.nodes[child_id]
    assert child.kind == "rlm" and child.depth == 1 and child.status == "done"
    (leaf_id,) = child.children
    assert tree.nodes[leaf_id].kind == "llm"  # depth 2 of 2 falls back to llm_query
    child_cells = [e for e in run.kinds(ev.CELL_OUTPUT) if e.node == child_id]
    assert "list ['a', 'b']" in "".join(e.get("text") for e in child_cells)


async def test_depth_one_rlm_query_is_a_plain_call(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "plain"
        if turn_of(messages) == 1:
            return fence("print(rlm_query('sub task'))")
        return "FINAL(x)"

    run = await run_script(script, corpus, tmp_path, max_depth=1)
    kinds = [e.get("node_kind") for e in run.kinds(ev.NODE_STARTED)]
    assert kinds == ["root", "llm"]
    assert "plain" in run.cell_text()


async def test_final_on_first_turn_is_refused(corpus: Path, tmp_path: Path) -> None:
    feedback: list[str] = []

    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return "I already know.\nFINAL(invented)"
        feedback.append(messages[-1]["content"])
        if turn == 2:
            return fence("print(len(context))")
        return "FINAL(looked first)"

    run = await run_script(script, corpus, tmp_path)
    assert run.result.answer == "looked first"
    assert "not accepted" in feedback[0]


async def test_answer_dict_and_final_var_in_code(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        return fence("answer['content'] = 'from the dict'\nanswer['ready'] = True")

    run = await run_script(script, corpus, tmp_path)
    assert run.result.answer == "from the dict"
    assert run.kinds(ev.FINAL_ANSWER)[0].get("source") == "answer"


async def test_reserved_names_survive_overwrite(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "still works"
        turn = turn_of(messages)
        if turn == 1:
            return fence("llm_query = None\ncontext = 'gone'")
        if turn == 2:
            return fence("print(llm_query('x'), type(context).__name__)")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path)
    text = run.cell_text()
    assert "`llm_query` is reserved and was restored" in text
    assert "still works dict" in text


async def test_errors_and_tracebacks_fed_back(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence("1/0")
        fed.append(messages[-1]["content"])
        return "FINAL(saw the error)"

    run = await run_script(script, corpus, tmp_path)
    assert "ZeroDivisionError" in fed[0]
    assert "\x1b[" not in fed[0]  # ANSI is stripped for the model
    assert run.kinds(ev.CELL_FINISHED)[0].get("status") == "error"


async def test_long_output_is_truncated_with_marker(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        if turn_of(messages) == 1:
            return fence("print('x' * 50_000)")
        fed.append(messages[-1]["content"])
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path, output_chars=1000)
    assert "[... 49,001 more characters]" in fed[0]
    finished = run.kinds(ev.CELL_FINISHED)[0]
    assert finished.get("truncated_chars") == 49_001
    assert sum(len(e.get("text")) for e in run.kinds(ev.CELL_OUTPUT)) == 1000


async def test_single_file_context_is_a_string(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"caf\xe9 ok\nsecond line\n")  # invalid UTF-8 is replaced, not fatal

    def script(messages, model):
        if turn_of(messages) == 1:
            return fence("print(type(context).__name__, repr(context[:6]))")
        return "FINAL(ok)"

    run = await run_script(script, path, tmp_path)
    assert "str 'caf\ufffd o'" in run.cell_text()
    # The first request is sent from the file's size alone (the kernel is still starting);
    # the loaded shape, with its line count, is on the context_loaded event.
    assert "a str of about 20 characters." in run.server.requests[0]["messages"][1]["content"]
    assert run.kinds(ev.CONTEXT_LOADED)[0].get("info")["lines"] == 2


async def test_usage_adds_up_over_the_tree(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "short"
        if turn_of(messages) == 1:
            return fence("llm_query_batched(['one', 'two', 'three'])\nllm_query('four')")
        return "FINAL(done)"

    run = await run_script(script, corpus, tmp_path, model="openai/gpt-4o-mini")
    tree = CallTree()
    tree.extend(run.events)
    total = tree.total_usage()
    usage = run.result.usage
    assert usage["total_tokens"] == total.total_tokens > 0
    assert abs(usage["cost_usd"] - total.cost_usd) < 1e-9 and usage["cost_usd"] > 0  # a priced model
    assert tree.subtree_usage(tree.root).total_tokens == total.total_tokens
    assert tree.subtree_calls(tree.root) == run.result.calls == 4
    per_model = usage["per_model"]["openai/gpt-4o-mini"]
    assert per_model["calls"] == 2 + 4
