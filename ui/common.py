"""Widgets every page shares: the store, the selected run, the worker status and error display."""

from __future__ import annotations

import streamlit as st

from nas_core import studio
from nas_core.errors import UserError


def _ensure_navigation() -> None:
    """Make sure app.py's st.navigation is in charge, even when the first visit opens a page URL.

    Streamlit keeps a process-wide "legacy pages/ folder" flag that is only cleared when
    st.navigation runs; a server whose first visitor opens /setup directly would otherwise
    run pages/setup.py on its own (no wide layout, file names as menu). Clearing the flag
    and rerunning hands the request to app.py.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def get_store():
    """The app's store for this script run; stops the page with a clear message if it cannot open."""
    _ensure_navigation()
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
    ids = [r.id for r in reversed(runs)]
    names = {r.id: f"#{r.id} {r.name} ({r.engine})" for r in runs}
    wanted = st.query_params.get("run")
    current = int(wanted) if wanted and wanted.isdigit() and int(wanted) in names else ids[0]
    chosen = st.sidebar.selectbox(label, ids, index=ids.index(current), format_func=names.get, key=key)
    if str(chosen) != wanted:
        st.query_params["run"] = str(chosen)
    return chosen


def select_run(run_id: int) -> None:
    """Make ``run_id`` the current run (for links from Home and Setup)."""
    st.query_params["run"] = str(run_id)
    st.session_state.pop("run_picker", None)


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
