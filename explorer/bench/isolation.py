"""How much a training run slows the server's own work: Explore-style calls timed idle
and while a run trains, in a thread of this process versus in the child process the app
uses (:class:`~explorer.training.TrainingJob`).

    python -m explorer.bench.isolation --epochs 100

It takes the training flags of ``python -m explorer.train`` (the run is stopped once
measured) and prints a table; no timing is asserted anywhere.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from explorer.training.__main__ import command_parser, run_command  # noqa: E402
from explorer.training.jobs import CHILD_NICE, TrainingJob, rss_mb  # noqa: E402
from explorer.training.loop import TrainConfig, device_description, train  # noqa: E402


def bench_isolation(config: TrainConfig | None = None, *, calls=30, size=256,
                    modes=("thread", "process"), warm_steps=3,
                    threads: int | None = None, nice: int = CHILD_NICE) -> dict:
    """How much a training run slows another session's Explore work in this process.

    One "Explore call" is what a slider move computes: ``analysis.metrics_table`` and
    ``gradients.loss_and_gradient`` (Dice loss) on a ``size``² binary pair. For each of
    ``modes`` — ``"thread"``: :func:`train` in a thread of this process (the old
    design); ``"process"``: a :class:`TrainingJob` — the median of ``calls`` calls is
    taken while ``config`` trains (after ``warm_steps`` steps, so tracing is over) and
    idle (``calls`` before and ``calls`` after the run). Also reported: the training
    steps per second during the busy calls, the time to the first steps, the process's
    resident memory before and after the run (gc'd), and for the process the spawn
    time and the child's peak memory (``threads`` and ``nice`` as in
    :class:`TrainingJob`).
    """
    import gc

    from explorer import analysis, gradients, masks
    from explorer.settings import Settings

    labels = masks.shape_mask("circle", size, radius=0.2, center=(0.5, 0.5))
    truth = masks.to_batch(masks.one_hot(labels, 2))
    pred = masks.to_batch(masks.soften(masks.shift(labels, 0, 8), 2, confidence=0.9,
                                       blur_sigma=1.0))
    settings = Settings()

    def timings_ms():
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            analysis.metrics_table(truth, pred, settings)
            gradients.loss_and_gradient(settings.loss_name(), truth, pred,
                                        **settings.keywords())
            times.append(1000 * (time.perf_counter() - start))
        return times

    def wait_for(condition, what, timeout=300):
        deadline = time.perf_counter() + timeout
        while not condition():
            if time.perf_counter() > deadline:
                raise RuntimeError(f"bench_isolation: no {what} within {timeout} s")
            time.sleep(0.05)

    config = config or TrainConfig(epochs=100, samples=0)  # stopped once measured
    timings_ms()  # compile and warm up
    rows = []
    for mode in modes:
        if mode not in ("thread", "process"):
            raise ValueError(f"modes are 'thread' and 'process', got {mode!r}")
        gc.collect()
        idle, rss_before = timings_ms(), rss_mb()
        row = {"mode": mode}
        launched = time.perf_counter()
        if mode == "thread":
            steps, stop = [0], threading.Event()
            thread = threading.Thread(
                target=train, args=(config,), daemon=True,
                kwargs={"should_stop": stop.is_set,
                        "on_step": lambda step, total, logs: steps.__setitem__(0, step)})
            thread.start()
            step_now = lambda: steps[0]  # noqa: E731
        else:
            job = TrainingJob([config], threads=threads, nice=nice)
            step_now = lambda: job.step  # noqa: E731
        wait_for(lambda: step_now() >= warm_steps, "training step")
        row["first_steps_s"] = time.perf_counter() - launched
        before = step_now()
        busy_start = time.perf_counter()
        row["busy_ms"] = float(np.median(timings_ms()))
        row["train_steps_per_s"] = (step_now() - before) / (time.perf_counter() - busy_start)
        if mode == "thread":
            stop.set()
            thread.join()
        else:
            job.stop()
            job.join()
            row.update(spawn_s=job.spawn_seconds, child_peak_rss_mb=job.child_peak_rss_mb,
                       error=job.error)
        gc.collect()
        row["rss_before_mb"], row["rss_after_mb"] = rss_before, rss_mb()
        # idle before and after the run, so that a change in the machine's load shows
        # less (other programs share its cores)
        row["idle_ms"] = float(np.median(idle + timings_ms()))
        row["ratio"] = row["busy_ms"] / row["idle_ms"]
        rows.append(row)
    return {"device": device_description(), "calls": calls, "size": size,
            "config": config.to_dict(), "threads": threads, "nice": nice, "rows": rows}


def isolation_table(report: dict) -> str:
    """:func:`bench_isolation`'s report as a few lines of text."""
    lines = [f"Explore call ({report['size']}² binary pair: metrics_table + "
             f"loss_and_gradient), median of {report['calls']}, on {report['device']}",
             f"{'training in':<12}{'idle ms':>9}{'busy ms':>9}{'ratio':>7}{'steps/s':>9}"
             f"{'first steps s':>15}{'spawn s':>9}{'RSS MiB before/after':>22}"
             f"{'child peak MiB':>16}"]
    for row in report["rows"]:
        spawn = row.get("spawn_s")
        child = row.get("child_peak_rss_mb")
        lines.append(
            f"{row['mode']:<12}{row['idle_ms']:>9.1f}{row['busy_ms']:>9.1f}"
            f"{row['ratio']:>7.2f}{row['train_steps_per_s']:>9.1f}"
            f"{row['first_steps_s']:>15.1f}{'' if spawn is None else f'{spawn:.1f}':>9}"
            f"{row['rss_before_mb']:>12.0f} / {row['rss_after_mb']:<7.0f}"
            f"{'' if child is None else f'{child:.0f}':>16}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = command_parser("python -m explorer.bench.isolation", __doc__)
    return run_command(p, argv, lambda config, args: print(
        isolation_table(bench_isolation(config))))


if __name__ == "__main__":
    raise SystemExit(main())
