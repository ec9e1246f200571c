"""Export a loss with the explorer's settings as self-contained TensorFlow or PyTorch code.

:func:`snippet` writes Python source that imports only ``tensorflow`` or ``torch`` and
defines ``loss_fn(y_true, y_pred)`` on channels-last probabilities ``[B, ..., C]``, equal
to ``explorer.losses.<loss>(y_true, y_pred, **settings)``. The settings are baked in as
constants, and only the code paths they need are written. ``lovasz_hinge`` takes logits in
the library; its ``loss_fn`` takes probabilities and turns them into logits the way
``explorer.gradients`` does.

The templates are written once, in a neutral dialect (``SUM(x, axes)``, ``WHERE(c, a, b)``,
``TENSOR(name)``, ...) that :func:`_translate` spells in TensorFlow or in PyTorch.

Example::

    source = snippet("pytorch", loss="dice_loss", smooth=1.0, per_image=False)
    namespace = {}
    exec(source, namespace)  # or paste the source into a training script
    loss = namespace["loss_fn"](y_true, y_pred)  # torch tensors [B, H, W, C], a 0-d tensor
"""

from __future__ import annotations

import re

import numpy as np

from explorer import losses

FRAMEWORKS = ("tensorflow", "pytorch")

# neutral function name -> (TensorFlow, PyTorch)
_NAMES = {
    "SUM": ("tf.reduce_sum", "torch.sum"),
    "MEAN": ("tf.reduce_mean", "torch.mean"),
    "MAX": ("tf.reduce_max", "torch.amax"),
    "ANY": ("tf.reduce_any", "torch.any"),
    "ABS": ("tf.abs", "torch.abs"),
    "LOG": ("tf.math.log", "torch.log"),
    "LOG1P": ("tf.math.log1p", "torch.log1p"),
    "WHERE": ("tf.where", "torch.where"),
    "CLIP": ("tf.clip_by_value", "torch.clamp"),
    "CUMSUM": ("tf.cumsum", "torch.cumsum"),
    "CONCAT": ("tf.concat", "torch.cat"),
    "RELU": ("tf.nn.relu", "torch.relu"),
    "RESHAPE": ("tf.reshape", "torch.reshape"),
    "TRANSPOSE": ("tf.transpose", "torch.permute"),
    "NO_GRAD": ("tf.stop_gradient", "torch.detach"),
}
# neutral NAME(variable) -> (TensorFlow, PyTorch), where the spellings differ in shape
_FORMS = {
    "BATCH": ("tf.shape({})[0]", "{}.shape[0]"),
    "TENSOR": ("tf.constant({}, y_pred.dtype)",
               "torch.tensor({}, dtype=y_pred.dtype, device=y_pred.device)"),
    "FLOAT": ("tf.cast({}, y_pred.dtype)", "{}.to(y_pred.dtype)"),
}
_IMPORTS = ("import tensorflow as tf", "import torch")
_PREPARE = (  # y_true takes y_pred's dtype: float32 under Keras, float64 stays float64
    ["y_pred = tf.convert_to_tensor(y_pred)", "y_true = tf.cast(y_true, y_pred.dtype)"],
    ["y_pred = torch.as_tensor(y_pred)", "y_true = torch.as_tensor(y_true).to(y_pred)"],
)
_SORT = (  # errors in decreasing order, ties kept in pixel order (stable), truths alongside
    ['order = tf.argsort(errors, axis=-1, direction="DESCENDING", stable=True)',
     "errors_sorted = tf.gather(errors, order, batch_dims=1)",
     "fg_sorted = tf.gather(fg, order, batch_dims=1)"],
    ["errors_sorted, order = torch.sort(errors, dim=-1, descending=True, stable=True)",
     "fg_sorted = torch.gather(fg, -1, order)"],
)

