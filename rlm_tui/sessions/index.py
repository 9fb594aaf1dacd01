"""A session file indexed for random access, without parsing every line.

Opening a file scans its lines once: a regular expression reads the fixed
prefix every recorded line starts with (``{"seq": .., "t": .., "kind": "..",
"node": ..``), so the index knows each event's byte range, kind and node
without decoding its JSON. Events are decoded only when asked for. That is
what lets a 100 MB session open in about a second (see
``python -m rlm_tui.bench.session_open``).

``refresh()`` indexes what was appended since the last scan (following a live
run). A last line without its newline is still being written while following;
in a finished file it is a torn line and is reported with its number, like any
other unreadable line, while the rest loads. (A line whose prefix and closing
brace look whole but whose middle is damaged is reported when first decoded,
and reads as a ``warning`` event naming the line.)
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import re
import stat
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator

from ..core import events as ev
from ..core.session import SessionFormatError, check_header, decode_line, second_header

#: The start of a line as Event.to_json writes it (kind and node captured without decoding); such a
#: line that ends with ``}`` is indexed as it is, any other is decoded in full (or reported as damaged).
_HEAD = re.compile(rb'\{"seq": -?\d+, "t": [^,\n]*, "kind": "([A-Za-z0-9_]+)", "node": (?:null|"([^"\\\n]*)")')
_BRACE = ord("}")
_CACHE_SIZE = 4096
ANY = object()  # positions(): events of any node


class SessionChanged(Exception):
    """The file was replaced or truncated under the index (re-open it)."""


class SessionIndex:
    """Where each event of a session file is; ``event(i)`` decodes one on demand.

    ``complete=False`` is for a file another process is still writing: an
    unterminated last line is left for the next ``refresh()`` instead of being
    reported as torn.
    """

    def __init__(self, path: Path | str, *, complete: bool = True) -> None:
        self.path = Path(path)
        self.complete = complete
        self.header: dict | None = None
        self.bad_lines: list[tuple[int, str]] = []  # (line number, why)
        self.offsets = array("q")  # byte where each event's line starts
        self.kinds = bytearray()  # kind code of each event
        self.nodes = array("l")  # node code of each event (0 = no node)
        self.kind_names: list[str] = []
        self._kind_codes: dict[str, int] = {}
        self.node_names: list[str | None] = [None]
        self._node_codes: dict[str | None, int] = {None: 0}
        self._scanned = 0  # bytes indexed so far
        self._lineno = 0
        self._fd: int | None = None
        self._ino: int | None = None
        self._mm: mmap.mmap | bytearray | None = None
        # A file another process writes may be truncated under us: a map of it would then fault
        # (SIGBUS) on the lost pages, so a followed file is copied in as it grows instead.
        self._copy = not complete
        self._cache: OrderedDict[int, ev.Event] = OrderedDict()
        self._by_node: dict[int, array] = {}
        self._by_node_upto = 0
        self._closed_at: int | None = None  # the line of a second session header: nothing after it is read

    @classmethod
    def open(cls, path: Path | str, *, complete: bool = True) -> "SessionIndex":
        """Index a whole file; raises FileNotFoundError or SessionFormatError."""
        index = cls(path, complete=complete)
        try:
            index.refresh()
        except BaseException:
            index.close()
            raise
        return index

    # ---- size and access --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def size(self) -> int:
        """Bytes indexed so far."""
        return self._scanned

    def kind(self, i: int) -> str:
        return self.kind_names[self.kinds[i]]

    def node(self, i: int) -> str | None:
        return self.node_names[self.nodes[i]]

    def kind_code(self, kind: str) -> int | None:
        return self._kind_codes.get(kind)

    def node_code(self, node: str | None) -> int | None:
        return self._node_codes.get(node)

    def raw(self, i: int) -> bytes:
        """The bytes of event ``i``'s line."""
        assert self._mm is not None
        start = self.offsets[i]
        end = self._mm.find(b"\n", start)
        return self._mm[start:end if end != -1 else len(self._mm)]

    def line_number(self, i: int) -> int:
        """The 1-based line of event ``i`` (counts lines: for error messages)."""
        assert self._mm is not None
        return self._mm[:self.offsets[i]].count(b"\n") + 1

    def event(self, i: int, *, keep: bool = True) -> ev.Event:
        """Event ``i`` decoded; an undecodable line becomes a warning event.

        Recently used events are cached; ``keep=False`` (reading many once)
        uses the cache without filling it.
        """
        cached = self._cache.get(i)
        if cached is not None:
            self._cache.move_to_end(i)
            return cached
        event = self.decode(i)
        if keep:
            self._cache[i] = event
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return event

    def iter_events(self, start: int = 0, stop: int | None = None) -> Iterator[ev.Event]:
        """Events ``start`` to ``stop`` decoded in order (not cached: for reading a whole file)."""
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(max(0, start), stop):
            yield self.event(i, keep=False)

    def positions(self, kinds: Iterable[str], node: object = ANY, *, start: int = 0,
                  stop: int | None = None) -> list[int]:
        """Indices of the events of these kinds (of one node, or of any), in order."""
        stop = len(self) if stop is None else min(stop, len(self))
        codes = [c for c in (self._kind_codes.get(k) for k in kinds) if c is not None]
        found: list[int] = []
        for code in codes:
            needle = bytes((code,))
            i = self.kinds.find(needle, start, stop)
            while i != -1:
                found.append(i)
                i = self.kinds.find(needle, i + 1, stop)
        if len(codes) > 1:
            found.sort()
        if node is not ANY:
            want = self._node_codes.get(node)  # type: ignore[arg-type]
            if want is None:
                return []
            nodes = self.nodes
            found = [i for i in found if nodes[i] == want]
        return found

    def node_positions(self, node: str | None) -> array:
        """Indices of all events of one node, in order (built on first use, then kept up to date)."""
        if self._by_node_upto < len(self):
            by_node = self._by_node
            nodes = self.nodes
            for i in range(self._by_node_upto, len(self)):
                code = nodes[i]
                found = by_node.get(code)
                if found is None:
                    found = by_node[code] = array("l")
                found.append(i)
            self._by_node_upto = len(self)
        code = self._node_codes.get(node)
        return self._by_node.get(code, array("l")) if code is not None else array("l")

    # ---- scanning ---------------------------------------------------------------------

    def refresh(self, max_bytes: int | None = None) -> int:
        """Index lines appended since the last scan; returns how many events were added.

        ``max_bytes`` bounds the work of one call (to index a huge file in slices).
        Raises SessionChanged when the file was replaced or truncated.
        """
        if self._fd is None:
            if os.path.isdir(self.path):
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(self.path))
            self._fd = os.open(self.path, os.O_RDONLY)
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(self._fd)
                self._fd = None
                raise SessionFormatError(f"{self.path} is not a regular file")
            self._ino = st.st_ino
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise SessionChanged(f"{self.path} was removed") from None
        if st.st_ino != self._ino or st.st_size < self._scanned:
            raise SessionChanged(f"{self.path} was replaced or truncated")
        size = os.fstat(self._fd).st_size
        if size <= self._scanned or self._closed_at is not None:
            return 0
        if self._copy:
            if self._mm is None:
                self._mm = bytearray()
            assert isinstance(self._mm, bytearray)
            while len(self._mm) < size:
                chunk = os.pread(self._fd, size - len(self._mm), len(self._mm))
                if not chunk:
                    break
                self._mm += chunk
            size = len(self._mm)
        elif self._mm is None or len(self._mm) < size:
            if isinstance(self._mm, mmap.mmap):
                self._mm.close()
            self._mm = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ) if size else None
        if self._mm is None:
            return 0
        before = len(self)
        end = size if max_bytes is None else min(size, self._scanned + max_bytes)
        self._scan(self._mm, self._scanned, end, size)
        return len(self) - before

    def finish(self) -> None:
        """The writer is gone: index everything, reporting an unterminated last line as torn."""
        self.complete = True
        self.refresh()

    def _scan(self, data: mmap.mmap | bytearray, pos: int, stop: int, size: int) -> None:
        if self._lineno == 0 and pos < stop:  # the header: decoded and checked, never skipped
            nl = data.find(b"\n", pos, stop)
            if nl == -1 and not (self.complete and stop == size):
                return  # still being written
            end = size if nl == -1 else nl
            decoded = self._check_line(data[pos:end], 1, nl == -1)
            self._lineno = 1
            if decoded is not None:
                self._add(pos, *decoded)
            pos = min(end + 1, size)
        offsets, kinds, nodes = self.offsets, self.kinds, self.nodes
        kind_codes, node_codes = self._kind_codes, self._node_codes
        lineno = self._lineno
        find, head = data.find, _HEAD.match
        while pos < stop:  # a line at a time: memchr finds its end, the prefix is matched in place
            nl = find(b"\n", pos, stop)
            if nl == -1:
                break
            start, pos = pos, nl + 1
            lineno += 1
            m = head(data, start, nl)
            if m is None or data[nl - 1] != _BRACE:  # not in the usual shape (or blank, or damaged): decode it
                raw = data[start:nl].strip()
                if raw:
                    decoded = self._check_line(raw, lineno, False)
                    if decoded is not None and decoded[0] == ev.SESSION:
                        self._second_header(lineno)
                        break
                    if decoded is not None:
                        self._add(start, *decoded)
                continue
            kind, node = m.group(1, 2)
            if kind == b"session":
                self._second_header(lineno)
                break
            code = kind_codes.get(kind)
            if code is None:
                code = self._new_kind(kind)
            ncode = node_codes.get(node)
            if ncode is None:
                ncode = self._new_node(node)
            offsets.append(start)
            kinds.append(code)
            nodes.append(ncode)
        self._lineno = lineno
        if self._closed_at is not None:
            self._scanned = size
            return
        if pos < stop and stop == size and self.complete:  # a last line without its newline: torn
            raw = data[pos:size].strip()
            if raw:
                self._lineno += 1
                decoded = self._check_line(raw, self._lineno, True)
                if decoded is not None and decoded[0] == ev.SESSION:
                    self._second_header(self._lineno)
                elif decoded is not None:
                    self._add(pos, *decoded)
            pos = size
        self._scanned = pos

    def _add(self, offset: int, kind: str, node: str | None) -> None:
        code = self._kind_codes.get(kind)
        if code is None:
            code = self._new_kind(kind)
        ncode = self._node_codes.get(node)
        if ncode is None:
            ncode = self._new_node(node)
        self.offsets.append(offset)
        self.kinds.append(code)
        self.nodes.append(ncode)

    def _new_kind(self, kind: str | bytes) -> int:
        name = kind.decode() if isinstance(kind, bytes) else kind
        if len(self.kind_names) >= 255:
            raise SessionFormatError("too many kinds of event: not an rlm-tui session file")
        code = len(self.kind_names)
        self.kind_names.append(name)
        self._kind_codes[name] = code
        self._kind_codes[name.encode()] = code  # type: ignore[index]
        return code

    def _new_node(self, node: str | bytes | None) -> int:
        name = node.decode() if isinstance(node, bytes) else node
        code = self._node_codes.get(name)
        if code is None:
            code = len(self.node_names)
            self.node_names.append(name)
            self._node_codes[name] = code
        if isinstance(node, bytes):
            self._node_codes[node] = code  # type: ignore[index]
        return code

    def _check_line(self, raw: bytes, lineno: int, last: bool) -> tuple[str, str | None] | None:
        """Decode a line the fast path did not take: (kind, node), or None when unreadable."""
        if lineno == 1:
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):
                raise SessionFormatError(f"{self.path}: not an rlm-tui session file "
                                         f"(line 1 is not a session header)") from None
            check_header(obj)
            self.header = obj
            return obj["kind"], None
        found: list[tuple[int, str]] = []
        obj = decode_line(raw, lineno, found)
        if obj is None:
            why = found[0][1] if not last else f"line {lineno}: cut off (the run was stopped mid-write)"
            self.bad_lines.append((lineno, why))
            return None
        node = obj.get("node")
        return obj["kind"], node if isinstance(node, str) else None

    def _second_header(self, lineno: int) -> None:
        """Another run was written into this file: report it and index nothing after it."""
        self.bad_lines.append(second_header(lineno))
        self._closed_at = lineno

    def decode(self, i: int, raw: bytes | None = None) -> ev.Event:
        """Event ``i`` decoded, not cached; ``raw``: its line's bytes, when the caller has read them."""
        found: list[tuple[int, str]] = []
        obj = decode_line(self.raw(i) if raw is None else raw, 0, found)
        if obj is not None and not found:
            return ev.Event.from_dict(obj)
        lineno = self.line_number(i)
        reason = found[0][1].replace("line 0:", f"line {lineno}:", 1)
        if (lineno, reason) not in self.bad_lines:
            self.bad_lines.append((lineno, reason))
        if obj is not None:  # repaired: shown, with the damage reported
            return ev.Event.from_dict(obj)
        return ev.Event(ev.WARNING, data={"message": reason}, seq=-1)

    # ---- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        if isinstance(self._mm, mmap.mmap):
            self._mm.close()
        self._mm = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "SessionIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
