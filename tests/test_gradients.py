"""Gradient tests for ``explorer.gradients.loss_and_gradient``.

Three independent references are used:

* hand-derived analytic gradients written below in float64 numpy (each formula
  is spelled out in a comment), checked against central finite differences of a
  float64 numpy forward pass, and tied to the library by comparing that forward
  pass with the library's float64 loss value;
* central finite differences of the library's own loss functions evaluated in
  float64 (every loss in ``explorer.losses.LOSSES``, w.r.t. probabilities and
  w.r.t. logits);
* the library's loss value itself (``loss_and_gradient`` must return the same
  number as ``explorer.losses.<name>``).

Inputs are kept inside (0.05, 0.95) so no clipping is active, and the Lovasz
cases use well-separated errors so the sort order is fixed under perturbation.
"""
import math

import numpy as np
import pytest

import explorer.gradients as eg
import explorer.losses as el

ALL_LOSS_NAMES = (
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "generalized_dice_loss",
    "binary_crossentropy",
    "bce_dice_loss",
    "bce_log_dice_loss",
    "focal_loss",
    "lovasz_hinge",
    "lovasz_softmax",
)

FD_STEP = 1e-6


# --------------------------------------------------------------------------
# Input construction
# --------------------------------------------------------------------------
def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p):
    return np.log(p / (1.0 - p))


def _make_inputs(shape, seed, *, absent_class_in_first_image=None, soft_truth=False):
    """Return (y_true, y_pred) float64 with y_pred strictly inside (0.05, 0.95).

    C == 1: binary mask (or soft truth) and independent probabilities.
    C > 1: one-hot truth (every class present in every image unless
    ``absent_class_in_first_image`` is given) and softmax probabilities.
    """
    rng = np.random.default_rng(seed)
    channels = shape[-1]
    if channels == 1:
        if soft_truth:
            g = rng.uniform(0.0, 1.0, size=shape)
            p = rng.uniform(0.06, 0.94, size=shape)
            # keep |p - g| away from 0 so min(p, g) is differentiable at every pixel
            close = np.abs(p - g) < 1e-2
            while close.any():
                p[close] = rng.uniform(0.06, 0.94, size=int(close.sum()))
                close = np.abs(p - g) < 1e-2
        else:
            g = (rng.random(shape) < 0.4).astype(np.float64)
            # make sure every image has both foreground and background
            flat = g.reshape(shape[0], -1)
            flat[:, 0] = 1.0
            flat[:, 1] = 0.0
            g = flat.reshape(shape)
            p = rng.uniform(0.06, 0.94, size=shape)
        return g, p
    labels = rng.integers(0, channels, size=shape[:-1])
    flat = labels.reshape(shape[0], -1)
    for b in range(shape[0]):
        flat[b, :channels] = np.arange(channels)
    if absent_class_in_first_image is not None:
        row = flat[0]
        row[row == absent_class_in_first_image] = (absent_class_in_first_image + 1) % channels
    labels = flat.reshape(shape[:-1])
    g = np.eye(channels)[labels]
    p = _softmax(rng.uniform(-1.0, 1.0, size=shape))
    assert p.min() > 0.05 and p.max() < 0.95
    return g, p


def _min_gap(values):
    v = np.sort(np.asarray(values).ravel())
    return np.min(np.diff(v)) if v.size > 1 else np.inf


def _make_lovasz_hinge_inputs(shape, seed):
    """Binary truth and probabilities whose hinge errors 1 - z*s are all distinct.

    The margins m = z * s are a shuffled grid in [-2.5, 2.5] (spacing >> FD_STEP)
    that avoids m == 1 (the relu kink), so errors are distinct across the whole
    batch and the sort order cannot change under a finite-difference step.
    """
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    margins = np.linspace(-2.5, 2.5, n)
    margins = margins[np.abs(margins - 1.0) > 1e-3]
    while margins.size < n:  # pragma: no cover - only if the grid hit 1.0 exactly
        margins = np.append(margins, 2.6 + 0.01 * margins.size)
    margins = rng.permutation(margins)[:n]
    g = (rng.random(n) < 0.45).astype(np.float64)
    g[0], g[1] = 1.0, 0.0
    signs = 2.0 * g - 1.0
    z = margins * signs
    p = _sigmoid(z)
    assert p.min() > 0.05 and p.max() < 0.95
    return g.reshape(shape), p.reshape(shape)


def _make_lovasz_softmax_inputs(shape, seed):
    """Inputs whose per-class errors |g_c - p_c| are pairwise separated by > 1e-4."""
    for attempt in range(500):
        g, p = _make_inputs(shape, seed * 1000 + attempt)
        errors = np.abs(g - p).reshape(-1, shape[-1])
        if all(_min_gap(errors[:, c]) > 1e-4 for c in range(shape[-1])):
            return g, p
    raise AssertionError("could not build well-separated Lovasz-softmax inputs")


