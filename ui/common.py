"""Widgets every page shares: the store, the selected run, the worker status and error display."""

from __future__ import annotations

import streamlit as st

from nas_core import studio
from nas_core.errors import UserError


def get_store():
    """The app's store for this script run; stops the page with a clear message if it cannot open."""
    try:
        return studio.open_store()
    except UserError as exc:
        st.error(f"The database cannot be opened: {exc}")
        st.info("Set EQUINAS_DB to a writable file path (the folder must exist) and restart the app.")
        st.stop()


def run_picker(store, label: str = "Run", key: str = "run_picker") -> int | None:
    """Select the current run (kept in the URL, so a refresh keeps it)."""
    runs = studio.list_runs(store)
    if not runs:
        return None
    ids = [r.id for r in runs]  # newest first
    names = {r.id: f"#{r.id} {r.name} ({r.engine})" for r in runs}
    wanted = st.query_params.get("run")
    current = int(wanted) if wanted and wanted.isdigit() and int(wanted) in names else ids[0]
    chosen = st.sidebar.selectbox(label, ids, index=ids.index(current), format_func=names.get, key=key)
    if str(chosen) != wanted:
        st.query_params["run"] = str(chosen)
    return chosen


def open_run(page: str, run_id: int) -> None:
    """Go to ``page`` with ``run_id`` as the current run (kept in the URL)."""
    st.session_state.pop("run_picker", None)
    st.switch_page(page, query_params={"run": str(run_id)})


def worker_badge(store) -> None:
    """Sidebar: is a worker alive? With a button to start one."""
    summary = studio.worker_summary(store)
    if summary.alive:
        st.sidebar.success(summary.text, icon=":material/check_circle:")
        return
    st.sidebar.warning(summary.text, icon=":material/warning:")
    if st.sidebar.button("Start a worker", key="start_worker"):
        try:
            pid = studio.start_worker()
        except UserError as exc:
            st.sidebar.error(str(exc))
        else:
            st.sidebar.info(f"Worker started (pid {pid}); it shows as alive within a few seconds.")


def guarded(action, *args, success: str | None = None, **kwargs):
    """Run an engine call; show a user's mistake as a message instead of a traceback."""
    try:
        result = action(*args, **kwargs)
    except UserError as exc:
        st.error(str(exc))
        return None
    if success:
        st.toast(success)
    return result


def flash(kind: str, text: str) -> None:
    """Keep a message for the next render of the page (callbacks run before the page draws).

    Messages live in ``st.session_state``, so a rerun (a live fragment's, another click's) cannot wipe
    them before the user has read them; :func:`show_flash` draws them and they stay for the next
    ``FLASH_KEEP_S`` seconds, errors until the next action.
    """
    import time

    st.session_state.setdefault("_flash", []).append((kind, text, time.time()))


FLASH_KEEP_S = 20.0


def show_flash() -> None:
    """Draw the messages left by callbacks (errors stay until the next action, the rest ``FLASH_KEEP_S``)."""
    import time

    now = time.time()
    kept = [(k, t, ts) for k, t, ts in st.session_state.get("_flash", [])
            if k == "error" or now - ts < FLASH_KEEP_S]
    st.session_state["_flash"] = kept
    # One container whatever the number of messages: Streamlit places elements by their index on the
    # page, so a message appearing or expiring would shift every later element, and a popover below
    # (Reject…, Edit…) would be drawn anew, closed, under the user's cursor (a lost click).
    with st.container():
        for kind, text, _ in kept:
            {"error": st.error, "warning": st.warning, "success": st.success}.get(kind, st.info)(text)


def act(action, *args, success: str | None = None, clear: bool = True, **kwargs):
    """Run an engine call from a widget callback; a user's mistake becomes a kept error message.

    Actions run in ``on_click`` callbacks, not in ``if st.button(...)`` blocks: a callback runs when
    the click's widget state is applied, before the script body, so a click that lands while another
    run ends (a live fragment's refresh, a slow rerun) is never lost; an ``if st.button`` only sees
    the click if no other run resets the button's trigger first.
    """
    if clear:  # a new action replaces the previous messages
        st.session_state["_flash"] = []
    try:
        result = action(*args, **kwargs)
    except UserError as exc:
        flash("error", str(exc))
        return None
    if success:
        flash("success", success)
        st.toast(success)
    return result


def fmt(value, digits: int = 4) -> str:
    """A number for tables and cards, n/a when missing."""
    if value is None:
        return "n/a"
    try:
        if value != value:  # NaN
            return "n/a"
    except TypeError:
        return str(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else f"{value:,}"


def progress_bar(fraction, message: str = "", *, label: str = "", where=None) -> None:
    """The one progress widget for every job (training, super-network, measurement, rungs, ...).

    ``fraction`` and ``message`` are a job's Progress as studio hands it on (``job_progress``,
    ``jobs_frame``); an unknown fraction draws an empty bar and says so.
    """
    target = st if where is None else where
    known = fraction is not None and fraction == fraction  # None or NaN: not reported yet
    frac = min(max(float(fraction), 0.0), 1.0) if known else 0.0
    words = message or ("" if known else "no progress reported yet")
    text = " — ".join(part for part in (label, f"{frac:.0%}" if known else "", words) if part)
    target.progress(frac, text=text)
