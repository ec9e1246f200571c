"""Tests for the Keras ``keras.losses.Loss`` classes in ``explorer.losses``.

For every class: a tiny model trains (loss goes down), get_config round trips,
a saved ``.keras`` model loads without ``custom_objects``, the class value
equals the function value, and invalid keywords fail at construction.
"""
import inspect

import keras
import numpy as np
import pytest

import explorer.losses as el


def _logit(p):
    return np.log(p / (1.0 - p))


# id, class name, function name, constructor keywords (non-default), channels, output activation
CLASS_CASES = [
    ("DiceLoss-binary", "DiceLoss", "dice_loss",
     {"smooth": 0.5, "squared": True, "per_image": False}, 1, "sigmoid"),
    ("DiceLoss-multiclass-weighted", "DiceLoss", "dice_loss",
     {"class_weights": [0.5, 1.0, 2.0], "epsilon": 1e-4}, 3, "softmax"),
    ("BCEDiceLoss", "BCEDiceLoss", "bce_dice_loss",
     {"bce_weight": 0.5, "dice_weight": 2.0, "smooth": 0.3}, 1, "sigmoid"),
    ("BCELoss", "BCELoss", "binary_crossentropy", {}, 1, "sigmoid"),
    ("BCELogDiceLoss", "BCELogDiceLoss", "bce_log_dice_loss",
     {"smooth": 0.3, "per_image": False}, 1, "sigmoid"),
    ("JaccardLoss", "JaccardLoss", "jaccard_loss", {"smooth": 0.5, "soft_label": True}, 1, "sigmoid"),
    ("TverskyLoss", "TverskyLoss", "tversky_loss",
     {"alpha": 0.3, "beta": 0.7, "gamma": 1.33}, 1, "sigmoid"),
    ("FocalLoss-binary", "FocalLoss", "focal_loss", {"gamma": 1.5, "alpha": 0.25}, 1, "sigmoid"),
    ("FocalLoss-multiclass", "FocalLoss", "focal_loss",
     {"gamma": 2.0, "alpha": [0.2, 0.3, 0.5]}, 3, "softmax"),
    ("GeneralizedDiceLoss", "GeneralizedDiceLoss", "generalized_dice_loss",
     {"smooth": 1e-3, "include_background": False}, 2, "softmax"),
    ("LovaszHingeLoss-logits", "LovaszHingeLoss", "lovasz_hinge", {"per_image": False}, 1, "linear"),
    ("LovaszHingeLoss-probabilities", "LovaszHingeLoss", "lovasz_hinge",
     {"from_logits": False}, 1, "sigmoid"),
    ("LovaszSoftmaxLoss", "LovaszSoftmaxLoss", "lovasz_softmax",
     {"classes": "all", "per_image": True}, 2, "softmax"),
]
CASE_IDS = [c[0] for c in CLASS_CASES]
CLASS_NAMES = sorted({c[1] for c in CLASS_CASES})
KEYWORDED = [name for name in CLASS_NAMES if name != "BCELoss"]  # BCE takes no keywords
FUNCTION_OF = {c[1]: c[2] for c in CLASS_CASES}


def _dataset(channels, n=16, size=16, seed=0):
    """Learnable data: the mask is a pixelwise threshold of the image."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, size, size, 1)).astype(np.float32)
    if channels == 1:
        y = (x > 0.5).astype(np.float32)
    else:
        edges = np.linspace(0.0, 1.0, channels + 1)[1:-1]
        labels = np.digitize(x[..., 0], edges)
        y = np.eye(channels, dtype=np.float32)[labels]
    return x, y


def _build_model(channels, activation, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(channels, 1, activation=activation)(h)
    return keras.Model(inputs, outputs)


def _prediction_inputs(channels, activation, seed=5):
    """(y_true, y_pred) for a direct call; y_pred matches what the loss expects."""
    rng = np.random.default_rng(seed)
    shape = (2, 6, 7, channels)
    if channels == 1:
        y = (rng.random(shape) < 0.4).astype(np.float32)
        p = rng.uniform(0.05, 0.95, size=shape).astype(np.float32)
        if activation == "linear":
            return y, _logit(p).astype(np.float32)
        return y, p
    labels = rng.integers(0, channels, size=shape[:-1])
    y = np.eye(channels, dtype=np.float32)[labels]
    z = rng.normal(size=shape)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return y, p.astype(np.float32)


def _plain(value):
    """Config value with tuples as lists (what a JSON round trip produces)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _function_value(function_name, kwargs, y, pred):
    kw = dict(kwargs)
    from_logits = kw.pop("from_logits", True)
    if function_name == "lovasz_hinge" and not from_logits:
        pred = _logit(pred.astype(np.float64)).astype(np.float32)
    return float(getattr(el, function_name)(y, pred, **kw))


@pytest.fixture(scope="module", params=CLASS_CASES, ids=CASE_IDS)
def trained(request, tmp_path_factory):
    """Train a tiny model for 5 full-batch steps; record evaluate() before and after."""
    _, cls_name, _, kwargs, channels, activation = request.param
    cls = getattr(el, cls_name)
    loss = cls(**kwargs)
    x, y = _dataset(channels)
    model = _build_model(channels, activation)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.02), loss=loss)
    before = model.evaluate(x, y, batch_size=len(x), verbose=0)
    model.fit(x, y, batch_size=len(x), epochs=5, shuffle=False, verbose=0)
    after = model.evaluate(x, y, batch_size=len(x), verbose=0)
    return {"cls": cls, "loss": loss, "model": model, "x": x, "y": y,
            "before": before, "after": after, "tmp": tmp_path_factory.mktemp(cls_name)}


