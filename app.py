"""Dice Loss Explorer: the Streamlit entry point (`streamlit run app.py`).

Thin on purpose: page setup and a small live demo. All the maths lives in the
`explorer` package; this file only reads widgets and calls it.
"""

import numpy as np
import streamlit as st

st.set_page_config(page_title="Dice Loss Explorer", layout="wide")

SIZE = 64  # the demo image is SIZE x SIZE pixels
RADIUS = 12  # circle radius, pixels
CENTER_Y, CENTER_X = 31.5, 19.5  # truth circle centre (left of middle, so a shifted copy stays in frame)
MAX_SHIFT = 30  # at a shift of 2 * RADIUS or more the circles no longer overlap


def circle_mask(shift_x: float = 0.0) -> np.ndarray:
    """A filled circle as a float32 mask of shape [1, SIZE, SIZE, 1], moved right by `shift_x` pixels."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    inside = (yy - CENTER_Y) ** 2 + (xx - CENTER_X - shift_x) ** 2 <= RADIUS**2
    return inside.astype(np.float32)[np.newaxis, :, :, np.newaxis]


def overlay(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB picture, 3x enlarged: truth in green, prediction in magenta, overlap in white."""
    g, p = truth[0, :, :, 0], pred[0, :, :, 0]
    rgb = np.stack([p, g, p], axis=-1)
    rgb = rgb.repeat(3, axis=0).repeat(3, axis=1)  # 3x, nearest neighbour: crisp pixels
    return (rgb * 255).astype(np.uint8)


st.title("Dice Loss Explorer")
st.write(
    "Segmentation losses such as Dice, IoU, Tversky, BCE and Lovász score how well a predicted "
    "mask overlaps the ground truth. This explorer lets you move the prediction, the smoothing "
    "and the other knobs and watch every loss, and its TensorFlow gradient, change live. "
    "Below: a ground-truth circle against the same circle shifted to the right."
)

controls, picture, numbers = st.columns([2, 1, 2])
with controls:
    shift = st.slider("Prediction shift (pixels)", min_value=0, max_value=MAX_SHIFT, value=4, step=1)
    smooth = st.slider(
        "smooth (added to numerator and denominator)",
        min_value=0.0,
        max_value=100.0,
        value=1.0,
        step=0.5,
    )

y_true = circle_mask(0.0)
y_pred = circle_mask(float(shift))

with picture:
    st.image(overlay(y_true, y_pred), caption="truth (green), prediction (magenta), overlap (white)", width=192)

with numbers:
    try:
        from explorer import losses

        coefficient = float(losses.dice_coefficient(y_true, y_pred, smooth=smooth))
        loss = float(losses.dice_loss(y_true, y_pred, smooth=smooth))
    except Exception as exc:  # show the person a message, never a traceback
        st.error(f"Could not compute the Dice scores: {type(exc).__name__}: {exc}")
    else:
        left, right = st.columns(2)
        left.metric("Dice coefficient", f"{coefficient:.6f}")
        right.metric("Dice loss", f"{loss:.6f}")
        st.caption(
            "dice = (2·Σp·g + smooth) / (Σp + Σg + smooth); Dice loss = 1 − dice. "
            "A larger smooth softens the penalty for a bad overlap."
        )
