"""The Train tab: train a small U-Net with the chosen loss, live, and compare losses.

Training runs in a child process (``training.TrainingJob``), not in the server: in a
thread it would share the server's cores and GIL with every other session and slow
their Explore tab. A server-wide limiter (the one deliberately shared object) lets a
few runs go at once and queues the others, first come first served. Each session has
at most one job, kept in its ``st.session_state``; a fragment polls it every
``POLL_SECONDS`` while it is queued or running.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from explorer import charts, training
from explorer.settings import LOSS_LABELS
from explorer.ui import state, widgets

# an epoch takes seconds; polling faster only redraws the same curves for a watching class
POLL_SECONDS = 2.0

Job = training.TrainingJob  # what st.session_state[state.TRAIN_JOB] holds


@st.cache_resource
def limiter() -> training.TrainingLimiter:
    """Server-wide: how many runs train at once ($EXPLORER_MAX_TRAINING_RUNS, default a
    quarter of the cores, at least 1) and the queue of the others."""
    return training.TrainingLimiter()


def _owner() -> str:
    """This session's name in the limiter's queue."""
    if state.TRAIN_OWNER not in st.session_state:
        st.session_state[state.TRAIN_OWNER] = uuid.uuid4().hex
    return st.session_state[state.TRAIN_OWNER]


def _session_alive() -> Callable[[], bool] | None:
    """Whether this browser session still exists, for a job to stop when its person
    has gone (None where there is no server, as in tests)."""
    try:
        from streamlit import runtime
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is None or not runtime.exists():
            return None
        server, session_id = runtime.get_instance(), ctx.session_id
    except Exception:  # noqa: BLE001 - an optional nicety of a running server
        return None
    return lambda: server.is_active_session(session_id) is not False


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def config_panel() -> tuple[list[training.TrainConfig], bool]:
    """The training settings; returns the configs to train and whether to compare."""
    st.subheader("Data and model")
    dataset = st.selectbox("Dataset", training.DATASETS,
                           **state.with_index("train_dataset", training.DATASETS),
                           format_func={"synthetic": "synthetic shapes (imbalanced)",
                                        "coins": "coins (scikit-image tiles)"}.get)
    knobs = {}
    if dataset == "synthetic":
        with st.expander("Synthetic data knobs"):
            knobs["foreground_fraction"] = st.slider(
                "Foreground fraction", 0.02, 0.5, step=0.01, **state.with_value("train_fg"),
                help="Class imbalance: the share of foreground pixels.")
            knobs["object_count"] = st.slider("Objects per image", 1, 12,
                                              **state.with_value("train_count"))
    c1, c2 = st.columns(2)
    sizes, batches = [32, 64, 96, 128], [4, 8, 16, 32, 64]
    widths, depths = [4, 8, 16, 32], [1, 2, 3, 4]
    image_size = c1.selectbox("Image size", sizes, **state.with_index("train_size", sizes))
    epochs = c2.slider("Epochs", 1, 30, **state.with_value("train_epochs"))
    batch_size = c1.selectbox("Batch size", batches, **state.with_index("train_batch", batches))
    learning_rate = c2.select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
                                     **state.with_value("train_lr"))
    width = c1.selectbox("U-Net width", widths, **state.with_index("train_width", widths))
    depth = c2.selectbox("U-Net depth", depths, **state.with_index("train_depth", depths))
    seed = c1.number_input("Seed", 0, 10_000, **state.with_value("train_seed"))
    flips = c2.checkbox("Random flips", **state.with_value("train_flips"))
    st.subheader("Loss")
    compare_mode = st.toggle("Compare several losses", **state.with_value("train_compare"),
                             help="Same data and seed, one after another.")
    picked = None
    if compare_mode:
        picked = st.multiselect("Losses (2 to 4)", list(LOSS_LABELS), max_selections=4,
                                format_func=LOSS_LABELS.get, **state.with_default("train_losses"))
    with st.expander("Loss settings (shared with the Explore tab)", expanded=not compare_mode):
        settings = widgets.settings_panel(2, np.zeros((1, 1), np.int32))
    picked = picked if compare_mode else [settings.loss]
    base = training.TrainConfig(
        dataset=dataset, dataset_knobs=knobs, image_size=image_size, epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, width=width, depth=depth,
        seed=int(seed), flips=flips)
    configs = [replace(base, loss=settings.loss_name(k), loss_keywords=settings.keywords(k))
               for k in picked]
    return configs, compare_mode


def render() -> None:
    st.caption(f"Device: {training.device_description()}. A small U-Net learns to segment; "
               "each loss pushes it differently, above all on small objects.")
    settings_col, live_col = st.columns([1, 2.2])
    job: Job | None = st.session_state.get(state.TRAIN_JOB)
    with settings_col, widgets.panel("Training settings"):
        configs, compare_mode = config_panel()
        busy = job is not None and job.running
        problem = _check(configs, compare_mode)
        if problem:
            st.warning(problem)
        if st.button("Start", type="primary", disabled=busy or bool(problem),
                     **state.keyed("train_start"),
                     help="One run per person at a time; Stop it to start another."):
            try:
                job = Job(configs, limiter=limiter(), owner=_owner(), alive=_session_alive())
            except ValueError as error:  # this session already has a run (a double click)
                st.warning(str(error))
            else:
                st.session_state[state.TRAIN_JOB] = job
                st.rerun()  # redraw with Start disabled and the live panel polling
        counts = limiter().counts()
        st.caption(f"This server trains {_runs(counts['capacity'])} at a time; now "
                   f"{counts['running']} running, {counts['waiting']} waiting.")
    with live_col:
        st.fragment(live, run_every=POLL_SECONDS if busy else None)()


def _check(configs, compare_mode) -> str | None:
    if compare_mode and not 2 <= len(configs) <= 4:
        return "Pick 2 to 4 losses to compare."
    for config in configs:
        try:
            config.validate()
        except ValueError as error:
            return str(error)
    return None


def live() -> None:
    """Queue place, progress, curves, predictions and results of the session's job."""
    job: Job | None = st.session_state.get(state.TRAIN_JOB)
    if job is None:
        st.info("Press Start: the default run takes about a minute on two CPU cores.")
        return
    with widgets.panel("Training"):
        if job.running:  # here, so that its label follows the job every second
            if st.button("Leave the queue" if job.queued else "Stop", **state.keyed("train_stop")):
                job.stop()
        if job.queued:
            st.info(_queue_message(job.ahead(), limiter().capacity))
        elif job.left_queue:
            st.info("You left the queue; press Start to queue again.")
        else:
            _progress(job)
        if job.error:
            st.error(f"Training failed: {job.error}")
        records = pd.DataFrame(list(job.records))
        if not records.empty:
            st.plotly_chart(charts.training_curves_figure(records), key="train_curves")
        samples = job.samples
        if samples is not None:
            st.caption(f"Validation predictions after epoch {samples['epoch']} of run "
                       f"{samples['run'] + 1}: image | truth | prediction")
            st.image(charts.sample_strip(samples), width=min(480, 3 * 120), clamp=True)
        results = list(job.results)
        if results:
            _results(results, finished=not job.running)
        if not job.running and st.session_state.get(state.TRAIN_POLLING):
            st.session_state[state.TRAIN_POLLING] = False
            st.rerun()  # stop polling: the page redraws once without run_every
        st.session_state[state.TRAIN_POLLING] = job.running


