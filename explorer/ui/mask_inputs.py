"""Where the truth and the prediction come from: shapes, the canvas, the gallery,
uploads; then the prediction's edits and softening. Widgets in, label maps out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from explorer import charts, masks
from explorer.scenarios import DEFAULTS as DEFAULT
from explorer.ui.widgets import KEEP, SHARE, folded

CANVAS_SIDE = 256
SIZES = (64, 128, 256, 512)
MAX_SHIFT = 64


@st.cache_resource(show_spinner=False)
def gallery() -> list[dict]:
    """The shipped sample masks (read-only, shared by every session)."""
    return masks.load_gallery()


@st.cache_data(show_spinner=False, max_entries=64)
def _thumbnail(name: str, num_classes: int) -> np.ndarray:
    entry = next(e for e in gallery() if e["name"] == name)
    labels = fit_classes(entry["labels"], num_classes)
    return charts.overlay_rgb(masks.resize_labels(labels, (64, 64)), num_classes)


def gallery_for(num_classes: int) -> list[dict]:
    """Gallery entries usable with this many classes (any entry, viewed binary, when 2)."""
    return [e for e in gallery() if e["num_classes"] <= num_classes or num_classes == 2]


def fit_classes(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """A binary view of a multi-class mask when the page is binary."""
    return (labels > 0).astype(np.int32) if num_classes == 2 else labels


def _shape(side: str, num_classes: int, size: int) -> np.ndarray:
    c1, c2 = st.columns(2)
    kind = c1.selectbox("Shape", ["circle", "square", "blobs"], **SHARE, key=f"{side}_shape")
    label = 1
    if num_classes > 2:
        label = c2.selectbox("Class", list(range(1, num_classes)), **SHARE, key=f"{side}_shape_class")
    radius = st.slider("Size (fraction of the side)", 0.0, 0.5, DEFAULT[f"{side}_radius"], 0.005,
                       **SHARE, key=f"{side}_radius",
                       help="Radius of the circle, half-side of the square, blob scale.")
    cy = c1.slider("Centre y", 0.0, 1.0, DEFAULT[f"{side}_cy"], 0.01, **SHARE, key=f"{side}_cy")
    cx = c2.slider("Centre x", 0.0, 1.0, DEFAULT[f"{side}_cx"], 0.01, **SHARE, key=f"{side}_cx")
    count, seed = 3, 0
    if kind == "blobs":
        count = c1.slider("Blobs", 1, 12, 4, **SHARE, key=f"{side}_blob_count")
        seed = c2.number_input("Seed", 0, 10_000, 0, **SHARE, key=f"{side}_blob_seed")
    if radius == 0:
        return np.zeros((size, size), np.int32)
    return masks.shape_mask(kind, size, radius=radius, center=(cy, cx), count=count,
                            seed=int(seed), label=label)


def _draw(side: str, num_classes: int, size: int, background) -> np.ndarray:
    from streamlit_drawable_canvas import st_canvas  # the real component, or a test's fake

    names = ["erase"] + [f"class {c}" for c in range(1, num_classes)]
    c1, c2 = st.columns(2)
    brush = c1.selectbox("Brush", names, index=1, **KEEP, key=f"{side}_brush")
    width = c2.slider("Brush size", 1, 50, 14, **KEEP, key=f"{side}_brush_size")
    color = masks.CLASS_COLORS[names.index(brush)]
    result = st_canvas(
        stroke_width=width, stroke_color=color, background_image=background,
        height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode="freedraw",
        return_image_data=True, key=f"{side}_canvas_{num_classes}",
    )
    st.caption("Undo, redo and clear are in the canvas toolbar; 'erase' paints background.")
    rgba = result.image_data if result is not None else None
    if rgba is None:
        return np.zeros((size, size), np.int32)
    labels = masks.rgba_to_labels(rgba, num_classes)
    return labels if labels.shape == (size, size) else masks.resize_labels(labels, (size, size))


def _gallery(side: str, num_classes: int, size: int) -> np.ndarray:
    entries = gallery_for(num_classes)
    names = [e["name"] for e in entries]
    default = 1 if side == "prediction" and len(names) > 1 else 0
    name = st.selectbox("Sample", names, index=default, **SHARE, key=f"{side}_gallery")
    with st.expander("Thumbnails"):
        columns = st.columns(4)
        for i, entry in enumerate(entries):
            columns[i % 4].image(_thumbnail(entry["name"], num_classes), caption=entry["name"],
                                 width="stretch")
    entry = entries[names.index(name)]
    st.caption(f"{entry['description']} ({entry['kind']})")
    return masks.resize_labels(fit_classes(entry["labels"], num_classes), (size, size))


def _upload(side: str, num_classes: int):
    """A label map, or (prediction only) a probability map; None with a message if bad."""
    as_probability = False
    if side == "prediction" and num_classes == 2:
        as_probability = st.toggle("It is a probability map", **SHARE, key="prediction_is_probability",
                                   help="Float .npy in [0, 1], or a grey image read as p.")
    file = st.file_uploader(f"{side.capitalize()} file", type=["png", "jpg", "jpeg", "tif",
                                                               "tiff", "npy"],
                            key=f"{side}_upload")
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
    pair = st.session_state.get("shared_masks")
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
    source = st.radio("Truth from", ["Shape", "Draw", "Gallery", "Upload", "Empty", "Masks file"],
                      horizontal=True, **SHARE, key="truth_source")
    background = None
    if source == "Draw":
        pictures = [e for e in gallery() if "background" in e]
        under = st.selectbox("Picture under the canvas", ["none"] + [e["name"] for e in pictures],
                             **SHARE, key="truth_background")
        if under != "none":
            background = next(e["background"] for e in pictures if e["name"] == under)
    return _source(source, "truth", num_classes, size, background, None)


def prediction_input(num_classes: int, size: int, truth_labels):
    source = st.radio("Prediction from", ["Copy of truth", "Shape", "Draw", "Gallery",
                                          "Upload", "Empty", "Masks file"],
                      horizontal=True, **SHARE, key="prediction_source")
    return _source(source, "prediction", num_classes, size, None, truth_labels)


def _source(source, side, num_classes, size, background, truth_labels):
    if source == "Copy of truth":
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
    return np.zeros((size, size), np.int32)


@dataclass(frozen=True)
class Edits:
    """How a hard prediction is moved and softened into probabilities."""

    dy: int = 0
    dx: int = 0
    grow: int = 0  # > 0 dilates, < 0 erodes, in pixels
    invert: bool = False
    confidence: float = 0.9
    blur: float = 0.0
    noise: float = 0.0
    temperature: float = 1.0

    def hard(self, labels: np.ndarray) -> np.ndarray:
        """The label map moved, grown or shrunk, and inverted (before softening)."""
        edited = masks.shift(labels, self.dy, self.dx)
        if self.grow > 0:
            edited = masks.dilate(edited, self.grow)
        elif self.grow < 0:
            edited = masks.erode(edited, -self.grow)
        return masks.invert(edited) if self.invert else edited

    def apply(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """Probabilities ``[H, W, C]`` from a label map."""
        return self.soften(self.hard(labels), num_classes)

    def soften(self, edited: np.ndarray, num_classes: int) -> np.ndarray:
        return masks.soften(edited, num_classes, confidence=self.confidence,
                            blur_sigma=self.blur, noise=self.noise,
                            temperature=self.temperature)


def edit_widgets(hard: bool) -> Edits:
    """Move/grow/invert (for label predictions) and soften."""
    c1, c2 = st.columns(2)
    values = {}
    if hard:
        values["dx"] = c1.slider("Shift x (px)", -MAX_SHIFT, MAX_SHIFT, DEFAULT["shift_x"], **SHARE, key="shift_x")
        values["dy"] = c2.slider("Shift y (px)", -MAX_SHIFT, MAX_SHIFT, DEFAULT["shift_y"], **SHARE, key="shift_y")
        values["grow"] = c1.slider("Grow (+) / shrink (−) px", -10, 10, DEFAULT["grow"], **SHARE, key="grow")
        values["invert"] = c2.checkbox("Invert", **SHARE, key="invert")
        values["confidence"] = c1.slider("Confidence", 0.5, 1.0, DEFAULT["confidence"], 0.005, **SHARE, key="confidence",
                                         help="p inside the predicted object; 1 − p outside.")
        values["blur"] = c2.slider("Edge blur σ (px)", 0.0, 8.0, DEFAULT["blur"], 0.25, **SHARE, key="blur")
        c1, c2 = folded("Noise and temperature").columns(2)
        values["noise"] = c1.slider("Logit noise σ", 0.0, 3.0, DEFAULT["noise"], 0.05, **SHARE,
                                    key="noise")
        values["temperature"] = c2.slider("Temperature", 0.1, 5.0, DEFAULT["temperature"], 0.05,
                                          **SHARE, key="temperature",
                                          help="Divides the logits: > 1 less sure, < 1 surer.")
    return Edits(**values)
