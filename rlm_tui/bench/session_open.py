"""How fast replay opens and moves on a big session file: the run model at any position.

    python -m rlm_tui.bench.session_open                    # 100 MB of the usual shape: the table
    python -m rlm_tui.bench.session_open --app --memory     # also the replay app (pilot) and checkpoint memory
    python -m rlm_tui.bench.session_open --shape usual      # 100-prompt batches on 25 KB pieces (fewer turns)
    python -m rlm_tui.bench.session_open --shape small      # 100 MB of tiny events (the most lines)
    python -m rlm_tui.bench.session_open --mb 20 --keep /tmp/big.jsonl

The file is written with the real SessionWriter. ``turns`` (the default, the
shape of issue 12): root turns, each a streamed reply (2 KB of prose and a code
block, in a few chunks), a cell with 20 KB of output and a batch of 8
llm_query calls on 3 KB prompts; 100 MB is ~1,400 turns and ~66,000 events.
``usual``: batches of 100 calls on 25 KB pieces (node_started carries each
prompt). ``small``: ~130-byte lm_chunk and cell_output lines. Each row is
wall-clock seconds of one move of a ``Replayer`` (the model the replay app
shows), made in order, so "back" rows start where the previous row ended;
``--app`` times the same keys in the replay app, from the key press until the first frame
drawn after the position bar changed (the median of several presses of each key), in a
fresh process, as a user opens it (after the rows above, this one's heap would slow it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import random
import tempfile
import time
from pathlib import Path

from ..core import events as ev
from ..core.session import SessionWriter
from ..sessions.replay import Replayer


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
               messages=[{"role": "user", "content": output * (10 if shape == "turns" else 40)}])
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
            size, prompt = (8, piece[:3000]) if shape == "turns" else (100, piece)
            batch = g.new_id()
            g.emit(ev.NODE_STARTED, batch, root, node_kind="batch", depth=1, model="openai/gpt-5-mini", n=size,
                   item_kind="llm", prompt=piece[:200], label=f"llm_query_batched × {size}")
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
            text = output * (40 if shape == "turns" else 1)
            g.emit(ev.CELL_OUTPUT, root, None, cell=turn, stream="stdout", text=text)
        g.emit(ev.CELL_FINISHED, root, None, cell=turn, status="ok", duration_s=30.0, output_chars=20_000,
               truncated_chars=0)
        g.emit(ev.TURN_FINISHED, root, None, turn=turn, duration_s=42.0)
    g.emit(ev.FINAL_ANSWER, root, None, answer="module x leaks", source="FINAL")
    g.emit(ev.NODE_FINISHED, root, None, status="done", result="module x leaks", error="")
    g.emit(ev.RUN_FINISHED, None, None, answer="module x leaks", stopped_by=None, usage={}, calls=g.ids, duration_s=g.t)
    writer.close()


#: what, seconds, CPU seconds of this process (the machine may be shared: wall time waits for others), target, note
ROWS: list[tuple[str, float, float | None, float | None, str]] = []


def timed(label: str, fn, target: float | None = None, note: str = ""):  # type: ignore[no-untyped-def]
    started, cpu = time.perf_counter(), time.process_time()
    value = fn()
    ROWS.append((label, time.perf_counter() - started, time.process_time() - cpu, target, note))
    return value


def replayer_timings(path: Path) -> None:
    """The Replayer (the model the app shows) moved as the app's keys move it, cold, on a fresh open."""
    from ..ui.app import shown

    def opened() -> Replayer:
        replay = Replayer.open(path)
        replay.sanitize = shown  # as the app does
        return replay

    replay = timed("open at the start (index; position 0)", opened, 0.5)
    replay.close()
    started, cpu = time.perf_counter(), time.process_time()
    replay = opened()
    replay.to_end()
    ROWS.append(("open at the end (index + fold every event)", time.perf_counter() - started,
                 time.process_time() - cpu, 1.0, f"{len(replay._checkpoints)} checkpoints"))
    end = len(replay)
    moves = [("one event back", lambda: replay.step(-1)), ("one event forward", lambda: replay.step(1)),
             ("one cell back", replay.prev_cell), ("one cell forward", replay.next_cell),
             ("one turn back", replay.prev_turn), ("one turn forward", replay.next_turn),
             ("jump to the start", replay.to_start), ("jump to the end", replay.to_end),
             ("jump to the middle", lambda: replay.seek(end // 2)), ("one turn back (middle)", replay.prev_turn),
             ("one event back (middle)", lambda: replay.step(-1)), ("one cell forward (middle)", replay.next_cell)]
    for label, move in moves:
        timed(f"  {label}", move, 0.3 if label.startswith("jump") else 0.1)
    replay.close()


def memory(path: Path) -> None:
    """What the checkpoints hold: the replayer at the end minus the same model folded without them."""
    import gc
    import tracemalloc

    from ..model.run import RunModel

    replay = Replayer.open(path)
    tracemalloc.start()
    model = replay._lazy(RunModel())  # as the replay's: llm calls' own transcripts folded when read
    for event in replay.index.iter_events():
        model.apply(event)
    alone = tracemalloc.get_traced_memory()[0]
    del model
    gc.collect()
    tracemalloc.stop()
    tracemalloc.start()
    replay.to_end()
    replay.to_start()  # every checkpoint's restore exercised once: copies made on the way are counted
    replay.to_end()
    with_checkpoints = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    count = len(replay._checkpoints)
    ROWS.append(("memory: the model at the end, MB", alone / 1e6, None, None,
                 "decoded strings included; no llm call read"))
    ROWS.append(("memory: checkpoints on top of it, MB", (with_checkpoints - alone) / 1e6, None, None,
                 f"{count} checkpoints, {(with_checkpoints - alone) / max(count, 1) / 1e3:.0f} KB each"))
    replay.close()


#: The app's moves: (keys, what, target); each is timed REPEAT times in a row and the median kept.
APP_MOVES = [("left_curly_bracket", "one turn back", 0.1), ("comma", "one event back", 0.1),
             ("full_stop", "one event forward", 0.1), ("left_square_bracket", "one cell back", 0.1),
             ("right_square_bracket", "one cell forward", 0.1), ("right_curly_bracket", "one turn forward", 0.1)]
REPEAT = 5


def app_timings(path: Path) -> None:
    """The replay app (headless pilot, 160x45): from a key press until the first frame drawn after the
    position bar changed (as a user sees it), the median of REPEAT presses for each move."""
    import asyncio
    import statistics

    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="rlm-tui-bench-"))
    from textual import events

    from ..ui.replay import ReplayApp, ReplayBar

    async def run() -> None:
        started, cpu = time.perf_counter(), time.process_time()
        app = ReplayApp(Replayer.open(path), end=True, play=False, remember_theme=False)
        frames: list[float] = []  # when each frame was drawn
        display = app._display

        def drawn(screen, renderable) -> None:  # type: ignore[no-untyped-def]
            display(screen, renderable)
            if renderable is not None:
                frames.append(time.perf_counter())

        app._display = drawn  # type: ignore[method-assign]
        async with app.run_test(size=(160, 45)) as pilot:
            bar = app.query_one(ReplayBar)
            shown_at = [0.0]
            show = bar.show

            def shown(app_: ReplayApp) -> None:
                show(app_)
                shown_at[0] = time.perf_counter()

            bar.show = shown  # type: ignore[method-assign]

            async def drawn_after(since: float, position: int) -> float:
                """The time of the first frame drawn after the bar showed a position other than ``position``."""
                while app.replayer.position == position or shown_at[0] < since or \
                        not any(t > shown_at[0] for t in frames[-3:]):
                    await asyncio.sleep(0.001)
                return next(t for t in frames if t > shown_at[0])

            opened = await drawn_after(started, 0)
            ROWS.append(("app: open at the end, drawn", opened - started, time.process_time() - cpu, 1.0, ""))
            await pilot.pause()

            async def press(key: str) -> tuple[float, float]:
                """Seconds and CPU seconds from the key press to the frame showing the move."""
                position = app.replayer.position
                pressed, cpu = time.perf_counter(), time.process_time()
                app._driver.send_message(events.Key(key, key if len(key) == 1 else None))  # type: ignore[union-attr]
                seconds = await drawn_after(pressed, position) - pressed
                cpu = time.process_time() - cpu
                await pilot.pause()
                return seconds, cpu

            def row(label: str, timings: list[tuple[float, float]], target: float) -> None:
                times = [t for t, _ in timings]
                ROWS.append((f"  app: {label}", statistics.median(times), statistics.median(c for _, c in timings),
                             target, f"median of {len(times)}, max {max(times):.3f}"))

            for key, label, target in APP_MOVES:
                row(label, [await press(key) for _ in range(REPEAT)], target)
            starts, ends = [], []
            for _ in range(REPEAT):
                starts.append(await press("g"))
                ends.append(await press("G"))
            row("jump to the start", starts, 0.3)
            row("jump to the end", ends, 0.3)

    asyncio.run(run())


