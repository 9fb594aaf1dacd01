"""How fast a big session file opens: index, jump to the end, step back, read a transcript.

    python benchmarks/session_open.py                  # a 100 MB session of the usual shape
    python benchmarks/session_open.py --shape small    # 100 MB of tiny events (the worst case)
    python benchmarks/session_open.py --mb 20 --keep /tmp/big.jsonl
    python benchmarks/session_open.py --app            # also the replay app, headless

The file is written with the real SessionWriter: root turns, each with a
streamed reply (2 KB of prose and a code block), a cell with 20 KB of output, and a batch of llm_query calls on
25 KB pieces of the input (node_started carries each prompt), which is what
makes real sessions big. ``--shape small`` instead fills the file with ~130-byte
lm_chunk and cell_output lines: the most lines a 100 MB file can have.
Numbers are wall-clock seconds on this machine; compare ``core.session.load``
(decode every line) with ``Replayer`` (index, decode on demand).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rlm_tui.core import events as ev  # noqa: E402
from rlm_tui.core.session import SessionWriter, load  # noqa: E402
from rlm_tui.sessions.replay import Replayer  # noqa: E402
from rlm_tui.sessions.transcript import SessionLog  # noqa: E402


class _Gen:
    def __init__(self, writer: SessionWriter) -> None:
        self.writer = writer
        self.seq = 0
        self.t = 0.0
        self.ids = 0

    def emit(self, kind: str, node: str | None = None, parent: str | None = None, **data: object) -> None:
        self.seq += 1
        self.t += 0.01
        self.writer.write(ev.Event(kind, node, parent, dict(data), self.seq, self.t))

    def new_id(self) -> str:
        self.ids += 1
        return f"n{self.ids}"

    @property
    def size(self) -> int:
        return self.writer.path.stat().st_size


def _words(rng: random.Random, n: int) -> str:
    vocab = ["alpha", "beta", "gamma", "delta", "context", "needle", "print", "result", "chunk", "token"]
    return " ".join(rng.choice(vocab) for _ in range(n // 6))


def generate(path: Path, megabytes: float, shape: str) -> None:
    rng = random.Random(1)
    writer = SessionWriter(path)
    writer.write(writer.header())
    g = _Gen(writer)
    target = int(megabytes * 1_000_000)
    g.emit(ev.RUN_STARTED, question="Which module leaks?", path="/data/repo",
           settings={"model": "openai/gpt-5", "sub_model": "openai/gpt-5-mini", "limits": {}})
    root = "n0"
    g.emit(ev.NODE_STARTED, root, None, node_kind="root", depth=0, model="openai/gpt-5", prompt="Which module leaks?",
           label="Which module leaks?")
    g.emit(ev.CONTEXT_LOADED, root, None, info={"type": "dict", "chars": 90_000_000, "files": 4000,
                                               "description": "Your context is a dict of 4000 files."})
    piece = _words(rng, 25_000)
    output = _words(rng, 500)
    turn = 0
    while g.size < target:
        turn += 1
        g.emit(ev.TURN_STARTED, root, None, turn=turn)
        g.emit(ev.LM_STARTED, root, None, turn=turn, model="openai/gpt-5",
               messages=[{"role": "user", "content": output * 40}])
        reply = (_words(rng, 2000) + "\n\nI will map over the files.\n```repl\n"
                 "res = llm_query_batched(prompts)\nprint(res[:3])\n```\n")
        chunks = {"small": 200_000, "turns": 4}.get(shape, 40)
        for _ in range(chunks):
            g.emit(ev.LM_CHUNK, root, None, text=_words(rng, 60))
            if shape == "small" and g.size >= target:
                break
        g.emit(ev.LM_FINISHED, root, None, model="openai/gpt-5", text=reply, tokens_in=30_000,
               tokens_out=900, cost_usd=0.05, cost_known=True, latency_s=12.0)
        g.emit(ev.CELL_STARTED, root, None, cell=turn, code="res = llm_query_batched(prompts)\nprint(res[:3])\n")
        if shape != "small":
            size, prompt = (8, piece[:5000]) if shape == "turns" else (100, piece)
            batch = g.new_id()
            g.emit(ev.NODE_STARTED, batch, root, node_kind="batch", depth=1, model="openai/gpt-5-mini", n=size,
                   prompt=piece[:200], label=f"llm_query_batched × {size}")
            for _ in range(size):
                node = g.new_id()
                g.emit(ev.NODE_STARTED, node, batch, node_kind="llm", depth=1, model="openai/gpt-5-mini",
                       prompt=prompt, label=piece[:60])
                g.emit(ev.LM_STARTED, node, batch, turn=None, model="openai/gpt-5-mini", messages=[])
                g.emit(ev.LM_FINISHED, node, batch, model="openai/gpt-5-mini", text=output, tokens_in=6000,
                       tokens_out=100, cost_usd=0.002, cost_known=True, latency_s=3.0)
                g.emit(ev.NODE_FINISHED, node, batch, status="done", result=output, error="")
            g.emit(ev.NODE_FINISHED, batch, root, status="done", result=f"{size} of {size} answered", error="")
        for _ in range(1 if shape == "turns" else 40):
            g.emit(ev.CELL_OUTPUT, root, None, cell=turn, stream="stdout", text=output * (40 if shape == "turns" else 1))
        g.emit(ev.CELL_FINISHED, root, None, cell=turn, status="ok", duration_s=30.0, output_chars=20_000,
               truncated_chars=0)
        g.emit(ev.TURN_FINISHED, root, None, turn=turn, duration_s=42.0)
    g.emit(ev.FINAL_ANSWER, root, None, answer="module x leaks", source="FINAL")
    g.emit(ev.NODE_FINISHED, root, None, status="done", result="module x leaks", error="")
    g.emit(ev.RUN_FINISHED, None, None, answer="module x leaks", stopped_by=None, usage={}, calls=g.ids, duration_s=g.t)
    writer.close()


def timed(label: str, fn):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    value = fn()
    print(f"{label:<44} {time.perf_counter() - started:7.3f} s")
    return value


def app_timings(path: Path) -> None:
    """The replay app (headless, 160x45): open at the end, step back a turn and an event."""
    import asyncio
    import os

    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="rlm-tui-bench-"))
    from rlm_tui.ui.replay import ReplayApp

    async def run() -> None:
        started = time.perf_counter()
        app = ReplayApp(Replayer.open(path), end=True, play=False, remember_theme=False)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.pause()
            print(f"{'app: open at the end, drawn':<44} {time.perf_counter() - started:7.3f} s")
            for key, label in (("left_curly_bracket", "app: step back one turn"), ("comma", "app: step back one event"),
                               ("full_stop", "app: step forward one event")):
                started = time.perf_counter()
                await pilot.press(key)
                await pilot.pause()
                print(f"{label:<44} {time.perf_counter() - started:7.3f} s")

    asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100.0, help="size of the generated file (default 100)")
    parser.add_argument("--shape", choices=["usual", "small", "turns"], default="usual")
    parser.add_argument("--keep", type=Path, help="write the file here and keep it")
    parser.add_argument("--skip-load", action="store_true", help="skip the decode-everything comparison")
    parser.add_argument("--app", action="store_true", help="also time the replay app (Textual, headless)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "big.jsonl"
        if not path.exists():
            timed("generate", lambda: generate(path, args.mb, args.shape))
        size = path.stat().st_size
        lines = sum(1 for _ in open(path, "rb"))
        print(f"file: {size / 1e6:.1f} MB, {lines:,} lines ({args.shape})")
        replay = timed("open (index every line)", lambda: Replayer.open(path))
        timed("  first screen: position 200", lambda: replay.seek(200))
        timed("  jump to the end (fold the tree)", replay.to_end)
        print(f"    nodes {len(replay.tree.nodes):,}, answer {replay.tree.answer!r}, "
              f"{replay.describe().describe()}")
        timed("  step back one turn", replay.prev_turn)
        timed("  step back one event", lambda: replay.step(-1))
        timed("  back to the end", replay.to_end)
        timed("  root transcript at the end (decode)", lambda: len(replay.transcript_events(replay.root)))
        replay.close()
        started = time.perf_counter()
        replay = Replayer.open(path)
        replay.to_end()
        print(f"{'open at the end (--end), total':<44} {time.perf_counter() - started:7.3f} s")
        replay.close()
        if not args.skip_load:
            timed("for comparison: core.session.load (all)", lambda: load(path))
            timed("for comparison: SessionLog (headless fold)", lambda: SessionLog.read(path))
        if args.app:
            app_timings(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
