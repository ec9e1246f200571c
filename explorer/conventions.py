"""What other libraries call "Dice loss", evaluated on the current masks by this library.

"Dice loss" gives different numbers in MONAI, segmentation_models_pytorch and Keras on
the same masks because the libraries disagree on smoothing, on the reduction (per image
or whole batch), on whether classes are pooled, and on classes missing from the truth.
:func:`translate` maps each library's default ``DiceLoss`` onto ``explorer.losses``
keywords (smp's zero loss for a class absent from the truth is ``empty="zero"``; a named
extra step only where our ``dice_loss`` has no keyword: pooling the channels, smp's
denominator floor), computes its value on the given masks with ``explorer.losses``, and
says in a sentence or two why it differs, for these masks.

Checked against the sources (MONAI 1.6.1 ``monai/losses/dice.py`` and ``utils.py``;
segmentation_models_pytorch 0.6.0 ``losses/dice.py`` and ``_functional.py``; Keras 3
``keras/src/losses/losses.py`` ``dice``; segmentation_models 1.0.1
``base/functional.py`` ``f_score``; the seed snippets 000 and 001), in our terms
``I = sum p g``, ``P = sum p``, ``G = sum g``, ``dice = (2I + smooth)/(P + G + smooth + epsilon)``:

- MONAI ``DiceLoss()``: ``(2 tp + smooth_nr) / (2 (tp + fp/2 + fn/2) + smooth_dr)`` per
  image and class, mean over both: ``smooth = smooth_nr``, ``epsilon = smooth_dr -
  smooth_nr`` (defaults ``1e-5, 1e-5``). ``batch=True`` sums over the batch first.
- segmentation_models_pytorch (>= 0.4) ``DiceLoss``: a Tversky score with
  ``alpha = beta = 1/2`` whose intersection is the L1 form ``(P + G - sum|p - g|)/2``
  (our ``soft_label=True``) and whose denominator ``P/2 + G/2 + s`` is clamped at
  ``eps``: our ``smooth = 2 s`` and a denominator floor of ``2 eps``. Whole batch per
  class; classes absent from the batch's truth get loss 0 and still count in the mean.
- Keras 3 ``keras.losses.Dice()``: ``1 - 2I/(P + G + 1e-7)`` with ``axis=None``: one
  score over the whole tensor, images and classes pooled.
- segmentation_models (Keras) ``DiceLoss()``: F1 ``(2TP + s)/(2TP + FN + FP + s)``,
  ``s = 1e-5``, whole batch per class, ``1 - mean_c(w_c F_c)``.
- Seed 000: per image, its "epsilon" 1e-6 in numerator and denominator (our smooth);
  its ``dice_loss`` sums over axes ``[1, 2, 3]``, so channels are pooled per image;
  its ``multiclass_dice_loss`` scores each class. Seed 001: ``tf.reshape(y, [-1])``
  pools everything, ``smooth = 1``.

Tensors are channels-last ``[B, H, W, C]`` probabilities (PyTorch libraries take
channels-first ``[B, C, H, W]``; the numbers are the same). No Streamlit here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from explorer import losses
from explorer.analysis import latex_number, number_text

MONAI_SMOOTH = 1e-5  # smooth_nr = smooth_dr = 1e-5
SMP_EPS = 1e-7  # clamps its half-size denominator P/2 + G/2 + smooth
KERAS_EPSILON = 1e-7  # keras.backend.epsilon()
SM_SMOOTH = 1e-5  # segmentation_models.base.functional.SMOOTH
SEED_000_SMOOTH = 1e-6
SEED_001_SMOOTH = 1.0

# extra steps, named in ``Translation.mapped`` next to the dice_loss keywords
POOL_CLASSES = "pool_classes"  # all channels flattened into one before the sums
# loss 0 where the truth sum is 0, still averaged: dice_loss(empty="zero") now; the name is
# still read by evaluate() for mappings written before the keyword
ABSENT_CLASSES_ZERO = "absent_classes_zero"
DENOMINATOR_FLOOR = "denominator_floor"  # P + G + smooth + epsilon clamped to at least this
EXTRA_STEPS = (POOL_CLASSES, ABSENT_CLASSES_ZERO, DENOMINATOR_FLOOR)
_SMP_KEYWORDS = {"smooth", "epsilon", "per_image", "soft_label", "squared", "empty"}

_CLOSE = 1e-9  # two rows "give the same number" within this (relative)


@dataclass(frozen=True)
class Translation:
    """One library's Dice loss on the given masks."""

    key: str  # "ours", "monai", "monai_batch", "smp", "keras", "sm_keras", "seed_000", ...
    library: str  # human name
    call: str  # the call a user would write
    formula: str  # LaTeX, in our notation I, P, G, s (smooth), epsilon
    mapped: dict  # dice_loss keywords, plus any extra step named in EXTRA_STEPS
    value: float  # the loss on the given masks (NaN only for a real 0/0)
    why: str  # why it differs, for these masks


