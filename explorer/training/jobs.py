"""Training for a server: runs in a child process, a cap on how many go at once.

:class:`TrainingJob` runs :func:`~explorer.training.loop.compare` in a child process at
low priority and streams the same records back, and a :class:`TrainingLimiter` caps
the runs going at once (``$EXPLORER_MAX_TRAINING_RUNS``) and queues the others first
come, first served (one :class:`Ticket` per run). :func:`share_gpu_memory` lets a
server and its training processes share a GPU.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf

from explorer.training.loop import (TrainConfig, TrainResult, compare, cpu_cores,
                                    device_description)
from explorer.training.replays import Recorder

MAX_RUNS_ENV = "EXPLORER_MAX_TRAINING_RUNS"
CHILD_NICE = 10  # CFS weight 110 against the server's 1024: the UI process keeps the CPU first
STOP_GRACE = 30.0  # seconds a stopped child gets to validate its partial epoch and save
ABANDON_AFTER = 60.0  # seconds a job's session may be gone (reloads reconnect) before it stops
MODEL_BYTES_CAP = 64 * 2 ** 20  # a larger .keras file is not kept in the server's memory
STEP_REPORT_SECONDS = 0.2  # the child reports steps at most this often (and the last one)


def max_training_runs() -> int:
    """How many training runs may go at once, server-wide: ``$EXPLORER_MAX_TRAINING_RUNS``,
    else a quarter of the CPU cores (at least 1: on 2 cores one run, so that the people
    exploring keep a core)."""
    text = os.environ.get(MAX_RUNS_ENV, "").strip()
    if not text:
        return max(1, cpu_cores() // 4)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_RUNS_ENV} must be a whole number >= 1, got {text!r}")
    return int(text)


class Ticket:
    """A place in a :class:`TrainingLimiter`: waiting, then running, then released."""

    def __init__(self, limiter: "TrainingLimiter", owner):
        self.limiter, self.owner = limiter, owner
        self.granted = threading.Event()  # set when the run may start
        self.released = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run may start (True) or ``timeout`` seconds pass (False)."""
        return self.granted.wait(timeout)

    def ahead(self) -> int:
        """Runs that go before this one: those running plus those queued earlier; 0
        once it runs."""
        return self.limiter.ahead(self)

    def release(self) -> None:
        """Leave the queue, or free the slot; safe to call more than once."""
        self.limiter.release(self)

    @property
    def state(self) -> str:
        return ("released" if self.released else "running" if self.granted.is_set()
                else "waiting")


class TrainingLimiter:
    """At most ``capacity`` training runs at a time; the others wait in a first-in,
    first-out queue and are granted a slot, in order, as slots free up. One ticket per
    ``owner`` (a session) at a time. Thread-safe; the one object a server's sessions
    share on purpose.

    ``capacity=None`` reads :func:`max_training_runs` each time, so the environment
    variable can change it without a restart."""

    def __init__(self, capacity: int | None = None):
        if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
            raise ValueError(f"capacity must be a whole number >= 1 or None, got {capacity!r}")
        self._capacity = capacity
        self._lock = threading.Lock()
        self._running: list[Ticket] = []
        self._waiting: list[Ticket] = []

    @property
    def capacity(self) -> int:
        return self._capacity if self._capacity is not None else max_training_runs()

    def request(self, owner) -> Ticket:
        """A ticket for ``owner``: granted at once when a slot is free, else queued.
        Raises ``ValueError`` when ``owner`` already has a run running or queued."""
        with self._lock:
            if any(t.owner == owner for t in self._running + self._waiting):
                raise ValueError("This session already has a training run (running or "
                                 "queued): stop it before starting another.")
            ticket = Ticket(self, owner)
            self._waiting.append(ticket)
            self._grant()
        return ticket

    def release(self, ticket: Ticket) -> None:
        with self._lock:
            for line in (self._running, self._waiting):
                if ticket in line:
                    line.remove(ticket)
            ticket.released = True
            self._grant()

    def ahead(self, ticket: Ticket) -> int:
        with self._lock:
            if ticket not in self._waiting:
                return 0
            return len(self._running) + self._waiting.index(ticket)

    def counts(self) -> dict:
        """``{"running", "waiting", "capacity"}`` now."""
        with self._lock:
            return {"running": len(self._running), "waiting": len(self._waiting),
                    "capacity": self.capacity}

    def _grant(self):  # with the lock held
        while self._waiting and len(self._running) < self.capacity:
            ticket = self._waiting.pop(0)
            self._running.append(ticket)
            ticket.granted.set()


