"""Home: the runs, a one-click demo, and whether a worker is alive."""

import streamlit as st

from nas_core import studio
from ui.common import get_store, guarded, open_run, worker_badge

store = get_store()
worker_badge(store)

st.title("EquiNAS Studio")
st.caption("Find CNNs that are accurate, fair across demographic groups, and small enough for their device.")

runs = studio.runs_overview(store)
# Start actions in one row above the runs table, so the table gets the full width (it was cut off).
b1, b2, b3, _ = st.columns([2, 1, 1, 2])
if b1.button("▶ One-click demo run", key="demo_run", type="primary",
             help="A heuristic search on the default synthetic data set, first proposal ready to approve."):
    with st.spinner("Creating the demo run (generating the default data set the first time)…"):
        run_id = guarded(studio.create_demo_run, store)
    if run_id is not None:
        open_run("pages/search.py", run_id)
if b2.button("New run…", key="new_run"):
    st.switch_page("pages/setup.py")
if b3.button("Bring a data set…", key="to_data"):
    st.switch_page("pages/data.py")

st.subheader("Runs")
if runs.empty:
    st.info("No runs yet. Press **One-click demo run** to start a search on the default data set, "
            "or **New run…** to choose the engine, data and priorities yourself.")
else:
    st.dataframe(
        runs, hide_index=True, width="stretch", key="runs_table",
        column_config={
            "best accuracy": st.column_config.NumberColumn(format="percent"),
            "best unfairness": st.column_config.NumberColumn(format="%.4f"),
        },
    )
    ids = runs["run"].tolist()
    pick = st.selectbox("Open run", ids, key="open_run",
                        format_func=lambda i: f"#{i} {runs.set_index('run').loc[i, 'name']}")
    c1, c2 = st.columns(2)
    if c1.button("Go to Search", key="open_search"):
        open_run("pages/search.py", pick)
    if c2.button("Go to Results", key="open_results"):
        open_run("pages/results.py", pick)