# ------------------------------------------------------------------------- evaluation


def _as_arrays(y_true, y_pred):
    """Validated float64 numpy arrays (prepare_inputs raises ValueError naming the problem)."""
    arrays = []
    for name, value in (("y_true", y_true), ("y_pred", y_pred)):
        try:
            arrays.append(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be an array of numbers [B, H, W, C], got "
                             f"{type(value).__name__}: {err}") from None
    g, p = losses.prepare_inputs(*arrays)
    return g.numpy(), p.numpy()


def _pooled(x):
    """[B, ..., C] -> [B, N*C, 1]: every channel of an image in one sum (rank 3 is accepted)."""
    return x.reshape(x.shape[0], -1, 1)


def evaluate(y_true, y_pred, mapped: dict) -> float:
    """The loss that ``mapped`` (a :class:`Translation`'s settings) gives on these masks.

    The ``dice_loss`` keywords go to :func:`explorer.losses.dice_loss`; the extra steps
    ``pool_classes`` and ``denominator_floor`` are applied around
    :func:`explorer.losses.per_class_dice` and :func:`explorer.losses.overlap_sums`
    (``absent_classes_zero``, the older name of ``empty="zero"``, is read as that keyword).
    """
    keywords = {k: v for k, v in mapped.items() if k not in EXTRA_STEPS}
    if mapped.get(ABSENT_CLASSES_ZERO):
        keywords["empty"] = "zero"
    g, p = _as_arrays(y_true, y_pred)
    if mapped.get(POOL_CLASSES):
        g, p = _pooled(g), _pooled(p)
    floor = float(mapped.get(DENOMINATOR_FLOOR, 0.0))
    if floor == 0:
        return float(losses.dice_loss(g, p, **keywords))
    unsupported = sorted(set(keywords) - _SMP_KEYWORDS)
    if unsupported or keywords.get("empty", "smooth") not in ("smooth", "zero"):
        raise ValueError(f"{DENOMINATOR_FLOOR} takes only {sorted(_SMP_KEYWORDS)} (empty "
                         f"'smooth' or 'zero'), got also {unsupported or keywords['empty']}")
    zero_absent = keywords.pop("empty", "smooth") == "zero"
    smooth = float(keywords.get("smooth", 1.0))
    epsilon = float(keywords.get("epsilon", 0.0))
    dice = losses.per_class_dice(g, p, **keywords).numpy()
    per_image = keywords.get("per_image", True)
    inter, pred_sum, true_sum = (
        s.numpy() if per_image else s.numpy()[0] for s in losses.overlap_sums(
            *losses.prepare_inputs(g, p), squared=keywords.get("squared", False),
            per_image=per_image, soft_label=keywords.get("soft_label", False)))
    den = pred_sum + true_sum + smooth + epsilon
    if floor > 0:  # where the floor binds, the denominator is the floor itself
        dice = np.where(den < floor, (2 * inter + smooth) / floor, dice)
    loss = 1 - dice
    if zero_absent:  # a class with no truth scores loss 0 whatever is predicted
        loss = np.where(true_sum > 0, loss, 0.0)
    return float(np.mean(loss))


