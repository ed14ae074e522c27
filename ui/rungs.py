"""Successive-halving widgets: the Search page's rung panel (Promote / Stop) and the Results page's seed line."""

from __future__ import annotations

import streamlit as st

from nas_core import studio
from nas_core.errors import UserError
from ui.common import fmt, get_store

_MESSAGE = "_rungs_message"


def _do(action, cid: int, success: str, *args) -> None:
    """Run an action from a button callback; its outcome is kept for the next render (shown by the panel)."""
    try:
        action(get_store(), cid, *args)
    except UserError as exc:
        st.session_state[_MESSAGE] = ("error", str(exc))
        return
    st.session_state[_MESSAGE] = ("success", success)
    st.toast(success)


def _promote(cid: int) -> None:
    _do(studio.promote_candidate, cid, f"#{cid} continues to its next rung", "app")


def _stop(cid: int) -> None:
    _do(studio.stop_candidate, cid, f"#{cid} stopped; its preliminary result stays", "app")


def _remeasure(cid: int) -> None:
    _do(studio.remeasure_candidate, cid, f"#{cid}: re-measurement with another seed queued (the worker runs it)",
        None, "app")


def _show_message() -> None:
    kind, text = st.session_state.get(_MESSAGE) or ("", "")
    if kind == "error":
        st.error(text)
    elif kind:
        st.success(text)


def rung_panel(run_id: int, live: bool = True) -> None:
    """Each candidate's rung, its preliminary or final result and rank, with Promote / Stop.

    ``live``: the panel refreshes itself every 2 s; the Search page asks for that only while something
    is in flight (nothing else moves a rung, and a click on Promote / Stop reruns the panel anyway).
    Polling an idle run kept a Streamlit rerun and a redraw of the page going every 2 s for as long
    as the page stayed open, and every rerun is a chance to drop a click (see ``ui.common.act``).
    """
    (_live_panel if live else _still_panel)(run_id)


@st.fragment(run_every=2)
def _live_panel(run_id: int) -> None:
    _panel(run_id)


@st.fragment
def _still_panel(run_id: int) -> None:
    # This fragment reruns alone only after a click in it. When that click queued work (Promote), the
    # whole page reruns, so that it polls again: this panel and the live progress refresh themselves.
    if studio.session(get_store(), run_id).poll().in_flight:
        st.rerun(scope="app")
    _panel(run_id)


def _panel(run_id: int) -> None:
    store = get_store()  # a fragment rerun may run on another thread: its own connection
    config = studio.session(store, run_id).config
    views = studio.rung_views(store, run_id)
    if not views:
        return
    st.subheader("Rungs: preliminary and final results")
    _show_message()
    st.caption(studio.halving_caption(config))
    st.dataframe(
        studio.rung_frame(store, run_id), hide_index=True, key="rungs_table",
        column_config={c: st.column_config.NumberColumn(format="%.4f")
                       for c in ("val accuracy", "test accuracy", "unfairness")},
    )
    for v in views:
        if not (v.can_promote or v.can_stop):
            continue
        text, button = st.columns([5, 1])
        if v.test_acc is not None:
            kind = "**Preliminary**" if v.preliminary else "**Final**"
            rank = f", rank {v.rank} of {v.ranked} at this rung" if v.rank is not None else ""
            text.markdown(f"#{v.candidate_id} · rung {v.rung}/{v.rungs} · {v.state} — {kind} "
                          f"({v.result_fidelity.split(': ', 1)[-1]}): test accuracy {fmt(v.test_acc)}, "
                          f"unfairness {fmt(v.unfairness)}{rank}")
        else:
            text.markdown(f"#{v.candidate_id} · rung {v.rung}/{v.rungs} · {v.state} — {v.fidelity}")
        if v.can_promote:
            button.button("Promote", key=f"promote_{v.candidate_id}", on_click=_promote, args=(v.candidate_id,),
                          help="Train it at its next rung although the pruner stopped it.")
        if v.can_stop:
            button.button("Stop", key=f"stop_{v.candidate_id}", on_click=_stop, args=(v.candidate_id,),
                          help="Stop its rung now; a preliminary result it already has stays.")


def seed_line(store, candidate) -> None:
    """Beside a measured candidate's bootstrap interval: its spread over initialisation seeds, and a button."""
    spread = studio.seed_spread(store, candidate.id)
    if spread is None:
        return
    ci = dict((name, (lo, hi)) for name, lo, hi in candidate.metrics.fairness.ci) if candidate.metrics else {}
    boot = ""
    if "unfairness" in ci:
        lo, hi = ci["unfairness"]
        boot = f" Bootstrap interval of Unfairness (test images resampled): {fmt(lo)}–{fmt(hi)}."
    _show_message()
    left, right = st.columns([3, 1], vertical_alignment="center")  # [5, 1] cut the label to "Re-measure wi…" at 1280 px
    left.caption("Seed spread (training noise): " + spread.to_text().split(": ", 1)[-1] + "." + boot)
    right.button("Re-measure (new seed)", key=f"remeasure_{candidate.id}", on_click=_remeasure,
                 args=(candidate.id,), help="Train it again with a new initialisation seed on the same split.")
