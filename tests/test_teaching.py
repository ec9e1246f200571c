"""Teaching and sharing: scenarios tell the story their paragraph promises, a link
(query parameters) reopens the same view, guess-then-reveal hides and shows the numbers,
presenter mode folds advanced controls, and the masks file round-trips."""

import io
import zipfile

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import charts, losses, masks, predictions
from explorer.ui import scenarios, state
from tests.test_app import APP, _run, table


@pytest.fixture
def at():
    return _run(AppTest.from_file(APP, default_timeout=180))


def _scenario(at, key):
    at.sidebar.button(key=f"scenario_button_{key}").click()
    return _run(at)


def _chosen(at) -> str:
    return at.metric[0].value


# ----------------------------------------------------------------- library side


def test_every_scenario_uses_known_controls():
    for scenario in scenarios.SCENARIOS:
        assert set(scenario.state) <= set(state.EXPLORE), scenario.key
        assert len(scenario.text) > 80 and scenario.title
    with pytest.raises(ValueError, match="unknown scenario 'nope'; there are perfect"):
        scenarios.get("nope")


def test_preview_follows_the_state():
    truth, pred = scenarios.preview(scenarios.get("shifted"), 64)
    assert truth.shape == pred.shape == (64, 64)
    # 16 px at 256 is 4 px at 64: the prediction is the truth moved right by 4
    np.testing.assert_array_equal(pred, masks.shift(truth, 0, 4))
    truth, pred = scenarios.preview(scenarios.get("empty"))
    assert truth.sum() == 0 and pred.sum() == 0
    grown_truth, grown = scenarios.preview(scenarios.get("over_under"))
    assert grown.sum() > grown_truth.sum() and np.all(grown[grown_truth > 0] > 0)
    # the page's own edit: 6 px at 256 is 2 px at 64
    np.testing.assert_array_equal(grown, predictions.Edits(grow=2).hard(grown_truth))
    image = charts.thumbnail(*scenarios.preview(scenarios.get("shifted"), 48))
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert len(np.unique(image.reshape(-1, 3), axis=0)) == 3  # background, fill, outline


# ------------------------------------------------------ scenarios in the page


def test_perfect_overlap_scores_zero(at):
    _scenario(at, "perfect")
    assert _chosen(at) == "0.000000"
    values = table(at)
    assert values["IoU (soft Jaccard index)"] == 1.0
    assert values["BCE"] < 1e-6  # 1e-7 from the clipping: it prints as 0.000000


def test_empty_scenario_is_undefined_and_explained(at):
    _scenario(at, "empty")
    assert (at.metric[0].label, _chosen(at)) == ("Dice loss: undefined", "0/0")
    assert any("0/0" in w.value for w in at.warning)
    at.number_input(key="smooth").set_value(1.0)
    _run(at)
    assert _chosen(at) == "0.000000"
    at.number_input(key="smooth").set_value(0.0)
    at.number_input(key="epsilon").set_value(1e-7)
    _run(at)
    assert _chosen(at) == "1.000000"


def test_imbalance_bce_low_dice_bad(at):
    _scenario(at, "imbalance")
    values = table(at)
    assert values["BCE"] < 0.05 and values["Dice loss"] > 0.95
    # the chosen loss is BCE, and the number is the library's on the same masks
    truth = masks.shape_mask("circle", 256, radius=0.03)
    pred = masks.soften(np.zeros_like(truth), 2, confidence=0.99)
    expected = float(losses.binary_crossentropy(masks.to_batch(masks.one_hot(truth, 2)),
                                                masks.to_batch(pred)))
    assert at.metric[0].label == "BCE"  # the stage's value
    assert float(_chosen(at)) == pytest.approx(expected, abs=1e-6)


def test_soft_labels_product_vs_l1(at):
    _scenario(at, "soft_labels")
    assert float(_chosen(at)) > 0.05
    at.checkbox(key="soft_label").check()
    _run(at)
    assert float(_chosen(at)) == pytest.approx(0, abs=1e-6)


def test_over_vs_under_segmentation(at):
    _scenario(at, "over_under")
    over = table(at)
    at.slider(key="grow").set_value(-6)
    _run(at)
    under = table(at)
    assert over["Tversky loss"] < over["Dice loss"]  # false positives are forgiven more
    assert under["Tversky loss"] > under["Dice loss"]  # false negatives cost more


def test_tiny_object_and_empty_image_batches(at):
    _scenario(at, "tiny_missed")
    assert at.session_state["explore_tabs"] == scenarios.BATCH_TAB
    batch = {m.label: float(m.value) for m in at.metric[1:]}
    per_image, whole = batch["Dice loss, per image (mean)"], batch["Dice loss, whole batch"]
    assert per_image > whole + 0.01
    _scenario(at, "batch_empty")
    assert at.checkbox(key="batch_empty").value
    assert any("both masks are empty" in i.value for i in at.info)