# ---------------------------------------------------------------------- the masks' facts


@dataclass(frozen=True)
class _Facts:
    """Per-image, per-class sums [B, C] and the shape of the problem, for the why-sentences."""

    inter: np.ndarray
    pred: np.ndarray
    true: np.ndarray
    pixels: int  # spatial positions per image
    one_hot: bool  # several channels, truth 0/1 with exactly one class per pixel
    softmax: bool  # several channels, prediction sums to 1 per pixel
    soft_truth: bool  # some truth value strictly between 0 and 1

    @classmethod
    def of(cls, g, p):
        sums = losses.overlap_sums(*losses.prepare_inputs(g, p), per_image=True)
        inter, pred, true = (s.numpy() for s in sums)
        several = g.shape[-1] > 1
        binary = np.all((g == 0) | (g == 1))
        return cls(
            inter, pred, true, int(np.prod(g.shape[1:-1])),
            one_hot=bool(several and binary and np.all(g.sum(-1) == 1)),
            softmax=bool(several and np.allclose(p.sum(-1), 1, atol=1e-6)),
            soft_truth=not binary,
        )

    @property
    def images(self):
        return self.true.shape[0]

    @property
    def classes(self):
        return self.true.shape[1]

    def batch_dice(self, smooth):
        """Whole-batch Dice per class [C] with this smooth (epsilon 0), for the text."""
        inter, pred, true = self.inter.sum(0), self.pred.sum(0), self.true.sum(0)
        return (2 * inter + smooth) / (pred + true + smooth)

    def absent(self):
        """Classes with no truth anywhere in the batch."""
        return [int(c) for c in np.flatnonzero(self.true.sum(0) == 0)]


def _delta(a, b):
    return f"{a - b:+.3g}"


def _class(c, facts):
    return "the foreground" if facts.classes == 1 else f"class {c}"


def _listed(items, limit=3):
    items = list(items)
    shown = items[:limit] + ([f"{len(items) - limit} more"] if len(items) > limit else [])
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _subject(items):
    """'Class 2 is' / 'Image 0 and image 1 are': a listed subject with its verb, capitalised."""
    items = list(items)
    text = f"{_listed(items)} {'is' if len(items) == 1 else 'are'}"
    return text[0].upper() + text[1:]


def _where(b, c, facts):
    return f"image {b}" + ("" if facts.classes == 1 else f" (class {c})")




def _dicelatex_number(index, smooth, epsilon):
    i = f"_{{{index}}}" if index else ""
    s = f" + {latex_number(smooth)}" if smooth else ""
    eps = f" + {latex_number(epsilon)}" if epsilon else ""
    return rf"\frac{{2I{i}{s}}}{{P{i} + G{i}{s}{eps}}}"


# ----------------------------------------------------------------------- the why-sentences


def _why_monai(f, v):
    text = [f"One Dice per image and class, then the mean of all {f.images * f.classes} "
            "losses; smooth_nr = smooth_dr = 1e-5, so smooth = 1e-5 and epsilon = 0 here."]
    empty = np.argwhere(f.true == 0)
    both = [_where(b, c, f) for b, c in empty if f.pred[b, c] == 0]
    wrong = [(b, c) for b, c in empty if f.pred[b, c] > 0]
    if wrong:
        # no truth: I = 0, so the term is 1 - smooth / (P + smooth)
        term = [1 - MONAI_SMOOTH / (f.pred[b, c] + MONAI_SMOOTH) for b, c in wrong]
        low, high = number_text(min(term)), number_text(max(term))
        size = (f"a loss of {low}" + (" each" if len(term) > 1 else "") if low == high
                else f"losses from {low} to {high}")
        text.append(f"The truth is empty in {_listed(_where(b, c, f) for b, c in wrong)}: every "
                    f"predicted pixel there is a false positive, so it counts {size} in the "
                    "mean.")
    if both:
        text.append(f"{_subject(both)} empty in truth and prediction: smooth makes that a "
                    "perfect score (loss 0).")
    return " ".join(text)


