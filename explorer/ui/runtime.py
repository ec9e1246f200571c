"""Process-wide settings of the server, in one place: ``configured()`` wraps the app's
imports (the environment must be set before TensorFlow loads; the rest acts on what the
imports made). Nothing here acts when the module is imported.
"""

from __future__ import annotations

import functools
import gc
import os
from contextlib import contextmanager


@contextmanager
def configured():
    """Around the app's imports, on every run (all of it is cheap after the first)."""
    # TensorFlow's C++ start-up log is noise in the server's output; read when it loads
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # on a GPU the server takes memory as it needs it: training runs in child processes
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    yield
    after_imports()


@functools.cache  # once per process; gc.get_freeze_count() would walk the list (~40 ms a run)
def after_imports() -> None:
    import keras
    import tensorflow as tf

    from explorer import training

    # Streamlit calls keras.backend.clear_session() after every run. Here that would empty
    # TensorFlow's kernel cache (every slider move ~10x slower); the explorer keeps no Keras
    # state between runs (training runs in child processes).
    keras.backend.clear_session = lambda *args, **kwargs: None
    # one compiled function per loss and switch is by design; TF's retracing warning counts them
    tf.get_logger().setLevel("ERROR")
    # the server's TensorFlow would otherwise take nearly all the GPU's memory on first use
    # and leave none to the training processes (no effect once the GPU is in use)
    training.share_gpu_memory()
    # A full garbage collection walks every object, TensorFlow's and Streamlit's included:
    # about 250 ms with the GIL held, a stall for every session at once. What the imports
    # made lives as long as the server, so the collector is told to leave it alone.
    gc.collect()
    gc.freeze()


@functools.cache
def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU (asked once per process)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))