# --------------------------------------------------------------------------
# Numpy reference forward passes and hand-derived analytic gradients (float64)
# --------------------------------------------------------------------------
def _sum_axes(p, per_image):
    """Spatial axes (per image) or every axis except channels (whole batch)."""
    return tuple(range(1, p.ndim - 1)) if per_image else tuple(range(p.ndim - 1))


def _overlap(g, p, *, squared, per_image, soft_label):
    """I, P, G kept-dims (broadcastable to p) plus dI/dp and dP/dp per element."""
    axes = _sum_axes(p, per_image)
    if soft_label:
        inter = np.minimum(p, g)          # I = sum min(p, g)
        d_inter = (p < g).astype(float)   # dI/dp_i = 1 where p_i < g_i else 0 (no ties)
    else:
        inter = p * g                     # I = sum p g
        d_inter = g                       # dI/dp_i = g_i
    if squared:
        pp, gg, d_pp = p**2, g**2, 2.0 * p  # P = sum p^2 -> dP/dp_i = 2 p_i
    else:
        pp, gg, d_pp = p, g, np.ones_like(p)  # P = sum p -> dP/dp_i = 1
    I = inter.sum(axes, keepdims=True)
    P = pp.sum(axes, keepdims=True)
    G = gg.sum(axes, keepdims=True)
    return I, P, G, d_inter, d_pp


def _class_weights(channels, class_weights, include_background):
    if class_weights is None:
        w = np.ones(channels)
    else:
        w = np.asarray(class_weights, dtype=np.float64)
        if not include_background and channels > 1 and w.size == channels - 1:
            w = np.concatenate([[0.0], w])
    w = w.copy()
    if not include_background and channels > 1:
        w[0] = 0.0
    return w


def _reduce_classes(per_bc, w, normalize_weights):
    """loss = mean_b sum_c w_c l_bc / W,  W = sum_c w_c (normalized) or 1."""
    channels = per_bc.shape[-1]
    rows = per_bc.reshape(-1, channels)
    denom = w.sum() if normalize_weights else 1.0
    return float(np.mean((rows * w).sum(-1) / denom))


def _class_chain(p, w, normalize_weights, per_image):
    """dL/dl_bc, broadcast to p's shape: w_c / (W * n_images)."""
    n_images = p.shape[0] if per_image else 1
    denom = w.sum() if normalize_weights else 1.0
    return np.broadcast_to(w / (denom * n_images), p.shape)


def _tversky_family(g, p, *, kind, smooth=1.0, epsilon=0.0, squared=False, per_image=True,
                    class_weights=None, normalize_weights=True, include_background=True,
                    soft_label=False, alpha=0.5, beta=0.5, gamma=1.0):
    """Return (loss, dL/dp) for dice / jaccard / tversky.

    Dice:     D = (2I + s) / (P + G + s + e)
              dD/dp_i = (2 dI_i (P+G+s+e) - (2I+s) dP_i) / (P+G+s+e)^2
    Jaccard:  J = (I + s) / (P + G - I + s + e)
              dJ/dp_i = (dI_i Den - (I+s)(dP_i - dI_i)) / Den^2
    Tversky:  T = (I + s) / ((1-a-b) I + a P + b G + s + e)
              dT/dp_i = (dI_i Den - (I+s)((1-a-b) dI_i + a dP_i)) / Den^2
              l = (1 - T)^(1/gamma),  dl/dT = -(1/gamma) (1 - T)^(1/gamma - 1)
    with dI_i = g_i (or 1[p_i < g_i] for soft labels), dP_i = 1 (or 2 p_i squared).
    Score-based losses: l = 1 - score, dl/dp = -dscore/dp.
    Class reduction: L = mean_b sum_c w_c l_bc / W, so dL/dp_bic = w_c/(W n_b) dl_bc/dp_bic.
    """
    I, P, G, dI, dP = _overlap(g, p, squared=squared, per_image=per_image, soft_label=soft_label)
    s, e = smooth, epsilon
    if kind == "dice":
        num, den = 2.0 * I + s, P + G + s + e
        score = num / den
        d_score = (2.0 * dI * den - num * dP) / den**2
        per_bc, d_per_bc = 1.0 - score, -d_score
    elif kind == "jaccard":
        num, den = I + s, P + G - I + s + e
        score = num / den
        d_score = (dI * den - num * (dP - dI)) / den**2
        per_bc, d_per_bc = 1.0 - score, -d_score
    elif kind == "tversky":
        a, b = alpha, beta
        num, den = I + s, (1.0 - a - b) * I + a * P + b * G + s + e
        score = num / den
        d_score = (dI * den - num * ((1.0 - a - b) * dI + a * dP)) / den**2
        one_minus = 1.0 - score
        per_bc = one_minus ** (1.0 / gamma)
        d_per_bc = -(1.0 / gamma) * one_minus ** (1.0 / gamma - 1.0) * d_score
    else:  # pragma: no cover
        raise AssertionError(kind)
    w = _class_weights(p.shape[-1], class_weights, include_background)
    loss = _reduce_classes(per_bc, w, normalize_weights)
    grad = _class_chain(p, w, normalize_weights, per_image) * d_per_bc
    return loss, grad


