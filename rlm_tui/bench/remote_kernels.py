"""Kernels on a Jupyter Server vs local kernels: the llm_query round trip, calls from threads, shipping the input.

    python -m rlm_tui.bench.remote_kernels            # needs jupyter-server (the test extra)
    python -m rlm_tui.bench.remote_kernels --mb 200

A real ``jupyter server`` is started on 127.0.0.1 (``rlm_tui.bench.jupyter_remote``);
the same bootstrap runs in one of its kernels (sub-calls over the kernel's
stdin) and in a local kernel (sub-calls over the loopback bridge). The host
answers every sub-call itself at once (or after 0.5 s for the threads row), so
what is measured is the harness, not a model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ..core.backends import Kernel, kernel_source
from ..core.backends.jupyter_api import JupyterApi
from ..core.backends.jupyter_server import RemoteKernel
from ..core.backends.local import JupyterKernel
from ..core.bridge import Bridge
from .jupyter_remote import start_server, stop_server

CALLS = 300
ROUND_TRIP = (f"import time\nt = time.perf_counter()\nfor _ in range({CALLS}): llm_query('hi')\n"
              f"print((time.perf_counter() - t) / {CALLS} * 1000)")
THREADS = ("import time\nfrom concurrent.futures import ThreadPoolExecutor\nt = time.perf_counter()\n"
           "with ThreadPoolExecutor(8) as pool: list(pool.map(lambda i: llm_query(str(i), model='slow'), range(8)))\n"
           "print(time.perf_counter() - t)")


async def handler(kernel_id: str, request: dict[str, Any]) -> str:
    if request.get("model") == "slow":
        await asyncio.sleep(0.5)
    return "x"


async def measure(kernel: Kernel, cfg: dict[str, Any], spec: dict[str, Any]) -> dict[str, float]:
    code = kernel_source("loader.py") + "\n" + kernel_source("bootstrap.py") + f"\n__rlm_install({cfg!r})\n"
    await kernel.call(code, "'ok'", timeout=60)
    results = {}
    for name, cell in (("round_trip_ms", ROUND_TRIP), ("threads_s", THREADS)):
        out: list[str] = []
        await kernel.execute(cell, lambda stream, text: out.append(text))
        results[name] = float("".join(out).strip())
    started = time.perf_counter()
    await kernel.call(f"__rlm_info = __rlm_load({spec!r})", "__rlm_info", timeout=600)
    results["load_s"] = time.perf_counter() - started
    return results


def make_input(folder: Path, mb: int) -> tuple[dict[str, Any], int]:
    folder.mkdir()
    names = []
    for i in range(mb):  # 1 MB files of text
        name = f"f{i:04}.txt"
        (folder / name).write_text(("line of text %07d\n" % i) * (1_000_000 // 21))
        names.append(name)
    manifest = folder.parent / "files.json"
    manifest.write_text(json.dumps(names))
    size = sum((folder / n).stat().st_size for n in names)
    return ({"type": "path", "path": str(folder), "manifest": str(manifest), "max_file_bytes": 10_000_000,
             "max_total_bytes": 512_000_000}, size)


async def main(mb: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    spec, size = make_input(base / "input", mb)
    server = start_server(base / "server", base / "nothing-forbidden")
    try:
        api = JupyterApi(server.url, server.token)
        remote = RemoteKernel(api, handler)
        started = time.perf_counter()
        await remote.start()
        remote_start = time.perf_counter() - started
        shipped = remote.ship(spec)
        remote_spec = shipped
        got_remote = await measure(remote, {"connect": {"stdin": True}, "secret": "", "kernel": remote.id,
                                            "output_chars": 20_000, "tmp": None}, remote_spec)
        await remote.shutdown()
        api.close()
        bridge = Bridge(handler)
        await bridge.start()
        local = JupyterKernel(base)
        started = time.perf_counter()
        await local.start()
        local_start = time.perf_counter() - started
        got_local = await measure(local, {"connect": {"port": bridge.port}, "secret": bridge.secret,
                                          "kernel": local.id, "output_chars": 20_000, "tmp": str(base)}, spec)
        await local.shutdown()
        await bridge.close()
    finally:
        stop_server(server)
    rows = [("kernel start, s", local_start, remote_start),
            (f"llm_query round trip, ms (host answers at once; mean of {CALLS})", got_local["round_trip_ms"],
             got_remote["round_trip_ms"]),
            ("8 llm_query from 8 threads @ 0.5 s, s", got_local["threads_s"], got_remote["threads_s"]),
            (f"load {size / 1e6:.0f} MB / {mb} files as context, s", got_local["load_s"], got_remote["load_s"]),
            ("load rate, MB/s", size / 1e6 / got_local["load_s"], size / 1e6 / got_remote["load_s"])]
    print(f"{'metric':<62} | {'local':>8} | {'jupyter server':>14}")
    for name, a, b in rows:
        print(f"{name:<62} | {a:>8.2f} | {b:>14.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="size of the input shipped, in 1 MB files")
    asyncio.run(main(parser.parse_args().mb))
