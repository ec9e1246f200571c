"""Where the truth and the prediction come from: shapes, the canvas, the gallery,
uploads; then the prediction's edits and softening (``explorer.predictions.Edits``).
Widgets in, label maps out."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer import charts, masks
from explorer.predictions import Edits
from explorer.ui import state
from explorer.ui.widgets import folded

CANVAS_SIDE = 240  # screen pixels: fits a third of the page at 1280 px with the sidebar
TOOLBAR_ROOM = 24  # pixels between the brush controls and the canvas, for its toolbar
SIZES = (64, 128, 256, 512)
MAX_SHIFT = 64
PITFALL = "Pitfall"  # a pair from masks.pitfall_pair: its truth, or its prediction
COPY = "Copy of truth"  # the one prediction source whose edits start at the opening lesson's
EDIT_FIELDS = {"shift_x": "dx", "shift_y": "dy", "grow": "grow", "invert": "invert"}


@st.cache_resource(show_spinner=False)
def gallery() -> list[dict]:
    """The shipped sample masks (read-only, shared by every session)."""
    return masks.load_gallery()


@st.cache_data(show_spinner=False, max_entries=64)
def _thumbnail(name: str, num_classes: int) -> np.ndarray:
    entry = next(e for e in gallery() if e["name"] == name)
    labels = masks.fit_classes(entry["labels"], num_classes)
    return charts.overlay_rgb(masks.resize_labels(labels, (64, 64)), num_classes)


def gallery_for(num_classes: int) -> list[dict]:
    """Gallery entries usable with this many classes (any entry, viewed binary, when 2)."""
    return [e for e in gallery() if e["num_classes"] <= num_classes or num_classes == 2]


def _shape(side: str, num_classes: int, size: int) -> np.ndarray:
    c1, c2 = st.columns(2)
    shapes = ["circle", "square", "blobs"]
    kind = c1.selectbox("Shape", shapes, **state.with_index(f"{side}_shape", shapes))
    radius = st.slider("Size (fraction of the side)", 0.0, 0.5, step=0.005,
                       **state.with_value(f"{side}_radius"),
                       help="Radius of the circle, half-side of the square, blob scale.")
    if num_classes > 2:
        st.caption(f"One object a class: class 1 where the sliders put it, classes 2 to "
                   f"{num_classes - 1} smaller squares and circles at its corners, moving "
                   "and sizing with it.")
    cy = c1.slider("Centre y", 0.0, 1.0, step=0.01, **state.with_value(f"{side}_cy"))
    cx = c2.slider("Centre x", 0.0, 1.0, step=0.01, **state.with_value(f"{side}_cx"))
    count, seed = 3, 0
    if kind == "blobs":
        count = c1.slider("Blobs", 1, 12, **state.with_value(f"{side}_blob_count"))
        seed = c2.number_input("Seed", 0, 10_000, **state.with_value(f"{side}_blob_seed"))
    if radius == 0:
        return np.zeros((size, size), np.int32)
    return masks.class_shapes(kind, size, num_classes=num_classes, radius=radius,
                              center=(cy, cx), count=count, seed=int(seed))


def _pitfall(side: str, size: int) -> np.ndarray:
    """The truth or the prediction of a pitfall pair (``masks.pitfall_pair``); its controls
    sit on the truth's side when the truth is one too, else on the prediction's."""
    kinds = list(masks.PITFALLS)
    if side == "truth" or state.current("truth_source") != PITFALL:
        kind = st.selectbox("Pitfall", kinds, **state.with_index("pitfall", kinds),
                            help="A pair Dice scores well and another metric does not: see "
                                 "the 'Beyond overlap' view.")
        label, low, high, _, _ = masks.PITFALLS[kind]
        st.slider(label, low, high, **state.with_value(state.pitfall_key(kind)))
    else:
        st.caption("The pitfall's prediction, set on the truth's side.")
    kind = state.current("pitfall")
    pair = masks.pitfall_pair(kind, size, amount=state.current(state.pitfall_key(kind)))
    return pair[0] if side == "truth" else pair[1]


def _draw(side: str, num_classes: int, size: int, background) -> np.ndarray:
    from streamlit_drawable_canvas import st_canvas  # the real component, or a test's fake

    names = ["erase"] + [f"class {c}" for c in range(1, num_classes)]
    c1, c2 = st.columns(2)
    brush = c1.selectbox("Brush", names, **state.with_index(f"{side}_brush", names))
    width = c2.slider("Brush size", 1, 50, **state.with_value(f"{side}_brush_size"))
    color = masks.CLASS_COLORS[names.index(brush)]
    st.caption("'erase' paints background. Undo, redo and clear: point at the canvas, the "
               "toolbar shows above its top right corner.")
    # the toolbar floats 2.65rem above the canvas: leave it room over nothing
    st.space(TOOLBAR_ROOM)
    result = st_canvas(
        stroke_width=width, stroke_color=color, background_image=background,
        height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode="freedraw",
        return_image_data=True, **state.keyed(f"{side}_canvas_{num_classes}"),
    )
    rgba = result.image_data if result is not None else None
    if rgba is None:
        return np.zeros((size, size), np.int32)
    labels = masks.rgba_to_labels(rgba, num_classes)
    return labels if labels.shape == (size, size) else masks.resize_labels(labels, (size, size))


def _gallery(side: str, num_classes: int, size: int) -> np.ndarray:
    entries = gallery_for(num_classes)
    names = [e["name"] for e in entries]
    name = st.selectbox("Sample", names, **state.with_index(f"{side}_gallery", names))
    with st.expander("Thumbnails"):
        columns = st.columns(4)
        for i, entry in enumerate(entries):
            columns[i % 4].image(_thumbnail(entry["name"], num_classes), caption=entry["name"],
                                 width="stretch")
    entry = entries[names.index(name)]
    st.caption(f"{entry['description']} ({entry['kind']})")
    return masks.resize_labels(masks.fit_classes(entry["labels"], num_classes), (size, size))


def _upload(side: str, num_classes: int):
    """A label map, or (prediction only) a probability map; None with a message if bad."""
    as_probability = False
    if side == "prediction" and num_classes == 2:
        as_probability = st.toggle("It is a probability map",
                                   **state.with_value("prediction_is_probability"),
                                   help="Float .npy in [0, 1], or a grey image read as p.")
    file = st.file_uploader(f"{side.capitalize()} file", type=["png", "jpg", "jpeg", "tif",
                                                               "tiff", "npy"],
                            **state.keyed(f"{side}_upload"))
    if file is None:
        st.info("PNG, JPEG, TIFF or .npy: 0/255 or label values 0..K−1, RGBA strokes, "
                "palette PNG (index = class).")
        return None
    try:
        if as_probability:
            return masks.load_probability(file)
        return masks.load_mask(file, num_classes=num_classes)
    except masks.MaskError as error:
        st.error(f"{file.name}: {error}")
        return None


def _masks_file(side: str, num_classes: int):
    """The truth or the prediction of the masks file opened in the sidebar."""
    pair = st.session_state.get(state.SHARED_MASKS)
    if pair is None:
        st.info("Open a masks file (.npz, saved by this app) in the sidebar under "
                "'Share this view'.")
        return None
    mask = pair[0] if side == "truth" else pair[1]
    if mask.dtype.kind != "f" and int(mask.max()) >= num_classes:
        st.error(f"The masks file has label {int(mask.max())}: set Classes to at least "
                 f"{int(mask.max()) + 1}.")
        return None
    if mask.dtype.kind == "f" and num_classes != 2:
        st.error("The masks file's prediction holds probabilities: set Classes to binary.")
        return None
    return mask


def truth_input(num_classes: int, size: int):
    """The truth label map (None while an upload is missing or bad) and a background."""
    sources = ["Shape", "Draw", "Gallery", "Upload", "Empty", "Masks file", PITFALL]
    source = st.radio("Truth from", sources, horizontal=True,
                      **state.with_index("truth_source", sources))
    background = None
    if source == "Draw":
        pictures = [e for e in gallery() if "background" in e]
        names = ["none"] + [e["name"] for e in pictures]
        under = st.selectbox("Picture under the canvas", names,
                             **state.with_index("truth_background", names))
        if under != "none":
            background = next(e["background"] for e in pictures if e["name"] == under)
    return _source(source, "truth", num_classes, size, background, None)


def edit_start(key: str, source: str):
    """Where a prediction edit starts: the opening lesson's (shift 8 px) for a copy of the
    truth; none for a prediction the person made or chose, so that two identical drawings
    score a perfect match."""
    return state.default(key) if source == COPY else getattr(Edits(), EDIT_FIELDS[key])


def _restart_edits() -> None:
    """A new prediction source starts from its own edits (a callback of the source)."""
    source = st.session_state["prediction_source"]
    st.session_state.update({key: edit_start(key, source) for key in EDIT_FIELDS})


def prediction_input(num_classes: int, size: int, truth_labels):
    sources = [COPY, "Shape", "Draw", "Gallery", "Upload", "Empty", "Masks file", PITFALL]
    source = st.radio("Prediction from", sources, horizontal=True, on_change=_restart_edits,
                      **state.with_index("prediction_source", sources))
    return _source(source, "prediction", num_classes, size, None, truth_labels)


def _source(source, side, num_classes, size, background, truth_labels):
    if source == COPY:
        return None if truth_labels is None else truth_labels.copy()
    if source == "Shape":
        return _shape(side, num_classes, size)
    if source == "Draw":
        return _draw(side, num_classes, size, background)
    if source == "Gallery":
        return _gallery(side, num_classes, size)
    if source == "Upload":
        return _upload(side, num_classes)
    if source == "Masks file":
        return _masks_file(side, num_classes)
    if source == PITFALL:
        return _pitfall(side, size)
    return np.zeros((size, size), np.int32)


def edit_widgets(hard: bool) -> Edits:
    """Move/grow/invert (for label predictions) and soften."""
    c1, c2 = st.columns(2)
    values = {}
    source = state.current("prediction_source")

    def edit(key):  # a link or the session may hold a value; else where this source starts
        return {**state.with_value(key), "value": edit_start(key, source)}

    if hard:
        values["dx"] = c1.slider("Shift x (px)", -MAX_SHIFT, MAX_SHIFT, **edit("shift_x"))
        values["dy"] = c2.slider("Shift y (px)", -MAX_SHIFT, MAX_SHIFT, **edit("shift_y"))
        values["grow"] = c1.slider("Grow (+) / shrink (−) px", -10, 10, **edit("grow"))
        values["invert"] = c2.checkbox("Invert", **edit("invert"))
        values["confidence"] = c1.slider("Confidence", 0.5, 1.0, step=0.005,
                                         **state.with_value("confidence"),
                                         help="p inside the predicted object; 1 − p outside.")
        values["blur"] = c2.slider("Edge blur σ (px)", 0.0, 8.0, step=0.25,
                                   **state.with_value("blur"))
        c1, c2 = folded("Noise and temperature").columns(2)
        values["noise"] = c1.slider("Logit noise σ", 0.0, 3.0, step=0.05,
                                    **state.with_value("noise"))
        values["temperature"] = c2.slider("Temperature", 0.1, 5.0, step=0.05,
                                          **state.with_value("temperature"),
                                          help="Divides the logits: > 1 less sure, < 1 surer.")
    return Edits(**values)
