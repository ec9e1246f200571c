"""Export a loss with the explorer's settings as self-contained TensorFlow or PyTorch code.

:func:`snippet` writes Python source that imports only ``tensorflow`` or ``torch`` (the
boundary losses' signed distance map imports NumPy and SciPy inside its helper) and
defines ``loss_fn(y_true, y_pred)`` on channels-last probabilities ``[B, ..., C]``, equal
to ``explorer.losses.<loss>(y_true, y_pred, **settings)``. The settings are baked in as
constants, and only the code paths they need are written. ``loss_fn`` takes logits exactly
when ``from_logits=True`` is passed (then it computes from them as the library does:
``log_sigmoid`` / ``log_softmax``, or ``sigmoid`` / ``softmax`` for the region losses).
``lovasz_hinge`` takes logits in the library by default; its ``loss_fn`` takes
probabilities unless ``from_logits=True`` is passed, and turns them into logits the way
``explorer.gradients`` does. Every keyword of the library is written out: ``ignore_index``,
``empty``, ``weight_type``, ``class_weights`` and ``pos_weight`` of cross-entropy and focal.

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
    "EXP": ("tf.exp", "torch.exp"),
    "SIGMOID": ("tf.sigmoid", "torch.sigmoid"),
    "SOFTMAX": ("tf.nn.softmax", "torch.softmax"),
    "LOG_SIGMOID": ("tf.math.log_sigmoid", "torch.nn.functional.logsigmoid"),
    "LOG_SOFTMAX": ("tf.nn.log_softmax", "torch.log_softmax"),
    "LOGSUMEXP": ("tf.reduce_logsumexp", "torch.logsumexp"),
    "MINIMUM": ("tf.minimum", "torch.minimum"),
    "MAXIMUM": ("tf.maximum", "torch.maximum"),
    "ONES_LIKE": ("tf.ones_like", "torch.ones_like"),
}
# neutral NAME(variable) -> (TensorFlow, PyTorch), where the spellings differ in shape
_FORMS = {
    "BATCH": ("tf.shape({})[0]", "{}.shape[0]"),
    "TENSOR": ("tf.constant({}, y_pred.dtype)",
               "torch.tensor({}, dtype=y_pred.dtype, device=y_pred.device)"),
    "FLOAT": ("tf.cast({}, y_pred.dtype)", "{}.to(y_pred.dtype)"),
    "EYE": ("tf.eye({}, dtype=y_pred.dtype)",
            "torch.eye({}, dtype=y_pred.dtype, device=y_pred.device)"),
    # the signed distance map: NumPy and SciPy on the truth's values, a constant for autograd
    "DISTANCE": ("tf.stop_gradient(tf.reshape(tf.numpy_function(\n        lambda a: "
                 "signed_distance(a).astype(a.dtype), [{0}], {0}.dtype), tf.shape({0})))",
                 "torch.as_tensor(signed_distance({0}.detach().cpu().numpy()),\n"
                 "                          dtype=y_pred.dtype, device=y_pred.device)"),
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
    "boundary_loss": ("Boundary loss", "mean of phi_G * p, Kervadec et al., MIDL 2019"),
    "boundary_dice_loss": ("Dice + boundary loss",
                           "Dice loss + boundary_weight * boundary loss (Kervadec et al. 2019)"),
    "cl_dice_loss": ("clDice loss", "1 - soft clDice, Shit et al., CVPR 2021"),
    "cl_dice_dice_loss": ("Dice + clDice loss",
                          "Dice loss + cl_dice_weight * (1 - soft clDice) (Shit et al. 2021)"),
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
    logits = bool(settings.get("from_logits", False))  # what loss_fn takes, said explicitly
    settings = losses.check_keywords(loss, settings)
    settings = {key: _baked(value) for key, value in settings.items()}

    code = _Code(logits)
    _FAMILIES[loss](loss, settings, code)
    index = FRAMEWORKS.index(framework)
    name, what = _TITLES[loss]
    takes = "logits (from_logits=True)" if logits else "probabilities"
    lines = [
        f"# {name}: {what}.",
        f"# Generated by the Dice Loss Explorer: explorer.losses.{loss} as plain "
        f"{'TensorFlow' if index == 0 else 'PyTorch'}.",
        *_wrapped("# Settings: ", [f"{k}={v!r}" for k, v in settings.items()] or ["none"]),
        f"# loss_fn(y_true, y_pred) takes channels-last {takes} [B, ..., C]: C = 1 is",
        "# binary, C > 1 one-hot truth and softmax prediction; the axes between are spatial.",
        _IMPORTS[index],
        "",
        *code.constants,
        *([""] if code.constants else []),
        *code.helpers,
        "",
        "def loss_fn(y_true, y_pred):",
        f'    """{name} of channels-last {takes.split(" ")[0]} [B, ..., C], a scalar."""',
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

    def __init__(self, logits=False):
        self.constants, self.helpers, self.body = [], [], []
        self.logits = logits  # loss_fn takes logits (from_logits=True was passed)

    def constant(self, name, value, why):
        self.constants.append(f"{name} = {value!r}  # {why}")


# ------------------------------------------------------------------ shared pieces


def _ignore(s, code):
    """ignore_index: zero the truth where it is marked; ``keep`` ([B, ..., 1]) is 1 for the
    counted pixels. Returns whether there is a mark."""
    if s.get("ignore_index") is None:
        return False
    code.constant("IGNORE_INDEX", s["ignore_index"], "truth value marking pixels to leave out")
    code.body += [
        "# ignore_index: a pixel whose truth equals IGNORE_INDEX in any channel counts nowhere",
        "ignored = ANY(y_true == IGNORE_INDEX, -1)[..., None]",
        "keep = 1 - FLOAT(ignored)",
        "y_true = y_true * keep",
    ]
    return True


def _to_probabilities(code, masked):
    """Logits to probabilities (from_logits), and 0 at the ignored pixels (``masked``)."""
    if code.logits:
        code.body.append("y_pred = SIGMOID(y_pred) if y_pred.shape[-1] == 1 else "
                         "SOFTMAX(y_pred, -1)  # from_logits")
    if masked:
        code.body.append("y_pred = y_pred * keep  # an ignored pixel adds to no sum")


def _log_terms(code):
    """``log_p`` and ``log_q`` = log(1 - p): exact from logits, else from clipped p."""
    if not code.logits:
        code.body += ["p = CLIP(y_pred, 1e-7, 1 - 1e-7)  # as Keras does, so log(0) never happens",
                      "log_p, log_q = LOG(p), LOG(1 - p)"]
        return
    code.body += [
        "# from_logits: exact logs, no clip (sigmoid for one channel, softmax over several)",
        "if y_pred.shape[-1] == 1:",
        "    log_p, log_q = LOG_SIGMOID(y_pred), LOG_SIGMOID(-y_pred)",
        "else:  # log(1 - p_c) = logsumexp of the other classes' logits - logsumexp of all",
        "    channels = y_pred.shape[-1]",
        "    log_p = LOG_SOFTMAX(y_pred, -1)",
        "    total = LOGSUMEXP(y_pred, -1)[..., None]",
        "    log_q = LOGSUMEXP(y_pred[..., None, :] + LOG(1 - EYE(channels)), -1) - total",
    ]


def _pixel_mean(code, class_weights, masked, out):
    """``out`` = the mean of ``pixel`` ([B, ...]): plain, or torch's weighted mean."""
    if class_weights is None and not masked:
        code.body.append(f"{out} = MEAN(pixel)")
        return
    if class_weights is not None:
        code.constant("CLASS_WEIGHTS", class_weights,
                      "torch's weight of each class ([background, foreground] for one channel)")
        code.body += [
            "# as torch: sum_i w[y_i] l_i / sum_i w[y_i], w[y_i] the weight of the true class",
            "if y_pred.shape[-1] == 1:",
            "    if len(CLASS_WEIGHTS) != 2:",
            '        raise ValueError("CLASS_WEIGHTS needs 2 values for one channel")',
            "    w = CLASS_WEIGHTS[0] * (1 - y_true[..., 0]) + CLASS_WEIGHTS[1] * y_true[..., 0]",
            "else:",
            "    if len(CLASS_WEIGHTS) != y_pred.shape[-1]:",
            '        raise ValueError(f"CLASS_WEIGHTS has {len(CLASS_WEIGHTS)} values for '
            '{y_pred.shape[-1]} classes")',
            "    w = SUM(TENSOR(CLASS_WEIGHTS) * y_true, -1)",
        ]
        if masked:
            code.body.append("w = w * keep[..., 0]  # an ignored pixel weighs 0")
    else:
        code.body.append("w = keep[..., 0]  # an ignored pixel weighs 0")
    code.body.append(f"{out} = SUM(w * pixel) / SUM(w)  # nothing counted: 0/0, NaN as in torch")


