"""The Train tab: train a small U-Net with the chosen loss, live, and compare losses;
or play back a recorded comparison (a replay) instantly.

Settings and Start on the left, the results on the right, one screen. The results are
a comparison of ``explorer.training.replays`` either way (``load_replay`` or the live
job's ``comparison()``), drawn by the same views: a table (mean ± spread over seeds),
validation Dice next to small-object Dice per epoch, one fixed colour per loss, and a
grid of predictions (one row per validation image, one column per loss, TP/FP/FN).

Training runs in a child process (``training.TrainingJob``), not in the server: in a
thread it would share the server's cores and GIL with every other session and slow
their Explore tab. A server-wide limiter (the one deliberately shared object) lets a
few runs go at once and queues the others, first come first served; a class replays
while one person trains. Each session has at most one job, kept in its
``st.session_state``; a fragment polls it every ``POLL_SECONDS`` while it is queued or
running.
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


DATASET_LABELS = {"synthetic": "synthetic shapes (imbalanced)",
                  "tiny-objects": "tiny objects (0.5 % foreground)",
                  "coins": "coins (scikit-image tiles)"}
# the widgets a dataset's preset sets (training.PRESETS), by TrainConfig field
PRESET_WIDGETS = {"image_size": "train_size", "epochs": "train_epochs",
                  "batch_size": "train_batch", "learning_rate": "train_lr",
                  "width": "train_width", "depth": "train_depth", "flips": "train_flips"}


def _apply_preset() -> None:
    """The chosen dataset's preset into the settings (a person may change them after)."""
    preset = training.PRESETS.get(st.session_state.get("train_dataset"), {})
    for field, key in PRESET_WIDGETS.items():
        st.session_state[key] = preset.get(field, state.default(key))


def config_panel() -> tuple[list[training.TrainConfig], bool]:
    """The training settings; returns the configs to train and whether to compare."""
    st.subheader("Data and model")
    dataset = st.selectbox("Dataset", training.DATASETS,
                           **state.with_index("train_dataset", training.DATASETS),
                           format_func=lambda name: DATASET_LABELS.get(name, name),
                           on_change=_apply_preset,
                           help="Each dataset comes with its preset: the epochs, learning "
                                "rate and sizes below are set when you pick it.")
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
    seeds = c1.selectbox("Seeds", [1, 2, 3], **state.with_index("train_seeds", [1, 2, 3]),
                         help="Train each loss on this many seeds (seed, seed + 1, …): the "
                              "results show the mean and the spread. Each seed is a run.")
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
    configs = [replace(base, loss=settings.loss_name(k), loss_keywords=settings.keywords(k),
                       seed=int(seed) + i)
               for i in range(int(seeds)) for k in picked]
    return configs, compare_mode


def render() -> None:
    st.caption(f"Device: {training.device_description()}. A small U-Net learns to segment; "
               "each loss pushes it differently, above all on small objects. Replays play "
               "recorded runs at once; Start trains your own.")
    settings_col, results_col = st.columns([1, 2.2])
    job: Job | None = st.session_state.get(state.TRAIN_JOB)
    busy = job is not None and job.running
    with settings_col, widgets.panel("Training settings"):
        start_slot = st.container()  # Start above the settings, near the results
        configs, compare_mode = config_panel()
        with start_slot:
            problem = _check(configs, compare_mode)
            if problem:
                st.warning(problem)
            if st.button("Start", type="primary",
                         disabled=busy or bool(problem), **state.keyed("train_start"),
                         help="One run per person at a time; Stop it to start another."):
                try:
                    job = Job(configs, limiter=limiter(), owner=_owner(),
                              alive=_session_alive())
                except ValueError as error:  # this session already has a run (a double click)
                    st.warning(str(error))
                else:
                    st.session_state[state.TRAIN_JOB] = job
                    st.session_state["train_view"] = "Live"
                    st.rerun()  # redraw with Start disabled and the live panel polling
            counts = limiter().counts()
            st.caption(f"{_runs(len(configs))} to train. This server trains "
                       f"{_runs(counts['capacity'])} at a time; now {counts['running']} "
                       f"running, {counts['waiting']} waiting.")
    with results_col:
        view = st.segmented_control("Results", list(VIEWS), required=True,
                                    format_func=VIEWS.get, label_visibility="collapsed",
                                    **state.with_default("train_view"))
        if view == "Replay":
            with widgets.panel("Replay"):
                replay()
        else:
            st.fragment(live, run_every=POLL_SECONDS if busy else None)()


# the two sources of results, and what their button says
VIEWS = {"Replay": "Replay (recorded, instant)", "Live": "Live (your run)"}


@st.cache_resource(show_spinner=False)
def _replay(name: str) -> dict:
    """A shipped replay, read once per server and shared by every session (read only)."""
    return training.load_replay(name)


