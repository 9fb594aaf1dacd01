"""Runs inside the kernel: loads the run's input as ``context`` and describes it.

The kernel, not the host, reads the files, so the host never holds a copy of a
large context. A file becomes a ``str``; a directory a ``dict`` of relative
path -> text, read from the list of files the host chose by their metadata
(``rlm_tui/core/shape.py``: ``.gitignore``, caps, symlinks). Binary files are
skipped and reported, undecodable bytes replaced.
"""


def __rlm_load_context(spec, fetch=None):
    import os
    import pickle
    import time

    started = time.perf_counter()
    skipped = {}  # reason -> [count, examples]

    def skip(reason, rel):
        entry = skipped.setdefault(reason, [0, []])
        entry[0] += 1
        if len(entry[1]) < 5:
            entry[1].append(rel)

    def clean(name):
        # File names may hold invalid UTF-8 (surrogate escapes): keep them printable and encodable.
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")

    def read_text(path, limit):
        with open(path, "rb") as handle:
            return decode(handle.read(limit + 1), limit)

    def decode(data, limit):
        cut = len(data) > limit
        data = data[:limit]
        if b"\x00" in data[:8192]:
            return None, cut
        return data.decode("utf-8", "replace"), cut

    def load_dir(root, manifest, max_file):
        # The host chose the files (rlm_tui/core/shape.py: .gitignore, caps, symlinks); read them here.
        import json

        with open(manifest, encoding="utf-8") as handle:
            names = json.load(handle)
        result = {}
        for rel in names:
            key = clean(rel)
            try:
                text, _ = read_text(os.path.join(root, rel), max_file)
            except OSError as exc:
                skip("unreadable (" + (exc.strerror or type(exc).__name__) + ")", key)
                continue
            if text is None:
                skip("binary", key)
                continue
            result[key] = text
        return result

    def shipped(spec):
        # A kernel elsewhere: the host read the input and serves it by number, in chunks
        # (rlm_tui/core/backends/jupyter_server.py); no host path is opened here.
        def blob(index, limit):
            parts, got = [], 0
            while got < limit:
                piece = fetch(index, got, min(1 << 20, limit - got))
                if not piece:
                    break
                parts.append(piece)
                got += len(piece)
            return b"".join(parts)

        names, kind = spec["names"], spec["as"]
        if kind == "text":
            return blob(0, spec["bytes"]).decode("utf-8", "surrogatepass"), 0
        if kind == "pickle":
            return pickle.loads(blob(0, spec["bytes"])), 0
        if kind == "file":
            data = blob(0, spec["max_total_bytes"] + 1)
            value, cut = decode(data, spec["max_total_bytes"])
            if value is None:
                raise ValueError("the file looks binary (it holds NUL bytes); give a text file")
            return value, (spec["bytes"] - spec["max_total_bytes"]) if cut else 0
        result = {}
        for index, rel in enumerate(names):
            key = clean(rel)
            try:
                text, _ = decode(blob(index, spec["max_file_bytes"] + 1), spec["max_file_bytes"])
            except RuntimeError as exc:  # the host could not read it (the bridge's error)
                skip("unreadable (" + str(exc) + ")", key)
                continue
            if text is None:
                skip("binary", key)
                continue
            result[key] = text
        return result, 0

    kind = spec["type"]
    truncated = 0
    if kind == "shipped":
        value, truncated = shipped(spec)
    elif kind == "text":
        value = spec["text"]
    elif kind == "pickle":
        with open(spec["path"], "rb") as handle:
            value = pickle.load(handle)
    elif os.path.isdir(spec["path"]):
        value = load_dir(spec["path"], spec["manifest"], spec["max_file_bytes"])
    else:
        size = os.path.getsize(spec["path"])
        value, cut = read_text(spec["path"], spec["max_total_bytes"])
        if value is None:
            raise ValueError("the file looks binary (it holds NUL bytes); give a text file")
        if cut:
            truncated = size - spec["max_total_bytes"]

    info = {"type": type(value).__name__, "load_s": round(time.perf_counter() - started, 3),
            "truncated_bytes": truncated,
            "skipped": {reason: {"count": c, "examples": ex} for reason, (c, ex) in skipped.items()}}
    if isinstance(value, dict):
        sizes = sorted(((k, len(v) if isinstance(v, str) else len(str(v))) for k, v in value.items()),
                       key=lambda item: -item[1])
        info.update(files=len(value), chars=sum(s for _, s in sizes), largest=sizes[:10])
    elif isinstance(value, str):
        info.update(chars=len(value), lines=value.count("\n") + (1 if value and not value.endswith("\n") else 0))
    elif isinstance(value, (list, tuple)):
        info.update(items=len(value), chars=sum(len(str(v)) for v in value))
    else:
        info.update(chars=len(str(value)))
    return value, info