def _bce(code, masked=False, class_weights=None, pos_weight=None):
    if not (code.logits or masked or class_weights is not None or pos_weight is not None):
        code.body += [
            "p = CLIP(y_pred, 1e-7, 1 - 1e-7)  # as Keras does, so log(0) never happens",
            "bce = MEAN(-(y_true * LOG(p) + (1 - y_true) * LOG(1 - p)))",
        ]
        return
    _log_terms(code)
    positive = "y_true * log_p"
    if isinstance(pos_weight, list):
        code.constant("POS_WEIGHT", pos_weight, "times the positive term, one per channel")
        code.body += ["if len(POS_WEIGHT) != y_pred.shape[-1]:",
                      '    raise ValueError(f"POS_WEIGHT has {len(POS_WEIGHT)} values for '
                      '{y_pred.shape[-1]} channels")']
        positive = "TENSOR(POS_WEIGHT) * " + positive
    elif pos_weight is not None:
        code.constant("POS_WEIGHT", pos_weight, "times the positive term (torch's pos_weight)")
        positive = "POS_WEIGHT * " + positive
    code.body.append(f"pixel = -MEAN({positive} + (1 - y_true) * log_q, -1)  # each pixel's "
                     "mean over channels")
    _pixel_mean(code, class_weights, masked, "bce")


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


