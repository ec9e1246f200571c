"""Dice Loss Explorer: the Streamlit entry point (`streamlit run app.py`).

A table of contents: page setup, the process's settings, the sidebar, the two pages
(only the open one runs), sharing. The maths lives in `explorer`, the pages in
`explorer.ui`, every widget key and default in `explorer.ui.state`.
"""

import streamlit as st

from explorer.ui import runtime

st.set_page_config(page_title="Dice Loss Explorer", page_icon="🎯", layout="wide")

with runtime.configured():  # TensorFlow loads here, once per server process
    from explorer.ui import explore, teach, train, widgets

PAGES = {"Explore": explore.render, "Train": train.render}

teach.remember_link()  # before any widget: what the link asked for
teach.sidebar()
if not teach.presenting():  # on a projector the stage needs the room
    st.title("Dice Loss Explorer")
    st.caption("How Dice, IoU, Tversky, BCE, focal and Lovász losses score a prediction, how "
               "their gradients would push each pixel, and what they do to training. Everything "
               "is computed by `explorer`, a library you can use in your own Keras model.")
PAGES[widgets.view_picker("Page", list(PAGES), key="main_tabs")]()
teach.share_section()
teach.link_notice()
