"""EquiNAS Studio: the Streamlit entry point. Navigation only; every page lives in pages/."""

import streamlit as st


def run() -> None:
    """Build the navigation and run the selected page."""
    st.set_page_config(page_title="EquiNAS Studio", page_icon=":material/balance:", layout="wide")
    pages = [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/dataset:"),
        st.Page("pages/setup.py", title="Setup", icon=":material/tune:"),
        st.Page("pages/search.py", title="Search", icon=":material/search:"),
        st.Page("pages/results.py", title="Results", icon=":material/insights:"),
        st.Page("pages/jobs.py", title="Jobs", icon=":material/pending_actions:"),
        st.Page("pages/export.py", title="Export", icon=":material/download:"),
    ]
    st.navigation(pages).run()


run()