_TITLES = {  # loss -> (name, what it is)
    "dice_loss": ("Dice loss", "1 - (2 I + smooth) / (P + G + smooth + epsilon)"),
    "jaccard_loss": ("Jaccard (IoU) loss", "1 - (I + smooth) / (P + G - I + smooth + epsilon)"),
    "tversky_loss": ("Tversky loss",
                     "1 - (I + smooth) / (I + alpha FP + beta FN + smooth + epsilon)"),
    "generalized_dice_loss": ("Generalized Dice loss", "Sudre et al. 2017, w_c = 1 / (sum g_c)^2"),
    "binary_crossentropy": ("Binary cross-entropy", "p clipped to [1e-7, 1 - 1e-7] like Keras"),
    "bce_dice_loss": ("BCE + Dice loss", "bce_weight * BCE + dice_weight * Dice loss"),
    "bce_log_dice_loss": ("BCE - log Dice", "BCE - log(Dice coefficient)"),
    "focal_loss": ("Focal loss", "Lin et al. 2017"),
    "lovasz_hinge": ("Lovasz hinge", "binary; Berman, Rannen Triki & Blaschko, CVPR 2018"),
    "lovasz_softmax": ("Lovasz-Softmax", "Berman, Rannen Triki & Blaschko, CVPR 2018"),
}
_TVERSKY_KIND = {"dice_loss": "dice", "bce_dice_loss": "dice", "bce_log_dice_loss": "dice",
                 "jaccard_loss": "jaccard", "tversky_loss": "tversky"}
_GUARD = [  # the library's 0/0 rule, and a finite gradient for the other pixels
    "# a zero denominator (both masks empty with smooth = epsilon = 0: 0/0) gives NaN,",
    "# 'undefined', as in the explorer; dividing by 1 there keeps other gradients finite",
    'score = WHERE(den == 0, float("nan"), num / WHERE(den == 0, 1.0, den))',
]


def snippet(framework: str, *, loss: str, **settings) -> str:
    """Python source defining ``loss_fn(y_true, y_pred)`` for ``loss`` with ``settings``.

    ``framework`` is ``"tensorflow"`` or ``"pytorch"``; ``settings`` are the keywords of
    ``explorer.losses.<loss>`` (unspecified ones take its defaults). The source imports only
    the framework; ``loss_fn`` takes channels-last probabilities and also works as a Keras
    ``model.compile(loss=loss_fn)`` (TensorFlow) or under autograd (PyTorch).

    Example::

        source = snippet("tensorflow", loss="tversky_loss", alpha=0.3, beta=0.7)
        print(source)  # paste it into a training script, then model.compile(loss=loss_fn)
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {list(FRAMEWORKS)}, got {framework!r}")
    settings = losses.check_keywords(loss, settings)
    settings = {key: _baked(value) for key, value in settings.items()}

    code = _Code()
    _FAMILIES[loss](loss, settings, code)
    index = FRAMEWORKS.index(framework)
    name, what = _TITLES[loss]
    lines = [
        f"# {name}: {what}.",
        f"# Generated by the Dice Loss Explorer: explorer.losses.{loss} as plain "
        f"{'TensorFlow' if index == 0 else 'PyTorch'}.",
        *_wrapped("# Settings: ", [f"{k}={v!r}" for k, v in settings.items()] or ["none"]),
        "# loss_fn(y_true, y_pred) takes channels-last probabilities [B, ..., C]: C = 1 is",
        "# binary, C > 1 one-hot truth and softmax prediction; the axes between are spatial.",
        _IMPORTS[index],
        "",
        *code.constants,
        *([""] if code.constants else []),
        *code.helpers,
        "",
        "def loss_fn(y_true, y_pred):",
        f'    """{name} of channels-last probabilities [B, ..., C], a scalar."""',
        *(f"    {line}" for line in _PREPARE[index] + code.body),
    ]
    return _translate("\n".join(lines) + "\n", index)


def _wrapped(first, items, width=92):
    """``items`` joined by commas on comment lines of at most ``width`` (never split one)."""
    lines, line = [], first
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if len(line) + len(piece) > width and line.strip("# "):
            lines.append(line.rstrip())
            line = "#   "
        line += piece + " "
    return lines + [line.rstrip()]


def _translate(source: str, index: int) -> str:
    """Spell the neutral dialect in framework ``index`` (0 TensorFlow, 1 PyTorch)."""
    source = re.sub(r"^( *)SORT_BY_ERROR$", lambda m: "\n".join(
        m[1] + line for line in _SORT[index]), source, flags=re.M)
    source = re.sub(r"\b([A-Z]+)\((\w+)\)", lambda m: _FORMS[m[1]][index].format(m[2])
                    if m[1] in _FORMS else m[0], source)
    return re.sub(r"\b([A-Z][A-Z0-9_]*)\(", lambda m: _NAMES[m[1]][index] + "("
                  if m[1] in _NAMES else m[0], source)


def _baked(value):
    """A setting as a plain Python literal (bool, str, None, float or list of floats)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    array = np.asarray(value, np.float64)
    return float(array) if array.ndim == 0 else [float(x) for x in array]