def ref_dice(g, p, **kw):
    return _tversky_family(g, p, kind="dice", **kw)


def ref_jaccard(g, p, **kw):
    return _tversky_family(g, p, kind="jaccard", **kw)


def ref_tversky(g, p, **kw):
    return _tversky_family(g, p, kind="tversky", **kw)


def ref_generalized_dice(g, p, *, smooth=1e-5, epsilon=0.0, squared=False, per_image=True,
                         include_background=True, soft_label=False):
    """GD = (2 sum_c w_c I_c + s) / (sum_c w_c (P_c + G_c) + s + e),  loss = mean_b (1 - GD_b).

    w_c = 1 / (sum g_c)^2 depends on the truth only, so
    dGD/dp_ic = w_c (2 dI_i Den - Num dP_i) / Den^2 and dL/dp = -dGD/dp / n_images.
    Guard: absent class -> largest weight of the present classes; none present -> all 1.
    include_background=False (C > 1) drops class 0 (weight 0).
    """
    channels = p.shape[-1]
    I, P, G, dI, dP = _overlap(g, p, squared=squared, per_image=per_image, soft_label=soft_label)
    axes = _sum_axes(p, per_image)
    plain_g = g.sum(axes, keepdims=True)
    keep = np.ones(channels, dtype=bool)
    if not include_background and channels > 1:
        keep[0] = False
    rows_g = plain_g.reshape(-1, channels)
    weights = np.zeros_like(rows_g)
    for r in range(rows_g.shape[0]):
        present = keep & (rows_g[r] > 0)
        if present.any():
            wr = np.zeros(channels)
            wr[present] = 1.0 / rows_g[r, present] ** 2
            wr[keep & ~present] = wr[present].max()
        else:
            wr = keep.astype(float)
        weights[r] = wr
    w = weights.reshape(plain_g.shape)
    axes_c = (-1,)
    num = 2.0 * (w * I).sum(axis=axes_c, keepdims=True) + smooth
    den = (w * (P + G)).sum(axis=axes_c, keepdims=True) + smooth + epsilon
    gd = num / den
    loss = float(np.mean(1.0 - gd))
    n_images = p.shape[0] if per_image else 1
    grad = -(w * (2.0 * dI * den - num * dP) / den**2) / n_images
    return loss, grad


def ref_bce(g, p):
    """L = mean(-(g log p + (1-g) log(1-p))),  dL/dp = (-(g/p) + (1-g)/(1-p)) / N."""
    n = p.size
    loss = float(np.mean(-(g * np.log(p) + (1.0 - g) * np.log(1.0 - p))))
    grad = (-(g / p) + (1.0 - g) / (1.0 - p)) / n
    return loss, grad


def ref_focal(g, p, *, gamma=2.0, alpha=None):
    """Focal loss.

    C == 1, per element (a1 = alpha, a0 = 1 - alpha; both 1 when alpha is None):
      f = -[a1 g (1-p)^y log p + a0 (1-g) p^y log(1-p)]
      df/dp = -a1 g [(1-p)^y / p - y (1-p)^(y-1) log p]
              -a0 (1-g) [y p^(y-1) log(1-p) - p^y / (1-p)]
      L = mean over all N elements -> dL/dp = df/dp / N.
    C > 1, per pixel f = -sum_c a_c g_c (1-p_c)^y log p_c,
      df/dp_c = -a_c g_c [(1-p_c)^y / p_c - y (1-p_c)^(y-1) log p_c],
      L = mean over pixels (N / C).
    """
    y = gamma
    channels = p.shape[-1]
    if channels == 1:
        a1 = 1.0 if alpha is None else float(alpha)
        a0 = 1.0 if alpha is None else 1.0 - float(alpha)
        f = -(a1 * g * (1 - p) ** y * np.log(p) + a0 * (1 - g) * p**y * np.log(1 - p))
        df = (-a1 * g * ((1 - p) ** y / p - y * (1 - p) ** (y - 1) * np.log(p))
              - a0 * (1 - g) * (y * p ** (y - 1) * np.log(1 - p) - p**y / (1 - p)))
        return float(np.mean(f)), df / p.size
    a = np.ones(channels) if alpha is None else np.broadcast_to(np.asarray(alpha, float), (channels,))
    f = -(a * g * (1 - p) ** y * np.log(p)).sum(-1)
    df = -a * g * ((1 - p) ** y / p - y * (1 - p) ** (y - 1) * np.log(p))
    n_pixels = p.size // channels
    return float(np.mean(f)), df / n_pixels