def _absent_sentence(f, smooth):
    absent = f.absent()
    if not absent:
        return ""
    dice = f.batch_dice(smooth)
    predicted = [c for c in absent if f.pred[:, c].sum() > 0]
    quiet = [c for c in absent if f.pred[:, c].sum() == 0]
    text = []
    if predicted:
        text.append(f"{_subject(_class(c, f) for c in predicted)} absent from the truth but "
                    f"predicted, so it scores near 0 (loss {number_text(1 - dice[predicted[0]])}).")
    if quiet:
        text.append(f"{_subject(_class(c, f) for c in quiet)} absent from truth and "
                    "prediction: smooth makes it a perfect score (loss 0).")
    return " " + " ".join(text)


def _why_monai_batch(f, v):
    per_class = (f"one Dice per class, then the mean over the {f.classes} classes"
                 if f.classes > 1 else "one Dice for the foreground")
    text = (f"Sums over the whole batch first, {per_class}: {number_text(v['monai_batch'])} here "
            f"against {number_text(v['monai'])} per image ({_delta(v['monai_batch'], v['monai'])}).")
    empty_images = [b for b in range(f.images) if np.any(f.true[b] == 0)]
    if f.images == 1:
        text += " With one image the two reductions are the same."
    elif abs(v["monai_batch"] - v["monai"]) <= 1e-6:
        text += " The two reductions agree on these masks."
    elif empty_images:
        text += (f" Per image, an empty truth ({_listed(f'image {b}' for b in empty_images)}) "
                 "is a term of its own; over the batch its pixels only add to the sums.")
    elif abs(v["monai_batch"] - v["monai"]) > 1e-6:
        text += (" Per image every image has the same say; over the batch, images with larger "
                 "objects weigh more.")
    return text + _absent_sentence(f, MONAI_SMOOTH)


def _why_smp(f, v):
    activation = "softmax" if f.classes > 1 and f.one_hot else "sigmoid"
    text = [f"Mapped with from_logits=False: its default from_logits=True would put our "
            f"probabilities through a {activation} again. Whole batch, one Dice per class, "
            "smooth 0, the denominator only clamped at eps = 1e-7."]
    absent = f.absent()
    if absent and f.classes == 1:
        text.append("The truth is empty in every image, so smp returns loss 0 whatever is "
                    f"predicted (Keras gives {number_text(v['keras'])}).")
    elif absent:
        dice = f.batch_dice(MONAI_SMOOTH)
        text.append(f"{_subject(_class(c, f) for c in absent)} absent from the batch's "
                    f"truth, so smp sets {'its' if len(absent) == 1 else 'their'} loss to 0 and "
                    f"still divides by all {f.classes} classes; MONAI(batch=True) gives "
                    f"{_class(absent[0], f)} loss {number_text(1 - dice[absent[0]])}.")
    elif not f.soft_truth:
        text.append(f"No class is absent from the truth, so this is whole-batch Dice without "
                    f"smoothing: {number_text(v['smp'])} against MONAI(batch=True)'s "
                    f"{number_text(v['monai_batch'])}.")
    if f.soft_truth:
        text.append(f"The truth is soft, and smp's intersection is the L1 form "
                    f"sum(p + g - |p - g|)/2 (our soft_label=True), not sum(p g): "
                    f"{number_text(v['smp'])} against MONAI(batch=True)'s {number_text(v['monai_batch'])}.")
    return " ".join(text)


