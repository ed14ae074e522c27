"""Shared Streamlit widgets and plotly figures. With pages/, the only code that imports streamlit."""