def _lovasz_grad(gs):
    """Spec: n = sum gs; inter = n - cumsum(gs); union = n + cumsum(1 - gs);
    jac = 1 - inter / union; grad[0] = jac[0], grad[k] = jac[k] - jac[k-1]."""
    n = gs.sum()
    inter = n - np.cumsum(gs)
    union = n + np.cumsum(1.0 - gs)
    jac = 1.0 - inter / union
    out = jac.copy()
    out[1:] = jac[1:] - jac[:-1]
    return out


def _lovasz_hinge_flat(g, z):
    """loss = sum_k relu(e_(k)) w_k with e = 1 - z s, s = 2g - 1 sorted descending,
    w = lovasz_grad(g sorted the same way). For a fixed order the loss is piecewise
    linear in z: dloss/dz_i = -s_i * w_rank(i) * 1[e_i > 0]."""
    s = 2.0 * g - 1.0
    e = 1.0 - z * s
    order = np.argsort(-e, kind="stable")
    w = _lovasz_grad(g[order])
    loss = float(np.sum(np.maximum(e[order], 0.0) * w))
    dz = np.zeros_like(z)
    dz[order] = -s[order] * w * (e[order] > 0)
    return loss, dz


def ref_lovasz_hinge_logits(g, z, *, per_image=True):
    """Returns (loss, dL/dz); per_image -> mean over images (dL/dz / B)."""
    if not per_image:
        loss, dz = _lovasz_hinge_flat(g.ravel(), z.ravel())
        return loss, dz.reshape(z.shape)
    batch = z.shape[0]
    losses, grads = [], []
    for b in range(batch):
        lb, db = _lovasz_hinge_flat(g[b].ravel(), z[b].ravel())
        losses.append(lb)
        grads.append(db.reshape(z[b].shape) / batch)
    return float(np.mean(losses)), np.stack(grads)


def ref_lovasz_hinge(g, p, *, per_image=True):
    """In probability space z = log(p/(1-p)), dz/dp = 1 / (p (1-p))."""
    loss, dz = ref_lovasz_hinge_logits(g, _logit(p), per_image=per_image)
    return loss, dz / (p * (1.0 - p))


REFERENCES = {
    "dice_loss": ref_dice,
    "jaccard_loss": ref_jaccard,
    "tversky_loss": ref_tversky,
    "generalized_dice_loss": ref_generalized_dice,
    "binary_crossentropy": ref_bce,
    "focal_loss": ref_focal,
    "lovasz_hinge": ref_lovasz_hinge,
}


def _to_logit_gradient(p, dldp):
    """Chain rule to z: C == 1, p = sigmoid(z): dL/dz = dL/dp p (1-p).
    C > 1, p = softmax(z): dL/dz_c = p_c (dL/dp_c - sum_k p_k dL/dp_k)."""
    if p.shape[-1] == 1:
        return dldp * p * (1.0 - p)
    return p * (dldp - (p * dldp).sum(-1, keepdims=True))


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def _library_value(name, g, p, **kw):
    """float(explorer.losses.<name>(g, p)); lovasz_hinge takes logits of p."""
    fn = el.LOSSES[name]
    if name == "lovasz_hinge":
        return float(fn(g, _logit(p).astype(p.dtype), **kw))
    return float(fn(g, p, **kw))


def _central_fd(f, x, indices, h=FD_STEP):
    out = []
    for idx in indices:
        xp = x.copy()
        xm = x.copy()
        xp[idx] += h
        xm[idx] -= h
        out.append((f(xp) - f(xm)) / (2.0 * h))
    return np.array(out)


def _all_indices(shape):
    return list(np.ndindex(*shape))