def _why_keras(f, v):
    if f.classes == 1:
        text = ("axis=None: one Dice over the whole batch at once, smooth 0 and the backend "
                "epsilon 1e-7 in the denominator only.")
        if f.true.sum() == 0 and f.pred.sum() == 0:
            return text + (" Truth and prediction are both empty, so Dice = 0/1e-7 = 0 and a "
                           "perfect prediction gets loss 1.")
        if f.true.sum() == 0:
            return text + (" The truth is empty in every image, so the loss is 1 whatever is "
                           "predicted.")
        return text + (" With one channel, pooling classes changes nothing: this is whole-batch "
                       "Dice with no smooth.")
    largest = int(np.argmax(f.true.sum(0)))
    text = (f"axis=None: one Dice over the whole tensor, all images and all {f.classes} classes "
            "pooled (background too), smooth 0 and epsilon 1e-7.")
    if f.one_hot and f.softmax:
        text += (f" With a one-hot truth and a softmax prediction, P = G = {f.pixels * f.images} "
                 "pixels, so this is 1 minus the mean probability given to the true class.")
    return text + (f" Large classes dominate ({_class(largest, f)} holds "
                   f"{f.true[:, largest].sum() / (f.pixels * f.images):.0%} of the truth): "
                   f"{number_text(v['keras'])} against {number_text(v['sm_keras'])} for the mean of "
                   "per-class Dice (segmentation_models).")


def _why_sm_keras(f, v):
    same = _same(v["sm_keras"], v["monai_batch"])
    text = ("F-score with beta = 1 is Dice: (2TP + s)/(2TP + FN + FP + s) = (2I + s)/(P + G + s) "
            "with s = 1e-5, whole batch (per_image=False), then 1 minus the mean over classes.")
    text += (" Same formula and reduction as MONAI DiceLoss(batch=True), so the same number."
             if same else f" MONAI DiceLoss(batch=True) gives {number_text(v['monai_batch'])}.")
    return text + _absent_sentence(f, SM_SMOOTH)


def _why_seed_000(f, v):
    if f.classes == 1:
        text = (f"Per image, with its 'epsilon' 1e-6 added to numerator and denominator (our "
                f"smooth = 1e-6, epsilon = 0): MONAI's default reduction with a smaller smooth, "
                f"{number_text(v['seed_000'])} against {number_text(v['monai'])} "
                f"({_delta(v['seed_000'], v['monai'])}).")
        both = [f"image {b}" for b in range(f.images) if f.true[b, 0] == 0 and f.pred[b, 0] == 0]
        if both:
            text += (f" {_subject(both)} empty in truth and prediction: a perfect score only "
                     "thanks to that 1e-6.")
        return text
    return (f"Its dice_loss sums over axes [1, 2, 3], so each image's {f.classes} channels are "
            f"pooled into one Dice (background included), then the mean over images: "
            f"{number_text(v['seed_000'])} against {number_text(v['seed_000_multiclass'])} for its own "
            "per-class multiclass_dice_loss.")


def _why_seed_000_multiclass(f, v):
    return (f"Its multiclass_dice_loss scores each image and class (smooth 1e-6), then the mean "
            f"over images and over classes: MONAI DiceLoss()'s reduction with a smaller smooth, "
            f"{number_text(v['seed_000_multiclass'])} against {number_text(v['monai'])} "
            f"({_delta(v['seed_000_multiclass'], v['monai'])}).")


def _why_seed_001(f, v):
    pooled = (f", so all {f.classes} classes are pooled as in Keras" if f.classes > 1
              else ", like Keras")
    text = (f"tf.reshape(y, [-1]) flattens images and channels alike: one Dice over "
            f"everything{pooled}, but with smooth = 1 where Keras has epsilon 1e-7.")
    if f.true.sum() == 0 and f.pred.sum() == 0:
        return text + (" Both masks are empty everywhere: smooth 1 makes that a perfect score "
                       "(loss 0) where Keras gives loss 1.")
    if f.true.sum() == 0:
        return text + (f" The truth is empty everywhere: Keras gives loss 1, smooth 1 gives "
                       f"{number_text(v['seed_001'])}, less the fewer pixels are predicted.")
    return text + (f" Smooth 1 acts like one extra matched pixel against a truth of "
                   f"{f.true.sum():.6g} pixels in all: {number_text(v['seed_001'])} against Keras' "
                   f"{number_text(v['keras'])} ({_delta(v['seed_001'], v['keras'])}).")


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= _CLOSE * max(1.0, abs(a), abs(b))


# --------------------------------------------------------------------------- conventions