def test_a_scenario_looks_the_same_whatever_was_on_screen(at):
    """A scenario first puts every Explore control back where a fresh page has it: after
    other controls were moved, it shows what it shows when chosen on a fresh page."""
    fresh = _scenario(_run(AppTest.from_file(APP, default_timeout=180)), "shifted")
    at.slider(key="shift_y").set_value(5)
    at.slider(key="blur").set_value(3.0)
    at.slider(key="label_smoothing").set_value(0.1)
    at.selectbox(key="loss").set_value("tversky_loss")
    at.number_input(key="smooth").set_value(0.0)
    at.checkbox(key="per_image").uncheck()
    at.session_state["explore_tabs"] = scenarios.BATCH_TAB
    _run(at)
    assert table(at) != table(fresh)
    _scenario(at, "shifted")
    assert table(at) == table(fresh) and _chosen(at) == _chosen(fresh)
    for key in state.EXPLORE:
        assert at.session_state[key] == fresh.session_state[key], key


def _bars(at) -> list[str]:
    """The colour bars' ranges under the stage's gradient maps."""
    return [c.split("Bar: ")[1] for image in at.get("image")
            for c in [image.proto.imgs[0].caption] if "Bar: " in c]


def test_overconfident_logit_gradient_on_a_locked_scale(at):
    """The colours are locked when the scenario opens (not kept from before), so moving
    Confidence to 0.6 changes the push, not the bar."""
    fresh = _bars(_scenario(_run(AppTest.from_file(APP, default_timeout=180)), "overconfident"))
    _scenario(at, "shifted")
    at.radio(key="gradient_scale").set_value("locked")
    _run(at)
    _scenario(at, "overconfident")
    assert at.radio(key="gradient_wrt").value == "∂L/∂logit"
    assert at.session_state["confidence"] == 0.999
    assert at.radio(key="gradient_scale").value == "locked"
    assert len(fresh) == 2 and _bars(at) == fresh  # Dice and BCE, one scale, taken afresh
    at.slider(key="confidence").set_value(0.6)
    _run(at)
    assert _bars(at) == fresh


def test_start_over_restores_the_scenario(at):
    _scenario(at, "shifted")
    first = _chosen(at)
    at.slider(key="shift_x").set_value(-30)
    _run(at)
    assert _chosen(at) != first
    at.button(key="scenario_reset").click()
    _run(at)
    assert _chosen(at) == first and at.slider(key="shift_x").value == 16


# ------------------------------------------------------------------- links


def test_a_link_reopens_the_view(at):
    """A scenario plus two changed settings, written as the link the page carries, opens in
    a new session with the same controls, the same numbers and the scenario's paragraph."""
    _scenario(at, "shifted")
    at.number_input(key="smooth").set_value(0.01)
    at.checkbox(key="per_image").uncheck()
    _run(at)
    shown = table(at)
    link = {"scenario": "A shifted prediction", "shift_x": "16", "blur": "0.0",
            "gradient_wrt": "∂L/∂logit", "stage_compare": "BCE",
            "smooth": "0.01", "per_image": "false"}
    # the scenario's own changes are in the URL the page keeps (a select box by its label)
    kept = ("scenario", "shift_x", "gradient_wrt", "stage_compare")
    assert {k: at.query_params[k] for k in kept} == {k: link[k] for k in kept}
    assert float(at.query_params["blur"]) == 0
    other = AppTest.from_file(APP, default_timeout=180)
    other.query_params.update(link)
    _run(other)
    assert other.selectbox(key="scenario").value == "shifted"
    assert other.number_input(key="smooth").value == 0.01
    assert other.select_slider(key="smooth_grid").value == 0.01
    assert not other.checkbox(key="per_image").value
    assert table(other) == shown
    assert any(scenarios.get("shifted").text[:40] in m.value for m in other.markdown)


def test_a_bad_link_says_what_was_not_used():
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({"shift_x": "12", "shift_y": "999", "loss": "Nonsense loss"})
    _run(at)
    assert at.slider(key="shift_x").value == 12
    assert at.slider(key="shift_y").value == 0
    notice = " ".join(t.value for t in at.toast)
    assert "shift_y=999" in notice and "loss=Nonsense loss" in notice
    assert "shift_x" not in notice


# -------------------------------------------------------- guess, then reveal