def _assert_grad_close(actual, expected, *, rtol, atol_scale):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    atol = atol_scale * max(float(np.max(np.abs(expected))), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------
# (a) Hand-derived analytic gradients
# --------------------------------------------------------------------------
ANALYTIC_CASES = [
    # (id, loss name, shape, keywords, input options)
    ("dice_binary_default", "dice_loss", (2, 5, 6, 1), {}, {}),
    ("dice_binary_smooth0_eps_squared", "dice_loss", (2, 5, 6, 1),
     {"smooth": 0.0, "epsilon": 1e-6, "squared": True}, {}),
    ("dice_binary_squared_false_smooth0.3", "dice_loss", (2, 5, 6, 1),
     {"smooth": 0.3, "squared": False}, {}),
    ("dice_binary_batch_not_per_image", "dice_loss", (3, 4, 5, 1),
     {"per_image": False, "smooth": 0.5, "epsilon": 1e-3}, {}),
    ("dice_binary_volume_rank5", "dice_loss", (2, 3, 4, 5, 1), {"squared": True}, {}),
    ("dice_binary_soft_label", "dice_loss", (2, 5, 6, 1), {"soft_label": True}, {"soft_truth": True}),
    ("dice_multiclass_weighted", "dice_loss", (2, 5, 6, 3), {"class_weights": [0.5, 1.0, 2.0]}, {}),
    ("dice_multiclass_no_background_unnormalized", "dice_loss", (2, 5, 6, 3),
     {"class_weights": [1.0, 3.0], "include_background": False, "normalize_weights": False}, {}),
    ("dice_multiclass_batch_squared", "dice_loss", (2, 4, 5, 3),
     {"per_image": False, "squared": True, "smooth": 0.5, "epsilon": 1e-3}, {}),
    ("jaccard_binary_default", "jaccard_loss", (2, 5, 6, 1), {}, {}),
    ("jaccard_binary_squared_eps", "jaccard_loss", (2, 5, 6, 1),
     {"squared": True, "smooth": 0.2, "epsilon": 1e-4}, {}),
    ("jaccard_multiclass_weighted", "jaccard_loss", (2, 5, 6, 3),
     {"class_weights": [0.2, 1.0, 1.5], "per_image": False}, {}),
    ("tversky_binary_a0.3_b0.7", "tversky_loss", (2, 5, 6, 1), {"alpha": 0.3, "beta": 0.7}, {}),
    ("tversky_binary_a0.7_b0.3_focal_gamma0.75", "tversky_loss", (2, 5, 6, 1),
     {"alpha": 0.7, "beta": 0.3, "gamma": 0.75}, {}),
    ("tversky_binary_a=b=1.5_focal_gamma0.75_squared", "tversky_loss", (2, 5, 6, 1),
     {"alpha": 1.5, "beta": 1.5, "gamma": 0.75, "squared": True}, {}),
    ("tversky_multiclass_gamma1.33_no_background", "tversky_loss", (2, 5, 6, 3),
     {"alpha": 0.2, "beta": 0.8, "gamma": 1.33, "include_background": False}, {}),
    ("generalized_dice_multiclass_default", "generalized_dice_loss", (2, 5, 6, 3), {}, {}),
    ("generalized_dice_absent_class_guard", "generalized_dice_loss", (2, 5, 6, 3),
     {"smooth": 1e-3}, {"absent_class_in_first_image": 2}),
    ("generalized_dice_no_background_squared_batch", "generalized_dice_loss", (2, 5, 6, 3),
     {"include_background": False, "squared": True, "per_image": False}, {}),
    ("generalized_dice_binary", "generalized_dice_loss", (2, 5, 6, 1), {}, {}),
    ("bce_binary_mean", "binary_crossentropy", (2, 5, 6, 1), {}, {}),
    ("bce_multichannel_mean", "binary_crossentropy", (2, 4, 5, 3), {}, {}),
    ("focal_binary_default", "focal_loss", (2, 5, 6, 1), {}, {}),
    ("focal_binary_gamma0.5_alpha0.25", "focal_loss", (2, 5, 6, 1), {"gamma": 0.5, "alpha": 0.25}, {}),
    ("focal_binary_gamma3_alpha0.8", "focal_loss", (2, 5, 6, 1), {"gamma": 3.0, "alpha": 0.8}, {}),
    ("focal_multiclass_alpha_list", "focal_loss", (2, 4, 5, 3),
     {"gamma": 2.0, "alpha": [0.2, 0.3, 0.5]}, {}),
    ("lovasz_hinge_per_image", "lovasz_hinge", (2, 5, 6, 1), {}, {"lovasz": True}),
    ("lovasz_hinge_whole_batch", "lovasz_hinge", (2, 5, 6, 1), {"per_image": False}, {"lovasz": True}),
]


def _analytic_inputs(case, seed=0):
    _, name, shape, _, opts = case
    opts = dict(opts)
    if opts.pop("lovasz", False):
        return _make_lovasz_hinge_inputs(shape, seed)
    return _make_inputs(shape, seed, **opts)


@pytest.fixture(params=ANALYTIC_CASES, ids=[c[0] for c in ANALYTIC_CASES])
def analytic_case(request):
    case = request.param
    g, p = _analytic_inputs(case)
    return case[1], case[3], g, p


def test_analytic_gradient_matches_central_fd_of_numpy_forward(analytic_case):
    name, kw, g, p = analytic_case
    ref = REFERENCES[name]
    _, grad = ref(g, p, **kw)
    fd = _central_fd(lambda x: ref(g, x, **kw)[0], p, _all_indices(p.shape)).reshape(p.shape)
    _assert_grad_close(grad, fd, rtol=1e-6, atol_scale=1e-7)


def test_numpy_forward_matches_library_value_float64(analytic_case):
    # ties the hand-derived reference to the library's float64 loss function
    name, kw, g, p = analytic_case
    expected, _ = REFERENCES[name](g, p, **kw)
    assert _library_value(name, g, p, **kw) == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name,kw", [
    ("dice_loss", {"smooth": 0.3}),
    ("tversky_loss", {"alpha": 0.3, "beta": 0.7}),
    ("focal_loss", {"gamma": 3.0, "alpha": 0.8}),
], ids=["dice_smooth0.3", "tversky_alpha0.3_beta0.7", "focal_alpha0.8"])
def test_float64_value_does_not_round_python_float_keywords_to_float32(name, kw):
    # float64 inputs compute in float64: a Python float keyword must give the same
    # value as the same keyword passed as np.float64 (and as the float64 reference)
    g, p = _make_inputs((2, 5, 6, 1), seed=0)
    as_python = _library_value(name, g, p, **kw)
    as_float64 = _library_value(name, g, p, **{k: np.float64(v) for k, v in kw.items()})
    expected, _ = REFERENCES[name](g, p, **kw)
    assert as_float64 == pytest.approx(expected, rel=1e-12)
    assert as_python == pytest.approx(expected, rel=1e-12)


