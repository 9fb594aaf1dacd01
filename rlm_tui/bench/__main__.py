"""``python -m rlm_tui.bench``: rlm-tui against the official ``rlms`` package, one scripted model.

Starts the scripted OpenAI-compatible server (``rlm_tui.bench.script``) in its
own processes, one per fixed latency, runs every measurement in a fresh worker
process (``rlm_tui.bench.worker``) for rlm-tui (headless engine / CLI) and for
rlms's ``ipython`` environment (subprocess kernel) and ``local`` environment,
and prints one table of medians with the ratio rlm-tui / rlms per row.
rlms columns are skipped, with a note, when the ``rlms`` package is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .corpus import make_corpus
from .script import question
from .worker import API_KEY, MODEL_TUI, RESULT

SYSTEMS = ("rlm-tui", "rlms-ipython", "rlms-local")
LABELS = {"rlm-tui": "rlm-tui", "rlms-ipython": "rlms ipython", "rlms-local": "rlms local"}
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


@dataclass
class Row:
    key: str
    metric: str
    values: dict[str, float] = field(default_factory=dict)
    fmt: str = "{:.2f}"
    target: str = ""
    met: bool | None = None
    note: str = ""
    text: str = ""  # replaces the values (a row that cannot be measured)


def _env() -> dict[str, str]:
    """The measured processes' environment: as a user's, Python keeps compiled bytecode (a machine that sets
    PYTHONDONTWRITEBYTECODE=1, as this one does, would make every launch compile rlm_tui's modules again,
    while rlms, installed, has its bytecode from the install)."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class Server:
    """The scripted model in its own process (so it never shares a harness's GIL)."""

    def __init__(self, latency: float, log: Path | None = None) -> None:
        cmd = [sys.executable, "-m", "rlm_tui.bench.script", "--latency", str(latency)]
        if log is not None:
            cmd += ["--log", str(log)]
        # Its stderr (socketserver's tracebacks when a finished client drops a kept-alive connection) is noise.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=_env())
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the scripted server did not start")

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, log: Callable[[str], None]) -> None:
        self.args = args
        self.work = work
        self.log = log
        self.raw: dict[str, Any] = {}
        self.failures: list[str] = []

    # ---- running things -----------------------------------------------------------

    def worker(self, system: str, task: str, **spec: Any) -> dict[str, Any] | None:
        spec.update(system=system, task=task)
        started = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "rlm_tui.bench.worker", json.dumps(spec)],
                                  capture_output=True, text=True, env=_env(), timeout=self.args.timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"{system} {task}: no result within {self.args.timeout:g} s")
            return None
        for line in proc.stdout.splitlines():
            if line.startswith(RESULT):
                data = json.loads(line[len(RESULT):])
                data["wall_s"] = time.perf_counter() - started
                self.raw.setdefault(f"{task}/{system}", []).append(data)
                return data
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        self.fail(f"{system} {task}: exit {proc.returncode}: {' | '.join(tail)}")
        return None

    def timed(self, cmd: list[str], marker: str, wall: list[float] | None = None) -> float | None:
        """Seconds from process start to the first stdout line holding ``marker``
        (``wall`` gets the wall-clock time of the start, to match the server's log)."""
        if wall is not None:
            wall.append(time.time())
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        assert proc.stdout is not None
        seen: float | None = None
        for line in proc.stdout:
            if seen is None and marker in line:
                seen = time.perf_counter() - started
        _, err = proc.communicate(timeout=self.args.timeout)
        if seen is None:
            self.fail(f"{' '.join(cmd[2:4])}: no answer (exit {proc.returncode}): "
                      f"{' | '.join(err.strip().splitlines()[-3:])}")
        return seen

    def fail(self, message: str) -> None:
        self.failures.append(message)
        self.log(f"  ! {message}")

    # ---- rows -----------------------------------------------------------------------

    def row1(self, url: str) -> Row:
        a = self.args
        row = Row("1", "llm_query harness overhead, ms/call (round trip − direct client call)",
                  fmt="{:.2f}", target="≤ 0.5 ms")
        detail = []
        for system in self.systems:
            shares, trips, directs = [], [], []
            for _ in range(a.runs):  # one process per run; the direct calls run before and after the REPL's
                data = self.worker(system, "overhead", url=url, n=a.calls)
                if data is None:
                    continue
                skip = min(10, len(data["lat"]) // 5)  # connection set-up and first-use costs
                half = len(data["direct"]) // 2
                direct = data["direct"][skip:half] + data["direct"][half + skip:]
                trips.append(median(data["lat"][skip:]) * 1e3)
                directs.append(median(direct) * 1e3)
                shares.append(trips[-1] - directs[-1])
            if shares:
                row.values[system] = median(shares)
                detail.append(f"{LABELS[system]} {median(trips):.2f} − {median(directs):.2f}")
        row.note = "median round trip − median direct call, ms: " + "; ".join(detail)
        if "rlm-tui" in row.values:
            row.met = row.values["rlm-tui"] <= 0.5
        return row

    def row2(self, url: str) -> list[Row]:
        a = self.args
        ideal = lambda c: math.ceil(a.batch / c) * a.latency  # noqa: E731
        seconds: dict[tuple[str, int], float] = {}  # (system, concurrency) -> median seconds
        for system in self.systems:
            for conc in (32, 16):  # rlm-tui's default is 32, rlms's 16
                data = self.worker(system, "batch", url=url, n=a.batch, reps=a.runs, concurrency=conc)
                if data is None:
                    continue
                bad = sum(r["bad"] for r in data["runs"])
                if bad:
                    self.fail(f"{system} batch @{conc}: {bad} prompts failed")
                seconds[(system, conc)] = median([r["s"] for r in data["runs"]])
        rows = []
        for key, label, tui_c, rlms_c in (("2a", "defaults (rlm-tui 32, rlms 16)", 32, 16),
                                          ("2b", "both at concurrency 16", 16, 16),
                                          ("2c", "both at concurrency 32", 32, 32)):
            row = Row(key, f"batch of {a.batch} @ {a.latency * 1e3:g} ms, {label}, s", fmt="{:.2f}")
            for system in self.systems:
                conc = tui_c if system == "rlm-tui" else rlms_c
                if (system, conc) in seconds:
                    row.values[system] = seconds[(system, conc)]
            row.target = f"≤ {ideal(tui_c) * 1.15:.2f} (ideal {ideal(tui_c):.2f} +15%)"
            if "rlm-tui" in row.values:
                row.met = row.values["rlm-tui"] <= ideal(tui_c) * 1.15
                if key == "2a" and "rlms-ipython" in row.values:
                    row.met = row.met and row.values["rlm-tui"] < row.values["rlms-ipython"]
                    row.target += ", < rlms"
            rows.append(row)
        return rows

    def row3(self, url: str, server_log: Path) -> Row:
        a = self.args
        row = Row("3", f"rlm_query → child's first model request, ms (median of {a.children})",
                  fmt="{:.0f}", target="< 150 ms")
        for system in self.systems:
            data = self.worker(system, "child", url=url, n=a.children, gap=a.child_gap)
            if data is None:
                continue
            arrivals = [float(line.split()[1]) for line in server_log.read_text().splitlines()
                        if line.startswith("child_first")]
            delays = []
            for called, returned, _ in data["calls"]:
                inside = [t for t in arrivals if called <= t <= returned]
                if inside:
                    delays.append((inside[0] - called) * 1e3)
            if len(delays) != len(data["calls"]):
                self.fail(f"{system} child: {len(data['calls']) - len(delays)} children not seen by the server")
            data["delays_ms"] = delays
            row.values[system] = median(delays)
        if "rlm-tui" in row.values:
            row.met = row.values["rlm-tui"] < 150
        return row

    def row4(self, url: str, corpus: Path) -> Row:
        a = self.args
        row = Row("4", f"whole scripted run, process start → answer, s ({a.e2e_latency * 1e3:g} ms model)",
                  fmt="{:.2f}", target="< rlms")
        q = question("e2e")
        for system in self.systems:
            times = []
            for i in range(a.runs):
                if system == "rlm-tui":
                    cmd = [sys.executable, "-m", "rlm_tui", str(corpus), q, "--headless", "--json",
                           "--model", MODEL_TUI, "--api-base", url, "--api-key", API_KEY, "--max-depth", "2",
                           "--max-iterations", "6", "--session", str(self.work / f"e2e-session-{i}.jsonl")]
                    took = self.timed(cmd, '"answer": "e2e ok"')
                else:
                    spec = {"system": system, "task": "e2e", "url": url, "path": str(corpus), "question": q}
                    took = self.timed([sys.executable, "-m", "rlm_tui.bench.worker", json.dumps(spec)],
                                      RESULT + '{"answer": "e2e ok"}')
                if took is not None:
                    times.append(took)
            self.raw[f"e2e/{system}"] = times
            if times:
                row.values[system] = median(times)
        if "rlm-tui" in row.values:
            others = [v for k, v in row.values.items() if k == "rlms-ipython"]
            row.met = bool(others) and row.values["rlm-tui"] < others[0]
            row.target = "< rlms ipython"
        return row

    def row7(self, url: str, server_log: Path, corpus: Path) -> list[Row]:
        """Start-up: process start → the root's first model request, and a trivial whole run."""
        a = self.args
        first = Row("7", "process start → root's first model request, ms", fmt="{:.0f}",
                    target="≤ 0.5× rlms ipython")
        whole = Row("8", "trivial run (one turn), process start → answer, s", fmt="{:.2f}",
                    target="≤ 0.8× rlms ipython")
        q = question("trivial")
        for system in self.systems:
            firsts, wholes = [], []
            for i in range(a.runs):
                wall: list[float] = []
                if system == "rlm-tui":
                    cmd = [sys.executable, "-m", "rlm_tui", str(corpus), q, "--headless", "--json",
                           "--model", MODEL_TUI, "--api-base", url, "--api-key", API_KEY,
                           "--session", str(self.work / f"trivial-{i}.jsonl")]
                    took = self.timed(cmd, '"answer": "trivial ok"', wall)
                else:
                    spec = {"system": system, "task": "e2e", "url": url, "path": str(corpus), "question": q,
                            "depth": 1}
                    took = self.timed([sys.executable, "-m", "rlm_tui.bench.worker", json.dumps(spec)],
                                      RESULT + '{"answer": "trivial ok"}', wall)
                arrivals = [float(line.split()[1]) for line in server_log.read_text().splitlines()
                            if line.startswith("root_first") and float(line.split()[1]) >= wall[0]]
                if took is None or not arrivals:
                    self.fail(f"{system} trivial run {i}: no answer or no first request seen")
                    continue
                wholes.append(took)
                firsts.append((min(arrivals) - wall[0]) * 1e3)
            self.raw[f"first-request/{system}"] = firsts
            self.raw[f"trivial/{system}"] = wholes
            if firsts:
                first.values[system] = median(firsts)
                whole.values[system] = median(wholes)
        if "rlm-tui" in first.values and "rlms-ipython" in first.values:
            first.met = first.values["rlm-tui"] <= 0.5 * first.values["rlms-ipython"]
            whole.met = whole.values["rlm-tui"] <= 0.8 * whole.values["rlms-ipython"]
        return [first, whole]

    def row9(self, url: str) -> Row:
        """The app must not slow the engine: one big batch at zero latency, in the app and headless."""
        a = self.args
        row = Row("9", f"batch of {a.fanout:,} @ 0 ms in the app ÷ headless (same run, s inside the REPL)",
                  fmt="{:.2f}", target="≤ 1.5")
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(a.runs):
            for app in (False, True):
                data = self.worker("rlm-tui", "fanout", url=url, n=a.fanout, app=app)
                if data is not None:
                    times[app].append(data["runs"][0]["s"])
        self.raw["fanout"] = times
        if times[False] and times[True]:
            headless, in_app = median(times[False]), median(times[True])
            row.values["rlm-tui"] = in_app / headless
            row.met = row.values["rlm-tui"] <= 1.5
            row.note = f"median s inside the REPL: app {in_app:.2f}, headless {headless:.2f}; rlms has no UI"
        return row

    def row10(self, url: str) -> list[Row]:
        """What the sandbox costs: rlm-tui with --sandbox on and off, side by side (rlms has none)."""
        a = self.args
        start = Row("10a", "root kernel start + bootstrap, ms: sandbox · no sandbox (extra)")
        trip = Row("10b", "llm_query round trip, ms: sandbox · no sandbox (extra)")
        starts: dict[str, list[float]] = {"on": [], "off": []}
        trips: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(a.runs):
            for mode in ("on", "off"):  # alternated, so neither sees only a cold or a busy machine
                data = self.worker("rlm-tui", "overhead", url=url, n=a.calls, sandbox=mode)
                if data is None:
                    continue
                if data["backend"] != ("sandbox" if mode == "on" else "local"):
                    self.fail(f"--sandbox {mode} ran the {data['backend']} backend")
                    continue
                skip = min(10, len(data["lat"]) // 5)
                starts[mode].append(data["kernel_start_s"] * 1e3)
                trips[mode].append(median(data["lat"][skip:]) * 1e3)
        for row, samples, digits in ((start, starts, 0), (trip, trips, 2)):
            if samples["on"] and samples["off"]:
                on, off = median(samples["on"]), median(samples["off"])
                row.values["rlm-tui"] = on - off
                row.text = f"{on:.{digits}f} · {off:.{digits}f} ({on - off:+.{digits}f})"
            else:
                row.text = "n/a (no sandbox here)" if not samples["on"] else "n/a"
        return [start, trip]

    def row5(self, url: str, corpus: Path, nbytes: int, tiny: Path) -> list[Row]:
        a = self.args
        mb = nbytes / 1e6
        size = f"{mb:,.0f} MB / {a.corpus_files:,} files"
        secs = Row("5a", f"load {size} as context, s", fmt="{:.2f}")
        rate = Row("5b", "load rate, MB/s (higher is better)", fmt="{:.0f}", target="≥ 100 MB/s")
        kern = Row("5c", "REPL process peak memory, MB", fmt="{:.0f}", target=f"≤ 2× context = {2 * mb:.0f} MB")
        host = Row("5d", "host process peak memory, MB (growth over a 1-file context)", fmt="{:.0f}",
                   target="no growth with the context")
        for system in self.systems:
            base = self.worker(system, "load", url=url, path=str(tiny))
            runs = [d for d in (self.worker(system, "load", url=url, path=str(corpus)) for _ in range(a.runs)) if d]
            if not runs:
                continue
            if any(d["chars"] < nbytes * 0.99 for d in runs):
                self.fail(f"{system} load: the REPL saw {runs[0]['chars']:,} characters of {nbytes:,}")
            secs.values[system] = median([d["load_s"] for d in runs])
            rate.values[system] = mb / secs.values[system]
            kern.values[system] = median([d["kernel_maxrss_mb"] for d in runs])
            host.values[system] = median([d["host_maxrss_mb"] for d in runs])
            if base:
                growth = host.values[system] - base["host_maxrss_mb"]
                host.note += f"{LABELS[system]} {growth:+.0f} MB; "
                self.raw[f"load-growth/{system}"] = growth
        if "rlm-tui" in secs.values:
            rate.met = rate.values["rlm-tui"] >= 100
            kern.met = kern.values["rlm-tui"] <= 2 * mb
            growth = self.raw.get("load-growth/rlm-tui")
            host.met = growth is not None and growth < max(20.0, 0.05 * mb)
        host.note = "growth: " + host.note.rstrip("; ") if host.note else ""
        if "rlms-local" in kern.values:
            kern.note = "rlms local runs code in the host process: its REPL peak is the host's"
        return [secs, rate, kern, host]

    def row6(self, url: str, corpus: Path) -> Row:
        from .frame import first_frame, tui_command

        row = Row("6", "process start → Textual app's first frame, ms", fmt="{:.0f}", target="≤ 300 ms")
        if importlib.util.find_spec("rlm_tui.ui") is None:
            row.text = "n/a (no UI yet: rlm_tui.ui is not on this branch)"
            return row
        env = _env()  # the untimed launch first writes the bytecode cache, as a user's first launch does
        times = []
        for i in range(self.args.runs + 1):
            cmd = tui_command(sys.executable, corpus, question("e2e"), url, self.work / f"ui-{i}.jsonl")
            took = first_frame(cmd, env)
            if took is None:
                self.fail("rlm-tui UI: no first frame on the terminal")
            elif i > 0:
                times.append(took * 1e3)
        self.raw["frame/rlm-tui"] = times
        if times:
            row.values["rlm-tui"] = median(times)
            row.met = row.values["rlm-tui"] <= 300
        row.note = "rlms has no terminal UI; bytecode cached (an untimed launch first, as a user's first launch)"
        return row

    # ---- the whole benchmark --------------------------------------------------------

    @property
    def systems(self) -> list[str]:
        return self.args.systems

    def run(self) -> list[Row]:
        a = self.args
        rows: list[Row] = []
        server_log = self.work / "server.log"
        servers = {}
        try:
            servers["zero"] = Server(0.0, server_log)
            if 2 in a.rows:
                servers["batch"] = Server(a.latency)
            if 4 in a.rows:
                servers["e2e"] = Server(a.e2e_latency)
            if 1 in a.rows:
                self.log("row 1: llm_query overhead")
                rows.append(self.row1(servers["zero"].url))
            if 2 in a.rows:
                self.log("row 2: batches")
                rows.extend(self.row2(servers["batch"].url))
            if 3 in a.rows:
                self.log("row 3: rlm_query -> child")
                rows.append(self.row3(servers["zero"].url, server_log))
            if 4 in a.rows:
                self.log("row 4: whole run")
                small = self.work / "e2e-corpus"
                make_corpus(small, 200_000, 20)
                rows.append(self.row4(servers["e2e"].url, small))
            if 5 in a.rows:
                self.log(f"row 5: load ({a.corpus_mb:g} MB / {a.corpus_files} files)")
                corpus_root = Path(a.corpus_dir) if a.corpus_dir else self.work
                corpus = corpus_root / f"corpus-{a.corpus_mb:g}MB-{a.corpus_files}"
                nbytes = make_corpus(corpus, int(a.corpus_mb * 1e6), a.corpus_files)
                tiny = self.work / "corpus-tiny"
                make_corpus(tiny, 1000, 1)
                rows.extend(self.row5(servers["zero"].url, corpus, nbytes, tiny))
            if 6 in a.rows:
                self.log("row 6: first frame")
                small = self.work / "e2e-corpus"
                make_corpus(small, 200_000, 20)
                rows.append(self.row6(servers["zero"].url, small))
            if 7 in a.rows or 8 in a.rows:
                self.log("rows 7-8: start-up")
                small = self.work / "e2e-corpus"
                make_corpus(small, 200_000, 20)
                rows.extend(self.row7(servers["zero"].url, server_log, small))
            if 9 in a.rows:
                self.log(f"row 9: batch of {a.fanout} in the app vs headless")
                rows.append(self.row9(servers["zero"].url))
            if 10 in a.rows:
                self.log("row 10: the sandbox's cost")
                rows.extend(self.row10(servers["zero"].url))
        finally:
            for server in servers.values():
                server.stop()
        return rows


def render(rows: list[Row], systems: list[str]) -> str:
    others = [s for s in systems if s != "rlm-tui"]
    head = ["row", "metric", *(LABELS[s] for s in systems), *(f"tui/{LABELS[s].split()[1]}" for s in others),
            "target", "met"]
    lines = []
    for row in rows:
        if row.text:
            cells = [row.key, row.metric, row.text, row.target, ""]
        else:
            vals = [row.fmt.format(row.values[s]) if s in row.values and not math.isnan(row.values[s]) else "—"
                    for s in systems]
            ratios = []
            for s in others:
                tui, other = row.values.get("rlm-tui"), row.values.get(s)
                ok = tui is not None and other not in (None, 0) and not math.isnan(other) and not math.isnan(tui)
                ratios.append(f"{tui / other:.2f}" if ok else "—")
            met = "" if row.met is None else ("yes" if row.met else "NO")
            cells = [row.key, row.metric, *vals, *ratios, row.target, met]
        lines.append(cells)
    measured = [c for c, r in zip(lines, rows) if not r.text]  # an n/a text spans the value columns
    widths = [max(len(str(c[i])) for c in [head, *measured]) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        if len(cells) < len(head):  # key, metric, text, target, met
            span = sum(widths[2:-2]) + 3 * (len(widths) - 5)
            cells = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1]), cells[2].ljust(span),
                     cells[3].ljust(widths[-2]), cells[4]]
            return " | ".join(cells).rstrip()
        out = []
        for i, c in enumerate(cells):
            text = str(c)
            out.append(text.ljust(widths[i]) if i < 2 or i >= len(cells) - 2 else text.rjust(widths[i]))
        return " | ".join(out).rstrip()

    table = [fmt(head), "-+-".join("-" * w for w in widths)]
    table += [fmt(c) for c in lines]
    notes = [f"  {r.key}: {r.note}" for r in rows if r.note]
    return "\n".join(table + (["notes:"] + notes if notes else []))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rlm_tui.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and one run each (the smoke test)")
    p.add_argument("--rows", default="1,2,3,4,5,6,7,9,10",
                   help="rows to run, e.g. 1,2 (default: all; 7 runs rows 7 and 8)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated: " + ", ".join(SYSTEMS))
    p.add_argument("--runs", type=int, help="repetitions of rows 1, 2, 4, 5 (default 3)")
    p.add_argument("--calls", type=int, help="sequential llm_query calls per run in row 1 (default 300)")
    p.add_argument("--batch", type=int, help="prompts in row 2's batch (default 256)")
    p.add_argument("--latency", type=float, help="model latency in row 2, seconds (default 0.25)")
    p.add_argument("--children", type=int, help="rlm_query calls in row 3 (default 5)")
    p.add_argument("--child-gap", type=float, help="pause before each rlm_query in row 3, s (default 2)")
    p.add_argument("--e2e-latency", type=float, help="model latency in row 4, seconds (default 0.05)")
    p.add_argument("--fanout", type=int, help="prompts in row 9's batch (default 20000)")
    p.add_argument("--corpus-mb", type=float, help="size of row 5's directory, MB (default 200)")
    p.add_argument("--corpus-files", type=int, help="files in row 5's directory (default 20000)")
    p.add_argument("--corpus-dir", help="where to build (and keep) row 5's directory (default: a temp dir)")
    p.add_argument("--timeout", type=float, default=600, help="seconds one measurement may take")
    p.add_argument("--json", dest="json_out", help="also write the rows and raw samples to this file")
    args = p.parse_args(argv)
    full = dict(runs=3, calls=300, batch=256, latency=0.25, children=5, child_gap=2.0, e2e_latency=0.05,
                corpus_mb=200.0, corpus_files=20_000, fanout=20_000)
    quick = dict(runs=1, calls=30, batch=16, latency=0.05, children=2, child_gap=0.3, e2e_latency=0.0,
                 corpus_mb=1.0, corpus_files=100, fanout=200)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.rows = sorted({int(r) for r in args.rows.split(",") if r.strip()})
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown system {unknown[0]!r}")
    args.systems = [s for s in SYSTEMS if s in args.systems]  # rlm-tui first: the ratios divide by rlms
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if importlib.util.find_spec("rlm") is None and any(s != "rlm-tui" for s in args.systems):
        log("rlms is not installed (see README, Performance): measuring rlm-tui only")
        args.systems = [s for s in args.systems if s == "rlm-tui"]
    if not args.systems:
        log("nothing to measure")
        return 2
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="rlm-bench-"))
    try:
        bench = Bench(args, work, log)
        rows = bench.run()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(render(rows, args.systems))
    print(f"\n{len(args.systems)} systems, {time.perf_counter() - started:.0f} s, "
          f"{os.cpu_count()} cores, python {sys.version.split()[0]}"
          + (" (--quick: tiny sizes, not comparable)" if args.quick else ""))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "args": vars(args), "rows": [r.__dict__ for r in rows], "raw": bench.raw,
            "failures": bench.failures}, indent=1, default=str))
    if bench.failures:
        print("failures:\n" + "\n".join(f"  {f}" for f in bench.failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