def test_guess_then_reveal(at):
    expected = _chosen(at)
    at.sidebar.toggle(key="guess").set_value(True)
    _run(at)
    assert not at.metric and not at.table and not at.latex  # nothing to read off
    assert any("Guess first" in i.value for i in at.info)  # the gradient waits too
    at.number_input(key="guess_value").set_value(0.25)
    at.button[[b.label for b in at.button].index("Reveal")].click()
    _run(at)
    assert _chosen(at) == expected
    assert any(f"You guessed 0.25; it is {expected}" in s.value
               for s in list(at.success) + list(at.warning))
    at.slider(key="shift_x").set_value(20)  # a new view: guess again
    _run(at)
    assert not at.metric


def test_presenter_mode_folds_advanced_controls(at):
    assert not any("font-size: 20px" in h.proto.body for h in at.get("html"))
    at.sidebar.toggle(key="presenter").set_value(True)
    _run(at)
    assert any("font-size: 20px" in h.proto.body for h in at.get("html"))
    folded = [e for e in at.expander if e.label == "Noise and temperature"]
    assert folded and {s.key for s in folded[0].slider} == {"noise", "temperature"}


def _story(at) -> str:
    return " ".join(m.value for m in at.markdown)


def _keys(at) -> set:
    return {b.key for b in at.button}


def test_no_scenario_no_panel(at):
    assert not any(s.title in _story(at) for s in scenarios.SCENARIOS)
    assert "scenario_reset" not in _keys(at)


def test_a_scenario_asks_first_then_tells(at):
    """Guess first: beside the stage the scenario's question, not its paragraph (which
    gives the answer); after the reveal, the paragraph."""
    at.sidebar.toggle(key="guess").set_value(True)
    _run(at)
    scenario = scenarios.get("imbalance")
    _scenario(at, "imbalance")
    assert scenario.title in _story(at) and scenario.question in _story(at)
    assert scenario.text[:40] not in _story(at)
    at.number_input(key="guess_value").set_value(0.5)
    at.button[[b.label for b in at.button].index("Reveal")].click()
    _run(at)
    assert scenario.text[:40] in _story(at) and scenario.question not in _story(at)


def test_presenter_mode_steps_through_the_scenarios(at):
    """Presenter mode: the sidebar keeps the Scenario box but folds the thumbnail list;
    ◀ Previous / Next ▶ beside the stage apply the scenarios in order."""
    assert "scenario_button_perfect" in _keys(at)  # the list, outside presenter mode
    assert "scenario_next" not in _keys(at)
    at.sidebar.toggle(key="presenter").set_value(True)
    _run(at)
    assert not any(k.startswith("scenario_button_") for k in _keys(at) if k)
    assert not [e for e in at.expander if e.label == "All scenarios"]
    assert at.sidebar.selectbox(key="scenario").value == state.NONE
    assert "scenario_next" not in _keys(at)  # no scenario, no panel
    at.sidebar.selectbox(key="scenario").set_value(scenarios.SCENARIOS[0].key)
    _run(at)
    assert at.button(key="scenario_previous").disabled  # the first one
    keys = [s.key for s in scenarios.SCENARIOS]
    for before, after in zip(keys, keys[1:]):
        assert at.session_state["scenario"] == before
        at.button(key="scenario_next").click()
        _run(at)
        assert at.session_state["scenario"] == after
        assert at.sidebar.selectbox(key="scenario").value == after  # the sidebar follows
        assert scenarios.get(after).text[:40] in _story(at)
        for control, value in scenarios.get(after).state.items():
            assert at.session_state[control] == value, (after, control)
    assert at.button(key="scenario_next").disabled  # the last one
    at.button(key="scenario_previous").click()
    _run(at)
    assert at.session_state["scenario"] == keys[-2]


# ---------------------------------------------------------------- masks file


def test_masks_file_round_trip_and_page():
    truth = masks.shape_mask("square", 96, radius=0.2)
    prob = masks.soften(masks.shift(truth, 3, 0), 2, confidence=0.8)[..., 0]
    for prediction in (masks.shift(truth, 3, 0), prob):
        got_truth, got_pred = masks.load_pair(masks.save_pair(truth, prediction))
        np.testing.assert_array_equal(got_truth, truth)
        np.testing.assert_allclose(got_pred, prediction, atol=1e-7)
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["shared_masks"] = (truth, masks.shift(truth, 3, 0))
    at.session_state["truth_source"] = at.session_state["prediction_source"] = "Masks file"
    _run(at)
    truth_b = masks.to_batch(masks.one_hot(truth, 2))
    # the file's prediction as saved: no shift of the page's own (those are for a copy)
    pred_b = masks.to_batch(masks.soften(masks.shift(truth, 3, 0), 2, confidence=0.9,
                                         blur_sigma=1.0))
    assert float(_chosen(at)) == pytest.approx(float(losses.dice_loss(truth_b, pred_b)),
                                               abs=1e-6)


def _npz(**arrays) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


