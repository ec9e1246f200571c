"""Teaching and sharing: the sidebar (scenarios, presenter mode, predict-then-reveal, the
link to this view, the masks file) and the scenario's panel beside the stage (its question
or its story, Start over, and in presenter mode ◀ Previous / Next ▶). Scenarios are data
(``explorer.ui.scenarios``); this module only applies them to widget state."""

from __future__ import annotations

import streamlit as st

from explorer import charts, masks
from explorer.ui import scenarios, state
from explorer.ui.state import NONE

# masks are drawn as blocks of pixels: keep their edges sharp when the page scales them
PAGE_CSS = """<style>
[data-testid="stImage"] img { image-rendering: pixelated; }
[data-testid="stSidebar"] [data-testid="stExpander"] [data-testid="stBaseButton-secondary"] {
  padding-left: 0.5rem; padding-right: 0.5rem; }
</style>"""
PRESENTER_CSS = """<style>
html { font-size: 20px; }
.st-key-scenario_panel p { font-size: 0.85rem; line-height: 1.4; }
.st-key-scenario_panel button { padding: 0.2rem 0.3rem; min-height: 2rem; }
.st-key-scenario_panel button p { font-size: 0.8rem; }
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
        # a locked colour scale is taken afresh from the scenario's first view
        st.session_state.pop(state.GRADIENT_LOCK, None)


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
                  help="Larger text; advanced controls folded away; ◀ Previous / Next ▶ "
                       "step through the scenarios beside the stage.")
        st.toggle("Guess first", **state.with_value("guess"),
                  help="The numbers stay hidden until you have guessed the chosen loss.")
        if not presenting():  # read after its toggle: a link's ?presenter=true counts at once
            _scenario_list()
    st.html(PAGE_CSS + (PRESENTER_CSS if presenting() else ""))


def _scenario_picker() -> None:
    keys = [NONE] + [s.key for s in scenarios.SCENARIOS]
    st.selectbox("Scenario", keys, **state.with_index("scenario", keys),
                 format_func=lambda k: "— free exploration —" if k == NONE
                 else scenarios.get(k).title,
                 on_change=lambda: apply_scenario(st.session_state["scenario"]))


def _scenario_list() -> None:
    """Every scenario as a thumbnail and a button (folded away in presenter mode)."""
    with st.expander("All scenarios", expanded=True):
        for scenario in scenarios.SCENARIOS:
            # the thumbnail narrow, the button wide: titles (at most 20 characters) fit whole
            picture, button = st.columns([1, 3], vertical_alignment="center")
            picture.image(_thumbnail(scenario.key), width="stretch")
            button.button(scenario.title, **state.keyed(f"scenario_button_{scenario.key}"),
                          on_click=apply_scenario, args=(scenario.key,),
                          help=scenario.question, width="stretch")


@st.cache_data(show_spinner=False)
def _thumbnail(key: str):
    return charts.thumbnail(*scenarios.preview(scenarios.get(key), 64))


def scenario_panel(revealed: bool) -> bool:
    """The chosen scenario beside the stage: its title, then its question (guess first,
    before the reveal: it gives no answer away) or its paragraph, and "Start over"; in
    presenter mode ◀ Previous / Next ▶ step through the scenarios in order. Nothing (False)
    when no scenario is chosen."""
    key = state.current("scenario")
    if key == NONE or key not in scenarios.BY_KEY:
        return False
    scenario = scenarios.get(key)
    asking = guessing() and not revealed
    with st.container(border=True, key="scenario_panel"):
        st.markdown(f"**{scenario.title}**")
        if presenting():  # the steps first: they stay in the window whatever the text's length
            previous, following = st.columns(2)
            before, after = _neighbours(key)
            previous.button("◀ Previous", **state.keyed("scenario_previous"), on_click=_step,
                            args=(before,), disabled=before is None, width="stretch")
            following.button("Next ▶", **state.keyed("scenario_next"), on_click=_step,
                             args=(after,), disabled=after is None, width="stretch")
            if st.session_state.pop(state.STEPPED, False):
                st.rerun(scope="app")  # a click reruns only the page: the sidebar follows
        st.markdown(scenario.question if asking else scenario.text)
        if asking:
            st.caption("Guess, then reveal: the story comes with the numbers.")
        st.button("Start over", **state.keyed("scenario_reset"), on_click=apply_scenario,
                  args=(key,), help="Put every control back where the scenario set it.",
                  width="stretch")
    return True


def _step(key: str) -> None:
    """◀ Previous / Next ▶: apply the scenario, and ask for a whole-app rerun."""
    apply_scenario(key)
    st.session_state[state.STEPPED] = True


def _neighbours(key: str) -> tuple[str | None, str | None]:
    """The scenarios before and after ``key`` in ``SCENARIOS`` (None at the ends)."""
    keys = [s.key for s in scenarios.SCENARIOS]
    at = keys.index(key)
    return (keys[at - 1] if at > 0 else None), (keys[at + 1] if at + 1 < len(keys) else None)


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