def _conventions(f: _Facts) -> list[tuple]:
    """(key, library, call, formula, mapped, why) for each library, for these masks."""
    several = f.classes > 1
    pool = {POOL_CLASSES: True} if several else {}
    mode = "binary" if not several else ("multiclass" if f.one_hot else "multilabel")
    mean_bc = r"\frac{1}{BC}\sum_{b,c}"
    mean_c = r"\frac{1}{C}\sum_{c}"
    rows = [
        ("monai", "MONAI DiceLoss()", "monai.losses.DiceLoss()",
         rf"{mean_bc}\Big(1 - {_dicelatex_number('bc', MONAI_SMOOTH, 0)}\Big)",
         {"smooth": MONAI_SMOOTH, "epsilon": 0.0, "per_image": True, "include_background": True},
         _why_monai),
        ("monai_batch", "MONAI DiceLoss(batch=True)", "monai.losses.DiceLoss(batch=True)",
         rf"{mean_c}\Big(1 - {_dicelatex_number('c', MONAI_SMOOTH, 0)}\Big)"
         r"\quad\text{(sums over the whole batch)}",
         {"smooth": MONAI_SMOOTH, "epsilon": 0.0, "per_image": False, "include_background": True},
         _why_monai_batch),
        ("smp", f'segmentation_models_pytorch DiceLoss(mode="{mode}")',
         f'segmentation_models_pytorch.losses.DiceLoss(mode="{mode}", from_logits=False)',
         rf"{mean_c}[G_c > 0]\Big(1 - \frac{{2I_c}}{{\max(P_c + G_c,\ {latex_number(2 * SMP_EPS)})}}\Big),"
         r"\ I_c = \sum \tfrac{p + g - |p - g|}{2}",
         {"smooth": 0.0, "epsilon": 0.0, "per_image": False, "soft_label": True,
          "empty": "zero", DENOMINATOR_FLOOR: 2 * SMP_EPS},
         _why_smp),
        ("keras", "Keras 3 keras.losses.Dice()", "keras.losses.Dice()",
         rf"1 - {_dicelatex_number('', 0, KERAS_EPSILON)}\quad\text{{(one sum over the whole tensor)}}",
         {"smooth": 0.0, "epsilon": KERAS_EPSILON, "per_image": False, **pool},
         _why_keras),
        ("sm_keras", "segmentation_models (Keras) DiceLoss()",
         "segmentation_models.losses.DiceLoss()",
         rf"1 - {mean_c}{_dicelatex_number('c', SM_SMOOTH, 0)}\quad\text{{(sums over the whole batch)}}",
         {"smooth": SM_SMOOTH, "epsilon": 0.0, "per_image": False},
         _why_sm_keras),
        ("seed_000", "Seed 000 dice_loss", "dice_loss(y_true, y_pred)  # seed 000, epsilon=1e-6",
         rf"\frac{{1}}{{B}}\sum_b\Big(1 - {_dicelatex_number('b', SEED_000_SMOOTH, 0)}\Big)"
         + (r"\quad\text{(each image's classes pooled)}" if several else ""),
         {"smooth": SEED_000_SMOOTH, "epsilon": 0.0, "per_image": True, **pool},
         _why_seed_000),
    ]
    if several:
        rows.append(
            ("seed_000_multiclass", "Seed 000 multiclass_dice_loss",
             "multiclass_dice_loss(y_true, y_pred)  # seed 000, epsilon=1e-6",
             rf"{mean_bc}\Big(1 - {_dicelatex_number('bc', SEED_000_SMOOTH, 0)}\Big)",
             {"smooth": SEED_000_SMOOTH, "epsilon": 0.0, "per_image": True},
             _why_seed_000_multiclass))
    rows.append(
        ("seed_001", "Seed 001 dice_loss", "dice_loss(y_true, y_pred)  # seed 001, smooth=1",
         rf"1 - {_dicelatex_number('', SEED_001_SMOOTH, 0)}\quad\text{{(one sum over the whole tensor)}}",
         {"smooth": SEED_001_SMOOTH, "epsilon": 0.0, "per_image": False, **pool},
         _why_seed_001))
    return rows


