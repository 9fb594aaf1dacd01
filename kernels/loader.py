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
        # A kernel elsewhere: the host read the input and serves it by number, several files or a
        # piece of one per request (rlm_tui/core/backends/jupyter_server.py); no host path is opened here.
        def blobs(start, stop, limit):
            """(index, bytes up to ``limit``, error) for blobs ``start`` to ``stop - 1``, in order."""
            index, parts = start, []
            while index < stop:
                for piece in fetch(index, sum(len(p) for p in parts), limit):
                    parts.append(piece.get("data", b""))
                    if piece["end"]:
                        yield index, b"".join(parts), piece.get("error")
                        index, parts = index + 1, []

        kind = spec["as"]
        if kind in ("text", "pickle"):
            _, data, error = next(blobs(0, 1, spec["bytes"]))
            if error:
                raise ValueError(error)
            return (data.decode("utf-8", "surrogatepass") if kind == "text" else pickle.loads(data)), 0
        if kind == "file":
            _, data, error = next(blobs(0, 1, spec["max_total_bytes"] + 1))
            if error:
                raise ValueError(error)
            value, cut = decode(data, spec["max_total_bytes"])
            if value is None:
                raise ValueError("the file looks binary (it holds NUL bytes); give a text file")
            return value, (spec["bytes"] - spec["max_total_bytes"]) if cut else 0
        import json

        _, listed, _ = next(blobs(0, 1, spec["list_bytes"]))  # blob 0: the file names; then the files
        names = json.loads(listed)
        result = {}
        for index, data, error in blobs(1, len(names) + 1, spec["max_file_bytes"] + 1):
            key = clean(names[index - 1])
            if error:  # the host could not read it
                skip("unreadable (" + error + ")", key)
                continue
            text, _ = decode(data, spec["max_file_bytes"])
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