@pytest.mark.parametrize("data, message", [
    (b"not a zip", "not one"),
    (b"PK\x03\x04garbage", "damaged"),
    (_npz(truth=np.zeros((4, 4), np.uint8)), "holds exactly truth.npy and prediction.npy"),
    (_npz(truth=np.zeros((4, 4), np.uint8), prediction=np.zeros((5, 4), np.uint8)),
     "must match"),
    (_npz(truth=np.full((4, 4), 7, np.uint8), prediction=np.zeros((4, 4), np.uint8)),
     "label 7"),
    (_npz(truth=np.zeros((4, 4), np.uint8), prediction=np.full((4, 4), 0.5)),
     "only a binary page"),
    (_npz(truth=np.array([[object()]]), prediction=np.zeros((1, 1))), "never unpickled"),
])
def test_bad_masks_files(data, message):
    num_classes = 3 if message == "only a binary page" else 2
    with pytest.raises(masks.MaskError, match=message):
        masks.load_pair(data, num_classes=num_classes)


def test_masks_file_zip_bomb_is_refused():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("truth.npy", b"\0" * (masks.MAX_FILE_BYTES + 1))
        archive.writestr("prediction.npy", b"\0")
    with pytest.raises(masks.MaskError, match="unpacks to more than"):
        masks.load_pair(out.getvalue())


# ------------------------------------------- other libraries, code, Lovász steps


def _open(at, tab):
    at.session_state["explore_tabs"] = tab
    return _run(at)


def test_other_libraries_tab(at):
    _open(at, "Other libraries")
    frame = at.table[-1].value
    assert frame.index[0] == "This explorer, current settings"
    assert float(frame["Dice loss"].iloc[0]) == pytest.approx(float(_chosen(at)), abs=1e-6)
    assert any("MONAI" in name for name in frame.index)
    assert any("keras.losses.Dice" in name for name in frame.index)
    assert all(len(why) > 20 for why in frame["why it differs"])


def test_exported_code_reproduces_the_page(at):
    """The Code tab's snippet, run on the masks of the view, gives the number shown."""
    at.selectbox(key="loss").set_value("tversky_loss")
    at.number_input(key="smooth").set_value(0.5)
    _open(at, "Code")
    namespace = {}
    exec(at.code[0].value, namespace)  # noqa: S102 - the point is to run what the user copies
    truth, pred = (masks.to_batch(masks.one_hot(masks.shape_mask("circle", 256, radius=0.2), 2)),
                   masks.to_batch(masks.soften(masks.shift(
                       masks.shape_mask("circle", 256, radius=0.2), 0, 8), 2,
                       confidence=0.9, blur_sigma=1.0)))
    value = float(namespace["loss_fn"](truth, pred))
    assert f"{value:.6f}" == _chosen(at)
    at.radio(key="code_framework").set_value("pytorch")
    _run(at)
    assert "import torch" in at.code[0].value


@pytest.mark.parametrize("classes", [2, 3])
def test_lovasz_step_through(at, classes):
    if classes != 2:
        at.selectbox(key="num_classes").set_value(classes)
        _run(at)
    _open(at, "Lovász step by step")
    keys = {chart.key for chart in at.get("plotly_chart")}
    assert {"lovasz_steps", "lovasz_pixels", "lovasz_gradient"} <= keys
    step = at.slider(key="lovasz_step")
    assert step.value == 1 and step.max == 12 * 12  # the first pixel taken, then step on
    step.set_value(5)
    _run(at)
    assert any("Here it is" in c.value for c in at.caption)


def test_infinite_log_dice_is_explained(at):
    """Dice exactly 0 (nothing predicted, smooth 0): BCE − log Dice is ∞, said in words."""
    at.radio(key="prediction_source").set_value("Empty")
    at.slider(key="confidence").set_value(1.0)
    at.slider(key="blur").set_value(0.0)
    at.number_input(key="smooth").set_value(0.0)
    _run(at)
    frame = at.table[0].value
    assert frame.loc["BCE − log Dice", "value"] == "∞"
    assert frame.loc["Dice loss", "value"] == "1.000000"
    assert any("is infinite: the Dice coefficient is exactly 0" in i.value for i in at.info)


def test_refused_settings_are_said_not_computed(at):
    """Squared Tversky with α ≠ β has negative terms: its row says why, no number."""
    at.checkbox(key="squared").check()
    at.selectbox(key="loss").set_value("tversky_loss")
    at.slider(key="alpha").set_value(0.3)
    _run(at)
    frame = at.table[0].value
    assert frame.loc["Tversky loss", "value"] == "not defined here"
    assert _chosen(at) == "not defined here"
    assert any("squared=True needs alpha == beta" in w.value for w in at.warning)
    assert float(frame.loc["Dice loss", "value"]) > 0  # the others are still computed
    assert at.checkbox(key="soft_label").disabled  # the pair that would exceed 1 is locked