class _Code:
    """The pieces of a snippet: constants at the top, helper functions, loss_fn's body."""

    def __init__(self):
        self.constants, self.helpers, self.body = [], [], []

    def constant(self, name, value, why):
        self.constants.append(f"{name} = {value!r}  # {why}")


# ------------------------------------------------------------------ shared pieces


def _bce(code):
    code.body += [
        "p = CLIP(y_pred, 1e-7, 1 - 1e-7)  # as Keras does, so log(0) never happens",
        "bce = MEAN(-(y_true * LOG(p) + (1 - y_true) * LOG(1 - p)))",
    ]


def _classes_and_weights(s, code):
    """Drop class 0 when asked; bring the class weights (if any) to a tensor."""
    weights = s.get("class_weights")
    if weights is not None:
        code.constant("CLASS_WEIGHTS", weights, "one per class")
        code.body.append("weights = CLASS_WEIGHTS")
    if not s["include_background"]:
        code.body += ["# include_background=False: leave out class 0 (a single channel is the "
                      "foreground)",
                      "if y_pred.shape[-1] > 1:"]
        if weights is not None:
            code.body += ["    if len(weights) == y_pred.shape[-1]:",
                          "        weights = weights[1:]  # and its weight"]
        code.body += ["    y_true, y_pred = y_true[..., 1:], y_pred[..., 1:]"]
    if weights is not None:
        code.body += [
            "if len(weights) != y_pred.shape[-1]:",
            '    raise ValueError(f"CLASS_WEIGHTS has {len(weights)} values for '
            '{y_pred.shape[-1]} classes")',
            "weights = TENSOR(weights)",
        ]


def _sums(s, code):
    """I, P, G per image and class ([B, C]), or per class over the whole batch ([C])."""
    square = (lambda x: f"{x} * {x}") if s["squared"] else (lambda x: x)
    if s["per_image"]:
        code.body.append("axes = tuple(range(1, len(y_pred.shape) - 1))  # spatial: a score per "
                         "image and class")
    else:
        code.body.append("axes = tuple(range(len(y_pred.shape) - 1))  # per_image=False: the "
                         "whole batch at once")
    if s["soft_label"]:
        code.body += ["# soft_label: the L1 intersection, equal to sum(p * g) for a 0/1 truth",
                      "inter = SUM((y_true + y_pred - ABS(y_true - y_pred)) / 2, axes)"]
    else:
        code.body.append("inter = SUM(y_true * y_pred, axes)")
    if s["squared"]:
        code.body.append("# squared=True (V-Net): sums of squares in the denominator")
    code.body += [f"pred_sum = SUM({square('y_pred')}, axes)",
                  f"true_sum = SUM({square('y_true')}, axes)"]


def _smoothing(s, code):
    code.constant("SMOOTH", s["smooth"], "added to numerator and denominator")
    code.constant("EPSILON", s["epsilon"], "added to the denominator only")


def _combine(s, per_class, guarded):
    """Lines that reduce ``per_class`` to ``total``: over classes, then mean over images."""
    if s["class_weights"] is None:
        over = "MEAN" if s["normalize_weights"] else "SUM"
        return ["# over classes, then over images",
                f"total = MEAN({over}({per_class}, -1))"]
    if guarded and min(s["class_weights"]) == 0:
        lines = ["# a class weighted 0 counts 0, even where its score is NaN (0/0)",
                 f"weighted = WHERE(weights > 0, weights * ({per_class}), 0.0)"]
    else:
        lines = [f"weighted = weights * ({per_class})"]
    normalized = " / SUM(weights)" if s["normalize_weights"] else ""
    return lines + ["# over classes (weighted), then over images",
                    f"total = MEAN(SUM(weighted, -1){normalized})"]


# ------------------------------------------------------------------------ families


