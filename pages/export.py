"""Export: a candidate's spec, weights, ONNX, TorchScript, standalone source and model card; the run as CSV."""

import streamlit as st

from nas_core import studio
from nas_core.errors import UserError
from ui.common import get_store, run_picker, worker_badge

store = get_store()
worker_badge(store)
st.title("Export")
run_id = run_picker(store)
if run_id is None:
    st.info("No run yet. Create one on **Setup**, or press **One-click demo run** on **Home**.")
    st.stop()

board = studio.leaderboard(store, run_id)
st.download_button("Download the run as CSV", studio.export_run_csv(store, run_id), f"run{run_id}.csv",
                   "text/csv", key="run_csv")
measured = board.dropna(subset=["accuracy"])
if measured.empty:
    st.info("No measured candidate to export yet.")
    st.stop()
labels = dict(zip(measured["candidate_id"], measured["label"]))
cid = st.selectbox("Candidate", list(labels), format_func=labels.get, key="export_cid")
FORMATS = {
    "card_html": "Model card (HTML)", "card_md": "Model card (Markdown)", "spec": "Spec (JSON)",
    "source": "Standalone PyTorch source", "weights": "Weights (state_dict)", "onnx": "ONNX",
    "torchscript": "TorchScript",
}
fmt = st.radio("Format", list(FORMATS), format_func=FORMATS.get, horizontal=True, key="export_fmt")


def _prepare(candidate_id: int, fmt_name: str) -> None:
    # A callback (not `if st.button`): the click counts even when it lands during another rerun.
    st.session_state.pop("export_error", None)
    try:
        st.session_state["export_file"] = studio.export_candidate(get_store(), candidate_id, fmt_name)
    except UserError as exc:
        st.session_state["export_error"] = str(exc)
        st.session_state.pop("export_file", None)


st.button("Prepare file", key="export_prepare", on_click=_prepare, args=(cid, fmt),
          help="ONNX and TorchScript exports trace the model: about a second (a few on a busy CPU).")
if st.session_state.get("export_error"):
    st.error(st.session_state["export_error"])
if st.session_state.get("export_file"):
    name, data = st.session_state["export_file"]
    st.download_button(f"Download {name}", data, name, key="export_download")
    if name.endswith(".html"):
        st.html(data.decode())
    elif name.endswith((".md", ".json", ".py")):
        st.code(data.decode()[:20000], language="markdown" if name.endswith(".md") else None)
