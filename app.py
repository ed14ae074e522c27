"""EquiNAS Studio: the Streamlit entry point. Navigation only; every page lives in pages/."""

import streamlit as st


def run() -> None:
    """Build the navigation and run the selected page."""
    st.set_page_config(page_title="EquiNAS Studio", page_icon="⚖️", layout="wide")
    pages = [
        st.Page("pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("pages/data.py", title="Data", icon="🗂️"),
        st.Page("pages/setup.py", title="Setup", icon="🛠️"),
        st.Page("pages/search.py", title="Search", icon="🔎"),
        st.Page("pages/results.py", title="Results", icon="📊"),
        st.Page("pages/export.py", title="Export", icon="📦"),
    ]
    st.navigation(pages).run()


run()
