"""Runs inside the kernel: loads the run's input as ``context`` and describes it.

The kernel, not the host, reads the files, so the host never holds a copy of a
large context. A file becomes a ``str``; a directory a ``dict`` of relative
path -> text. ``.gitignore`` files are respected, ``.git`` skipped, binary and
oversized files skipped and reported, undecodable bytes replaced, symlinked
directories not followed (so a symlink loop cannot recurse).
"""


def __rlm_load_context(spec):
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
            data = handle.read(limit + 1)
        cut = len(data) > limit
        data = data[:limit]
        if b"\x00" in data[:8192]:
            return None, cut
        return data.decode("utf-8", "replace"), cut

    def load_dir(root, max_file, max_total):
        try:
            import pathspec
        except ImportError:  # pragma: no cover - pathspec is a dependency
            pathspec = None
        result = {}
        total = 0
        specs = []  # (base relative dir, GitIgnoreSpec)
        def unreadable_dir(exc):
            rel = os.path.relpath(str(exc.filename), root)
            skip("unreadable (" + (exc.strerror or type(exc).__name__) + ")", clean(rel) + "/")

        for current, dirs, files in os.walk(root, followlinks=False, onerror=unreadable_dir):
            rel_dir = os.path.relpath(current, root)
            rel_dir = "" if rel_dir == "." else rel_dir
            if pathspec is not None and ".gitignore" in files:
                try:
                    with open(os.path.join(current, ".gitignore"), encoding="utf-8", errors="replace") as handle:
                        specs.append((rel_dir, pathspec.GitIgnoreSpec.from_lines(handle)))
                except OSError:
                    pass

            def ignored(rel, is_dir):
                for base, spec in specs:
                    if base and not rel.startswith(base + os.sep):
                        continue
                    sub = rel[len(base) + 1:] if base else rel
                    if spec.match_file(sub + ("/" if is_dir else "")):
                        return True
                return False

            kept = []
            for name in sorted(dirs):
                rel = os.path.join(rel_dir, name) if rel_dir else name
                if name == ".git":
                    continue
                if os.path.islink(os.path.join(current, name)):
                    skip("symlinked directory", clean(rel))
                elif specs and ignored(rel, True):
                    skip("gitignored", clean(rel) + "/")
                else:
                    kept.append(name)
            dirs[:] = kept
            for name in sorted(files):
                rel = os.path.join(rel_dir, name) if rel_dir else name
                key = clean(rel)
                if specs and ignored(rel, False):
                    skip("gitignored", key)
                    continue
                path = os.path.join(current, name)
                try:
                    size = os.path.getsize(path)
                    if size > max_file:
                        skip(f"larger than {max_file // 1_000_000} MB", key)
                        continue
                    if total + size > max_total:
                        skip("over the total size cap", key)
                        continue
                    text, _ = read_text(path, max_file)
                except OSError as exc:
                    skip("unreadable (" + (exc.strerror or type(exc).__name__) + ")", key)
                    continue
                if text is None:
                    skip("binary", key)
                    continue
                result[key] = text
                total += size
        return result

    kind = spec["type"]
    truncated = 0
    if kind == "text":
        value = spec["text"]
    elif kind == "pickle":
        with open(spec["path"], "rb") as handle:
            value = pickle.load(handle)
    elif os.path.isdir(spec["path"]):
        value = load_dir(spec["path"], spec["max_file_bytes"], spec["max_total_bytes"])
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