def _overlap(loss, s, code):
    """Dice, Jaccard and Tversky, alone or with BCE."""
    kind = _TVERSKY_KIND[loss]
    if loss.startswith("bce"):
        _bce(code)  # on every channel, before class 0 may be dropped
    if loss == "bce_dice_loss":
        code.constant("BCE_WEIGHT", s["bce_weight"], "weight of the BCE term")
        if s["dice_weight"] == 0:  # the library counts Dice 0 then, even where it is 0/0
            code.body += ["return BCE_WEIGHT * bce  # dice_weight=0: BCE alone"]
            return
        code.constant("DICE_WEIGHT", s["dice_weight"], "weight of the Dice term")
    _smoothing(s, code)
    _classes_and_weights(s, code)
    _sums(s, code)
    if kind == "dice":
        code.body += ["num = 2 * inter + SMOOTH", "den = pred_sum + true_sum + SMOOTH + EPSILON"]
    elif kind == "jaccard":
        code.body += ["num = inter + SMOOTH",
                      "den = pred_sum + true_sum - inter + SMOOTH + EPSILON"]
    else:
        code.constant("ALPHA", s["alpha"], "weight of the false positives")
        code.constant("BETA", s["beta"], "weight of the false negatives")
        code.body += ["fp, fn = pred_sum - inter, true_sum - inter",
                      "num = inter + SMOOTH",
                      "den = inter + ALPHA * fp + BETA * fn + SMOOTH + EPSILON"]
    # den >= I + smooth + epsilon (squared Tversky needs alpha == beta: check_settings), so
    # only smooth = epsilon = 0 can give 0/0
    guarded = s["smooth"] + s["epsilon"] == 0
    code.body += _GUARD if guarded else ["score = num / den"]
    per_class = "1 - score"
    if kind == "tversky" and s["gamma"] != 1:
        code.constant("GAMMA", s["gamma"], "focal Tversky: (1 - index) ** (1 / GAMMA)")
        code.body += ["# focal Tversky; 0 where 1 - score <= 0 (0 * x keeps a NaN)",
                      "x = 1 - score",
                      "per_class = WHERE(x > 0, WHERE(x > 0, x, 1.0) ** (1 / GAMMA), 0 * x)"]
        per_class = "per_class"
    if loss == "bce_log_dice_loss":
        code.body += _combine(s, "score", guarded) + ["return bce - LOG(total)"]
    elif loss == "bce_dice_loss":
        code.body += _combine(s, per_class, guarded) + [
            "return BCE_WEIGHT * bce + DICE_WEIGHT * total"]
    else:
        code.body += _combine(s, per_class, guarded) + ["return total"]


def _generalized_dice(loss, s, code):
    _smoothing(s, code)
    _classes_and_weights(s, code)
    _sums(s, code)
    volume = "SUM(y_true, axes)" if s["squared"] else "true_sum"
    code.body += [
        "# w_c = 1 / (sum g_c)^2 on the plain truth volume; a class absent from the truth takes",
        "# the largest weight of the present ones, an image with no class present weighs all 1",
        f"volume = {volume}",
        "present = volume > 0",
        "raw = WHERE(present, 1 / WHERE(present, volume * volume, 1.0), 0.0)",
        "weights = WHERE(present, raw, MAX(raw, -1)[..., None])",
        "weights = NO_GRAD(WHERE(ANY(present, -1)[..., None], weights, 1.0))",
        "num = 2 * SUM(weights * inter, -1) + SMOOTH",
        "den = SUM(weights * (pred_sum + true_sum), -1) + SMOOTH + EPSILON",
    ]
    code.body += _GUARD if s["smooth"] + s["epsilon"] == 0 else ["score = num / den"]
    code.body.append("return MEAN(1 - score)")


def _binary_crossentropy(loss, s, code):
    _bce(code)
    code.body.append("return bce")