def _short_error(error: BaseException) -> str:
    """One line for a person: the exception's name and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def rss_mb() -> float:
    """This process's resident memory now, in MiB (Linux), else its peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def share_gpu_memory() -> None:
    """Let TensorFlow take GPU memory as it needs it instead of nearly all at once, so
    a server process and its training processes can share a GPU. Must run before
    TensorFlow first uses the GPU; later it changes nothing."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialised: too late, keep going
            pass


def _die_with_parent() -> None:
    """End this child process when its parent ends, even if the parent was killed
    (a daemon child is only terminated by a parent that exits normally)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        parent.join()  # returns when the parent's sentinel closes
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _keras_bytes(model) -> bytes | None:
    """The model as a ``.keras`` file without its optimizer state (Adam's two slots per
    weight would triple it), or None when larger than ``MODEL_BYTES_CAP``. The file lives only while it
    is read, so a killed process leaves nothing behind."""
    with tempfile.TemporaryDirectory(prefix="explorer-train-") as folder:
        path = Path(folder) / "unet.keras"
        keras.saving.save_model(model, path, include_optimizer=False)
        return path.read_bytes() if path.stat().st_size <= MODEL_BYTES_CAP else None


def _lower_priority(nice: int) -> None:
    """Every thread of this process (TensorFlow's import already started some; Linux sets
    priority per thread) at ``nice`` and, where there is one, in Linux's idle class: the
    child then runs on cores nobody else wants, so people moving sliders never wait for it.
    Threads made later inherit both.

    Where Linux groups processes by session ("autogroup", on by default on desktops and
    here), priorities only count inside a group, and the server's group, training included,
    would get as much CPU as any browser's. So the child starts its own session and puts
    that group at the lowest weight (nice 19). It still ends with its parent (the
    parent-watch thread), whatever its session."""
    try:
        os.setsid()
    except OSError:  # already a group leader: keep the parent's session
        pass
    for _ in range(10):
        try:
            Path("/proc/self/autogroup").write_text("19")
            break
        except BlockingIOError:  # without CAP_SYS_ADMIN, one write per 100 ms machine-wide
            time.sleep(0.12)
        except OSError:  # no autogroups (then the per-thread settings are what counts)
            break
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        try:  # never raise the priority: a server started at nice 15 gets a child at 15
            os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        except OSError:
            pass
        try:  # a separate try: some sandboxes (gVisor) refuse every class but the normal one
            if hasattr(os, "SCHED_IDLE"):
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass


# "Spawn" runs the main module's file again in the child, before the target. Under
# Streamlit the main module is the page itself (its script runner installs the page's
# module as ``__main__``, with the script's ``__file__``), so every child would first run
# the whole page, at full priority and in the server's session, before it lowers its
# priority. The target lives in this module: the child needs no main module at all.
_NO_MAIN = types.ModuleType("__main__")
_MAIN_SWAP = threading.Lock()


def _start_without_main(process) -> None:
    """``process.start()`` with an empty main module in place for the moment the child's
    preparation data is taken, so the child re-runs no script."""
    with _MAIN_SWAP:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = _NO_MAIN
        try:
            process.start()
        finally:
            if sys.modules["__main__"] is _NO_MAIN:  # a page run may have put its own in
                sys.modules["__main__"] = main