def test_loss_and_gradient_float32_matches_analytic_wrt_probabilities(analytic_case):
    name, kw, g, p = analytic_case
    g32, p32 = g.astype(np.float32), p.astype(np.float32)
    p_used = p32.astype(np.float64)
    expected_value, expected_grad = REFERENCES[name](g32.astype(np.float64), p_used, **kw)
    value, grad = eg.loss_and_gradient(name, g32, p32, wrt="probabilities", **kw)
    assert np.shape(grad) == p32.shape
    assert value == pytest.approx(expected_value, rel=1e-5, abs=1e-6)
    _assert_grad_close(grad, expected_grad, rtol=1e-4, atol_scale=1e-6)


def test_loss_and_gradient_float32_matches_analytic_wrt_logits(analytic_case):
    name, kw, g, p = analytic_case
    g32, p32 = g.astype(np.float32), p.astype(np.float32)
    p_used = p32.astype(np.float64)
    if p.shape[-1] > 1:
        # the library re-normalises softmax(log p); do the same in float64
        p_used = p_used / p_used.sum(-1, keepdims=True)
    _, dldp = REFERENCES[name](g32.astype(np.float64), p_used, **kw)
    expected = _to_logit_gradient(p_used, dldp)
    _, grad = eg.loss_and_gradient(name, g32, p32, wrt="logits", **kw)
    assert np.shape(grad) == p32.shape
    _assert_grad_close(grad, expected, rtol=1e-4, atol_scale=1e-6)


def test_lovasz_hinge_logit_gradient_is_minus_sign_times_lovasz_weight():
    # direct statement of the piecewise-linear rule on a tiny hand-checkable image:
    # margins m = z*s, errors e = 1 - m; only pixels with e > 0 get -s * w_rank.
    g = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    z = np.array([0.5, 0.3, -1.2, -2.0, 2.2, 0.9])  # errors 0.5, 1.3, 2.2, -1.0, -1.2, 1.9
    p = _sigmoid(z).reshape(1, 2, 3, 1)
    value, grad = eg.loss_and_gradient("lovasz_hinge", g.reshape(p.shape), p, wrt="logits")
    # order by error: idx 2 (2.2, g=1), 5 (1.9, g=0), 1 (1.3, g=0), 0 (0.5, g=1), 3, 4
    # n = 3; cumsum(g_sorted) = 1,1,1,2,2,3; inter = 2,2,2,1,1,0; union = 3,4,5,5,6,6
    jac = 1.0 - np.array([2 / 3, 2 / 4, 2 / 5, 1 / 5, 1 / 6, 0 / 6])
    w = np.concatenate([[jac[0]], np.diff(jac)])
    expected = np.zeros(6)
    expected[2] = -(+1) * w[0]
    expected[5] = -(-1) * w[1]
    expected[1] = -(-1) * w[2]
    expected[0] = -(+1) * w[3]
    expected_value = 2.2 * w[0] + 1.9 * w[1] + 1.3 * w[2] + 0.5 * w[3]
    np.testing.assert_allclose(np.ravel(grad), expected, rtol=1e-4, atol=1e-6)
    assert value == pytest.approx(expected_value, rel=1e-5)


