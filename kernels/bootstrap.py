"""Runs inside the kernel: the RLM helpers the model's code calls.

``llm_query`` and friends send requests over one persistent socket to the host
(TCP on 127.0.0.1, or a Unix socket for a sandboxed kernel), authenticated with
the session secret. A reader thread matches replies to requests by id, so many
requests can be in flight (from a batch, or from the model's own threads) and an
interrupted call is cancelled on the host.
Executed once per kernel with ``__rlm_cfg`` defined by the host.

Async forms. Models trained on other harnesses write ``await llm_query(p)`` and
``await asyncio.gather(*(llm_query(p) for p in ps))``; ipykernel runs a cell
that uses ``await`` on its event loop. So each helper looks at its caller: called
from a cell that uses ``await`` (any statement of it, and the comprehensions in
it), or from an ``async def``, it returns a coroutine; everywhere else (plain
cells, ordinary functions, threads) it blocks and returns the ``str`` (or list),
as before. The coroutine sends its request when it starts to run, like any
``async def``: ``gather`` starts all of them at once, so the calls run
concurrently on the host, under the same handler and caps as the blocking ones.
Its wait is an asyncio future that the bridge's reader thread resolves, so no
thread is held per call. A cancelled await (an interrupted cell, a cancelled
gather, ``wait_for`` timing out) cancels the request on the host, a hard-limit
reply raises ``RuntimeError``, and requests still in flight when their cell ends
are cancelled: a call never outlives the cell that started it, as with the
blocking form. The cost of the rule: in a cell that uses ``await``,
``x = llm_query(q)`` is a coroutine too, and must be awaited.
"""


