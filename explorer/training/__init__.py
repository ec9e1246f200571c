"""Train a small U-Net with any loss of :mod:`explorer.losses` (no Streamlit here).

The library half of the Train tab, in six modules:

- :mod:`~explorer.training.data`: the synthetic, tiny-objects and coins datasets
  (:func:`load_dataset`) and the ``tf.data`` pipeline;
- :mod:`~explorer.training.model`: the U-Net (:func:`build_unet`);
- :mod:`~explorer.training.metrics`: the validation metrics, small objects included;
- :mod:`~explorer.training.loop`: :class:`TrainConfig`, each dataset's preset
  (:data:`PRESETS`, :func:`preset_config`), :func:`train`, :func:`compare` and their
  :class:`TrainResult`;
- :mod:`~explorer.training.replays`: a comparison as data, live (:class:`Recorder`) or
  replayed (:func:`load_replay`, :func:`list_replays`), and its mean ± spread over seeds
  (:func:`summarize`, :func:`summary_table`);
- :mod:`~explorer.training.jobs`: training for a server, in a child process
  (:class:`TrainingJob`), with a cap on the runs at once (:class:`TrainingLimiter`).

``python -m explorer.training`` (or ``python -m explorer.train``) is the command line
(:mod:`explorer.training.__main__`). Every name below can be taken from this package,
``from explorer.training import TrainConfig, train``; each submodule is imported when
one of its names is first asked for, so that importing the package loads no
TensorFlow and the command line can quiet TensorFlow's log before it loads.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "data": ("DATASETS", "COINS_FILE", "COINS_VAL_COLUMN", "COINS_STRIDE",
             "SYNTHETIC_DEFAULTS", "TINY_OBJECTS_DEFAULTS", "Dataset", "synthetic_image",
             "synthetic_dataset", "coins_source", "coins_dataset", "load_dataset",
             "make_pipeline"),
    "model": ("build_unet",),
    "metrics": ("SMALL_AREA_FRACTION", "SMALL_MARGIN", "small_object_mask",
                "small_object_regions", "validation_metrics"),
    "loop": ("SCHEDULES", "VALIDATION_CHUNK", "TrainConfig", "PRESETS", "preset_config",
             "cpu_cores",
             "device_description", "RECORD_KEYS", "TrainResult", "prepare", "train",
             "compare"),
    "replays": ("REPLAY_DIR", "Recorder", "loss_label", "loss_key", "summarize",
                "summary_table", "save_replay", "load_replay", "list_replays",
                "final_difference"),
    "jobs": ("MAX_RUNS_ENV", "CHILD_NICE", "STOP_GRACE", "ABANDON_AFTER", "MODEL_BYTES_CAP",
             "STEP_REPORT_SECONDS", "max_training_runs", "Ticket", "TrainingLimiter",
             "rss_mb", "share_gpu_memory", "TrainingJob"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__():
    return sorted({*globals(), *_MODULE_OF})