def _child_main(configs, queue, stop, threads, nice):
    """The training process: :func:`compare` on ``configs``, reported over ``queue``
    as ``(kind, payload)`` messages; stops when ``stop`` is set. The results come
    back without model and data; the last one with its model as ``.keras`` bytes."""
    _die_with_parent()
    if nice:
        _lower_priority(nice)
    if threads:  # before TensorFlow runs its first op
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass
    share_gpu_memory()
    queue.put(("ready", {"pid": os.getpid(), "device": device_description()}))
    last = [0.0]

    def on_step(step, total, logs):
        now = time.perf_counter()
        if now - last[0] >= STEP_REPORT_SECONDS or step == total:
            last[0] = now
            queue.put(("step", (step, total)))

    try:
        results = compare(configs, on_start=lambda i, config: queue.put(("run", i)),
                          on_epoch=lambda record: queue.put(("epoch", record)),
                          on_step=on_step, should_stop=stop.is_set,
                          on_samples=lambda samples: queue.put(("samples", samples)))
        for i, result in enumerate(results):
            model, result.model, result.data = result.model, None, None
            if i == len(results) - 1 and model is not None:
                keras_file = _keras_bytes(model)
                if keras_file is not None:
                    result.info["keras_file"] = keras_file
            queue.put(("result", result))
    except Exception as error:  # noqa: BLE001 - reported to the page as one line
        queue.put(("error", _short_error(error)))
    finally:
        queue.put(("done", {"peak_rss_mb": _peak_rss_mb()}))
        queue.close()
        queue.join_thread()  # everything is in the pipe before the process exits


