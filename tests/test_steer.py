"""Steering a real run: approve, edit, deny, batches, kill, pause, step, interrupt; all recorded.

A ``FakeUI`` plays the Textual app's part: it receives events on the engine's
thread and makes its decisions on a thread of its own, through the same
command interface (``Engine.steering``) the UI uses. Nothing here waits for a
fixed time to pass: every decision is made in reaction to an event.
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import PYTHON, cli_env, fed_root, fence
from rlm_tui.core import events as ev
from rlm_tui.core.control import KILLED_RESULT, POLICY_DENIED, Steering
from rlm_tui.scripted import is_rlm_call, question_of, turn_of
from steer_sample import FakeUI, steer_run

pytestmark = pytest.mark.kernel

def echo_sub(script_root: Callable[[list[dict[str, Any]], str], str]):
    """Sub-calls answer ``sub says <prompt>``; RLM turns go to ``script_root``."""

    def script(messages, model):
        if not is_rlm_call(messages):
            return "sub says " + messages[-1]["content"]
        return script_root(messages, model)

    return script


@contextmanager
def held_subcalls(root):
    """A script whose sub-calls never answer until the block ends: only a kill finishes them."""
    release = threading.Event()

    def script(messages, model):
        if not is_rlm_call(messages):
            release.wait(60)
            return "too late"
        return root(messages, model)

    try:
        yield script
    finally:
        release.set()


def one_cell(code: str, final: str = "FINAL(done)"):
    return echo_sub(lambda messages, model: fence(code) if turn_of(messages) == 1 else final)


# ---- approving ----------------------------------------------------------------------------


async def test_approve_runs_the_call_and_the_session_records_it(corpus: Path, tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED:
            assert ui.steering.waiting == 1 and ui.steering.pending()[0]["prompt"] == "hello"
            assert ui.do(ui.steering.approve(event.node))

    run = await steer_run(one_cell("print(llm_query('hello'))"), corpus, tmp_path, react)
    assert run.result.answer == "done"
    assert "sub says hello" in run.cell_text()
    (asked,) = [e for e in run.session if e.kind == ev.SPAWN_REQUESTED]
    (decided,) = [e for e in run.session if e.kind == ev.SPAWN_DECIDED]
    assert asked.get("node_kind") == "llm" and asked.get("prompt") == "hello" and asked.get("waiting") == 1
    assert asked.get("model") == "openai/scripted"
    assert decided.node == asked.node and decided.get("decision") == "approve" and decided.get("by") == "user"
    assert decided.get("waiting") == 0 and decided.get("at", "").endswith("+00:00") and decided.t >= asked.t
    started = next(e for e in run.session if e.kind == ev.NODE_STARTED and e.node == asked.node)
    assert started.seq > decided.seq
    assert run.tree().nodes[asked.node].status == "done"


async def test_edit_changes_what_the_sub_model_receives(corpus: Path, tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED:
            assert ui.do(ui.steering.edit(event.node, prompt="a better question", model="openai/other-model"))

    run = await steer_run(one_cell("print(llm_query('a vague question'))"), corpus, tmp_path, react)
    assert "sub says a better question" in run.cell_text()
    subs = [r for r in run.server.requests if not is_rlm_call(r["messages"])]
    assert [r["messages"][-1]["content"] for r in subs] == ["a better question"]
    assert subs[0]["model"] == "other-model"
    (decided,) = [e for e in run.session if e.kind == ev.SPAWN_DECIDED]
    assert decided.get("decision") == "edit" and decided.get("by") == "user"
    assert decided.get("original_prompt") == "a vague question" and decided.get("prompt") == "a better question"
    assert decided.get("original_model") == "openai/scripted" and decided.get("model") == "openai/other-model"


async def test_deny_with_reason_returns_an_error_string_and_the_run_continues(corpus: Path,
                                                                               tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED:
            assert ui.do(ui.steering.deny(event.node, "too broad, grep first"))

    run = await steer_run(one_cell("r = llm_query('summarise everything')\nprint(repr(r))"), corpus, tmp_path,
                          react)
    assert run.result.answer == "done"
    assert "'Error: denied by user: too broad, grep first'" in run.cell_text()
    assert not [r for r in run.server.requests if not is_rlm_call(r["messages"])]  # never sent
    (decided,) = run.kinds(ev.SPAWN_DECIDED)
    assert decided.get("decision") == "deny" and decided.get("reason") == "too broad, grep first"
    node = run.tree().nodes[decided.node]
    assert node.status == "denied" and node.finished_t is not None


async def test_deny_policy_refuses_calls_and_batches_without_asking(corpus: Path, tmp_path: Path) -> None:
    code = "print(repr(llm_query('x')))\nprint(llm_query_batched(['a', 'b']))"
    run = await steer_run(one_cell(code), corpus, tmp_path, approve="deny")
    text = run.cell_text()
    assert repr(POLICY_DENIED) in text and f"[{POLICY_DENIED!r}, {POLICY_DENIED!r}]" in text
    asked = run.kinds(ev.SPAWN_REQUESTED)
    assert [e.get("node_kind") for e in asked] == ["llm", "batch"] and asked[1].get("prompts") == ["a", "b"]
    assert {(e.get("decision"), e.get("by")) for e in run.kinds(ev.SPAWN_DECIDED)} == {("deny", "policy")}
    assert not [r for r in run.server.requests if not is_rlm_call(r["messages"])]
    assert run.result.answer == "done"


async def test_rlm_policy_asks_only_for_child_rlms_and_shows_their_context(corpus: Path, tmp_path: Path) -> None:
    def root(messages, model):
        if question_of(messages).startswith("child task"):
            return fence("print(llm_query('inside the child'))") if turn_of(messages) == 1 else "FINAL(child ok)"
        if turn_of(messages) == 1:
            return fence("print(llm_query('plain'))\nprint(rlm_query('child task', context=['a', 'b']))")
        return "FINAL(done)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED:
            assert ui.do(ui.steering.approve(event.node))

    run = await steer_run(echo_sub(root), corpus, tmp_path, react, approve="rlm", max_depth=2)
    assert "sub says plain" in run.cell_text() and "child ok" in run.cell_text()
    (asked,) = run.kinds(ev.SPAWN_REQUESTED)  # the two llm_query calls ran without asking
    assert asked.get("node_kind") == "rlm" and asked.get("prompt") == "child task"
    pickled = len(pickle.dumps(["a", "b"], protocol=pickle.HIGHEST_PROTOCOL))  # the kernel runs this Python
    assert asked.get("context") == {"type": "list", "items": 2, "bytes": pickled, "preview": "['a', 'b']"}


async def test_always_approves_the_kind_for_the_rest_of_the_run(corpus: Path, tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED:
            assert ui.do(ui.steering.always(event.node))  # the kind of this waiting spawn

    code = "print(llm_query('first'), llm_query('second'), llm_query_batched(['third']))"
    run = await steer_run(one_cell(code), corpus, tmp_path, react)
    assert "sub says first sub says second ['sub says third']" in run.cell_text()
    assert len(run.kinds(ev.SPAWN_REQUESTED)) == 1
    (always,) = [e for e in run.kinds(ev.STEERING) if e.get("action") == "always"]
    assert always.get("spawn_kind") == "llm" and always.get("by") == "user"


async def test_spawns_arriving_together_all_wait_and_are_decided_separately(corpus: Path, tmp_path: Path) -> None:
    code = """
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(3) as pool:
    one = pool.submit(llm_query, 'one')
    two = pool.submit(llm_query, 'two')
    many = pool.submit(llm_query_batched, ['b1', 'b2'])
