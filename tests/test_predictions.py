"""explorer.predictions: the edits that make a prediction from a label map, label smoothing,
hard labels back from probabilities, and a batch of pairs, with real numbers."""

import numpy as np
import pytest

from explorer import masks
from explorer.predictions import Edits, batch, hard_labels, truth

DISK = masks.shape_mask("circle", 64, radius=0.2)  # radius 12.8 px at the centre


def _centroid(labels):
    return np.argwhere(labels > 0).mean(0)


def test_a_shift_moves_the_centroid_by_the_shift():
    moved = Edits(dy=-3, dx=7).hard(DISK)
    assert moved.sum() == DISK.sum()  # nothing left the frame
    np.testing.assert_allclose(_centroid(moved) - _centroid(DISK), (-3, 7))


def test_grow_by_k_adds_a_ring_k_pixels_wide():
    for k in (1, 3):
        grown = Edits(grow=k).hard(DISK)
        ring = (grown > 0) & (DISK == 0)
        assert not np.any((grown == 0) & (DISK > 0))  # the disk is kept whole
        # every added pixel is within k of the disk, and the ring is about 2πr·k pixels
        distance = np.hypot(*(np.argwhere(ring) - _centroid(DISK)).T) - 12.8
        assert distance.max() <= k + 1
        assert ring.sum() == pytest.approx(2 * np.pi * 12.8 * k + np.pi * k * k, rel=0.15)


def test_shrink_by_k_takes_the_ring_back_off():
    shrunk = Edits(grow=-2).hard(DISK)
    assert not np.any((shrunk > 0) & (DISK == 0))
    assert (DISK.sum() - shrunk.sum()) == pytest.approx(2 * np.pi * 12.8 * 2 - np.pi * 4,
                                                        rel=0.15)


def test_invert_after_shift_and_grow():
    inverted = Edits(dx=4, invert=True).hard(DISK)
    np.testing.assert_array_equal(inverted, 1 - masks.shift(DISK, 0, 4))


def test_soften_and_apply():
    prob = Edits(confidence=0.8).apply(DISK, 2)
    assert prob.shape == (64, 64, 1)
    np.testing.assert_allclose(prob[DISK == 1], 0.8)
    np.testing.assert_allclose(prob[DISK == 0], 0.2, atol=1e-7)
    blurred = Edits(dx=2, blur=1.0).apply(DISK, 2)
    np.testing.assert_array_equal(blurred, masks.soften(masks.shift(DISK, 0, 2), 2,
                                                        confidence=0.9, blur_sigma=1.0))
    assert Edits().apply(DISK * 2, 3).shape == (64, 64, 3)


def test_label_smoothing_is_g_times_one_minus_a_plus_a_over_k():
    binary = truth(DISK, 2, label_smoothing=0.2)
    assert binary.shape == (64, 64, 1)
    np.testing.assert_allclose(binary[DISK == 1], 0.9)
    np.testing.assert_allclose(binary[DISK == 0], 0.1)
    three = truth(DISK * 2, 3, label_smoothing=0.3)
    np.testing.assert_allclose(three[DISK == 1][:, 2], 0.8)  # 0.7 + 0.1
    np.testing.assert_allclose(three[DISK == 1][:, :2], 0.1)
    np.testing.assert_allclose(three.sum(-1), 1, atol=1e-6)
    np.testing.assert_array_equal(truth(DISK, 2), masks.one_hot(DISK, 2))


def test_hard_labels_threshold_one_channel_and_argmax_several():
    prob = np.array([[0.49, 0.5], [0.51, 0.0]], np.float32)[..., None]
    np.testing.assert_array_equal(hard_labels(prob), [[0, 1], [1, 0]])
    softmax = masks.soften(DISK * 2, 3, confidence=0.7)
    np.testing.assert_array_equal(hard_labels(softmax), DISK * 2)


def test_a_batch_is_the_pair_then_the_truths_edited_alike_then_an_empty_image():
    current = (masks.one_hot(DISK, 2), Edits().apply(DISK, 2))
    square = masks.shape_mask("square", 128, radius=0.1, label=2)  # resized to 64, class 2
    edits = Edits(dx=3, confidence=0.8)
    got = batch(current, {"square": square}, edits, 2, add_empty=True)
    assert got.names == ["current", "square", "empty"]
    assert got.truth.shape == got.pred.shape == (3, 64, 64, 1)
    small = masks.resize_labels(square > 0, (64, 64))
    np.testing.assert_array_equal(got.truth[1], masks.one_hot(small, 2))
    np.testing.assert_array_equal(got.pred[1], edits.apply(small, 2))
    assert got.truth[2].sum() == 0 and got.pred[2].sum() == 0  # confidence 1: exact zeros
    assert batch(current, {}, edits, 2, add_empty=False).names == ["current"]
