"""Dice Loss Explorer: the Streamlit entry point (`streamlit run app.py`).

Thin on purpose: page setup and the two tabs, Explore and Train, which are drawn
lazily (only the open one runs). The maths lives in `explorer`, the pages in `explorer.ui`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
# on a GPU the server takes memory as it needs it: training runs in child processes
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Dice Loss Explorer", page_icon="🎯", layout="wide")

import keras  # noqa: E402

from explorer.ui import explore, teach, train, widgets  # noqa: E402  (TensorFlow loads once)

# Streamlit calls keras.backend.clear_session() after every run. Here that would empty
# TensorFlow's kernel cache (every slider move ~10x slower); the explorer keeps no Keras
# state between runs (training runs in child processes).
keras.backend.clear_session = lambda *args, **kwargs: None

widgets.freeze_imported_objects()

st.title("Dice Loss Explorer")
st.caption("How Dice, IoU, Tversky, BCE, focal and Lovász losses score a prediction, how their "
           "gradients would push each pixel, and what they do to training. Everything is "
           "computed by `explorer`, a library you can use in your own Keras model.")
teach.remember_link()  # before any widget: what the link asked for
TABS = ["Explore", "Train"]
teach.sidebar()
if widgets.view_picker("Page", TABS, key="main_tabs") == "Explore":
    explore.render()
else:
    train.render()
teach.share_section()
teach.link_notice()