def _combine_skip(s, per_class):
    """empty="skip": classes with no truth leave the class mean, images with none the mean."""
    lines = ["# empty='skip': a class with no truth leaves the class mean, and an image with",
             "# no class left leaves the mean over images",
             "kept = FLOAT(present)"]
    if s["class_weights"] is not None:
        lines.append("kept = weights * kept")
    lines.append(f"total = SUM(WHERE(kept > 0, kept * ({per_class}), 0.0), -1)")
    if s["normalize_weights"]:
        lines += ["count = SUM(kept, -1)",
                  "total = WHERE(count > 0, total / WHERE(count > 0, count, 1.0), 0.0)"]
    return lines + ["counted = ANY(kept > 0, -1)",
                    "counted = FLOAT(counted)",
                    "images = SUM(counted)",
                    "total = WHERE(images > 0, SUM(total * counted) / WHERE(images > 0, images, "
                    "1.0), 0.0)"]


_FILL = {"zero": ("0.0", "1.0"), "one": ("1.0", "0.0"),  # (as a loss, as a score)
         "nan": ('float("nan")', 'float("nan")')}


def _combine(s, per_class, guarded):
    """Lines that reduce ``per_class`` to ``total``: over classes, then mean over images."""
    if s.get("empty") == "skip":
        return _combine_skip(s, per_class)
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
    masked = _ignore(s, code)
    if loss.startswith("bce"):
        _bce(code, masked)  # on every channel, before class 0 may be dropped
    _to_probabilities(code, masked)
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
    empty = s["empty"]
    if empty != "smooth":
        code.body.append("present = true_sum > 0  # the class has truth in this image (batch)")
    if empty in _FILL:
        as_loss, as_score = _FILL[empty]
        code.body.append(f"# empty='{empty}': a class with no truth scores this, whatever is "
                         "predicted")
        if loss == "bce_log_dice_loss":
            code.body.append(f"score = WHERE(present, score, {as_score})")
        else:
            code.body.append(f"per_class = WHERE(present, {per_class}, {as_loss})")
            per_class = "per_class"
    if loss == "bce_log_dice_loss":
        code.body += _combine(s, "score", guarded) + ["return bce - LOG(total)"]
    elif loss == "bce_dice_loss":
        code.body += _combine(s, per_class, guarded) + [
            "return BCE_WEIGHT * bce + DICE_WEIGHT * total"]
    else:
        code.body += _combine(s, per_class, guarded) + ["return total"]