def replay() -> None:
    """A recorded comparison, played back: the epoch slider steps through the training."""
    shipped = training.list_replays()
    if not shipped:
        st.info("No replays are installed (sample_data/training/replays); train live.")
        return
    titles = {entry["name"]: entry["title"] for entry in shipped}
    names = list(titles)
    pick, step = st.columns([3, 2])
    name = pick.selectbox("Recorded comparison", names, format_func=titles.get,
                          **state.with_index("train_replay", names))
    entry = next(e for e in shipped if e["name"] == name)
    comparison = _replay(name)
    epochs = list(range(1, entry["epochs"] + 1))
    epoch = step.select_slider("Epoch (play back)", epochs, value=epochs[-1],
                               **state.keyed(f"train_replay_epoch_{name}"),
                               help="Step through the training: the curves mark the epoch, "
                                    "the grid shows the predictions after it.")
    st.caption(f"**Replay**: recorded earlier on {entry['device']}, "
               f"{len(comparison['runs'])} runs; nothing trains now. {entry['description']}")
    with st.expander("How this replay was made"):
        st.code(entry["command"], language="bash", wrap_lines=True)
        st.caption("Made by `python sample_data/training/make_replays.py`; training is "
                   "deterministic on the CPU, so the command gives these numbers again.")
    comparison_views(comparison, epoch=epoch)


def comparison_views(comparison: dict, *, epoch: int | None = None) -> None:
    """The same views for a replay and a live run: the table (mean ± spread over seeds),
    the curves (validation Dice next to small-object Dice) and the prediction grid."""
    summary = training.summarize(comparison)
    runs = comparison["runs"]
    if not any(run["epochs"] or run["seconds"] is not None for run in runs):
        return  # nothing trained yet
    st.dataframe(_summary_frame(summary, runs), hide_index=True, key="train_results",
                 column_config={name: st.column_config.NumberColumn(format="%.3f")
                                for name in ("val Dice", "small-object Dice",
                                             "± sd over seeds", "val IoU")}
                 | {"seconds per run": st.column_config.NumberColumn(format="%.0f")})
    if any(group["curves"]["val_dice"]["epoch"] for group in summary):
        st.plotly_chart(charts.training_comparison_figure(summary, epoch=epoch),
                        key="train_curves")
    grid = comparison.get("grid")
    if grid is not None:
        _grid(comparison, grid, epoch)


def _summary_frame(summary, runs) -> pd.DataFrame:
    """One row per loss: the final epoch's means over seeds, the small-object Dice's
    spread (sample standard deviation; none for one seed)."""
    rows = []
    for group in summary:
        final, n = group["final"], len(group["seeds"])
        rows.append({
            "loss": group["label"],
            "val Dice": final["val_dice"]["mean"],
            "small-object Dice": final["val_small_dice"]["mean"],
            "± sd over seeds": None if n < 2 else final["val_small_dice"]["sd"],
            "val IoU": final["val_iou"]["mean"],
            "seeds": n, "epochs": max(len(runs[i]["epochs"]) for i in group["runs"]),
            "seconds per run": group["seconds"]["mean"],
            "stopped": any(runs[i]["stopped"] for i in group["runs"])})
    return pd.DataFrame(rows)


def _grid(comparison: dict, grid: dict, epoch: int | None) -> None:
    runs = [comparison["runs"][i] for i in grid["runs"]]
    # the epoch asked for, as an index into each run's recorded epochs (live: the latest)
    index = -1 if epoch is None else epoch - 1
    shown = epoch if epoch is not None else max((e[-1] for e in grid["epochs"] if e),
                                                default=0)
    colors = charts.OVERLAY_COLORS
    st.markdown(
        f"**Validation predictions after epoch {shown}** (seed {grid['seed']}), one row "
        f"per image: <span style='color:{colors['TP']}'>■ true positive</span> · "
        f"<span style='color:{colors['FP']}'>■ false positive</span> · "
        f"<span style='color:{colors['FN']}'>■ false negative</span>",
        unsafe_allow_html=True)
    pictures = charts.prediction_grid(grid, index)
    titles = ["image", "truth"] + [run["label"] for run in runs]
    keys = [None, None] + [run["loss_key"] for run in runs]
    for column, title, key, picture in zip(st.columns(len(pictures)), titles, keys, pictures):
        color = charts.LOSS_COLORS.get(key, "#495057") if key else "#495057"
        # one line each (long names cut, whole on hover), so the rows line up
        column.markdown(f"<div title='{title}' style='color:{color}; font-weight:600; "
                        "font-size:0.85em; white-space:nowrap; overflow:hidden; "
                        f"text-overflow:ellipsis'>{title}</div>", unsafe_allow_html=True)
        column.image(picture, width="stretch")


def _check(configs, compare_mode) -> str | None:
    losses = {(c.loss, str(sorted(c.loss_keywords.items()))) for c in configs}
    if compare_mode and not 2 <= len(losses) <= 4:
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
        st.info("Press Start: the default run takes about a minute on two CPU cores. "
                "Meanwhile, a replay shows a recorded comparison at once.")
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
        st.caption("**Live**: your own run, trained on this server now"
                   + (" (the curves grow as it trains)." if job.running else "."))
        comparison_views(job.comparison())
        results = list(job.results)
        if results and not job.running:
            _downloads(results)
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


def _downloads(results: list[training.TrainResult]) -> None:
    c1, c2 = st.columns(2)
    c1.download_button("Curves (CSV)", "\n".join(r.to_csv() for r in results),
                       file_name="curves.csv", mime="text/csv",
                       **state.keyed("download_curves"))
    model = results[-1].info.get("keras_file")  # saved by the training process (no optimizer)
    if model is None:
        c2.caption("The model was too large to keep; train it with "
                   "`python -m explorer.train` to save it.")
    else:
        c2.download_button("Last model (.keras)", model, file_name="unet.keras",
                           **state.keyed("download_model"))