def __rlm_install(cfg):
    import asyncio
    import inspect
    import itertools
    import json
    import os
    import pickle
    import reprlib
    import socket
    import sys
    import tempfile
    import threading

    shell = get_ipython()  # noqa: F821 - defined in every IPython kernel
    ns = shell.user_ns

    class Bridge:
        def __init__(self, connect, secret, kernel_id):
            if connect.get("unix"):  # a sandboxed kernel: no network, the socket is bind-mounted in
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(connect["unix"])
            else:
                self.sock = socket.create_connection(("127.0.0.1", connect["port"]))
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.reader = self.sock.makefile("rb")
            self.send_lock = threading.Lock()
            self.pending = {}
            self.ids = itertools.count(1)
            self._send({"op": "hello", "secret": secret, "kernel": kernel_id})
            reply = json.loads(self.reader.readline() or b"{}")
            if not reply.get("ok"):
                raise RuntimeError("rlm-tui host refused the kernel's connection")
            threading.Thread(target=self._read, name="rlm-bridge", daemon=True).start()

        def _send(self, obj):
            data = (json.dumps(obj) + "\n").encode("utf-8", "surrogatepass")
            with self.send_lock:
                self.sock.sendall(data)

        def _read(self):
            try:
                for line in self.reader:
                    msg = json.loads(line)
                    waiter = self.pending.pop(msg.get("id"), None)
                    if waiter is not None:
                        waiter[1].append(msg)
                        waiter[0].set()
            except (OSError, ValueError):
                pass
            for done, slot in list(self.pending.values()):
                slot.append({"result": "Error: the connection to the rlm-tui host was lost"})
                done.set()

        def submit(self, op, done, **fields):
            """Send a request without waiting; returns its id and the list its reply will be put in.

            The reader thread appends the reply, then calls ``done.set()``.
            """
            rid = next(self.ids)
            slot = []
            self.pending[rid] = (done, slot)
            self._send(dict(fields, op=op, id=rid))
            return rid, slot

        def cancel(self, rid):
            """Give up on a request; the host cancels it unless its reply is already in."""
            if self.pending.pop(rid, None) is not None:
                try:
                    self._send({"op": "cancel", "id": rid})
                except OSError:
                    pass

        def request(self, op, **fields):
            done = threading.Event()
            rid, slot = self.submit(op, done, **fields)
            try:
                done.wait()
            except BaseException:
                self.cancel(rid)
                raise
            return _reply(slot[0])

        async def request_async(self, op, **fields):
            woken = _Wake(asyncio.get_running_loop())
            try:
                woken.rid, slot = self.submit(op, woken, **fields)
                await woken.future
            except BaseException:
                self.cancel(woken.rid)
                raise
            finally:
                woken.done()
            return _reply(slot[0])

    tick_s = 0.1
    awaited = set()  # the _Wake of every awaited request in flight
    ticking = set()  # the event loops being kept awake

    class _Wake:
        """Stands in for a threading.Event: ``set()`` from the reader thread resolves an asyncio future.

        While any is waiting its loop wakes every ``tick_s``: ipykernel turns an interrupt of an async
        cell into a callback that its SIGINT handler queues without waking the loop (tornado's
        ``add_callback`` from the loop's own thread), so a loop with nothing else to do would sleep
        through the interrupt until a reply came.
        """

        def __init__(self, loop):
            self.loop = loop
            self.future = loop.create_future()
            self.rid = None
            awaited.add(self)
            if loop not in ticking:
                ticking.add(loop)
                loop.call_later(tick_s, _tick, loop)

        def set(self):
            try:
                self.loop.call_soon_threadsafe(self._resolve)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        def _resolve(self):
            if not self.future.done():
                self.future.set_result(None)

        def cancel(self):
            self.loop.call_soon_threadsafe(self.future.cancel)

        def done(self):
            awaited.discard(self)

    def _tick(loop):
        if any(w.loop is loop for w in awaited):
            loop.call_later(tick_s, _tick, loop)
        else:
            ticking.discard(loop)

    def _reply(msg):
        if "error" in msg:  # a hard limit: stop the calling code, not just this call
            raise RuntimeError(msg["error"])
        return msg.get("result")

    class StdinBridge:
        """The same ``request`` over the kernel's own stdin channel, for a kernel that cannot reach the host.

        A kernel on a Jupyter server elsewhere has no route to the host; its stdin does reach it.
        One thread at a time (the leader) calls ``raw_input`` with a poll: the requests queued
        since the last poll and every id still awaited. The host answers with the results that are
        ready (rlm_tui/core/backends/jupyter_server.py). A thread that queues a request while
        another polls publishes a small wake on iopub naming how many were queued so far, so the
        host answers early and the new request goes out at once (iopub may overtake stdin: the
        count tells the host whether the open poll already carried it).
        """

        mark = "\x00rlm-tui "

        def __init__(self):
            self.kernel = kernel = shell.kernel
            self.raw_input = kernel.raw_input  # the polls' own; the model's input() gets the refusal below

            def refuse(*_args, **_kwargs):
                from IPython.core.error import StdinNotImplementedError

                raise StdinNotImplementedError("input() is not available here: nobody is there to type")

            # The kernel hands these to builtins.input and getpass for every cell: the model's code must
            # not put requests of its own on the stdin channel the polls use (from another thread, too).
            kernel.raw_input = kernel.getpass = refuse
            self.cond = threading.Condition()
            self.outbox = []
            self.results = {}
            self.waiting = set()
            self.polling = False
            self.queued = 0  # requests and cancels put in the outbox so far: a wake names its count
            self.ids = itertools.count(1)

        def _wake(self, queued):
            kernel = self.kernel
            try:
                kernel.session.send(kernel.iopub_socket, "rlm_tui_wake", {"queued": queued},
                                    parent=kernel.get_parent())
            except Exception:  # noqa: BLE001 - without a wake the host answers the poll after a short hold
                pass

        def request(self, op, **fields):
            rid = next(self.ids)
            with self.cond:
                self.outbox.append(dict(fields, op=op, id=rid))
                self.waiting.add(rid)
                self.queued += 1
                busy, queued = self.polling, self.queued
            if busy:
                self._wake(queued)
            try:
                reply = self._wait(rid)
            except BaseException:
                with self.cond:
                    self.waiting.discard(rid)
                    self.results.pop(rid, None)
                    self.outbox.append({"op": "cancel", "id": rid})
                    self.queued += 1
                    queued = self.queued
                self._wake(queued)
                raise
            if "error" in reply:  # a hard limit: stop the calling code, not just this call
                raise RuntimeError(reply["error"])
            return reply.get("result")

        def _wait(self, rid):
            while True:
                with self.cond:
                    while self.polling and rid not in self.results:
                        self.cond.wait()
                    if rid in self.results:
                        self.waiting.discard(rid)
                        return self.results.pop(rid)
                    self.polling = True
                    sent, self.outbox = self.outbox, []
                    want, queued = sorted(self.waiting), self.queued
                answers = []
                try:
                    poll = self.mark + json.dumps({"send": sent, "want": want, "queued": queued})
                    pieces = [self.raw_input(poll)]
                    while pieces[-1].startswith("+"):  # a long answer comes in pieces
                        pieces.append(self.raw_input(self.mark + "more"))
                    answers = json.loads("".join(piece[1:] for piece in pieces) or "[]")
                except (ValueError, EOFError, NotImplementedError) as exc:  # stdin is off, or the host is gone
                    answers = [{"id": w, "result": "Error: no channel to the rlm-tui host (" + str(exc) + ")"}
                               for w in want]
                finally:
                    with self.cond:
                        self.polling = False
                        for answer in answers:
                            if answer.get("id") in self.waiting:
                                self.results[answer["id"]] = answer
                        self.cond.notify_all()

    if cfg["connect"].get("stdin"):  # a kernel elsewhere: sub-calls ride on its own stdin channel
        bridge = StdinBridge()
    else:
        bridge = Bridge(cfg["connect"], cfg["secret"], cfg["kernel"])
    state = {"final": None, "source": None}
    # In the run's folder, removed at its end; a kernel elsewhere sends a child's value inline instead.
    stash_dir = None if cfg["connect"].get("stdin") else tempfile.mkdtemp(prefix="rlm-ctx-", dir=cfg["tmp"])

    def _model(model):
        return None if model is None else str(model)

    inner_frames = {"<genexpr>", "<listcomp>", "<setcomp>", "<dictcomp>"}
    async_flags = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
    cell = {"uses_await": False}  # set for the running cell by the pre_run_cell hook

    def _in_async_code(frame):
        """True if ``frame`` runs async code: a cell that uses ``await``, or an ``async def``.

        IPython compiles a cell statement by statement and flags only the statements that contain
        ``await`` as coroutines, so any statement of a cell that uses ``await`` counts: then
        ``tasks = [llm_query(p) for p in ps]`` followed by ``await asyncio.gather(*tasks)`` works.
        A comprehension or generator expression has a frame of its own but belongs to the code
        around it, so the walk goes through those; any other function ends it.
        """
        while frame is not None:
            code = frame.f_code
            if code.co_flags & async_flags:
                return True
            if code.co_name == "<module>":  # a statement of the cell
                return cell["uses_await"]
            if code.co_name not in inner_frames:
                return False
            frame = frame.f_back
        return False

    def _call(name, op, **fields):
        """The helper's result: a coroutine for async callers (see the module docstring), else the value."""
        if _in_async_code(sys._getframe(2)):  # 0: here, 1: the helper, 2: its caller
            async def call():
                return await bridge.request_async(op, **fields)
            call.__name__ = call.__qualname__ = name  # "coroutine 'llm_query' was never awaited"
            return call()
        return bridge.request(op, **fields)

    def llm_query(prompt, model=None):
        """Ask a language model one question; returns its reply as a str (awaitable in async code)."""
        return _call("llm_query", "llm", prompt=str(prompt), model=_model(model))

    def llm_query_batched(prompts, model=None):
        """Ask many prompts concurrently; returns replies in order (errors as strings in their slot)."""
        return _call("llm_query_batched", "llm_batch", prompts=[str(p) for p in prompts], model=_model(model))

    def _stash(context):
        if context is None:
            return None
        if isinstance(context, str):
            return {"type": "text", "text": context}
        if cfg["connect"].get("stdin"):  # the child's kernel may be on another machine: send the bytes
            import base64

            data = pickle.dumps(context, protocol=pickle.HIGHEST_PROTOCOL)
            spec = {"type": "pickle", "data": base64.b64encode(data).decode("ascii"),
                    "pytype": type(context).__name__, "bytes": len(data)}
        else:
            fd, path = tempfile.mkstemp(dir=stash_dir, suffix=".pkl")
            with os.fdopen(fd, "wb") as handle:
                pickle.dump(context, handle, protocol=pickle.HIGHEST_PROTOCOL)
            spec = {"type": "pickle", "path": path, "pytype": type(context).__name__,
                    "bytes": os.path.getsize(path)}
        try:  # a short summary for the approval prompt; never the whole value
            spec["items"] = len(context)
            short = reprlib.Repr()
            short.maxstring, short.maxlist, short.maxdict, short.maxother = 100, 8, 8, 100
            spec["preview"] = short.repr(context)
        except Exception:  # noqa: BLE001 - an odd object: no summary
            pass
        return spec

    def rlm_query(prompt, context=None, model=None):
        """Start a child RLM (own REPL) on a sub-task; returns its final answer as a str (awaitable in async code)."""
        return _call("rlm_query", "rlm", prompt=str(prompt), context=_stash(context), model=_model(model))

    def rlm_query_batched(prompts, contexts=None, model=None):
        """Start several child RLMs concurrently; returns their answers in order."""
        prompts = [str(p) for p in prompts]
        contexts = list(contexts) if contexts is not None else [None] * len(prompts)
        if len(contexts) != len(prompts):
            raise ValueError("rlm_query_batched: prompts and contexts differ in length")
        return _call("rlm_query_batched", "rlm_batch", prompts=prompts, contexts=[_stash(c) for c in contexts],
                     model=_model(model))

    def FINAL_VAR(name):
        """Answer with the value of a REPL variable (give its name as a string)."""
        key = name if isinstance(name, str) else None
        if key is not None and key.strip().strip("'\"") in ns:
            value = ns[key.strip().strip("'\"")]
        elif key is None:
            value = name
        else:
            msg = f"FINAL_VAR: no variable named {key!r}; define it first (SHOW_VARS() lists them)"
            print(msg)
            return msg
        state["final"], state["source"] = str(value), "FINAL_VAR"
        return state["final"]

    def FINAL(text):
        """Answer with this text."""
        state["final"], state["source"] = str(text), "FINAL"
        return state["final"]

    def SHOW_VARS():
        """List the variables you have defined, with their types."""
        found = {k: type(v).__name__ for k, v in ns.items() if _user_var(k, v)}
        print(found if found else "no variables defined yet")
        return found

    reserved = {"llm_query": llm_query, "llm_query_batched": llm_query_batched, "rlm_query": rlm_query,
                "rlm_query_batched": rlm_query_batched, "FINAL_VAR": FINAL_VAR, "FINAL": FINAL,
                "SHOW_VARS": SHOW_VARS}
    import types as _types

    def _user_var(name, value):
        return (not name.startswith("_") and name not in reserved and name not in ("context", "answer")
                and name not in ("In", "Out", "exit", "quit", "get_ipython")
                and not isinstance(value, (_types.ModuleType, _types.FunctionType, type)))

    def restore(*_args):
        for name, value in reserved.items():
            if ns.get(name) is not value:
                ns[name] = value
                print(f"[rlm-tui] `{name}` is reserved and was restored")
        if "context" in state and ns.get("context") is not state["context"]:
            ns["context"] = state["context"]
            print("[rlm-tui] `context` is reserved and was restored (copy it to a new name to change it)")
        answer = ns.get("answer")
        if not isinstance(answer, dict):
            ns["answer"] = answer = {"content": "", "ready": False}
        if answer.get("ready") and state["final"] is None:
            state["final"], state["source"] = str(answer.get("content", "")), "answer"

    # Output is capped here, in the kernel, so a cell printing 100 MB never crosses to the host:
    # each cell may pass ``cap`` characters of stdout/stderr/results; the rest is only counted.
    cap = max(1, int(cfg.get("output_chars") or 20_000))
    out = {"room": cap, "dropped": 0, "in_cell": False}
    out_lock = threading.Lock()

    def _take_room(n):
        with out_lock:
            room = min(out["room"], n)
            out["room"] -= room
            out["dropped"] += n - room
            return room

    def _capped(write):
        def capped_write(text):
            if not isinstance(text, str):
                return write(text)  # the stream's own TypeError
            room = _take_room(len(text))
            if room:
                write(text if room == len(text) else text[:room])
            return len(text)
        return capped_write

    for stream in (sys.stdout, sys.stderr):
        stream.write = _capped(stream.write)

    formatter = shell.display_formatter
    plain_format = formatter.format

    def capped_format(obj, include=None, exclude=None):
        data, meta = plain_format(obj, include=include, exclude=exclude)
        if not out["in_cell"]:  # user_expressions (the host's own queries) are formatted after the cell
            return data, meta
        text = data.get("text/plain")
        if isinstance(text, str):
            room = _take_room(len(text))
            data["text/plain"] = text[:room]
        for key in [k for k, v in data.items() if k != "text/plain" and len(str(v)) > cap]:
            del data[key]  # a huge image or HTML rendering is not worth shipping
        return data, meta

    formatter.format = capped_format

    def _clip(text):
        text = str(text)
        if len(text) <= cap:
            return text
        return text[:cap // 2] + f"\n[... {len(text) - cap:,} characters cut ...]\n" + text[-cap // 2:]

    plain_showtraceback = shell._showtraceback

    def capped_showtraceback(etype, evalue, stb):
        return plain_showtraceback(etype, _clip(evalue), [_clip(line) for line in stb][-50:])

    shell._showtraceback = capped_showtraceback

    def start_cell(info):
        """Note whether this cell uses ``await``, by IPython's own test (see _in_async_code)."""
        source = info.raw_cell
        cell["uses_await"] = shell.should_run_async(source, transformed_cell=shell.transform_cell(source))

    def end_cell(*_args):
        """A call never outlives its cell: cancel awaited requests still in flight when it ends.

        (gather raises at the first error and leaves the other calls running; a task may be left unawaited.)
        """
        for woken in list(awaited):
            bridge.cancel(woken.rid)
            woken.cancel()

    def new_cell(*_args):
        with out_lock:
            out["room"] = cap
            out["in_cell"] = True

    def clip_error(result=None):
        out["in_cell"] = False
        error = getattr(result, "error_in_exec", None)
        if error is not None:
            try:
                if len(str(error)) > cap:  # the reply repeats str(error); keep it small too
                    error.args = (_clip(error),)
            except Exception:  # noqa: BLE001 - an exception whose str() fails is left alone
                pass

    def fetch(blob, offset, limit):
        """Pieces of a shipped input from the host, for the loader: blob ``blob`` from ``offset``
        and the blobs after it, each up to ``limit`` bytes, as [{"data", "end", "error"}]."""
        import base64

        pieces = bridge.request("read", blob=blob, offset=offset, limit=limit)
        if not isinstance(pieces, list):  # the host's error string
            raise RuntimeError(str(pieces))
        for piece in pieces:
            piece["data"] = base64.b64decode(piece.get("data", ""))
        return pieces

    def load(spec):
        value, info = __rlm_load_context(spec, fetch)  # noqa: F821 - defined by loader.py
        state["context"] = value
        ns["context"] = value
        return json.dumps(info)

    def take_state():
        restore()
        with out_lock:
            dropped, out["dropped"] = out["dropped"], 0
        taken = {"final": state["final"], "source": state["source"], "dropped": dropped,
                 "vars": [f"{k}: {type(v).__name__}" for k, v in ns.items() if _user_var(k, v)][:50]}
        state["final"] = state["source"] = None
        return json.dumps(taken)

    ns.update(reserved)
    ns["answer"] = {"content": "", "ready": False}
    ns["__rlm_load"] = load
    ns["__rlm_state"] = take_state
    shell.events.register("post_run_cell", restore)
    shell.events.register("post_run_cell", clip_error)
    shell.events.register("post_run_cell", end_cell)
    shell.events.register("pre_run_cell", new_cell)
    shell.events.register("pre_run_cell", start_cell)