# --------------------------------------------------------------------------
# (b) Every registered loss vs central finite differences of the library value
# --------------------------------------------------------------------------
FD_CASES = [
    ("dice_loss", (2, 5, 6, 1), {}),
    ("dice_loss", (2, 4, 5, 1), {"squared": True, "per_image": False, "smooth": 0.0, "epsilon": 1e-3}),
    ("dice_loss", (2, 4, 5, 3), {"class_weights": [0.3, 1.0, 2.0]}),
    ("jaccard_loss", (2, 5, 6, 1), {}),
    ("jaccard_loss", (2, 4, 5, 3), {"squared": True}),
    ("tversky_loss", (2, 5, 6, 1), {"alpha": 0.3, "beta": 0.7, "gamma": 0.75}),
    ("tversky_loss", (2, 4, 5, 3), {"include_background": False}),
    ("generalized_dice_loss", (2, 5, 6, 1), {}),
    ("generalized_dice_loss", (2, 4, 5, 3), {}),
    ("binary_crossentropy", (2, 5, 6, 1), {}),
    ("binary_crossentropy", (2, 4, 5, 3), {}),
    ("bce_dice_loss", (2, 5, 6, 1), {"bce_weight": 0.5, "dice_weight": 2.0}),
    ("bce_dice_loss", (2, 4, 5, 3), {}),
    ("bce_log_dice_loss", (2, 5, 6, 1), {}),
    ("bce_log_dice_loss", (2, 4, 5, 3), {"squared": True}),
    ("focal_loss", (2, 5, 6, 1), {"gamma": 2.0, "alpha": 0.25}),
    ("focal_loss", (2, 4, 5, 3), {"gamma": 1.5}),
    ("lovasz_hinge", (2, 5, 6, 1), {}),
    ("lovasz_hinge", (2, 5, 6, 1), {"per_image": False}),
    ("lovasz_softmax", (2, 4, 5, 3), {}),
    ("lovasz_softmax", (2, 4, 5, 3), {"classes": "all", "per_image": True}),
    ("lovasz_softmax", (2, 4, 5, 1), {}),
    # the peers' options (issue 16) on probabilities; from_logits and ignore_index are in
    # tests/test_peer_options.py
    ("generalized_dice_loss", (2, 4, 5, 3), {"weight_type": "simple"}),
    ("generalized_dice_loss", (2, 4, 5, 3), {"weight_type": "uniform", "per_image": False}),
    ("binary_crossentropy", (2, 5, 6, 1), {"pos_weight": 3.0, "class_weights": [1.0, 2.5]}),
    ("binary_crossentropy", (2, 4, 5, 3), {"pos_weight": [1.0, 2.0, 0.5]}),
    ("focal_loss", (2, 4, 5, 3), {"class_weights": [0.5, 1.0, 2.0], "alpha": 0.25}),
    ("dice_loss", (2, 4, 5, 3), {"empty": "zero", "class_weights": [1.0, 2.0, 0.5]}),
    # boundary (Kervadec et al. 2019) and soft clDice (Shit et al. 2021), 2-D and 3-D
    ("boundary_loss", (2, 5, 6, 1), {}),
    ("boundary_loss", (2, 4, 5, 3), {"include_background": False}),
    ("boundary_loss", (1, 3, 4, 5, 1), {}),
    ("boundary_dice_loss", (2, 5, 6, 1), {"boundary_weight": 0.5}),
    ("boundary_dice_loss", (2, 4, 5, 3), {"per_image": False}),
    ("cl_dice_loss", (2, 6, 7, 1), {}),
    ("cl_dice_loss", (2, 5, 6, 3), {"iterations": 2, "per_image": False}),
    ("cl_dice_loss", (1, 3, 4, 5, 1), {"iterations": 1}),
    ("cl_dice_dice_loss", (2, 6, 7, 1), {"cl_dice_weight": 0.5}),
    ("cl_dice_dice_loss", (2, 5, 6, 3), {"include_background": False}),
]


def _fd_case_id(case):
    name, shape, kw = case
    extra = ",".join(f"{k}={v}" for k, v in kw.items())
    return f"{name}-C{shape[-1]}" + (f"-{extra}" if extra else "")


def _fd_inputs(name, shape, seed=1):
    if name == "lovasz_hinge":
        return _make_lovasz_hinge_inputs(shape, seed)
    if name == "lovasz_softmax":
        return _make_lovasz_softmax_inputs(shape, seed)
    return _make_inputs(shape, seed)


def test_every_registered_loss_is_covered():
    assert set(ALL_LOSS_NAMES) <= set(el.LOSSES)
    covered = {c[0] for c in FD_CASES}
    assert set(el.LOSSES) <= covered, f"no gradient case for {set(el.LOSSES) - covered}"