def _focal(loss, s, code):
    alpha = s["alpha"]
    code.constant("GAMMA", s["gamma"], "(1 - p) ** GAMMA down-weighs easy pixels")
    if alpha is not None:
        code.constant("ALPHA", alpha, "weight of the foreground term" if isinstance(alpha, float)
                      else "one weight per class")
    code.body += ["p = CLIP(y_pred, 1e-7, 1 - 1e-7)  # as Keras does, so log(0) never happens",
                  "positive = y_true * (1 - p) ** GAMMA * LOG(p)",
                  "if y_pred.shape[-1] == 1:  # binary: a foreground and a background term"]
    if isinstance(alpha, list):
        code.body.append('    raise ValueError("ALPHA must be one number in [0, 1] for a '
                         'single channel")')
    else:
        code.body.append("    negative = (1 - y_true) * p ** GAMMA * LOG(1 - p)")
        if alpha is not None:
            code.body.append("    positive, negative = ALPHA * positive, (1 - ALPHA) * negative")
        code.body.append("    return -MEAN(positive + negative)")
    code.body.append("# several classes: categorical focal loss, summed over classes")
    if isinstance(alpha, list):
        code.body += ["if len(ALPHA) != y_pred.shape[-1]:",
                      '    raise ValueError(f"ALPHA has {len(ALPHA)} values for '
                      '{y_pred.shape[-1]} classes")',
                      "positive = TENSOR(ALPHA) * positive"]
    elif alpha is not None:
        code.body.append("positive = ALPHA * positive")
    code.body.append("return -MEAN(SUM(positive, -1))")


def _lovasz(s, code):
    """Add the Lovász extension helper; return the line setting ``rows`` (one per image, or
    the whole batch as one)."""
    code.helpers += [
        "",
        "def lovasz_extension(errors, fg):",
        '    """Per row: errors sorted in decreasing order, weighted by the gradient of the',
        '    Lovasz extension of the Jaccard loss (Berman et al., CVPR 2018)."""',
        "    SORT_BY_ERROR",
        "    total = SUM(fg_sorted, -1)[..., None]",
        "    inter = total - CUMSUM(fg_sorted, -1)",
        "    union = total + CUMSUM(1 - fg_sorted, -1)  # >= 1: no 0/0",
        "    jaccard = 1 - inter / union",
        "    grad = CONCAT([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], -1)",
        "    return SUM(RELU(errors_sorted) * grad, -1)",
        "",
    ]
    return ("rows = BATCH(y_true)  # one row per image" if s["per_image"]
            else "rows = 1  # per_image=False: the whole batch as one row")


def _lovasz_hinge(loss, s, code):
    code.body += [
        "if y_pred.shape[-1] != 1:",
        '    raise ValueError("lovasz_hinge is binary: y_true and y_pred need 1 channel")',
        _lovasz(s, code),
        "# the Lovasz hinge works on logits: the probabilities go back to logits as in the",
        "# explorer (explorer.gradients): p clipped to [1e-7, 1 - 1e-7], then log p - log(1 - p)",
        "p = CLIP(y_pred, 1e-7, 1 - 1e-7)",
        "logits = RESHAPE(LOG(p) - LOG1P(-p), [rows, -1])",
        "fg = RESHAPE(y_true, [rows, -1])",
        "errors = 1 - logits * (2 * fg - 1)  # hinge errors",
        "return MEAN(lovasz_extension(errors, fg))",
    ]


def _lovasz_softmax(loss, s, code):
    code.body += [
        _lovasz(s, code),
        "channels = y_pred.shape[-1]",
        "fg = TRANSPOSE(RESHAPE(y_true, [rows, -1, channels]), (0, 2, 1))  # [rows, C, pixels]",
        "p = TRANSPOSE(RESHAPE(y_pred, [rows, -1, channels]), (0, 2, 1))",
        "flat_fg = RESHAPE(fg, [rows * channels, -1])",
        "errors = RESHAPE(ABS(fg - p), [rows * channels, -1])",
        "per_class = RESHAPE(lovasz_extension(errors, flat_fg), [rows, channels])",
    ]
    if s["classes"] == "present":
        code.body += [
            "present = SUM(fg, -1) > 0  # classes='present': only classes in the truth count",
            "counted = FLOAT(present)",
            "count = SUM(counted, -1)  # a row with no class counted scores 0",
            "per_row = SUM(per_class * counted, -1) / CLIP(count, 1, channels)",
        ]
    else:
        code.body.append("per_row = MEAN(per_class, -1)  # classes='all'")
    code.body.append("return MEAN(per_row)")


_FAMILIES = {**dict.fromkeys(_TVERSKY_KIND, _overlap),
             "generalized_dice_loss": _generalized_dice,
             "binary_crossentropy": _binary_crossentropy, "focal_loss": _focal,
             "lovasz_hinge": _lovasz_hinge, "lovasz_softmax": _lovasz_softmax}
