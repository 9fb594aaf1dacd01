"""The bridge reads little before a client proves it has the secret (issue 15, finding 6)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from rlm_tui.core.bridge import Bridge


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def _never_ending_hellos(bridge: Bridge, clients: int, seconds: float) -> tuple[float, list[bool]]:
    """``clients`` connections each sending one endless line: the host's peak memory (MB) while
    they send, and True for each one the host dropped."""
    chunk = b"x" * (1 << 20)
    dropped = [False] * clients

    def send(i: int) -> None:
        with socket.create_connection(("127.0.0.1", bridge.port)) as sock:
            sock.settimeout(1)
            sock.sendall(b'{"op": "hello", "secret": "')
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    sock.sendall(chunk)
                except (ConnectionError, socket.timeout):
                    # a full send buffer (the host stopped reading) or a reset (it hung up)
                    try:
                        if sock.recv(1) == b"":
                            dropped[i] = True
                            return
                    except ConnectionError:
                        dropped[i] = True
                        return
                    except socket.timeout:
                        continue

    threads = [threading.Thread(target=send, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    peak = rss_mb()
    while any(t.is_alive() for t in threads):
        await asyncio.sleep(0.05)
        peak = max(peak, rss_mb())
    return peak, dropped


async def _hostile_run() -> tuple[float, list[bool], int]:
    async def handler(kernel: str, request: dict) -> str:
        return "never called"

    bridge = Bridge(handler)
    await bridge.start()
    before = rss_mb()
    peak, dropped = await _never_ending_hellos(bridge, 3, 4.0)
    grown = peak - before
    await bridge.close()
    return grown, dropped, bridge.rejected


def test_never_ending_hellos_do_not_grow_the_host() -> None:
    """Three clients streaming an endless hello for 4 s: the host buffers at most a few KB each,
    drops them (over 4 KB, or after 2 s), and its memory stays flat. With the stream limit that
    authenticated requests get (1 GiB) used before the hello, this grew the host by gigabytes."""
    grown, dropped, rejected = asyncio.run(_hostile_run())
    assert grown < 50, f"host grew by {grown:.0f} MB"
    assert all(dropped) and rejected == 3


@pytest.mark.parametrize("hello", [
    b'{"op": "hello", "secret": ' + b"[" * 3000 + b"\n",  # nested past the JSON decoder's recursion limit
    b"\xff\xfe\x00garbage\n",
    b"[1, 2]\n",
], ids=["nested-3000-deep", "garbage", "not-an-object"])
def test_bad_hellos_are_refused_without_a_traceback(hello: bytes, capfd: pytest.CaptureFixture[str]) -> None:
    async def main() -> int:
        async def handler(kernel: str, request: dict) -> str:
            return "never called"

        bridge = Bridge(handler)
        await bridge.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(hello)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # hung up, nothing served
        writer.close()
        await bridge.close()
        return bridge.rejected

    assert asyncio.run(main()) == 1
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Error" not in captured.err, captured.err
