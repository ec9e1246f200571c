"""The Train tab: train a small U-Net with the chosen loss, live, and compare losses.

Training runs in a background thread owned by the session (``Job``), so the page
stays responsive and Stop is honoured after the current step; a fragment polls the
job once a second while it runs.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import tensorflow as tf

from explorer import training
from explorer.settings import LOSS_LABELS
from explorer.ui import widgets

CURVES = {"loss": "training loss", "val_dice": "validation Dice", "val_iou": "validation IoU",
          "val_dice_small": "validation Dice, small objects"}


class Job:
    """One training run, or a comparison of several, in a background thread."""

    def __init__(self, configs: list[training.TrainConfig]):
        self.configs = configs
        self.stop = threading.Event()
        self.records: list[dict] = []
        self.results: list[training.TrainResult] = []
        self.run, self.step, self.total = 0, 0, 0
        self.error: str | None = None
        self.samples: dict | None = None  # the latest epoch's validation predictions
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.thread = threading.Thread(target=self._work, name="train", daemon=True)
        self.thread.start()

    def _work(self):
        try:
            self.results = training.compare(
                self.configs, on_start=self._on_start, on_epoch=self.records.append,
                on_step=self._on_step, should_stop=self.stop.is_set,
                on_samples=self._on_samples)
        except Exception as error:  # noqa: BLE001 - shown on the page, not raised in a thread
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.finished = time.perf_counter()

    def _on_start(self, run, _config):
        self.run, self.step = run, 0

    def _on_samples(self, samples):
        self.samples = {**samples, "run": self.run}

    def _on_step(self, step, total, _logs):
        self.step, self.total = step, total

    @property
    def running(self) -> bool:
        return self.finished is None

    def fraction(self) -> float:
        """Share of all steps of all runs done so far."""
        if not self.total:
            return 0.0
        return min(1.0, (self.run + self.step / self.total) / len(self.configs))

    def eta(self) -> float | None:
        done = self.fraction()
        if done <= 0:
            return None
        return (time.perf_counter() - self.started) * (1 - done) / done


def config_panel() -> tuple[list[training.TrainConfig], bool]:
    """The training settings; returns the configs to train and whether to compare."""
    st.subheader("Data and model")
    dataset = st.selectbox("Dataset", training.DATASETS, key="train_dataset",
                           format_func={"synthetic": "synthetic shapes (imbalanced)",
                                        "coins": "coins (scikit-image tiles)"}.get)
    knobs = {}
    if dataset == "synthetic":
        with st.expander("Synthetic data knobs"):
            knobs["foreground_fraction"] = st.slider(
                "Foreground fraction", 0.02, 0.5, 0.1, 0.01, key="train_fg",
                help="Class imbalance: the share of foreground pixels.")
            knobs["object_count"] = st.slider("Objects per image", 1, 12, 4,
                                              key="train_count")
    # a GPU trains a larger model on larger images in the same minute (mixed precision on)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    c1, c2 = st.columns(2)
    image_size = c1.selectbox("Image size", [32, 64, 96, 128], index=3 if gpu else 1,
                              key="train_size")
    epochs = c2.slider("Epochs", 1, 30, training.TrainConfig.epochs, key="train_epochs")
    batch_size = c1.selectbox("Batch size", [4, 8, 16, 32, 64], index=4 if gpu else 2,
                              key="train_batch")
    learning_rate = c2.select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
                                     value=training.TrainConfig.learning_rate,
                                     key="train_lr")
    width = c1.selectbox("U-Net width", [4, 8, 16, 32], index=2 if gpu else 1,
                         key="train_width")
    depth = c2.selectbox("U-Net depth", [1, 2, 3, 4], index=2, key="train_depth")
    seed = c1.number_input("Seed", 0, 10_000, 0, key="train_seed")
    flips = c2.checkbox("Random flips", value=True, key="train_flips")
    st.subheader("Loss")
    compare_mode = st.toggle("Compare several losses", key="train_compare",
                             help="Same data and seed, one after another.")
    picked = None
    if compare_mode:
        picked = st.multiselect("Losses (2 to 4)", list(LOSS_LABELS), max_selections=4,
                                default=["dice_loss", "binary_crossentropy", "bce_dice_loss"],
                                format_func=LOSS_LABELS.get, key="train_losses")
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
    job: Job | None = st.session_state.get("train_job")
    with settings_col, widgets.panel("Training settings"):
        configs, compare_mode = config_panel()
        busy = job is not None and job.running
        problem = _check(configs, compare_mode)
        if problem:
            st.warning(problem)
        b1, b2 = st.columns(2)
        if b1.button("Start", type="primary", disabled=busy or bool(problem), key="train_start"):
            st.session_state["train_job"] = job = Job(configs)
            busy = True
        if b2.button("Stop", disabled=not busy, key="train_stop"):
            job.stop.set()
    with live_col:
        st.fragment(live, run_every=1.0 if busy else None)()


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
    """Progress, curves, predictions and results of the session's job."""
    job: Job | None = st.session_state.get("train_job")
    if job is None:
        st.info("Press Start: the default run takes about a minute on two CPU cores.")
        return
    with widgets.panel("Training"):
        if job.error:
            st.error(f"Training failed: {job.error}")
        eta = job.eta()
        label = (f"run {job.run + 1} of {len(job.configs)} · {LOSS_LABELS.get(_pick(job), '')} · "
                 f"{job.fraction():.0%}" + (f" · about {eta:.0f} s left" if eta and job.running
                                             else ""))
        st.progress(job.fraction() if job.running else 1.0, text=label if job.running else
                    f"finished in {job.finished - job.started:.1f} s"
                    + (" (stopped)" if job.stop.is_set() else ""))
        records = pd.DataFrame(list(job.records))
        if not records.empty:
            st.plotly_chart(curves_figure(records), key="train_curves")
        samples = job.samples
        if samples is not None:
            st.caption(f"Validation predictions after epoch {samples['epoch']} of run "
                       f"{samples['run'] + 1}: image | truth | prediction")
            st.image(_strip(samples), width=min(480, 3 * 120), clamp=True)
        results = list(job.results)
        if results:
            _results(results, finished=not job.running)
        if not job.running and st.session_state.get("train_polling"):
            st.session_state["train_polling"] = False
            st.rerun()  # stop polling: the page redraws once without run_every
        st.session_state["train_polling"] = job.running