@pytest.mark.parametrize("wrt", ["probabilities", "logits"])
@pytest.mark.parametrize("case", FD_CASES, ids=[_fd_case_id(c) for c in FD_CASES])
def test_loss_and_gradient_float64_matches_central_fd_of_library_loss(case, wrt):
    name, shape, kw = case
    g, p = _fd_inputs(name, shape)
    value, grad = eg.loss_and_gradient(name, g, p, wrt=wrt, **kw)
    grad = np.asarray(grad, dtype=np.float64)
    assert grad.shape == p.shape
    assert np.all(np.isfinite(grad))

    rng = np.random.default_rng(7)
    flat = rng.choice(p.size, size=6, replace=False)
    indices = [np.unravel_index(i, p.shape) for i in flat]
    channels = shape[-1]
    if wrt == "probabilities":
        def f(x):
            return _library_value(name, g, x, **kw)
        x0 = p
    elif channels == 1:
        def f(z):
            return _library_value(name, g, _sigmoid(z), **kw)
        x0 = _logit(p)
    else:
        def f(z):
            return _library_value(name, g, _softmax(z), **kw)
        x0 = np.log(p)
    fd = _central_fd(f, x0, indices)
    actual = np.array([grad[idx] for idx in indices])
    atol = 1e-7 * max(float(np.max(np.abs(grad))), 1e-12)
    np.testing.assert_allclose(actual, fd, rtol=1e-6, atol=atol)
    assert value == pytest.approx(f(x0), rel=1e-10, abs=1e-12)


# --------------------------------------------------------------------------
# (c) Value, shape and tracing
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", FD_CASES, ids=[_fd_case_id(c) for c in FD_CASES])
def test_loss_and_gradient_value_equals_library_loss_function(case, dtype):
    name, shape, kw = case
    g, p = _fd_inputs(name, shape, seed=3)
    g, p = g.astype(dtype), p.astype(dtype)
    value, grad = eg.loss_and_gradient(name, g, p, **kw)
    assert isinstance(value, float)
    assert isinstance(grad, np.ndarray)
    assert grad.shape == p.shape
    expected = _library_value(name, g, p, **kw)
    rel = 1e-5 if dtype == np.float32 else 1e-12
    assert value == pytest.approx(expected, rel=rel, abs=rel * 1e-2)


def _trace_counter():
    fn = getattr(eg, "trace_count", None)
    if fn is None or not callable(fn):
        pytest.skip("explorer.gradients exposes no trace_count(); retracing is not checked")
    return fn


def test_new_mask_size_does_not_retrace():
    trace_count = _trace_counter()
    # first size traces; a generalising implementation (reduce_retracing) may trace
    # once more for the second size; after that new sizes must not add traces.
    for size in (8, 12):
        g, p = _make_inputs((2, size, size, 1), seed=size)
        eg.loss_and_gradient("dice_loss", g.astype(np.float32), p.astype(np.float32))
    before = trace_count()
    for size in (9, 16, 21, 7):
        g, p = _make_inputs((2, size, size + 1, 1), seed=size)
        _, grad = eg.loss_and_gradient("dice_loss", g.astype(np.float32), p.astype(np.float32))
        assert grad.shape == p.shape
    assert trace_count() == before


# --------------------------------------------------------------------------
# (d) Exact 0 / 1 probabilities
# --------------------------------------------------------------------------
def _saturated_inputs(channels):
    rng = np.random.default_rng(11)
    shape = (2, 4, 5, channels)
    if channels == 1:
        g = (rng.random(shape) < 0.5).astype(np.float32)
        p = rng.uniform(0.1, 0.9, size=shape).astype(np.float32)
        flat_p, flat_g = p.reshape(-1), g.reshape(-1)
        flat_p[:4] = [0.0, 1.0, 0.0, 1.0]
        flat_g[:4] = [0.0, 1.0, 1.0, 0.0]  # both right and confidently wrong pixels
        return g, p
    g, p = _make_inputs(shape, seed=11)
    g, p = g.astype(np.float32), p.astype(np.float32)
    flat_p, flat_g = p.reshape(-1, channels), g.reshape(-1, channels)
    flat_p[0] = np.eye(channels)[0]
    flat_g[0] = np.eye(channels)[0]  # exactly right
    flat_p[1] = np.eye(channels)[1]
    flat_g[1] = np.eye(channels)[2]  # exactly wrong
    return g, p


SATURATED_CASES = [(n, 1) for n in ALL_LOSS_NAMES] + [
    (n, 3) for n in ALL_LOSS_NAMES if n != "lovasz_hinge"
]


@pytest.mark.parametrize("wrt", ["probabilities", "logits"])
@pytest.mark.parametrize("name,channels", SATURATED_CASES,
                         ids=[f"{n}-C{c}" for n, c in SATURATED_CASES])
def test_gradient_is_finite_with_exact_zero_and_one_probabilities(name, channels, wrt):
    g, p = _saturated_inputs(channels)
    kw = {"smooth": 1.0} if name in ("dice_loss", "jaccard_loss", "tversky_loss",
                                     "generalized_dice_loss", "bce_dice_loss",
                                     "bce_log_dice_loss") else {}
    value, grad = eg.loss_and_gradient(name, g, p, wrt=wrt, **kw)
    assert math.isfinite(value)
    assert grad.shape == p.shape
    assert np.all(np.isfinite(grad)), f"non-finite gradient at {np.argwhere(~np.isfinite(grad))}"