def _generalized_dice(loss, s, code):
    masked = _ignore(s, code)
    _to_probabilities(code, masked)
    _smoothing(s, code)
    _classes_and_weights(s, code)
    _sums(s, code)
    volume = "SUM(y_true, axes)" if s["squared"] else "true_sum"
    kind, empty = s["weight_type"], s["empty"]
    code.body += [f"volume = {volume}", "present = volume > 0"]
    if kind == "uniform":
        code.body += ["weights = 1.0  # weight_type='uniform': every class weighs 1"]
    else:
        size = "volume * volume" if kind == "square" else "volume"
        code.body += [
            f"# w_c = 1 / {'(sum g_c)^2' if kind == 'square' else 'sum g_c'} on the plain "
            "truth volume; a class absent from the truth takes",
            "# the largest weight of the present ones, an image with no class present weighs all 1",
            f"raw = WHERE(present, 1 / WHERE(present, {size}, 1.0), 0.0)",
            "weights = WHERE(present, raw, MAX(raw, -1)[..., None])",
            "weights = NO_GRAD(WHERE(ANY(present, -1)[..., None], weights, 1.0))",
        ]
    code.body += ["num = 2 * SUM(weights * inter, -1) + SMOOTH",
                  "den = SUM(weights * (pred_sum + true_sum), -1) + SMOOTH + EPSILON"]
    code.body += _GUARD if s["smooth"] + s["epsilon"] == 0 else ["score = num / den"]
    if empty == "smooth":
        code.body.append("return MEAN(1 - score)")
        return
    code.body.append(f"counted = ANY(present, -1)  # empty='{empty}' applies where no kept "
                     "class has truth")
    if empty in _FILL:
        code.body.append(f"return MEAN(WHERE(counted, 1 - score, {_FILL[empty][0]}))")
        return
    code.body += ["loss = WHERE(counted, 1 - score, 0.0)",
                  "counted = FLOAT(counted)",
                  "images = SUM(counted)  # empty='skip': those images leave the mean",
                  "return WHERE(images > 0, SUM(loss * counted) / WHERE(images > 0, images, 1.0), "
                  "0.0)"]


def _binary_crossentropy(loss, s, code):
    masked = _ignore(s, code)
    _bce(code, masked, s["class_weights"], s["pos_weight"])
    code.body.append("return bce")


def _focal(loss, s, code):
    alpha = s["alpha"]
    masked = _ignore(s, code)
    code.constant("GAMMA", s["gamma"], "(1 - p) ** GAMMA down-weighs easy pixels")
    if alpha is not None:
        code.constant("ALPHA", alpha, "weight of the foreground term" if isinstance(alpha, float)
                      else "one weight per class")
    _log_terms(code)
    if code.logits:  # powers from the logs: exact for any logit
        hard, easy = "EXP(GAMMA * log_q)", "EXP(GAMMA * log_p)"
    else:
        hard, easy = "(1 - p) ** GAMMA", "p ** GAMMA"
    code.body += [f"positive = y_true * {hard} * log_p",
                  "if y_pred.shape[-1] == 1:  # binary: a foreground and a background term"]
    if isinstance(alpha, list):
        code.body.append('    raise ValueError("ALPHA must be one number in [0, 1] for a '
                         'single channel")')
    else:
        code.body.append(f"    negative = (1 - y_true) * {easy} * log_q")
        if alpha is not None:
            code.body.append("    positive, negative = ALPHA * positive, (1 - ALPHA) * negative")
        code.body.append("    pixel = -(positive + negative)[..., 0]")
    code.body.append("else:  # several classes: categorical focal loss, summed over classes")
    if isinstance(alpha, list):
        code.body += ["    if len(ALPHA) != y_pred.shape[-1]:",
                      '        raise ValueError(f"ALPHA has {len(ALPHA)} values for '
                      '{y_pred.shape[-1]} classes")',
                      "    positive = TENSOR(ALPHA) * positive"]
    elif alpha is not None:
        code.body.append("    positive = ALPHA * positive")
    code.body.append("    pixel = -SUM(positive, -1)")
    _pixel_mean(code, s["class_weights"], masked, "focal")
    code.body.append("return focal")


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


_LEFT_OUT = "errors = WHERE(keep > 0, errors, -1.0)  # ignored: sorted last, 0 after the relu"