def _pick(job: Job) -> str:
    loss = job.configs[min(job.run, len(job.configs) - 1)].loss
    return "lovasz" if loss.startswith("lovasz") else loss


def curves_figure(records: pd.DataFrame) -> go.Figure:
    """Training loss and validation metrics per epoch, one line per run and metric."""
    figure = go.Figure()
    for (run, loss), frame in records.groupby(["run", "loss_name"]):
        for key, label in CURVES.items():
            if key in frame and frame[key].notna().any():
                figure.add_scatter(x=frame["epoch"], y=frame[key], mode="lines+markers",
                                   name=f"{run + 1}. {loss}: {label}",
                                   line_dash="dot" if key == "loss" else "solid")
    figure.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10),
                         xaxis_title="epoch", yaxis_title="value",
                         legend=dict(font=dict(size=10)))
    return figure


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
                           file_name="curves.csv", mime="text/csv", key="download_curves")
        c2.download_button("Last model (.keras)", _model_bytes(shown), file_name="unet.keras",
                           key="download_model")


def _strip(samples: dict) -> np.ndarray:
    """Rows of (image | truth | prediction) tiles, as one grey picture."""
    rows = [np.concatenate([image, truth, prediction], axis=1)
            for image, truth, prediction in zip(samples["image"], samples["truth"],
                                                samples["prediction"])]
    return np.concatenate(rows, axis=0).clip(0, 1)


def _model_bytes(result: training.TrainResult) -> bytes:
    """The trained model as a .keras file, saved once per result."""
    if "keras_file" not in result.info:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "unet.keras"
            result.model.save(path)
            result.info["keras_file"] = path.read_bytes()
    return result.info["keras_file"]

