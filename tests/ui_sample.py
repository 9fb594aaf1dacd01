"""A fixed, realistic event stream for UI tests (the folds over it: test_ui_folds.py).

The stream follows the schema in ``rlm_tui/core/events.py``: a root RLM peeks
at its context, fans out a batch of three llm calls, hits an error in a cell,
delegates to a child RLM (depth 1) that makes its own llm call (depth 2), and
answers. ``MID_RUN`` cuts it while the child and grandchild are running.
"""

from __future__ import annotations

from rlm_tui.core import events as ev

QUESTION = "When is the launch, and who objected to the date?"
TRACEBACK = ("\x1b[0;31m---------------------------------------------------------------------------\x1b[0m\n"
             "\x1b[0;31mIndexError\x1b[0m                                Traceback (most recent call last)\n"
             "Cell \x1b[0;32mIn[3], line 1\x1b[0m\n"
             "\x1b[0;32m----> 1\x1b[0m dates \x1b[38;5;241m=\x1b[39m [s\x1b[38;5;241m.\x1b[39msplit("
             "\x1b[38;5;124m\"\x1b[39m\x1b[38;5;124mdate:\x1b[39m\x1b[38;5;124m\"\x1b[39m)[\x1b[38;5;241m1\x1b[39m]"
             " \x1b[38;5;28;01mfor\x1b[39;00m s \x1b[38;5;129;01min\x1b[39;00m summaries]\n"
             "\x1b[0;31mIndexError\x1b[0m: list index out of range\n")


