"""explorer.metrics against hand-worked cases and an independent brute-force oracle.

The oracle below finds boundaries by looking at each pixel's face neighbours, measures
every pairwise distance with ``cdist``, counts components by breadth-first search and bins
calibration pixel by pixel: none of it shares code with the library. The expected numbers
in the hand-worked tests come from the working written beside them.
"""
import itertools
import math
from collections import deque

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from skimage.morphology import skeletonize

from explorer import metrics as m

nan, inf = math.nan, math.inf


# ------------------------------------------------------------------------ oracle

def oracle_boundary(mask):
    """Mask pixels with a face neighbour outside the mask or outside the array."""
    mask = np.asarray(mask, dtype=bool)
    points = []
    for index in np.ndindex(mask.shape):
        if not mask[index]:
            continue
        for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
            j = list(index)
            j[axis] += step
            if not 0 <= j[axis] < mask.shape[axis] or not mask[tuple(j)]:
                points.append(index)
                break
    return points


def oracle_directed(from_mask, to_mask, spacing):
    a = np.array(oracle_boundary(from_mask), dtype=float).reshape(-1, np.ndim(from_mask))
    b = np.array(oracle_boundary(to_mask), dtype=float).reshape(-1, np.ndim(to_mask))
    return cdist(a * spacing, b * spacing).min(axis=1)


def oracle_surface(truth, pred, spacing):
    """(pred -> truth, truth -> pred) distances; both masks non-empty."""
    spacing = np.ones(np.ndim(truth)) if spacing is None else np.asarray(spacing, dtype=float)
    return oracle_directed(pred, truth, spacing), oracle_directed(truth, pred, spacing)


def oracle_hd(truth, pred, q, spacing=None):
    return max(np.percentile(d, q) for d in oracle_surface(truth, pred, spacing))


def oracle_asd(truth, pred, symmetric, spacing=None):
    pt, tp = oracle_surface(truth, pred, spacing)
    return (pt.sum() + tp.sum()) / (pt.size + tp.size) if symmetric else pt.mean()


def oracle_nsd(truth, pred, tau, spacing=None):
    pt, tp = oracle_surface(truth, pred, spacing)
    return (np.sum(pt <= tau) + np.sum(tp <= tau)) / (pt.size + tp.size)


def oracle_components(mask):
    """Connected components (all 3^n - 1 neighbours) as sets of pixel indices."""
    mask = np.asarray(mask, dtype=bool)
    seen, found = set(), []
    steps = [s for s in itertools.product((-1, 0, 1), repeat=mask.ndim) if any(s)]
    for start in zip(*np.nonzero(mask)):
        if start in seen:
            continue
        component, queue = {start}, deque([start])
        seen.add(start)
        while queue:
            here = queue.popleft()
            for step in steps:
                there = tuple(int(h + s) for h, s in zip(here, step))
                if all(0 <= t < n for t, n in zip(there, mask.shape)) and mask[there] \
                        and there not in seen:
                    seen.add(there)
                    component.add(there)
                    queue.append(there)
        found.append({tuple(int(v) for v in c) for c in component})
    return found


def oracle_lesions(truth, pred):
    lesions, blobs = oracle_components(truth), oracle_components(pred)
    tp = sum(1 for lesion in lesions if any(lesion & blob for blob in blobs))
    touching = sum(1 for blob in blobs if any(blob & lesion for lesion in lesions))
    return {"tp": tp, "fn": len(lesions) - tp, "fp": len(blobs) - touching}


def oracle_ece(truth, prob, bins):
    totals = [[0, 0.0, 0.0] for _ in range(bins)]  # count, sum of confidence, sum right
    for g, p in zip(np.ravel(truth), np.ravel(prob)):
        confidence = max(p, 1 - p)
        b = next(i for i in range(bins) if confidence <= (i + 1) / bins or i == bins - 1)
        totals[b][0] += 1
        totals[b][1] += confidence
        totals[b][2] += float((p >= 0.5) == bool(g))
    n = np.size(truth)
    return sum(c / n * abs(right / c - conf / c) for c, conf, right in totals if c)


