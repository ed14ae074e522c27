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
# A horizontal container sizes each button to its label (in fixed columns "Bring a data set…" was cut to
# "Bring a data s…" at 1280 px).
b1 = b2 = b3 = st.container(horizontal=True, key="home_actions")
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
HOME_ORDER = ("run", "name", "status", "engine", "evaluation", "data set", "iteration", "candidates", "measured",
              "waiting", "best accuracy", "best unfairness")
if runs.empty:
    st.info("No runs yet. Press **One-click demo run** to start a search on the default data set, "
            "or **New run…** to choose the engine, data and priorities yourself.")
else:
    st.dataframe(
        runs, hide_index=True, width="stretch", key="runs_table",
        # Short labels, narrow counts and the status beside the name, so every column fits a 1280 px laptop
        # window (it was cut off after "best unfairness", hiding the status).
        column_order=[c for c in HOME_ORDER if c in runs.columns] + [c for c in runs.columns if c not in HOME_ORDER],
        column_config={
            "run": st.column_config.NumberColumn("Run", width=45),
            "name": st.column_config.TextColumn("Name"),
            "status": st.column_config.TextColumn("Status", width=75),
            "engine": "Engine", "evaluation": "Evaluation", "data set": "Data set",
            "iteration": st.column_config.NumberColumn("Iter.", width=50, help="iteration"),
            "candidates": st.column_config.NumberColumn("Cand.", width=55, help="candidates"),
            "measured": st.column_config.NumberColumn("Meas.", width=55, help="measured"),
            "waiting": st.column_config.NumberColumn("Wait.", width=50, help="waiting for you"),
            "best accuracy": st.column_config.NumberColumn("Best acc.", format="percent", width=75,
                                                           help="best accuracy"),
            "best unfairness": st.column_config.NumberColumn("Best unfair.", format="%.4f", width=85,
                                                             help="best (lowest) Unfairness"),
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