class _Stream:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.t = 0.0

    def add(self, event_kind: str, node: str | None, parent: str | None = None, dt: float = 0.3,
            **data) -> None:
        self.t += dt
        self.events.append(ev.Event(event_kind, node, parent, data, seq=len(self.events) + 1,
                                    t=round(self.t, 3)))

    def reply(self, node: str, parent: str | None, turn: int, text: str, tokens_in: int, cost: float) -> None:
        self.add(ev.LM_STARTED, node, parent, turn=turn, model="openai/root-model", messages=[])
        for i in range(0, len(text), 40):
            self.add(ev.LM_CHUNK, node, parent, dt=0.05, text=text[i:i + 40])
        self.add(ev.LM_FINISHED, node, parent, model="openai/root-model", text=text, tokens_in=tokens_in,
                 tokens_out=len(text) // 4, cost_usd=cost, cost_known=True, latency_s=1.2)

    def llm(self, node: str, parent: str, depth: int, prompt: str) -> None:
        self.add(ev.NODE_STARTED, node, parent, node_kind="llm", depth=depth, model="openai/sub-model",
                 label=prompt.splitlines()[0], prompt=prompt)

    def llm_done(self, node: str, parent: str, answer: str, tokens_in: int) -> None:
        self.add(ev.LM_FINISHED, node, parent, model="openai/sub-model", text=answer, tokens_in=tokens_in,
                 tokens_out=len(answer) // 4, cost_usd=tokens_in * 2.5e-7, cost_known=True, latency_s=0.8)
        self.add(ev.NODE_FINISHED, node, parent, status="done", result=answer)


def sample_events() -> tuple[list[ev.Event], int]:
    """The whole run, and the index where ``MID_RUN`` cuts it."""
    s = _Stream()
    settings = {"model": "openai/root-model", "sub_model": "openai/sub-model",
                "session_path": "/home/user/.local/share/rlm-tui/sessions/20250101-120000.jsonl",
                "limits": {"max_depth": 2, "max_iterations": 30, "max_subcalls": 1000, "concurrency": 32,
                           "max_tokens": 24_000, "budget": 1.0, "timeout": 3600.0}}
    s.add(ev.RUN_STARTED, None, None, question=QUESTION, path="/home/user/notes", settings=settings)
    s.add(ev.NODE_STARTED, "n0", None, node_kind="root", depth=0, model="openai/root-model", label=QUESTION,
          prompt=QUESTION)
    s.add(ev.KERNEL, "n0", None, state="starting")
    s.add(ev.KERNEL, "n0", None, state="loading context")
    s.add(ev.CONTEXT_LOADED, "n0", None, info={"type": "dict", "chars": 18_342, "files": 3,
                                                 "description": "a dict of 3 files, 18,342 characters"})
    s.add(ev.KERNEL, "n0", None, state="idle")
    # turn 1: peek
    s.add(ev.TURN_STARTED, "n0", None, turn=1)
    s.reply("n0", None, 1, "Let me look at the files first.\n```repl\nfor name, text in context.items():\n"
            "    print(name, len(text))\n```\n", 2100, 0.0031)
    s.add(ev.CELL_STARTED, "n0", None, cell=1, code="for name, text in context.items():\n    print(name, len(text))")
    s.add(ev.KERNEL, "n0", None, state="busy")
    s.add(ev.CELL_OUTPUT, "n0", None, cell=1, stream="stdout",
          text="notes/2024-03-05.md 5120\nnotes/2024-03-12.md 7301\nnotes/2024-03-19.md 5921\n")
    s.add(ev.CELL_FINISHED, "n0", None, cell=1, status="ok", duration_s=0.04, output_chars=72,
          truncated_chars=0)
    s.add(ev.KERNEL, "n0", None, state="idle")
    s.add(ev.TURN_FINISHED, "n0", None, turn=1, duration_s=2.4)
    # turn 2: a batch of three llm calls
    s.add(ev.TURN_STARTED, "n0", None, turn=2)
    s.reply("n0", None, 2, "Three meeting notes. I'll summarise each in parallel.\n```repl\n"
            "summaries = llm_query_batched([f\"Summarise the decisions in {n}:\\n{t}\" "
            "for n, t in context.items()])\nfor s in summaries:\n    print(s[:200])\n```\n", 2600, 0.0042)
    s.add(ev.CELL_STARTED, "n0", None, cell=2, code="summaries = llm_query_batched(...)")
    s.add(ev.NODE_STARTED, "n1", "n0", node_kind="batch", depth=1, model="openai/sub-model",
          label="llm_query_batched × 3", prompt="Summarise the decisions in notes/2024-03-05.md:", n=3)
    notes = ["2024-03-05", "2024-03-12", "2024-03-19"]
    answers = ["Kick-off. Launch planned for 2024-05-02. Owners assigned.",
               "Launch moved to 2024-05-16 after QA review; Dana objected.",
               "Date confirmed: 2024-05-16. Marketing starts 2024-05-01."]
    for i, day in enumerate(notes, start=1):
        s.llm(f"n{i + 1}", "n1", 1, f"Summarise the decisions in notes/{day}.md:\n# Meeting {day}\n…")
    for i, answer in enumerate(answers, start=1):
        s.llm_done(f"n{i + 1}", "n1", answer, 1400 + 300 * i)
    s.add(ev.NODE_FINISHED, "n1", "n0", status="done", result="3 of 3 prompts answered")
    s.add(ev.CELL_OUTPUT, "n0", None, cell=2, stream="stdout", text="\n".join(answers) + "\n")
    s.add(ev.CELL_FINISHED, "n0", None, cell=2, status="ok", duration_s=2.1, output_chars=180,
          truncated_chars=0)
    s.add(ev.TURN_FINISHED, "n0", None, turn=2, duration_s=4.0)
    # turn 3: an error
    s.add(ev.TURN_STARTED, "n0", None, turn=3)
    s.reply("n0", None, 3, "Let me pull out the dates.\n```repl\n"
            "dates = [s.split(\"date:\")[1] for s in summaries]\n```\n", 3100, 0.0049)
    s.add(ev.CELL_STARTED, "n0", None, cell=3, code="dates = [s.split(\"date:\")[1] for s in summaries]")
    s.add(ev.CELL_OUTPUT, "n0", None, cell=3, stream="error", text=TRACEBACK)
    s.add(ev.CELL_FINISHED, "n0", None, cell=3, status="error", duration_s=0.01, output_chars=400,
          truncated_chars=0)
    s.add(ev.TURN_FINISHED, "n0", None, turn=3, duration_s=1.9)
    # turn 4: delegate to a child RLM, which calls an llm itself
    s.add(ev.TURN_STARTED, "n0", None, turn=4)
    s.reply("n0", None, 4, "The summaries have no `date:` field. I'll hand the objection question to a "
            "sub-RLM over the second meeting.\n```repl\nwho = rlm_query(\"Who objected to moving the launch "
            "date, and why?\", context=context[\"notes/2024-03-12.md\"])\nprint(who)\n```\n", 3900, 0.0061)
    s.add(ev.CELL_STARTED, "n0", None, cell=4, code="who = rlm_query(...)")
    s.add(ev.KERNEL, "n0", None, state="busy")
    s.add(ev.NODE_STARTED, "n5", "n0", node_kind="rlm", depth=1, model="openai/sub-model",
          label="Who objected to moving the launch date, and why?",
          prompt="Who objected to moving the launch date, and why?")
    s.add(ev.KERNEL, "n5", "n0", state="idle")
    s.add(ev.TURN_STARTED, "n5", "n0", turn=1)
    s.reply("n5", "n0", 1, "I'll find the objection paragraph and ask about it.\n```repl\n"
            "para = [p for p in context.split(\"\\n\\n\") if \"object\" in p][0]\n"
            "print(llm_query(\"Who objects here, and why?\\n\" + para))\n```\n", 1800, 0.0012)
    s.add(ev.CELL_STARTED, "n5", "n0", cell=1, code="para = ...")
    s.add(ev.KERNEL, "n5", "n0", state="busy")
    s.llm("n6", "n5", 2, "Who objects here, and why?\nDana objected: moving the date squeezes the "
          "marketing window to two weeks.")
    mid = len(s.events)
    s.llm_done("n6", "n5", "Dana (marketing) objected: the move leaves only two weeks of campaign.", 220)
    s.add(ev.CELL_OUTPUT, "n5", "n0", cell=1, stream="stdout",
          text="Dana (marketing) objected: the move leaves only two weeks of campaign.\n")
    s.add(ev.CELL_FINISHED, "n5", "n0", cell=1, status="ok", duration_s=0.9, output_chars=70,
          truncated_chars=0)
    s.add(ev.KERNEL, "n5", "n0", state="idle")
    s.add(ev.TURN_FINISHED, "n5", "n0", turn=1, duration_s=2.2)
    s.add(ev.TURN_STARTED, "n5", "n0", turn=2)
    s.reply("n5", "n0", 2, "FINAL(Dana from marketing objected: only two weeks of campaign remain.)",
            2300, 0.0015)
    s.add(ev.FINAL_ANSWER, "n5", "n0", answer="Dana from marketing objected: only two weeks of campaign "
          "remain.", source="FINAL")
    s.add(ev.NODE_FINISHED, "n5", "n0", status="done",
          result="Dana from marketing objected: only two weeks of campaign remain.")
    s.add(ev.CELL_OUTPUT, "n0", None, cell=4, stream="stdout",
          text="Dana from marketing objected: only two weeks of campaign remain.\n")
    s.add(ev.CELL_FINISHED, "n0", None, cell=4, status="ok", duration_s=5.3, output_chars=66,
          truncated_chars=0)
    s.add(ev.KERNEL, "n0", None, state="idle")
    s.add(ev.TURN_FINISHED, "n0", None, turn=4, duration_s=7.1)
    # turn 5: the answer
    s.add(ev.TURN_STARTED, "n0", None, turn=5)
    answer = ("The launch is on **2024-05-16** (moved from 2024-05-02 after the QA review). "
              "Dana from marketing objected: the new date leaves only two weeks of campaign.")
    s.reply("n0", None, 5, f"FINAL({answer})", 4400, 0.0068)
    s.add(ev.TURN_FINISHED, "n0", None, turn=5, duration_s=1.5)
    s.add(ev.FINAL_ANSWER, "n0", None, answer=answer, source="FINAL")
    s.add(ev.NODE_FINISHED, "n0", None, status="done", result=answer)
    s.add(ev.RUN_FINISHED, None, None, answer=answer, stopped_by=None,
          usage={"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}, calls=5, duration_s=s.t)
    return s.events, mid