def _lovasz_hinge(loss, s, code):
    masked = _ignore(s, code)
    code.body += [
        "if y_pred.shape[-1] != 1:",
        '    raise ValueError("lovasz_hinge is binary: y_true and y_pred need 1 channel")',
        _lovasz(s, code),
    ]
    if code.logits:
        code.body.append("logits = y_pred  # from_logits=True: y_pred are the logits")
    else:
        code.body += [
            "# the Lovasz hinge works on logits: the probabilities go back to logits as in the",
            "# explorer (explorer.gradients): p clipped to [1e-7, 1 - 1e-7], then log p - "
            "log(1 - p)",
            "p = CLIP(y_pred, 1e-7, 1 - 1e-7)",
            "logits = LOG(p) - LOG1P(-p)",
        ]
    code.body.append("errors = 1 - logits * (2 * y_true - 1)  # hinge errors")
    if masked:
        code.body.append(_LEFT_OUT)
    code.body += [
        "errors = RESHAPE(errors, [rows, -1])",
        "fg = RESHAPE(y_true, [rows, -1])",
        "return MEAN(lovasz_extension(errors, fg))",
    ]


def _lovasz_softmax(loss, s, code):
    masked = _ignore(s, code)
    _to_probabilities(code, False)
    code.body += [_lovasz(s, code), "errors = ABS(y_true - y_pred)"]
    if masked:
        code.body.append(_LEFT_OUT)
    code.body += [
        "channels = y_pred.shape[-1]",
        "fg = TRANSPOSE(RESHAPE(y_true, [rows, -1, channels]), (0, 2, 1))  # [rows, C, pixels]",
        "errors = TRANSPOSE(RESHAPE(errors, [rows, -1, channels]), (0, 2, 1))",
        "flat_fg = RESHAPE(fg, [rows * channels, -1])",
        "errors = RESHAPE(errors, [rows * channels, -1])",
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


# ------------------------------------------------------------- boundary and clDice

_SIGNED_DISTANCE = '''def signed_distance(truth):
    """Kervadec et al.'s signed distance map of a truth [B, ..., C], in pixels: outside the
    object the distance to it, inside minus (the distance to the background, less 1); a
    channel with no object (or no background) is 0. NumPy and SciPy, on concrete values."""
    import numpy as np
    from scipy import ndimage

    g = np.asarray(truth) >= 0.5
    phi = np.zeros(g.shape, np.float64)
    for b in range(g.shape[0]):
        for c in range(g.shape[-1]):
            inside = g[b, ..., c]
            if inside.any() and not inside.all():
                outside = ~inside
                phi[b, ..., c] = (ndimage.distance_transform_edt(outside) * outside
                                  - (ndimage.distance_transform_edt(inside) - 1) * inside)
    return phi
'''
_SOFT_SKELETON = '''def pool_min(x, axis):
    """The min of each pixel and its two neighbours along a spatial axis (none outside)."""
    at = (slice(None),) * axis
    edge = ONES_LIKE(x[at + (slice(0, 1),)]) * 2.0  # above any probability: never the min
    padded = CONCAT([edge, x, edge], axis)
    return MINIMUM(MINIMUM(padded[at + (slice(0, -2),)], x), padded[at + (slice(2, None),)])


def pool_max(x, axis):
    """The max of each pixel and its two neighbours along a spatial axis (none outside)."""
    at = (slice(None),) * axis
    edge = ONES_LIKE(x[at + (slice(0, 1),)]) * -1.0  # below any probability: never the max
    padded = CONCAT([edge, x, edge], axis)
    return MAXIMUM(MAXIMUM(padded[at + (slice(0, -2),)], x), padded[at + (slice(2, None),)])


def soft_erode(x):
    """Min over a cross: 3 x 1 and 1 x 3 (and 1 x 1 x 3 in 3-D), channels-last."""
    out = pool_min(x, 1)
    for axis in range(2, len(x.shape) - 1):
        out = MINIMUM(out, pool_min(x, axis))
    return out


def soft_dilate(x):
    """Max over the full 3 x 3 (x 3) box."""
    for axis in range(1, len(x.shape) - 1):
        x = pool_max(x, axis)
    return x


def soft_skeleton(x, iterations):
    """Shit et al. (CVPR 2021): iterated soft erosion, adding what each opening removes."""
    skel = RELU(x - soft_dilate(soft_erode(x)))
    for _ in range(iterations):
        x = soft_erode(x)
        delta = RELU(x - soft_dilate(soft_erode(x)))
        skel = skel + RELU(delta - skel * delta)
    return skel
'''


def _dice_first(s, code):
    """The Dice term as :func:`_overlap` writes it, kept as ``dice`` (not returned)."""
    _overlap("dice_loss", s, code)
    assert code.body[-1] == "return total"
    code.body[-1] = "dice = total  # the Dice term"


def _alone(s, code):
    """ignore_index, logits and class 0 for a term without Dice beside it."""
    masked = _ignore(s, code)
    _to_probabilities(code, masked)
    if not s["include_background"]:
        code.body += ["if y_pred.shape[-1] > 1:  # include_background=False: leave out class 0",
                      "    y_true, y_pred = y_true[..., 1:], y_pred[..., 1:]"]


def _boundary(loss, s, code):
    """Kervadec et al.'s boundary loss, alone or beside Dice."""
    if loss == "boundary_dice_loss":
        _dice_first(s, code)
    else:
        _alone(s, code)
    code.helpers.append(_SIGNED_DISTANCE)
    code.body += ["# the truth's signed distance map: computed from the truth, a constant for p",
                  "phi = DISTANCE(y_true)",
                  "elements = phi * y_pred"]
    if s.get("ignore_index") is None:
        code.body.append("boundary = MEAN(elements)")
    else:
        code.body += ["w = keep[..., 0]  # an ignored pixel counts in no mean",
                      "boundary = SUM(w * MEAN(elements, -1)) / SUM(w)"]
    if loss == "boundary_loss":
        code.body.append("return boundary")
    elif s["boundary_weight"] == 0:  # the library adds 0 then, even where the term is NaN
        code.body.append("return dice  # boundary_weight=0: Dice alone")
    else:
        code.constant("BOUNDARY_WEIGHT", s["boundary_weight"], "weight of the boundary term")
        code.body.append("return dice + BOUNDARY_WEIGHT * boundary")


def _cl_dice(loss, s, code):
    """Shit et al.'s soft clDice loss, alone or beside Dice."""
    if loss == "cl_dice_dice_loss":
        _dice_first(s, code)
    else:
        _alone(s, code)
        code.constant("SMOOTH", s["smooth"], "added to the numerators and denominators")
        code.body.append("axes = tuple(range(1 if PER_IMAGE else 0, len(y_pred.shape) - 1))")
        code.constant("PER_IMAGE", s["per_image"], "a score per image (else over the batch)")
    code.constant("ITERATIONS", int(s["iterations"]), "soft-skeleton steps")
    code.helpers.append(_SOFT_SKELETON)
    code.body += [
        "skel_p, skel_g = soft_skeleton(y_pred, ITERATIONS), soft_skeleton(y_true, ITERATIONS)",
        "tprec = (SUM(skel_p * y_true, axes) + SMOOTH) / (SUM(skel_p, axes) + SMOOTH)",
        "tsens = (SUM(skel_g * y_pred, axes) + SMOOTH) / (SUM(skel_g, axes) + SMOOTH)",
        "cl_dice = 2 * tprec * tsens / (tprec + tsens)  # 0/0 (empty skeletons): NaN",
        "cl_loss = MEAN(MEAN(1 - cl_dice, -1))  # over classes, then images",
    ]
    if loss == "cl_dice_loss":
        code.body.append("return cl_loss")
    elif s["cl_dice_weight"] == 0:
        code.body.append("return dice  # cl_dice_weight=0: Dice alone")
    else:
        code.constant("CL_DICE_WEIGHT", s["cl_dice_weight"], "weight of the clDice term")
        code.body.append("return dice + CL_DICE_WEIGHT * cl_loss")


_FAMILIES = {**dict.fromkeys(_TVERSKY_KIND, _overlap),
             "generalized_dice_loss": _generalized_dice,
             "binary_crossentropy": _binary_crossentropy, "focal_loss": _focal,
             "lovasz_hinge": _lovasz_hinge, "lovasz_softmax": _lovasz_softmax,
             "boundary_loss": _boundary, "boundary_dice_loss": _boundary,
             "cl_dice_loss": _cl_dice, "cl_dice_dice_loss": _cl_dice}
