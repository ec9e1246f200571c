"""The sidebar for teaching and sharing: scenarios, presenter mode, predict-then-reveal,
the link to this view and the masks file. Scenarios are data (``explorer.ui.scenarios``);
this module only applies them to widget state."""

from __future__ import annotations

import streamlit as st

from explorer import charts, masks
from explorer.ui import scenarios, state
from explorer.ui.state import NONE

# masks are drawn as blocks of pixels: keep their edges sharp when the page scales them
PAGE_CSS = '<style>[data-testid="stImage"] img { image-rendering: pixelated; }</style>'
PRESENTER_CSS = """<style>
html { font-size: 20px; }
[data-testid="stMetricValue"] { font-size: 2.6rem; }
[data-testid="stTable"] td, [data-testid="stTable"] th { font-size: 1.05rem; }
</style>"""


def apply_scenario(key: str) -> None:
    """The Explore controls back to their defaults, then the scenario's values (a callback:
    it runs before the widgets are drawn). Values are set, not deleted: a deleted control
    bound to the URL would come back from the link."""
    st.session_state["scenario"] = key
    if key != NONE:
        st.session_state.update({**state.EXPLORE, **scenarios.get(key).state})


def presenting() -> bool:
    return bool(state.current("presenter"))


def guessing() -> bool:
    return bool(state.current("guess"))


def remember_link() -> None:
    """The query parameters the session was opened with (read once, before any widget)."""
    if state.LINK_IN not in st.session_state:
        st.session_state[state.LINK_IN] = st.query_params.to_dict()


def link_notice() -> None:
    """After the first run: say which of the link's settings were not used. Streamlit drops
    a bound parameter that is invalid (and one equal to the default) and clamps others."""
    opened = st.session_state.get(state.LINK_IN)
    if not opened or st.session_state.get(state.LINK_CHECKED):
        return
    st.session_state[state.LINK_CHECKED] = True
    now = st.query_params.to_dict()
    unused = [f"`{k}={v}`" for k, v in opened.items() if k not in now]
    changed = [f"`{k}={v}` → `{now[k]}`" for k, v in opened.items() if k in now and now[k] != v]
    if unused:
        st.toast("From the link, not used (not a value the control accepts, or its default): "
                 + ", ".join(unused), icon="⚠️")
    if changed:
        st.toast("From the link, moved into range: " + ", ".join(changed), icon="⚠️")


def sidebar() -> None:
    with st.sidebar:
        st.header("Teach and share")
        _scenario_picker()
        st.toggle("Presenter mode", **state.with_value("presenter"),
                  help="Larger text; advanced controls folded away.")
        st.toggle("Guess first", **state.with_value("guess"),
                  help="The numbers stay hidden until you have guessed the chosen loss.")
    st.html(PAGE_CSS + (PRESENTER_CSS if presenting() else ""))


def _scenario_picker() -> None:
    keys = [NONE] + [s.key for s in scenarios.SCENARIOS]
    st.selectbox("Scenario", keys, **state.with_index("scenario", keys),
                 format_func=lambda k: "— free exploration —" if k == NONE
                 else scenarios.get(k).title,
                 on_change=lambda: apply_scenario(st.session_state["scenario"]))
    with st.expander("All scenarios", expanded=not presenting()):
        for scenario in scenarios.SCENARIOS:
            picture, button = st.columns([1, 3], vertical_alignment="center")
            picture.image(_thumbnail(scenario.key), width="stretch")
            button.button(scenario.title, **state.keyed(f"scenario_button_{scenario.key}"),
                          on_click=apply_scenario, args=(scenario.key,), help=scenario.text,
                          width="stretch")


@st.cache_data(show_spinner=False)
def _thumbnail(key: str):
    return charts.thumbnail(*scenarios.preview(scenarios.get(key), 64))


def banner() -> None:
    """The chosen scenario's paragraph above the page, with a way out."""
    key = state.current("scenario")
    if key == NONE or key not in scenarios.BY_KEY:
        return
    scenario = scenarios.get(key)
    text, button = st.columns([6, 1])
    text.info(f"**Scenario: {scenario.title}.** {scenario.text}")
    button.button("Start over", **state.keyed("scenario_reset"), on_click=apply_scenario,
                  args=(key,),
                  help="Put every control back where the scenario set it.")


def share_section() -> None:
    """Drawn after the page, so the masks file holds this run's masks."""
    with st.sidebar:
        _share()


def _share() -> None:
    st.subheader("Share this view")
    st.caption("Every control is in the page's address: copy it from the address bar and it "
               "reopens this view. Drawn or uploaded masks don't fit in a link: save them "
               "as a file and open it on the other side.")
    current = st.session_state.get(state.CURRENT_PAIR)
    if current:  # written on click, not on every rerun, from the masks shown by then
        st.download_button("Save masks (.npz)", lambda: masks.save_pair(*current["pair"]),
                           file_name="masks.npz", mime="application/octet-stream",
                           on_click="ignore", **state.keyed("download_masks"),
                           help="The truth and the prediction before shifting and softening.")
    st.file_uploader("Open a masks file", type=["npz"], **state.keyed("masks_file_upload"),
                     on_change=_open_masks_file)
    error = st.session_state.get(state.MASKS_FILE_ERROR)
    if error:
        st.error(error)


def _open_masks_file() -> None:
    file = st.session_state.get("masks_file_upload")
    st.session_state[state.MASKS_FILE_ERROR] = None
    if file is None:
        return
    try:
        truth, prediction = masks.load_pair(file, num_classes=state.current("num_classes"))
    except masks.MaskError as error:
        st.session_state[state.MASKS_FILE_ERROR] = f"{file.name}: {error}"
        return
    st.session_state[state.SHARED_MASKS] = (truth, prediction)
    st.session_state["truth_source"] = "Masks file"
    st.session_state["prediction_source"] = "Masks file"