print(one.result(), '|', two.result(), '|', many.result())
"""

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED and event.get("waiting") == 3:
            pending = {p["prompt"]: p for p in ui.steering.pending()}
            assert set(pending) == {"one", "two", "b1"} and pending["b1"]["prompts"] == ["b1", "b2"]
            assert ui.do(ui.steering.edit(pending["one"]["id"], prompt="one, edited"))
            assert ui.do(ui.steering.deny(pending["two"]["id"]))
            assert ui.do(ui.steering.approve_all())  # what is left: the batch, as one
            assert ui.steering.waiting == 0

    run = await steer_run(one_cell(code), corpus, tmp_path, react)
    assert "sub says one, edited | Error: denied by user | ['sub says b1', 'sub says b2']" in run.cell_text()
    assert [e.get("waiting") for e in run.kinds(ev.SPAWN_REQUESTED)] == [1, 2, 3]
    assert sorted(e.get("waiting") for e in run.kinds(ev.SPAWN_DECIDED)) == [0, 1, 2]


async def test_a_batch_opened_is_decided_prompt_by_prompt(corpus: Path, tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind != ev.SPAWN_REQUESTED:
            return
        if event.get("node_kind") == "batch":
            ui.seen["batch"] = event.node
            assert event.get("n") == 3 and event.get("label") == "llm_query_batched × 3"
            assert ui.do(ui.steering.open_batch(event.node))
        elif event.get("waiting") == 3:
            items = {p["prompt"]: p["id"] for p in ui.steering.pending()}
            assert ui.do(ui.steering.approve(items["p0"]))
            assert ui.do(ui.steering.edit(items["p1"], prompt="p1 edited"))
            assert ui.do(ui.steering.deny(items["p2"], "no"))

    run = await steer_run(one_cell("print(llm_query_batched(['p0', 'p1', 'p2']))"), corpus, tmp_path, react)
    assert "['sub says p0', 'sub says p1 edited', 'Error: denied by user: no']" in run.cell_text()
    batch = run.ui.seen["batch"]
    items = [e for e in run.kinds(ev.SPAWN_REQUESTED) if e.parent == batch]
    assert [e.get("prompt") for e in items] == ["p0", "p1", "p2"]
    decisions = {e.node: e.get("decision") for e in run.kinds(ev.SPAWN_DECIDED)}
    assert decisions[batch] == "open" and [decisions[e.node] for e in items] == ["approve", "edit", "deny"]
    tree = run.tree()
    assert [tree.nodes[c].status for c in tree.nodes[batch].children] == ["done", "done", "denied"]


# ---- killing ------------------------------------------------------------------------------


async def test_kill_a_running_child_rlm_interrupts_its_cell_and_the_parent_continues(corpus: Path,
                                                                                    tmp_path: Path) -> None:
    def root(messages, model):
        if question_of(messages).startswith("child task"):
            return fence("print('child working', flush=True)\nr = llm_query('grandchild')\nimport time\n"
                         "time.sleep(60)")
        if turn_of(messages) == 1:
            return fence("r = rlm_query('child task')\nprint('parent got:', r)")
        return "FINAL(the parent went on)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED and event.get("node_kind") == "rlm":
            ui.seen["child"] = event.node
            assert ui.do(ui.steering.approve(event.node))
        elif event.kind == ev.SPAWN_REQUESTED:  # the child's own call waits: kill the child's whole subtree
            ui.seen["grandchild"] = event.node
            assert ui.do(ui.steering.kill(ui.seen["child"]))

    run = await steer_run(echo_sub(root), corpus, tmp_path, react, max_depth=2)
    child, grandchild = run.ui.seen["child"], run.ui.seen["grandchild"]
    assert run.result.answer == "the parent went on"
    assert f"parent got: {KILLED_RESULT}" in run.cell_text("n0")
    (cell_done,) = [e for e in run.kinds(ev.CELL_FINISHED) if e.node == child]
    assert cell_done.get("status") == "interrupted"
    assert "KeyboardInterrupt" in run.cell_text(child)
    tree = run.tree()
    assert tree.nodes[child].status == "killed" and tree.nodes[grandchild].status == "killed"
    dropped = next(e for e in run.kinds(ev.SPAWN_DECIDED) if e.node == grandchild)
    assert dropped.get("decision") == "kill" and dropped.get("by") == "user"
    (kill,) = [e for e in run.session if e.kind == ev.STEERING and e.get("action") == "kill"]
    assert kill.node == child and set(kill.get("nodes")) == {child, grandchild}
    assert not [r for r in run.server.requests if r["messages"][-1]["content"] == "grandchild"]
    assert len([e for e in run.kinds(ev.TURN_STARTED) if e.node == child]) == 1  # no second turn


async def test_kill_a_child_whose_cell_ignores_the_interrupt_abandons_it_after_3_s(corpus: Path,
                                                                                  tmp_path: Path) -> None:
    def root(messages, model):
        if question_of(messages).startswith("child task"):
            return fence("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                         "print('stubborn', flush=True)\ntime.sleep(60)")
        if turn_of(messages) == 1:
            return fence("print('parent got:', rlm_query('child task'))")
        return "FINAL(the parent went on)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.CELL_OUTPUT and "stubborn" in event.get("text", "") and "killed" not in ui.seen:
            ui.seen["child"], ui.seen["killed"] = event.node, time.monotonic()
            assert ui.do(ui.steering.kill(event.node))
        elif event.kind == ev.NODE_FINISHED and event.node == ui.seen.get("child"):
            ui.seen["finished"] = time.monotonic()

    run = await steer_run(echo_sub(root), corpus, tmp_path, react, approve="auto", max_depth=2)
    assert run.result.answer == "the parent went on"
    assert f"parent got: {KILLED_RESULT}" in run.cell_text("n0")
    assert run.tree().nodes[run.ui.seen["child"]].status == "killed"
    waited = run.ui.seen["finished"] - run.ui.seen["killed"]
    assert 2.5 <= waited < 15, waited  # the grace (3 s) and no more, give or take a loaded machine


async def test_kill_a_running_llm_call_cancels_it(corpus: Path, tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.LM_STARTED and event.parent == "n0":
            ui.seen["llm"] = event.node
            assert ui.do(ui.steering.kill(event.node))

    root = fed_root(fence("print('got', llm_query('slow one'))"), [])
    with held_subcalls(root) as script:
        run = await steer_run(script, corpus, tmp_path, react, approve="auto")
    assert f"got {KILLED_RESULT}" in run.cell_text()
    assert run.tree().nodes[run.ui.seen["llm"]].status == "killed"
    assert run.result.answer == "done"


async def test_kill_the_root_stops_the_run_cleanly(corpus: Path, tmp_path: Path) -> None:
    code = "r = llm_query('waiting forever')\nimport time\ntime.sleep(60)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED:
            ui.seen["spawn"] = event.node
            assert ui.do(ui.steering.kill("n0"))

    run = await steer_run(one_cell(code), corpus, tmp_path, react)
    assert run.result.answer is None and run.result.stopped_by == "killed" and run.result.error is None
    assert run.session[-1].kind == ev.RUN_FINISHED and run.session[-1].get("stopped_by") == "killed"
    tree = run.tree()
    assert tree.nodes["n0"].status == "killed" and tree.nodes[run.ui.seen["spawn"]].status == "killed"
    assert run.ui.steering.waiting == 0
    assert not run.ui.do(run.ui.steering.approve(run.ui.seen["spawn"]))  # after the run: nothing to do


async def test_kill_a_running_batch_gives_each_unfinished_slot_the_killed_result(corpus: Path,
                                                                                tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.LM_STARTED and event.parent not in (None, "n0") and not ui.seen:
            ui.seen["batch"] = event.parent
            assert ui.do(ui.steering.kill(event.parent))

    with held_subcalls(fed_root(fence("print(llm_query_batched(['a', 'b', 'c']))"), [])) as script:
        run = await steer_run(script, corpus, tmp_path, react, approve="auto")
    assert f"[{KILLED_RESULT!r}, {KILLED_RESULT!r}, {KILLED_RESULT!r}]" in run.cell_text()
    tree = run.tree()
    batch = tree.nodes[run.ui.seen["batch"]]
    assert batch.status == "killed" and {tree.nodes[c].status for c in batch.children} == {"killed"}
    assert run.result.answer == "done"


# ---- pausing, stepping, interrupting --------------------------------------------------------


async def test_paused_run_makes_no_model_call_until_resumed(corpus: Path, tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.CONTEXT_LOADED:
            assert ui.steering.paused
            assert ui.do(ui.steering.resume())

    run = await steer_run(one_cell("print(1)"), corpus, tmp_path, react, approve="auto",
                          before=lambda steering: steering.pause())
    actions = [(e.get("action"), e.seq) for e in run.kinds(ev.STEERING)]
    assert [a for a, _ in actions] == ["pause", "resume"]
    first_call = run.kinds(ev.LM_STARTED)[0]
    assert actions[1][1] < first_call.seq
    assert run.result.answer == "done"


async def test_step_mode_pauses_before_turns_and_cells_with_the_code_editable(corpus: Path,
                                                                              tmp_path: Path) -> None:
    fed: list[str] = []
    root = fed_root("Two blocks.\n```repl\nx = 1\nprint('original', x)\n```\n"
                    "```repl\nimport shutil  # something the user does not want\n```\n", fed)

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind != ev.STEP_WAITING:
            return
        if event.get("what") == "turn":
            assert ui.do(ui.steering.step())
        elif event.get("cell") == 1:
            assert event.get("code").startswith("x = 1")
            assert ui.do(ui.steering.edit(event.get("gate"), code="x = 2\nprint('edited', x)"))
        else:
            assert ui.do(ui.steering.deny(event.get("gate")))  # skip it

    run = await steer_run(echo_sub(root), corpus, tmp_path, react, approve="auto", step="all")
    assert run.result.answer == "done"
    (started,) = run.kinds(ev.CELL_STARTED)  # the skipped block never started
    assert started.get("code") == "x = 2\nprint('edited', x)"
    assert "edited 2" in run.cell_text() and "original" not in run.cell_text()
    assert "the user edited this code block" in fed[0] and "edited 2" in fed[0]
    assert "did not run: the user skipped it" in fed[0]
    waits = [(e.get("what"), e.get("turn") or e.get("cell")) for e in run.kinds(ev.STEP_WAITING)]
    assert waits == [("turn", 1), ("cell", 1), ("cell", 2), ("turn", 2)]
    for turn in (1, 2):
        decided = run.index(lambda e: e.kind == ev.STEP_DECIDED and e.get("gate") == f"n0/turn{turn}")
        assert decided < run.index(lambda e: e.kind == ev.TURN_STARTED and e.get("turn") == turn)
    decisions = {e.get("gate"): e for e in run.session if e.kind == ev.STEP_DECIDED}
    edited = decisions["n0/cell1"]
    assert edited.get("decision") == "edit" and edited.get("by") == "user"
    assert edited.get("original_code").strip() == "x = 1\nprint('original', x)" and edited.get("code").startswith("x = 2")
    assert decisions["n0/cell2"].get("decision") == "skip"


@pytest.mark.parametrize("code, raised", [("import time\ntime.sleep(60)", "KeyboardInterrupt"),
                                          ("import asyncio\nawait asyncio.sleep(60)", "CancelledError")],
                         ids=["plain", "async"])
async def test_interrupt_stops_the_cell_and_the_model_sees_it(corpus: Path, tmp_path: Path, code: str,
                                                              raised: str) -> None:
    fed: list[str] = []
    root = fed_root(fence("print('started', flush=True)\n" + code), fed)

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.CELL_OUTPUT and "started" in event.get("text", "") and not ui.seen:
            ui.seen["interrupted"] = True
            assert ui.do(ui.steering.interrupt())

    run = await steer_run(echo_sub(root), corpus, tmp_path, react, approve="auto")
    assert run.result.answer == "done"
    assert run.kinds(ev.CELL_FINISHED)[0].get("status") == "interrupted"
    assert raised in fed[0]
    assert [e.get("action") for e in run.kinds(ev.STEERING)] == ["interrupt"]


async def test_waiting_for_approval_does_not_count_against_the_cell_timeout(corpus: Path,
                                                                           tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED:
            threading.Event().wait(2.5)  # the user takes longer than --cell-timeout to decide
            assert ui.do(ui.steering.approve(event.node))

    run = await steer_run(one_cell("print(llm_query('take your time'))"), corpus, tmp_path, react,
                          cell_timeout=1.0)
    assert run.kinds(ev.CELL_FINISHED)[0].get("status") == "ok"
    assert "sub says take your time" in run.cell_text()


async def test_waiting_for_approval_counts_against_the_run_timeout(corpus: Path, tmp_path: Path) -> None:
    """Nobody answers: --timeout stops the run, and the dropped question is decided by the run."""
    run = await steer_run(one_cell("print(llm_query('nobody answers'))"), corpus, tmp_path, timeout=15)
    assert run.result.stopped_by == "timeout" and run.result.answer is None
    assert run.result.duration_s < 45
    (asked,) = [e for e in run.session if e.kind == ev.SPAWN_REQUESTED]
    (dropped,) = [e for e in run.session if e.kind == ev.SPAWN_DECIDED]
    assert dropped.node == asked.node
    assert (dropped.get("decision"), dropped.get("by"), dropped.get("reason")) == ("kill", "run", "its caller stopped")
    assert dropped.get("waited_s") > 0
    assert not [r for r in run.server.requests if not is_rlm_call(r["messages"])]  # never sent


async def test_changing_the_policy_mid_run_decides_waiting_calls_and_is_recorded(corpus: Path,
                                                                                 tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED:  # the first call waits under "ask": switch to auto
            assert ui.do(ui.steering.set_policy("auto"))

    run = await steer_run(one_cell("print(llm_query('first'), llm_query('second'))"), corpus, tmp_path, react)
    assert "sub says first sub says second" in run.cell_text()
    (asked,) = [e for e in run.session if e.kind == ev.SPAWN_REQUESTED]  # the second never asked
    (decided,) = [e for e in run.session if e.kind == ev.SPAWN_DECIDED]
    assert asked.get("prompt") == "first" and decided.node == asked.node
    assert (decided.get("decision"), decided.get("by")) == ("approve", "policy")
    (policy,) = [e for e in run.session if e.kind == ev.STEERING]
    assert (policy.get("action"), policy.get("policy"), policy.get("by")) == ("policy", "auto", "user")
    assert asked.seq < policy.seq < decided.seq


async def test_step_mode_stops_before_a_child_rlms_cells(corpus: Path, tmp_path: Path) -> None:
    def root(messages, model):
        if question_of(messages).startswith("child task"):
            return fence("print('child cell ran')") if turn_of(messages) == 1 else "FINAL(child ok)"
        if turn_of(messages) == 1:
            return fence("print(rlm_query('child task'))")
        return "FINAL(done)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.STEP_WAITING:
            ui.seen.setdefault("gates", []).append((event.node, event.get("gate"), event.get("code")))
            assert ui.do(ui.steering.step())

    run = await steer_run(echo_sub(root), corpus, tmp_path, react, approve="auto", step="cell", max_depth=2)
    assert run.result.answer == "done" and "child ok" in run.cell_text("n0")
    child = next(e.node for e in run.kinds(ev.NODE_STARTED) if e.get("node_kind") == "rlm")
    assert run.ui.seen["gates"] == [("n0", "n0/cell1", "print(rlm_query('child task'))\n"),
                                    (child, f"{child}/cell1", "print('child cell ran')\n")]


# ---- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--approve", "ask"], "--approve ask needs the UI"),
    (["--approve", "rlm"], "--approve rlm needs the UI"),
    (["--step", "cell"], "--step needs the UI"),
])
def test_headless_refuses_interactive_steering(corpus: Path, args: list[str], message: str) -> None:
    proc = subprocess.run([PYTHON, "-m", "rlm_tui", str(corpus), "q?", "--headless", *args],
                          capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_policy_defaults_ui_rlm_headless_auto() -> None:
    from rlm_tui.cli.run import build_parser, settings_from

    parser = build_parser()
    assert settings_from(parser.parse_args(["p", "q"])).approve == "rlm"
    assert settings_from(parser.parse_args(["p", "q", "--headless"])).approve == "auto"
    assert settings_from(parser.parse_args(["p", "q", "--approve", "ask", "--step", "cell"])).step == "cell"
    with pytest.raises(ValueError):
        Steering("sometimes")


# ---- the command interface without a run -----------------------------------------------------


async def test_commands_check_what_they_apply_to() -> None:
    import asyncio

    steering = Steering("ask")
    assert steering.pause().result() and steering.paused  # before the run: a setting
    assert not steering.approve("n1").result()  # nothing to approve yet
    recorded: list[tuple[str, str | None, dict[str, Any]]] = []
    steering.bind(lambda kind, node, parent, **data: recorded.append((kind, node, data)))
    assert recorded[0][0] == ev.STEERING and recorded[0][2]["action"] == "pause"
    one = asyncio.ensure_future(steering.spawn_gate("n1", None, "llm", "p", "m", 1))
    many = asyncio.ensure_future(steering.spawn_gate("n2", None, "llm", "a", "m", 1, prompts=["a", "b"]))
    await asyncio.sleep(0)
    assert steering.waiting == 2 and [p["id"] for p in steering.pending()] == ["n1", "n2"]

    async def do(future) -> bool:
        return await asyncio.wrap_future(future)

    assert not await do(steering.open_batch("n1"))  # not a batch
    assert not await do(steering.edit("n2", prompts=["only one"]))  # a batch keeps its length
    assert not await do(steering.edit("n1", code="print(1)"))  # code is for cells
    assert not await do(steering.step())  # no step is waiting
    assert await do(steering.edit("n2", prompts=["A", "B"], model="m2"))
    decision = await many
    assert decision.action == "edit" and decision.prompts == ["A", "B"] and decision.model == "m2"
    steering.close()
    assert (await one).action == "kill" and steering.waiting == 0
    assert not await do(steering.approve("n1"))  # the run is over
