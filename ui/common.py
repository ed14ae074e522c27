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
    runs = store.list_runs()
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