def _ours_formula(kw):
    defaults = losses.loss_keywords(losses.dice_loss)
    kw = {**defaults, **kw}
    index = "bc" if kw["per_image"] else "c"
    dice = _dicelatex_number(index, float(kw["smooth"]), float(kw["epsilon"]))
    first = "" if kw["include_background"] else r"_{c \geq 1}"
    if kw["class_weights"] is None:
        outer = (rf"\frac{{1}}{{BC}}\sum_{{b,c}}" if kw["per_image"] else
                 rf"\frac{{1}}{{C}}\sum_{{c}}")
        body = rf"{outer}{first}\Big(1 - {dice}\Big)"
    else:
        norm = r" \Big/ \sum_c w_c" if kw["normalize_weights"] else ""
        batch = r"\frac{1}{B}\sum_b" if kw["per_image"] else ""
        body = rf"{batch}\sum_c{first} w_c\Big(1 - {dice}\Big){norm}"
    notes = []
    if kw["squared"]:
        notes.append(r"P = \sum p^2,\ G = \sum g^2")
    if kw["soft_label"]:
        notes.append(r"I = \sum \tfrac{p + g - |p - g|}{2}")
    return body + "".join(r",\ " + n for n in notes)


def _ours(kw, f, value, rows):
    defaults = losses.loss_keywords(losses.dice_loss)
    changed = {k: v for k, v in kw.items() if defaults.get(k) != v}
    args = "".join(f", {k}={v!r}" for k, v in changed.items())
    full = {**defaults, **kw}
    said = [("per image" if full["per_image"] else "whole batch"),
            f"smooth {full['smooth']:g}", f"epsilon {full['epsilon']:g}"]
    if full["squared"]:
        said.append("squared sums")
    if full["soft_label"]:
        said.append("soft-label intersection")
    if full["class_weights"] is not None:
        said.append("class weights" + ("" if full["normalize_weights"] else " (not normalized)"))
    if not full["include_background"] and f.classes > 1:
        said.append("background left out")
    if full.get("empty", "smooth") != "smooth":
        said.append(f"empty classes '{full['empty']}'")
    why = f"Your settings: {', '.join(said)}."
    if math.isnan(value):
        why += (" Undefined (0/0): a mask pair is empty in truth and prediction with smooth = "
                "epsilon = 0.")
    else:
        same = [r.library for r in rows if _same(r.value, value)]
        if same:
            why += f" Same number as {_listed(same, limit=4)}."
        else:
            near = min(rows, key=lambda r: abs(r.value - value))
            why += f" Closest: {near.library}, {number_text(near.value)} ({_delta(value, near.value)})."
    return Translation("ours", "This explorer, current settings",
                       f"explorer.losses.dice_loss(y_true, y_pred{args})",
                       _ours_formula(kw), dict(kw), value, why)


def translate(y_true, y_pred, *, ours: dict | None = None) -> list[Translation]:
    """Every library's default Dice loss on these masks, computed by ``explorer.losses``.

    ``y_true``, ``y_pred``: ``[B, H, W, C]`` probabilities (``C = 1`` binary, or one-hot
    truth and softmax prediction). ``ours``: the explorer's current ``dice_loss`` keywords;
    when given, "this explorer, current settings" is the first row. Raises ``ValueError``
    for bad masks or an unknown keyword in ``ours``.
    """
    g, p = _as_arrays(y_true, y_pred)
    if ours is not None:
        if not isinstance(ours, dict):
            raise ValueError(f"ours must be a dict of dice_loss keywords, got "
                             f"{type(ours).__name__}")
        losses.check_keywords("dice_loss", ours)
    facts = _Facts.of(g, p)
    found = [(key, lib, call, tex, mapped, why, evaluate(g, p, mapped))
             for key, lib, call, tex, mapped, why in _conventions(facts)]
    values = {row[0]: row[-1] for row in found}
    rows = [Translation(key, lib, call, tex, mapped, value, why(facts, values))
            for key, lib, call, tex, mapped, why, value in found]
    if ours is not None:
        rows.insert(0, _ours(ours, facts, float(losses.dice_loss(g, p, **ours)), rows))
    return rows
