"""The boundary loss (Kervadec et al. 2019) and the soft clDice loss (Shit et al. 2021): their
values worked by hand, where their gradients push differently from Dice's, the Keras classes,
the exported code, and both on the stage of the running app."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import analysis, charts, codegen, gradients, losses, masks, metrics
from explorer.settings import LOSS_LABELS, Settings
from tests import reference
from tests.test_app import APP, _run

NEW = ("boundary_loss", "boundary_dice_loss", "cl_dice_loss", "cl_dice_dice_loss")


def _batch(labels) -> np.ndarray:
    return masks.to_batch(masks.one_hot(np.asarray(labels), 2)).astype(np.float64)


# ----------------------------------------------------------------- by hand


def test_signed_distance_worked_by_hand():
    truth = np.zeros((1, 1, 7, 1))
    truth[0, 0, 2:5, 0] = 1  # a row: . . # # # . .
    np.testing.assert_array_equal(losses.signed_distance(truth)[0, 0, :, 0],
                                  [2, 1, 0, -1, 0, 1, 2])  # boundary 0, inside below
    empty, full = np.zeros((1, 3, 3, 1)), np.ones((1, 3, 3, 1))
    assert not losses.signed_distance(empty).any() and not losses.signed_distance(full).any()
    square = np.zeros((1, 9, 9, 1))
    square[0, 3:6, 3:6] = 1
    phi = losses.signed_distance(square)[0, ..., 0]
    assert phi[4, 4] == -1 and phi[0, 0] == pytest.approx(math.hypot(3, 3))
    np.testing.assert_array_equal(phi, reference.signed_distance(square)[0, ..., 0])


def test_boundary_loss_is_the_mean_of_phi_times_p():
    truth = np.zeros((1, 1, 7, 1))
    truth[0, 0, 2:5, 0] = 1
    p = np.full_like(truth, 0.5)
    # (2 + 1 + 0 - 1 + 0 + 1 + 2) * 0.5 / 7
    assert float(losses.boundary_loss(truth, p)) == pytest.approx(2.5 / 7, rel=1e-12)
    assert float(losses.boundary_loss(truth, truth)) == pytest.approx(-1 / 7, rel=1e-12)
    mixed = losses.boundary_dice_loss(truth, p, boundary_weight=0.5)
    assert float(mixed) == pytest.approx(float(losses.dice_loss(truth, p)) + 0.5 * 2.5 / 7)
    assert float(losses.boundary_dice_loss(truth, p, boundary_weight=0.0)) == float(
        losses.dice_loss(truth, p))


def test_soft_skeleton_of_a_bar_is_its_centre_line():
    bar = np.zeros((1, 7, 9, 1))
    bar[0, 2:5, 1:8] = 1  # a bar three pixels thick
    skeleton = losses.soft_skeleton(bar, 3).numpy()[0, ..., 0]
    assert skeleton[3, 2:7].min() == 1 and skeleton[[2, 4]].max() == 0  # the middle row
    np.testing.assert_array_equal(skeleton, reference.soft_skeleton(bar, 3)[0, ..., 0])
    assert float(losses.cl_dice_loss(bar, bar)) == pytest.approx(0, abs=1e-12)


def test_cl_dice_sees_thin_branches_that_dice_hardly_counts():
    """The "Thin branches lost" pitfall: soft clDice, like metrics.cl_dice, scores the trunk
    alone far worse than Dice does."""
    truth, trunk = masks.pitfall_pair("thin branches", 128, amount=1)
    g, p = _batch(truth), _batch(trunk)
    dice = float(losses.dice_loss(g, p, smooth=0.0))
    cl = float(losses.cl_dice_loss(g, p, smooth=0.0, iterations=5))
    assert dice < 0.2 and cl > 0.4  # the branches: few pixels, most of the centre line
    assert cl == pytest.approx(1 - metrics.cl_dice(truth > 0, trunk > 0), abs=0.1)


# ------------------------------------------------------- where they push


def test_boundary_gradient_pushes_a_far_false_positive_hardest():
    """Dice pushes every false positive alike; the boundary loss pushes each by its
    distance from the truth (∂L/∂p = φ_G / N)."""
    truth, pred = masks.pitfall_pair("far blob", 64, amount=3)
    g, p = _batch(truth), masks.to_batch(masks.soften(pred, 2, confidence=0.9)).astype(
        np.float64)
    _, boundary = gradients.loss_and_gradient("boundary_loss", g, p)
    _, dice = gradients.loss_and_gradient("dice_loss", g, p)
    blob = (pred > 0) & (truth == 0)
    near = np.zeros_like(blob)
    near[np.nonzero(masks.dilate(truth, 2) > truth)] = True  # just outside the truth
    np.testing.assert_allclose(boundary[0, ..., 0],
                               losses.signed_distance(g)[0, ..., 0] / truth.size, rtol=1e-12)
    assert boundary[0][blob].min() > 10 * boundary[0][near].max() > 0
    assert np.ptp(dice[0][blob | near]) < 1e-12  # Dice: one push for all of them


def test_cl_dice_gradient_reaches_the_missed_branches():
    truth, trunk = masks.pitfall_pair("thin branches", 64, amount=1)
    g = _batch(truth)
    p = masks.to_batch(masks.soften(trunk, 2, confidence=0.9)).astype(np.float64)
    _, grad = gradients.loss_and_gradient("cl_dice_loss", g, p)
    branches = (truth > 0) & (trunk == 0)
    assert grad[0][branches].mean() < 0  # pushed up where the centre line was missed


# --------------------------------------------- registry, Keras, code, oracle


def test_every_new_loss_is_registered_everywhere():
    for name in NEW:
        assert name in losses.LOSSES and name in losses.LOSS_CLASSES and name in LOSS_LABELS
        assert name in charts.LOSS_COLORS and name in losses.__all__
        accepted = losses.loss_keywords(losses.LOSSES[name])
        assert {"from_logits", "ignore_index"} <= set(accepted)
    colors = list(charts.LOSS_COLORS.values())
    assert len(set(colors)) == len(colors)  # a colour each
    assert Settings(loss="cl_dice_loss", cl_iterations=5).keywords()["iterations"] == 5
    assert Settings(loss="boundary_dice_loss").keywords()["boundary_weight"] == 0.01


@pytest.mark.parametrize("name", NEW)
def test_keras_class_round_trip_and_value(name):
    truth, pred = masks.pitfall_pair("far blob", 32)
    g = _batch(truth).astype(np.float32)
    p = masks.to_batch(masks.soften(pred, 2, confidence=0.8))
    cls = losses.LOSS_CLASSES[name]
    loss = cls(from_logits=False)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(again) is cls and again.get_config() == loss.get_config()
    assert float(again(g, p)) == pytest.approx(float(losses.LOSSES[name](g, p)), rel=1e-6)


def test_keywords_are_checked_with_a_sentence():
    with pytest.raises(ValueError, match="iterations must be a whole number from 0 to 100"):
        losses.cl_dice_loss(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)), iterations=2.5)
    with pytest.raises(ValueError, match="boundary_weight must be a finite number >= 0"):
        losses.BoundaryDiceLoss(boundary_weight=-1.0)


@pytest.mark.parametrize("name, keywords", [
    ("boundary_loss", {"ignore_index": 255}),
    ("boundary_dice_loss", {"boundary_weight": 0.2, "per_image": False}),
    ("cl_dice_loss", {"iterations": 4, "from_logits": True}),
    ("cl_dice_dice_loss", {"cl_dice_weight": 0.5, "include_background": False}),
])
def test_exported_tensorflow_code_and_the_oracle_give_the_library_value(name, keywords):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, (2, 9, 10))
    g = np.eye(3)[labels]
    p = np.exp(2 * g + rng.normal(size=g.shape))
    p /= p.sum(-1, keepdims=True)
    if "ignore_index" in keywords:
        g[0, :2, :3] = 255
    x = np.log(p) if keywords.get("from_logits") else p
    expected = float(losses.LOSSES[name](g, x, **keywords))
    namespace = {}
    exec(codegen.snippet("tensorflow", loss=name, **keywords), namespace)  # noqa: S102
    assert float(namespace["loss_fn"](g, x)) == pytest.approx(expected, rel=1e-10)
    assert float(getattr(reference, name)(g, x, **keywords)) == pytest.approx(expected,
                                                                            rel=1e-10)
    assert "torch.as_tensor" in codegen.snippet("pytorch", loss=name, **keywords) or \
        "soft_skeleton" in codegen.snippet("pytorch", loss=name, **keywords)


def test_the_formula_panel_substitutes_the_library_values():
    truth, pred = masks.pitfall_pair("thin branches", 64)
    g = masks.to_batch(masks.one_hot(truth, 2))
    p = masks.to_batch(masks.soften(pred, 2))
    settings = Settings(loss="boundary_loss")
    line = analysis.loss_formula(g, p, settings).substituted[-1]
    assert line.endswith(f"= {float(losses.boundary_loss(g, p)):.4f}")
    settings = Settings(loss="cl_dice_loss")
    line = analysis.loss_formula(g, p, settings).substituted[-1]
    score = 1 - float(losses.cl_dice_loss(g, p))
    assert line.endswith(rf"\mathrm{{clDice}} = {score:.4g}")
    assert "0 (perfect) to 1" in analysis.loss_range(settings)


# ------------------------------------------------------------------ in the app


def test_boundary_and_cl_dice_on_the_stage():
    at = _run(AppTest.from_file(APP, default_timeout=300))
    at.selectbox(key="loss").set_value("boundary_loss")
    at.selectbox(key="stage_compare").set_value("cl_dice_loss")
    _run(at)
    g = masks.shape_mask("circle", 256, radius=0.2)
    p = masks.soften(masks.shift(g, 0, 8), 2, confidence=0.9, blur_sigma=1.0)
    g, p = masks.to_batch(masks.one_hot(g, 2)), masks.to_batch(p)
    assert at.metric[0].label == "Boundary loss"
    assert at.metric[0].value == f"{float(losses.boundary_loss(g, p)):.6f}"
    captions = [image.proto.imgs[0].caption for image in at.get("image")]
    for name in ("boundary_loss", "cl_dice_loss"):
        value = gradients.loss_value(name, g, p)
        assert any(c.startswith(f"{LOSS_LABELS[name]} = {value:.6f}") for c in captions), name