def square(shape, rows, cols):
    a = np.zeros(shape, dtype=bool)
    a[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return a


def points(mask):
    return sorted(map(tuple, np.argwhere(mask).tolist()))


# ------------------------------------------------------------------------ hand-worked: 2-D

# truth: the 3x3 square rows 2-4, cols 2-4 of a 7x7 image; boundary = the 8 pixels around
# its centre (3, 3). pred: the same square one column to the right (cols 3-5), centre (3, 4).
TRUTH_SQ = square((7, 7), (2, 4), (2, 4))
PRED_RIGHT = square((7, 7), (2, 4), (3, 5))


def test_boundary_of_a_square_is_the_ring_around_its_centre():
    ring = [(r, c) for r in (2, 3, 4) for c in (2, 3, 4) if (r, c) != (3, 3)]
    assert points(m.boundary(TRUTH_SQ)) == ring
    assert sorted(oracle_boundary(TRUTH_SQ)) == ring


def test_square_shifted_one_pixel_hand_worked():
    # pred -> truth: (2,3) (2,4) (4,3) (4,4) lie on the truth ring: 0; (2,5) (3,5) (4,5) are one
    # column off the ring: 1; (3,3) is the truth's centre, not its boundary: 1 to (2,3).
    # truth -> pred mirrors it: (2,2) (3,2) (4,2) and the pred centre (3,4) at 1, the rest 0.
    # Each direction: four 0s and four 1s.
    pt, tp = m.surface_distances(TRUTH_SQ, PRED_RIGHT)
    assert sorted(pt) == sorted(tp) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert m.hausdorff_distance(TRUTH_SQ, PRED_RIGHT) == 1.0
    assert m.hausdorff_distance(TRUTH_SQ, PRED_RIGHT, percentile=95) == 1.0  # 6.65th of 0..7
    assert m.hausdorff_distance(TRUTH_SQ, PRED_RIGHT, percentile=50) == pytest.approx(0.5)
    assert m.hausdorff_distance(TRUTH_SQ, PRED_RIGHT, percentile=55) == pytest.approx(0.85)
    assert m.hausdorff_distance(TRUTH_SQ, PRED_RIGHT, percentile=40) == 0.0  # 2.8th: 0 and 0
    assert m.average_surface_distance(TRUTH_SQ, PRED_RIGHT) == 0.5  # (4 + 4) / 16
    assert m.average_surface_distance(TRUTH_SQ, PRED_RIGHT, symmetric=False) == 0.5  # 4 / 8
    assert m.surface_dice(TRUTH_SQ, PRED_RIGHT, tolerance=1) == 1.0  # 16 / 16
    assert m.surface_dice(TRUTH_SQ, PRED_RIGHT, tolerance=0.5) == 0.5  # 8 / 16
    assert m.surface_dice(TRUTH_SQ, PRED_RIGHT, tolerance=0) == 0.5  # exact hits count


def test_square_shifted_along_the_coarse_axis_anisotropic_2d():
    # pred one row down (rows 3-5), spacing (2, 1): a row step is 2 units, a column step 1.
    # pred -> truth, pred boundary = rows 3-5 minus its centre (4, 3):
    #   (3,2) 0  (3,3) truth centre: 1 to (3,2)  (3,4) 0  (4,2) 0  (4,4) 0  (5,2) (5,3) (5,4) 2
    # truth -> pred mirrors: (2,2) (2,3) (2,4) 2, (4,3) pred centre: 1, the rest 0.
    pred = square((7, 7), (3, 5), (2, 4))
    pt, tp = m.surface_distances(TRUTH_SQ, pred, spacing=(2, 1))
    assert sorted(pt) == sorted(tp) == [0, 0, 0, 0, 1, 2, 2, 2]
    assert m.hausdorff_distance(TRUTH_SQ, pred, spacing=(2, 1)) == 2.0
    assert m.hausdorff_distance(TRUTH_SQ, pred, percentile=95, spacing=(2, 1)) == 2.0
    assert m.hausdorff_distance(TRUTH_SQ, pred, percentile=60, spacing=(2, 1)) == pytest.approx(1.2)
    assert m.hausdorff_distance(TRUTH_SQ, pred, percentile=50, spacing=(2, 1)) == pytest.approx(0.5)
    assert m.average_surface_distance(TRUTH_SQ, pred, spacing=(2, 1)) == 14 / 16
    assert m.surface_dice(TRUTH_SQ, pred, tolerance=1, spacing=(2, 1)) == 10 / 16
    assert m.surface_dice(TRUTH_SQ, pred, tolerance=2, spacing=(2, 1)) == 1.0
    # isotropic, the same shift is the column shift turned by 90 degrees
    assert m.average_surface_distance(TRUTH_SQ, pred) == 0.5
    assert m.average_surface_distance(TRUTH_SQ, pred, spacing=1.0) == 0.5


def test_one_pixel_masks_are_their_own_boundary():
    truth, pred = square((5, 6), (2, 2), (2, 2)), square((5, 6), (2, 2), (4, 4))
    assert points(m.boundary(truth)) == [(2, 2)]
    spacing = (1, 0.5)  # two columns of 0.5: distance 1
    assert m.hausdorff_distance(truth, pred, spacing=spacing) == 1.0
    assert m.average_surface_distance(truth, pred, spacing=spacing) == 1.0
    assert m.surface_dice(truth, pred, tolerance=1, spacing=spacing) == 1.0
    assert m.surface_dice(truth, pred, tolerance=0.99, spacing=spacing) == 0.0
    assert m.hausdorff_distance(truth, truth) == 0.0


def test_masks_touching_the_array_edge_have_boundary_there():
    # truth fills the 3x3 image: the array edge is background, so its boundary is the ring of 8
    # (not empty, as it would be if the outside counted as mask). pred: the top-left 2x2.
    # pred -> truth: (0,0) (0,1) (1,0) on the ring: 0; (1,1) the truth centre: 1.   -> 0 0 0 1
    # truth -> pred: (0,0) (0,1) (1,0): 0; (0,2) (1,2) (2,0) (2,1): 1; (2,2): sqrt 2.
    truth, pred = np.ones((3, 3), dtype=bool), square((3, 3), (0, 1), (0, 1))
    ring = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
    assert points(m.boundary(truth)) == ring
    assert points(m.boundary(pred)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert m.hausdorff_distance(truth, pred) == pytest.approx(math.sqrt(2))
    assert m.hausdorff_distance(truth, pred, percentile=50) == 1.0  # truth side: 3.5th of 8 -> 1
    assert m.average_surface_distance(truth, pred) == pytest.approx((5 + math.sqrt(2)) / 12)
    assert m.average_surface_distance(truth, pred, symmetric=False) == 0.25  # 1 / 4
    assert m.surface_dice(truth, pred, tolerance=1) == 11 / 12


# ------------------------------------------------------------------------ hand-worked: 3-D

CUBE = np.zeros((5, 5, 5), dtype=bool)
CUBE[1:4, 1:4, 1:4] = True  # boundary: 26 voxels, all but the centre (2, 2, 2)
CUBE_UP = np.roll(CUBE, 1, axis=0)  # slices 2-4, centre (3, 2, 2)


def test_cube_shifted_one_thick_slice_anisotropic_3d():
    # spacing (3, 1, 1): slices 3 units apart. pred -> truth over the pred's 26 boundary voxels:
    #   slice 2 (its bottom face, 9 voxels): 8 on the truth boundary: 0; (2,2,2) the truth
    #     centre: 1 (in-plane neighbour);
    #   slice 3 (8 voxels, the pred centre left out): all on the truth's top face: 0;
    #   slice 4 (9 voxels): the truth's top face is one slice below: 3.
    # -> sixteen 0s, one 1, nine 3s (sum 28); truth -> pred mirrors it.
    spacing = (3, 1, 1)
    pt, tp = m.surface_distances(CUBE, CUBE_UP, spacing=spacing)
    assert sorted(pt) == sorted(tp) == [0] * 16 + [1] + [3] * 9
    assert m.hausdorff_distance(CUBE, CUBE_UP, spacing=spacing) == 3.0
    assert m.hausdorff_distance(CUBE, CUBE_UP, percentile=95, spacing=spacing) == 3.0
    assert m.hausdorff_distance(CUBE, CUBE_UP, percentile=64, spacing=spacing) == pytest.approx(1.0)
    assert m.hausdorff_distance(CUBE, CUBE_UP, percentile=66, spacing=spacing) == pytest.approx(2.0)
    assert m.average_surface_distance(CUBE, CUBE_UP, spacing=spacing) == pytest.approx(56 / 52)
    assert m.surface_dice(CUBE, CUBE_UP, tolerance=1, spacing=spacing) == 34 / 52
    assert m.surface_dice(CUBE, CUBE_UP, tolerance=3, spacing=spacing) == 1.0
    # isotropic: the nine 3s become 1s, which with the centre's 1 is ten 1s a side
    assert m.hausdorff_distance(CUBE, CUBE_UP) == 1.0
    assert m.average_surface_distance(CUBE, CUBE_UP) == pytest.approx(20 / 52)
    assert m.surface_dice(CUBE, CUBE_UP, tolerance=1) == 1.0


def test_one_voxel_masks_in_3d_anisotropic():
    truth, pred = np.zeros((3, 3, 3), dtype=bool), np.zeros((3, 3, 3), dtype=bool)
    truth[0, 1, 1] = pred[2, 1, 1] = True  # two slices of 3: distance 6
    assert m.hausdorff_distance(truth, pred, spacing=(3, 1, 1)) == 6.0
    pred[:] = False
    pred[1, 0, 0] = True  # one slice and a diagonal step: sqrt(9 + 1 + 1)
    assert m.average_surface_distance(truth, pred, spacing=(3, 1, 1)) == \
        pytest.approx(math.sqrt(11))


# ------------------------------------------------------------------------ against MONAI

MONAI_2D = ("""
..##.#.#..
....#.##..
#.....#.#.
#.########
.#.#.##.#.
...#.#..#.
...####.#.
.#######.#""", """
..#....#..
......#..#
..##....##
.....##...
..#....#.#
...#.#....
####.#.#.#
#.#....#.#""")
MONAI_3D = ("""
.#.#.# ....#. #...## .##.#.
.#.##. .#.#.. ..#.## ##.##.
..##.. .#..#. .#...# ##.#..
.#.### ...#.. ##..#. ...###
.##..# .###.. .#...# #.#.#.""", """
###..# #.##.# #..#.. ......
#....# #.#### ##..## ......
#.##.# ##.### .#.### ##...#
..#..# ...#.. .#.### .####.
...#.. ####.. ###..# ##.##.""")


def parse(text):
    rows = [row.split() for row in text.strip().splitlines()]
    grid = np.array([[[c == "#" for c in cell] for cell in row] for row in rows])
    return grid[:, 0] if grid.shape[1] == 1 else grid.transpose(1, 0, 2)  # -> [D, H, W]


# What MONAI 1.6.1 returned on these masks (float32): compute_hausdorff_distance,
# compute_average_surface_distance and compute_surface_dice with y_pred = pred, y = truth,
# include_background=True and the spacing given.
@pytest.mark.parametrize("masks, spacing, expected", [
    (MONAI_2D, (1.5, 0.7), {"hd": 2.051828384399414, "hd95": 1.5310590267181396,
                            "asd": 0.6676574349403381, "asd_pred": 0.5521267056465149,
                            "nsd1": 0.7301587462425232, "nsd1.5": 0.9523809552192688}),
    (MONAI_3D, (3.0, 1.0, 1.0), {"hd": 2.2360680103302, "hd95": 2.0,
                                 "asd": 0.5909792184829712, "asd_pred": 0.5913289785385132,
                                 "nsd1": 0.9035087823867798, "nsd1.5": 0.9649122953414917}),
])
def test_agrees_with_values_monai_returned(masks, spacing, expected):
    truth, pred = parse(masks[0]), parse(masks[1])
    assert truth.ndim == len(spacing)
    ours = {"hd": m.hausdorff_distance(truth, pred, spacing=spacing),
            "hd95": m.hausdorff_distance(truth, pred, percentile=95, spacing=spacing),
            "asd": m.average_surface_distance(truth, pred, spacing=spacing),
            "asd_pred": m.average_surface_distance(truth, pred, symmetric=False, spacing=spacing),
            "nsd1": m.surface_dice(truth, pred, tolerance=1.0, spacing=spacing),
            "nsd1.5": m.surface_dice(truth, pred, tolerance=1.5, spacing=spacing)}
    assert ours == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------ against the oracle

def random_pairs():
    rng = np.random.default_rng(7)
    for shape in [(6, 9), (9, 7), (4, 5, 6), (3, 6, 5)]:
        for density in (0.25, 0.6, 0.9):
            spacing = rng.uniform(0.4, 3.0, len(shape)).round(2)
            yield rng.random(shape) < density, rng.random(shape) < density, tuple(spacing)


@pytest.mark.parametrize("truth, pred, spacing", list(random_pairs()))
def test_surface_metrics_match_the_oracle(truth, pred, spacing):
    assert truth.any() and pred.any()  # the oracle measures non-empty masks
    for q in (0, 37.5, 95, 100):
        assert m.hausdorff_distance(truth, pred, percentile=q, spacing=spacing) == \
            pytest.approx(oracle_hd(truth, pred, q, spacing))
    for symmetric in (True, False):
        assert m.average_surface_distance(truth, pred, symmetric=symmetric, spacing=spacing) == \
            pytest.approx(oracle_asd(truth, pred, symmetric, spacing))
    for tau in (0.0, 0.8, 1.7, 3.1):
        assert m.surface_dice(truth, pred, tolerance=tau, spacing=spacing) == \
            pytest.approx(oracle_nsd(truth, pred, tau, spacing))
    assert points(m.boundary(truth)) == sorted(oracle_boundary(truth))
    lesions = m.lesion_detection(truth, pred)
    assert {k: lesions[k] for k in ("tp", "fn", "fp")} == oracle_lesions(truth, pred)


def test_a_distance_equal_to_the_tolerance_counts_despite_rounding():
    # 5 columns of 0.58 are 2.9000000000000004 in floats; "within 2.9" must include them
    truth, pred = square((1, 7), (0, 0), (0, 0)), square((1, 7), (0, 0), (5, 5))
    assert m.surface_dice(truth, pred, tolerance=2.9, spacing=(1, 0.58)) == 1.0
    assert m.surface_dice(truth, pred, tolerance=2.89, spacing=(1, 0.58)) == 0.0


# ------------------------------------------------------------------------ empty masks

EMPTY_2D, EMPTY_3D = np.zeros((7, 7), dtype=bool), np.zeros((5, 5, 5), dtype=bool)


@pytest.mark.parametrize("mask, empty", [(TRUTH_SQ, EMPTY_2D), (CUBE, EMPTY_3D)])
def test_empty_masks_score_as_monai_does_without_warning_or_raising(mask, empty, recwarn):
    for truth, pred, kind in [(empty, empty, "both_empty"), (empty, mask, "empty_truth"),
                              (mask, empty, "empty_prediction")]:
        one_empty = kind != "both_empty"
        for q in (100, 95, 0):
            hd = m.hausdorff_distance(truth, pred, percentile=q, spacing=0.5)
            assert hd == inf if one_empty else math.isnan(hd)
        for symmetric in (True, False):
            asd = m.average_surface_distance(truth, pred, symmetric=symmetric)
            assert asd == inf if one_empty else math.isnan(asd)
        nsd = m.surface_dice(truth, pred, tolerance=2)
        assert nsd == 0.0 if one_empty else math.isnan(nsd)
        for metric in ("hausdorff_distance", "average_surface_distance", "surface_dice"):
            why = m.degenerate_reason(metric, truth, pred)
            assert (why.metric, why.kind) == (metric, kind)
            assert ("inf" if one_empty and metric != "surface_dice" else
                    "0" if one_empty else "nan") in why.message
    assert not recwarn.list


def test_degenerate_reason_is_none_for_ordinary_masks():
    for metric in m.DEGENERATE_METRICS:
        assert m.degenerate_reason(metric, TRUTH_SQ, PRED_RIGHT) is None


def test_degenerate_reason_rejects_an_unknown_metric():
    with pytest.raises(ValueError, match="metric must be one of"):
        m.degenerate_reason("dice", TRUTH_SQ, PRED_RIGHT)


# ------------------------------------------------------------------------ lesions

def dots(shape, *where):
    a = np.zeros(shape, dtype=bool)
    for w in where:
        a[w] = True
    return a


def test_one_prediction_merging_three_lesions_finds_all_three():
    truth = dots((3, 9), (1, 1), (1, 4), (1, 7))
    pred = square((3, 9), (1, 1), (0, 8))  # one bar over all three
    assert m.lesion_detection(truth, pred) == {"tp": 3, "fp": 0, "fn": 0, "recall": 1.0,
                                               "precision": 1.0, "f1": 1.0}


def test_one_lesion_split_into_two_predictions_is_one_hit_and_no_false_positive():
    truth = square((3, 9), (1, 1), (1, 7))
    pred = dots((3, 9), (1, 2), (1, 6))
    assert m.lesion_detection(truth, pred) == {"tp": 1, "fp": 0, "fn": 0, "recall": 1.0,
                                               "precision": 1.0, "f1": 1.0}


def test_a_false_positive_blob_halves_precision():
    truth = square((8, 8), (0, 1), (0, 1))
    pred = truth | dots((8, 8), (6, 6))
    # recall 1/1, precision 1/2 (two predicted blobs, one touches a lesion): f1 = 2 * .5 / 1.5
    assert m.lesion_detection(truth, pred) == pytest.approx(
        {"tp": 1, "fp": 1, "fn": 0, "recall": 1.0, "precision": 0.5, "f1": 2 / 3})


def test_many_missed_lesions_and_a_false_positive():
    truth = dots((5, 9), (0, 0), (0, 4), (0, 8))
    pred = dots((5, 9), (0, 0), (4, 4))
    # recall 1/3, precision 1/2, f1 = 2 (1/6) / (5/6) = 0.4
    assert m.lesion_detection(truth, pred) == pytest.approx(
        {"tp": 1, "fp": 1, "fn": 2, "recall": 1 / 3, "precision": 0.5, "f1": 0.4})


def test_diagonal_neighbours_are_one_component():
    truth = dots((4, 4), (0, 0), (1, 1))  # 8-connected: one lesion
    assert m.lesion_detection(truth, dots((4, 4), (0, 0)))["fn"] == 0
    assert m.lesion_detection(truth, dots((4, 4), (2, 2), (3, 3)))["fp"] == 1  # one blob, not two
    corner = dots((3, 3, 3), (0, 0, 0), (1, 1, 1), (2, 2, 2))  # 26-connected through corners
    assert m.lesion_detection(corner, dots((3, 3, 3), (2, 2, 2))) == {
        "tp": 1, "fp": 0, "fn": 0, "recall": 1.0, "precision": 1.0, "f1": 1.0}


def test_lesion_detection_on_empty_masks():
    lesion = dots((4, 4), (1, 1))
    empty = np.zeros((4, 4))
    both = m.lesion_detection(empty, empty)
    assert (both["tp"], both["fp"], both["fn"]) == (0, 0, 0)
    assert all(math.isnan(both[k]) for k in ("recall", "precision", "f1"))
    no_truth = m.lesion_detection(empty, lesion)
    assert (no_truth["fp"], no_truth["precision"], no_truth["f1"]) == (1, 0.0, 0.0)
    assert math.isnan(no_truth["recall"])
    no_pred = m.lesion_detection(lesion, empty)
    assert (no_pred["fn"], no_pred["recall"], no_pred["f1"]) == (1, 0.0, 0.0)
    assert math.isnan(no_pred["precision"])
    assert m.degenerate_reason("lesion_detection", empty, lesion).kind == "empty_truth"
    assert "recall is 0/0" in m.degenerate_reason("lesion_detection", empty, lesion).message


# ------------------------------------------------------------------------ clDice

LINE = square((5, 11), (2, 2), (1, 9))  # a one-pixel-thick line, 9 pixels


def test_a_thin_line_is_its_own_skeleton():
    # the hand values below rest on this
    assert np.array_equal(skeletonize(LINE), LINE)
    broken = LINE.copy()
    broken[2, 5] = False
    assert np.array_equal(skeletonize(broken), broken)


def test_cl_dice_of_a_line_broken_in_two():
    broken = LINE.copy()
    broken[2, 5] = False
    assert m.cl_dice(LINE, LINE) == 1.0
    # Tprec = |S(pred) & truth| / |S(pred)| = 8/8, Tsens = |S(truth) & pred| / |S(truth)| = 8/9,
    # clDice = 2 (8/9) / (17/9) = 16/17
    assert m.cl_dice(LINE, broken) == pytest.approx(16 / 17)
    gap = LINE.copy()
    gap[2, 4:7] = False  # Tsens = 6/9, clDice = 2 (2/3) / (5/3) = 0.8
    assert m.cl_dice(LINE, gap) == pytest.approx(0.8)
    spur = LINE | square((5, 11), (3, 4), (5, 5))  # two extra pixels off the line
    # S(pred) = pred (11), 9 in the truth: Tprec = 9/11, Tsens = 1; clDice = 2 (9/11) / (20/11)
    assert np.array_equal(skeletonize(spur), spur)
    assert m.cl_dice(LINE, spur) == pytest.approx(0.9)


def test_cl_dice_in_3d_on_a_broken_tube_axis():
    line = np.zeros((3, 3, 9), dtype=bool)
    line[1, 1, 1:8] = True  # 7 voxels
    broken = line.copy()
    broken[1, 1, 4] = False
    assert m.cl_dice(line, line) == 1.0
    assert m.cl_dice(line, broken) == pytest.approx(2 * (6 / 7) / (13 / 7))  # 12/13


def test_cl_dice_empty_cases():
    empty = np.zeros_like(LINE)
    assert math.isnan(m.cl_dice(empty, empty))
    assert m.cl_dice(empty, LINE) == 0.0
    assert m.cl_dice(LINE, empty) == 0.0
    assert m.degenerate_reason("cl_dice", empty, empty).kind == "both_empty"
    assert m.degenerate_reason("cl_dice", LINE, empty).kind == "empty_prediction"
    # skeletonize erases a 2x2x2 cube: a non-empty prediction with no centerline
    cube = np.zeros((4, 4, 4), dtype=bool)
    cube[1:3, 1:3, 1:3] = True
    assert not skeletonize(cube).any()
    tube = np.zeros((4, 4, 4), dtype=bool)
    tube[1, 1, :] = True  # Tsens = 2/4 of the tube's centre line lies in the cube
    assert math.isnan(m.cl_dice(tube, cube))
    why = m.degenerate_reason("cl_dice", tube, cube)
    assert why.kind == "empty_skeleton" and "prediction's skeleton is empty" in why.message


# ------------------------------------------------------------------------ calibration

def test_perfectly_calibrated_pixels_have_zero_ece():
    # 10 pixels at p = 0.8 with 8 foreground (confidence 0.8, right 8/10); 10 at p = 0.3 with
    # 3 foreground (predicted background with confidence 0.7, right 7/10)
    prob = np.array([0.8] * 10 + [0.3] * 10).reshape(4, 5)
    truth = np.array([1] * 8 + [0] * 2 + [1] * 3 + [0] * 7).reshape(4, 5)
    result = m.expected_calibration_error(truth, prob)
    assert result.ece == pytest.approx(0.0, abs=1e-12)
    filled = result.count > 0
    assert result.count.sum() == 20 and filled.sum() == 2
    assert sorted(result.confidence[filled]) == pytest.approx([0.7, 0.8])
    assert np.allclose(result.confidence[filled], result.accuracy[filled])


def test_overconfident_pixels_hand_worked():
    # p = 0.95 on 10 pixels, 6 foreground: confidence 0.95, right 0.6, gap 0.35 (bin (0.9, 1])
    # p = 0.15 on 10 pixels, 3 foreground: confidence 0.85, right 0.7, gap 0.15 (bin (0.8, 0.9])
    # ECE = (10 * 0.35 + 10 * 0.15) / 20 = 0.25
    prob = np.array([0.95] * 10 + [0.15] * 10).reshape(4, 5)
    truth = np.array([1] * 6 + [0] * 4 + [1] * 3 + [0] * 7).reshape(4, 5)
    result = m.expected_calibration_error(truth, prob)
    assert result.ece == pytest.approx(0.25)
    assert list(result.count) == [0] * 8 + [10, 10]
    assert result.confidence[8:] == pytest.approx([0.85, 0.95])
    assert result.accuracy[8:] == pytest.approx([0.7, 0.6])
    assert np.isnan(result.confidence[:8]).all() and np.isnan(result.accuracy[:8]).all()
    assert result.edges == pytest.approx(np.linspace(0, 1, 11))
    assert m.expected_calibration_error(truth, prob, bins=1).ece == pytest.approx(0.25)


def test_a_half_probability_predicts_foreground():
    # confidence 0.5; predicted foreground, so right where the truth is 1
    assert m.expected_calibration_error([[1, 1]], [[0.5, 0.5]]).ece == 0.5
    assert m.expected_calibration_error([[0, 0]], [[0.5, 0.5]]).ece == 0.5
    assert m.expected_calibration_error([[1, 0]], [[0.5, 0.5]]).ece == 0.0
    # beside a confident pixel the tie matters: right 2/2 vs confidence (0.5 + 0.9) / 2
    assert m.expected_calibration_error([[1, 1]], [[0.5, 0.9]], bins=1).ece == pytest.approx(0.3)


def test_bins_are_closed_on_the_right_as_in_guo_et_al():
    # confidences 0.5, 0.75 and 1 with 4 bins: (0.25, 0.5], (0.5, 0.75], (0.75, 1]
    result = m.expected_calibration_error([[1, 1, 1]], [[0.5, 0.75, 1.0]], bins=4)
    assert list(result.count) == [0, 1, 1, 1]


@pytest.mark.parametrize("bins", [1, 3, 10, 15])
def test_ece_matches_the_oracle(bins):
    rng = np.random.default_rng(bins)
    prob = rng.random((6, 7))
    truth = rng.random((6, 7)) < prob ** 2
    assert m.expected_calibration_error(truth, prob, bins=bins).ece == \
        pytest.approx(oracle_ece(truth, prob, bins))


# ------------------------------------------------------------------------ input checks

@pytest.mark.parametrize("call, message", [
    (lambda: m.hausdorff_distance(np.zeros((3, 3)), np.zeros((3, 4))), "same shape"),
    (lambda: m.hausdorff_distance(np.zeros(3), np.zeros(3)), r"2-D \[H, W\] or 3-D"),
    (lambda: m.cl_dice(np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 4))), r"2-D \[H, W\] or 3-D"),
    (lambda: m.surface_dice(np.zeros((0, 3)), np.zeros((0, 3)), tolerance=1), "at least one pixel"),
    (lambda: m.lesion_detection(np.full((3, 3), 0.5), np.zeros((3, 3))), "binary"),
    (lambda: m.lesion_detection(np.zeros((3, 3)), np.full((3, 3), 2)), "binary"),
    (lambda: m.lesion_detection(np.zeros((3, 3)), np.full((3, 3), np.nan)), "binary"),
    (lambda: m.cl_dice(np.array([["a", "b"]]), np.zeros((1, 2))), "binary"),
    (lambda: m.hausdorff_distance(TRUTH_SQ, TRUTH_SQ, spacing=(1, 1, 1)),
     "spacing must be one number or 2"),
    (lambda: m.hausdorff_distance(CUBE, CUBE, spacing=(1, 1)), "spacing must be one number or 3"),
    (lambda: m.hausdorff_distance(TRUTH_SQ, TRUTH_SQ, spacing=(1, 0)), "finite and > 0"),
    (lambda: m.average_surface_distance(TRUTH_SQ, TRUTH_SQ, spacing=-1), "finite and > 0"),
    (lambda: m.surface_dice(TRUTH_SQ, TRUTH_SQ, tolerance=1, spacing=(1, np.nan)),
     "finite and > 0"),
    (lambda: m.surface_dice(TRUTH_SQ, TRUTH_SQ, tolerance=1, spacing="1mm"), "spacing must be"),
    (lambda: m.hausdorff_distance(TRUTH_SQ, TRUTH_SQ, percentile=101), "percentile must be"),
    (lambda: m.hausdorff_distance(TRUTH_SQ, TRUTH_SQ, percentile=-1), "between 0 and 100"),
    (lambda: m.hausdorff_distance(TRUTH_SQ, TRUTH_SQ, percentile=np.nan), "percentile must be"),
    (lambda: m.hausdorff_distance(TRUTH_SQ, TRUTH_SQ, percentile=True), "percentile must be"),
    (lambda: m.surface_dice(TRUTH_SQ, TRUTH_SQ, tolerance=-0.1), "tolerance must be"),
    (lambda: m.surface_dice(TRUTH_SQ, TRUTH_SQ, tolerance=inf), "tolerance must be"),
    (lambda: m.average_surface_distance(TRUTH_SQ, TRUTH_SQ, symmetric="yes"), "symmetric must be"),
    (lambda: m.expected_calibration_error(TRUTH_SQ, np.zeros((7, 6))), "same shape"),
    (lambda: m.expected_calibration_error(TRUTH_SQ, np.full((7, 7), 1.5)), r"in \[0, 1\]"),
    (lambda: m.expected_calibration_error(TRUTH_SQ, np.full((7, 7), np.nan)), r"in \[0, 1\]"),
    (lambda: m.expected_calibration_error(TRUTH_SQ, np.zeros((7, 7)), bins=0), "bins must be"),
    (lambda: m.expected_calibration_error(TRUTH_SQ, np.zeros((7, 7)), bins=2.5), "bins must be"),
    (lambda: m.expected_calibration_error(TRUTH_SQ, np.zeros((7, 7)), bins=True), "bins must be"),
])
def test_bad_input_is_one_sentence(call, message):
    with pytest.raises(ValueError, match=message) as caught:
        call()
    text = str(caught.value)
    assert text.count(". ") == 0 and "\n" not in text


def test_masks_may_be_bool_int_float_or_lists():
    expected = m.average_surface_distance(TRUTH_SQ, PRED_RIGHT)
    assert m.average_surface_distance(TRUTH_SQ.astype(int), PRED_RIGHT.astype(float)) == expected
    assert m.average_surface_distance(TRUTH_SQ.tolist(), PRED_RIGHT.astype(np.uint8)) == expected
    assert m.hausdorff_distance(TRUTH_SQ, PRED_RIGHT, percentile=np.float32(50)) == \
        pytest.approx(0.5)
    assert m.surface_dice(CUBE, CUBE_UP, tolerance=1, spacing=np.array([3, 1, 1])) == 34 / 52