def _queue_message(ahead: int, capacity: int) -> str:
    must_finish = max(1, ahead - capacity + 1)  # runs to finish before a slot is ours
    when = ("it finishes" if ahead == 1 else "one of them finishes" if must_finish == 1
            else f"{must_finish} of them have finished")
    return f"{_runs(ahead)} ahead of you in the queue; yours starts when {when}."


def _progress(job: Job) -> None:
    if job.running and not job.total:
        st.progress(0.0, text="starting the training process and building the model…")
        return
    if job.running:
        eta = job.eta()
        label = (f"run {job.run + 1} of {len(job.configs)} · "
                 f"{LOSS_LABELS.get(_pick(job), '')} · {job.fraction():.0%}"
                 + (f" · about {eta:.0f} s left" if eta else ""))
        st.progress(job.fraction(), text=label)
    elif job.started is not None:
        st.progress(1.0, text=f"finished in {job.finished - job.started:.1f} s"
                    + (" (stopped)" if job.stopped else ""))


def _pick(job: Job) -> str:
    loss = job.configs[min(job.run, len(job.configs) - 1)].loss
    return "lovasz" if loss.startswith("lovasz") else loss


def _results(results: list[training.TrainResult], finished: bool) -> None:
    rows = []
    for i, result in enumerate(results):
        final = result.final or {}
        rows.append({"run": i + 1, "loss": result.config.loss,
                     "val Dice": final.get("val_dice"), "val IoU": final.get("val_iou"),
                     "val Dice (small objects)": final.get("val_dice_small"),
                     "epochs": len(result.epochs), "seconds": round(result.seconds, 1),
                     "stopped": result.stopped})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="train_results")
    shown = results[-1]
    if finished:
        c1, c2 = st.columns(2)
        c1.download_button("Curves (CSV)", "\n".join(r.to_csv() for r in results),
                           file_name="curves.csv", mime="text/csv",
                           **state.keyed("download_curves"))
        model = shown.info.get("keras_file")  # saved by the training process (no optimizer)
        if model is None:
            c2.caption("The model was too large to keep; train it with "
                       "`python -m explorer.train` to save it.")
        else:
            c2.download_button("Last model (.keras)", model, file_name="unet.keras",
                               **state.keyed("download_model"))

