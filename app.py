"""Dice Loss Explorer: the Streamlit entry point (`streamlit run app.py`).

Thin on purpose: page setup and the tabs. The maths lives in `explorer`, the pages
in `explorer.ui`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Dice Loss Explorer", page_icon="🎯", layout="wide")

from explorer.ui import explore  # noqa: E402  (imports TensorFlow once per server process)

st.title("Dice Loss Explorer")
st.caption("How Dice, IoU, Tversky, BCE, focal and Lovász losses score a prediction, and how "
           "their gradients would push each pixel. Everything is computed by `explorer.losses`, "
           "the same library you can use in your own Keras model.")
explore.render()