class TrainingJob:
    """One training run, or a comparison of several (as :func:`compare`), in a child
    process, after waiting for a slot of ``limiter`` (none: start at once).

    Why a process: training in a thread of the server would share its cores and its
    GIL with every session. The child is a fresh interpreter ("spawn": no copy of the
    server's threads or TensorFlow state) at lower priority (``nice``) with ``threads``
    TensorFlow threads (default: the cores divided by the number of concurrent runs),
    so the people exploring keep the CPU first. It reports over a queue; a thread here
    keeps what the page shows:

    - ``records`` (epoch records, with ``run`` and ``loss_name``), ``samples`` (the
      latest strip), ``run``/``step``/``total``;
    - ``results``: one :class:`TrainResult` per run without model or data (the
      server keeps numbers, not models); the last one carries its ``.keras`` file in
      ``info["keras_file"]`` (bytes, when at most ``MODEL_BYTES_CAP``);
    - ``error``: one line when the child failed; ``spawn_seconds``: start to ready;
    - :meth:`comparison`: everything so far as a comparison of
      :mod:`explorer.training.replays` (every epoch's strip included), the structure a
      replay loads into.

    ``stop()`` ends the run after the current step (or leaves the queue); the child
    is terminated if it does not finish within ``STOP_GRACE`` seconds. ``alive()``,
    when given, is asked now and then: after ``ABANDON_AFTER`` seconds of False the
    job stops (its session is gone). The child is a daemon that also watches for its
    parent's end, so a stop, an error, a closed session or a server shutdown leaves no
    process behind (nor a file: the model's temporary file lives only while saved).
    The child does not re-run the main script (see :func:`_start_without_main`), so a
    script that starts a job needs no ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, configs, *, limiter: TrainingLimiter | None = None, owner=None,
                 alive: Callable[[], bool] | None = None, threads: int | None = None,
                 nice: int = CHILD_NICE):
        self.configs = [configs] if isinstance(configs, TrainConfig) else list(configs)
        if not self.configs:
            raise ValueError("a training job needs at least one TrainConfig")
        for config in self.configs:
            config.validate()
        self.records: list[dict] = []
        self.results: list[TrainResult] = []
        self.recorder = Recorder(self.configs)
        self.samples: dict | None = None
        self.run, self.step, self.total = 0, 0, 0
        self.error: str | None = None
        self.spawn_seconds: float | None = None
        self.child_peak_rss_mb: float | None = None
        self.pid: int | None = None  # the child's
        self.created = time.perf_counter()
        self.started: float | None = None  # when the child was launched
        self.finished: float | None = None
        self.left_queue = False
        self._stop = threading.Event()
        self._alive, self._gone_since = alive, None
        if threads is None:
            capacity = limiter.capacity if limiter is not None else 1
            threads = max(1, cpu_cores() // capacity)
        self._threads, self._nice = threads, nice
        self._ticket = limiter.request(owner) if limiter is not None else None
        self._thread = threading.Thread(target=self._work, name="train-job", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        """Queued or training (not finished yet)."""
        return self.finished is None

    @property
    def queued(self) -> bool:
        return (self.finished is None and self._ticket is not None
                and not self._ticket.granted.is_set())

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def ahead(self) -> int:
        """Runs that go before this one while it is queued (0 otherwise)."""
        return self._ticket.ahead() if self._ticket is not None and self.queued else 0

    def stop(self) -> None:
        """Stop after the current step, or leave the queue."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the job has finished; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def comparison(self) -> dict:
        """The runs so far as a live comparison (:mod:`explorer.training.replays`)."""
        return self.recorder.comparison()

    def fraction(self) -> float:
        """Share of all steps of all runs done so far."""
        if not self.total:
            return 0.0
        return min(1.0, (self.run + self.step / self.total) / len(self.configs))

    def eta(self) -> float | None:
        done = self.fraction()
        if done <= 0 or self.started is None:
            return None
        return (time.perf_counter() - self.started) * (1 - done) / done

    # ------------------------------------------------------------------- work

    def _stopping(self) -> bool:
        if self._alive is not None:
            if self._alive():
                self._gone_since = None
            else:
                self._gone_since = self._gone_since or time.perf_counter()
                if time.perf_counter() - self._gone_since > ABANDON_AFTER:
                    self._stop.set()
        return self._stop.is_set()

    def _work(self):
        try:
            if self._ticket is not None:
                while not self._ticket.wait(0.2):
                    if self._stopping():
                        self.left_queue = True
                        return
            if not self._stopping():
                self._run_child()
        except Exception as error:  # noqa: BLE001 - shown on the page, not raised in a thread
            self.error = _short_error(error)
        finally:
            if self._ticket is not None:
                self._ticket.release()
            self.finished = time.perf_counter()

    def _run_child(self):
        context = multiprocessing.get_context("spawn")
        messages, stop = context.Queue(), context.Event()
        process = context.Process(
            target=_child_main, name="explorer-train", daemon=True,
            args=(self.configs, messages, stop, self._threads, self._nice))
        self.started = time.perf_counter()
        try:
            _start_without_main(process)
            self.pid = process.pid
            self._follow(process, messages, stop)
        finally:
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
            process.join(5)
            messages.close()

    def _follow(self, process, messages, stop):
        """Read the child's messages until it is done, stopped or gone."""
        deadline = None
        while True:
            if deadline is None and self._stopping():
                stop.set()
                deadline = time.perf_counter() + STOP_GRACE
            if deadline is not None and time.perf_counter() > deadline:
                return  # it did not stop in time: terminated by the caller
            try:
                kind, payload = messages.get(timeout=0.2)
            except queue_module.Empty:
                if process.exitcode is None:
                    continue
                try:  # it has ended: what it sent last may still be in the pipe
                    kind, payload = messages.get(timeout=1.0)
                except queue_module.Empty:
                    self.error = self.error or (
                        "the training process ended unexpectedly (exit code "
                        f"{process.exitcode}{', out of memory?' if process.exitcode == -9 else ''})")
                    return
            if kind == "done":
                self.child_peak_rss_mb = payload["peak_rss_mb"]
                return
            self._handle(kind, payload)

    def _handle(self, kind, payload):
        if kind == "ready":
            self.spawn_seconds = time.perf_counter() - self.started
        elif kind == "run":
            self.run, self.step = payload, 0
        elif kind == "step":
            self.step, self.total = payload
        elif kind == "epoch":
            self.records.append(payload)
            self.recorder.add_epoch(payload)
        elif kind == "samples":
            self.samples = {**payload, "run": self.run}
            self.recorder.add_samples(self.samples)
        elif kind == "result":
            self.recorder.add_result(len(self.results), payload)
            self.results.append(payload)
        elif kind == "error":
            self.error = payload