def app_timings_apart(path: Path) -> None:
    """``app_timings`` in a fresh process; its rows are added to ROWS."""
    done = subprocess.run([sys.executable, "-m", "rlm_tui.bench.session_open", "--keep", str(path), "--app-only"],
                          capture_output=True, text=True, check=True)
    ROWS.extend(tuple(row) for row in json.loads(done.stdout.splitlines()[-1]))  # type: ignore[misc]


def print_table(header: str) -> None:
    print(header)
    print(f"{'what':<46} {'s':>8} {'cpu s':>7} {'target':>7}  met  note")
    for label, seconds, cpu, target, note in ROWS:
        met = "" if target is None else ("yes" if seconds <= target else "NO")
        shown = f"{seconds:8.3f}" if not label.startswith("memory") else f"{seconds:8.1f}"
        print(f"{label:<46} {shown} {'' if cpu is None else f'{cpu:7.3f}':>7} "
              f"{'' if target is None else f'{target:7.2f}':>7}  {met:<4} {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100.0, help="size of the generated file (default 100)")
    parser.add_argument("--shape", choices=["turns", "usual", "small"], default="turns")
    parser.add_argument("--keep", type=Path, help="write the file here and keep it")
    parser.add_argument("--app", action="store_true", help="also time the replay app (Textual, headless)")
    parser.add_argument("--memory", action="store_true", help="also measure the checkpoints' memory (slow)")
    parser.add_argument("--app-only", action="store_true", help=argparse.SUPPRESS)  # app_timings_apart's child
    args = parser.parse_args()
    if args.app_only:
        app_timings(args.keep)
        print(json.dumps(ROWS))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "big.jsonl"
        if not path.exists():
            started = time.perf_counter()
            generate(path, args.mb, args.shape)
            print(f"generated in {time.perf_counter() - started:.1f} s")
        size = path.stat().st_size
        lines = sum(1 for _ in open(path, "rb"))
        load = os.getloadavg()[0]
        replayer_timings(path)
        if args.memory:
            memory(path)
        if args.app:
            app_timings_apart(path)
        print_table(f"file: {size / 1e6:.1f} MB, {lines:,} lines ({args.shape}); load average {load:.1f} "
                    f"before, {os.getloadavg()[0]:.1f} after; {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