def test_training_a_tiny_model_reduces_the_loss(trained):
    assert np.isfinite(trained["before"]) and np.isfinite(trained["after"])
    assert trained["after"] < trained["before"]


def test_saved_model_loads_without_custom_objects(trained):
    path = trained["tmp"] / "m.keras"
    trained["model"].save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.loss) is trained["cls"]
    assert _plain(loaded.loss.get_config()) == _plain(trained["loss"].get_config())
    x = trained["x"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), trained["model"].predict(x, verbose=0),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls_name", CLASS_NAMES)
def test_class_is_registered_under_explorer_package(cls_name):
    cls = getattr(el, cls_name)
    assert issubclass(cls, keras.losses.Loss)
    assert keras.saving.get_registered_name(cls) == f"explorer>{cls_name}"
    assert keras.saving.get_registered_object(f"explorer>{cls_name}") is cls


@pytest.mark.parametrize("case", CLASS_CASES, ids=CASE_IDS)
def test_get_config_round_trip_gives_same_value(case):
    _, cls_name, _, kwargs, channels, activation = case
    cls = getattr(el, cls_name)
    obj = cls(**kwargs)
    config = obj.get_config()
    for key, value in kwargs.items():
        assert key in config
        if isinstance(value, list):
            assert list(config[key]) == value
        else:
            assert config[key] == value
    clone = cls.from_config(config)
    assert _plain(clone.get_config()) == _plain(config)
    y, pred = _prediction_inputs(channels, activation)
    assert float(clone(y, pred)) == pytest.approx(float(obj(y, pred)), rel=1e-6)


def _expected_keywords(cls_name):
    """Keywords (with defaults) the class must take: the function's keyword-only
    parameters, plus dice_loss's where the function forwards ``**dice keywords``,
    plus ``from_logits=True`` for LovaszHingeLoss."""
    def keyword_defaults(fn):
        params = inspect.signature(fn).parameters.values()
        found = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
        if any(p.kind is p.VAR_KEYWORD for p in params):
            found.update(keyword_defaults(el.dice_loss))
        return found

    expected = keyword_defaults(getattr(el, FUNCTION_OF[cls_name]))
    if cls_name == "LovaszHingeLoss":
        expected["from_logits"] = True
    return expected


@pytest.mark.parametrize("cls_name", KEYWORDED)
def test_default_config_has_every_function_keyword_with_its_default(cls_name):
    expected = _expected_keywords(cls_name)
    assert expected, f"{FUNCTION_OF[cls_name]} has no keywords"
    config = getattr(el, cls_name)().get_config()
    missing = set(expected) - set(config)
    assert not missing, f"{cls_name}.get_config() lacks {missing}"
    for key, default in expected.items():
        assert _plain(config[key]) == _plain(default), key


@pytest.mark.parametrize("cls_name", CLASS_NAMES)
def test_constructor_accepts_every_function_keyword(cls_name):
    cls = getattr(el, cls_name)
    for key, default in _expected_keywords(cls_name).items():
        obj = cls(**{key: default})
        assert _plain(obj.get_config()[key]) == _plain(default)


@pytest.mark.parametrize("case", CLASS_CASES, ids=CASE_IDS)
def test_class_value_equals_function_value(case):
    _, cls_name, function_name, kwargs, channels, activation = case
    y, pred = _prediction_inputs(channels, activation)
    obj = getattr(el, cls_name)(**kwargs)
    expected = _function_value(function_name, kwargs, y, pred)
    assert float(obj(y, pred)) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_lovasz_hinge_loss_from_logits_false_equals_true_on_logits():
    y, p = _prediction_inputs(1, "sigmoid")
    z = _logit(p.astype(np.float64)).astype(np.float32)
    on_probs = float(el.LovaszHingeLoss(from_logits=False)(y, p))
    on_logits = float(el.LovaszHingeLoss()(y, z))
    assert on_probs == pytest.approx(on_logits, rel=1e-5)


INVALID_KEYWORDS = [
    ("DiceLoss", {"smooth": -1.0}),
    ("DiceLoss", {"epsilon": -1e-3}),
    ("DiceLoss", {"smooth": float("nan")}),
    ("DiceLoss", {"class_weights": [1.0, -1.0]}),
    ("DiceLoss", {"class_weights": [0.0, 0.0]}),
    ("BCEDiceLoss", {"smooth": -0.5}),
    ("JaccardLoss", {"epsilon": float("inf")}),
    ("TverskyLoss", {"alpha": -0.1}),
    ("TverskyLoss", {"beta": -0.2}),
    ("TverskyLoss", {"gamma": 0.0}),
    ("FocalLoss", {"alpha": -0.25}),
    ("GeneralizedDiceLoss", {"smooth": -1e-5}),
    ("LovaszSoftmaxLoss", {"classes": "some"}),
    ("DiceLoss", {"not_a_keyword": 1.0}),
]


@pytest.mark.parametrize("cls_name,kwargs", INVALID_KEYWORDS,
                         ids=[f"{c}-{','.join(f'{k}={v}' for k, v in kw.items())}"
                              for c, kw in INVALID_KEYWORDS])
def test_invalid_keyword_raises_value_error_at_construction(cls_name, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        getattr(el, cls_name)(**kwargs)


def test_public_api_lists_what_exists_and_every_loss():
    names = set(el.__all__)
    assert all(hasattr(el, name) for name in names)
    assert set(el.LOSSES) <= names
    assert not any(name.startswith("_") for name in names)


def test_every_loss_has_its_keras_class():
    assert set(el.LOSS_CLASSES) == set(el.LOSSES)
    for name, cls in el.LOSS_CLASSES.items():
        assert cls().name == name
