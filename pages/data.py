"""Data: the default data set, an uploaded zip or a server folder; mapping, validation report, import."""

import pandas as pd
import streamlit as st

from nas_core import studio
from nas_core.errors import UserError
from ui.charts import count_bars
from ui.common import get_store, guarded, progress_bar, worker_badge

store = get_store()
worker_badge(store)
st.title("Data")
st.caption("Bring ISIC 2019, HAM10000, or any folder or zip of images with a CSV of labels and demographics.")

source_kind = st.radio("Source", ["Default data set", "Folder on this server", "Upload a zip"],
                       horizontal=True, key="data_source")
source = None
upload = None  # (file name, bytes, id) of an uploaded zip: kept on disk only while a call needs it
if source_kind == "Default data set":
    path = studio.default_dataset()
    if not (path / "ISIC_2019_Training_GroundTruth.csv").exists():
        st.info("The default data set (synthetic, ISIC 2019 layout) has not been generated yet.")
        if st.button("Generate it now", key="gen_default"):
            bar = st.empty()
            progress_bar(0.0, "generating images", where=bar)

            def generated(done: int, total: int) -> None:
                p = studio.import_progress("generate", done, total)
                progress_bar(p.fraction, p.message, where=bar)

            guarded(studio.ensure_default_dataset, generated)
            st.rerun()
    else:
        source = str(path)
        st.success(f"Default data set: {path}. It is **synthetic** (generated dermoscopy-like images with "
                   "sex and age metadata), made so that architecture and fairness differences are measurable.")
elif source_kind == "Folder on this server":
    folder = st.text_input("Folder path", key="data_folder",
                           placeholder="/data/ISIC_2019 or /data/HAM10000 (read in place, nothing copied)")
    st.caption("Only folders inside the app's data folders can be read (the database's folder and those "
               "given with `serve --data-root` or EQUINAS_DATA_ROOTS).")
    if folder.strip():
        real = guarded(studio.server_folder, folder.strip())
        if real is None:
            st.stop()
        source = str(real)
else:
    up = st.file_uploader("Zip of images with a CSV", type=["zip"], key="data_zip")
    if up is not None:
        upload = (up.name, up.getvalue(), str(getattr(up, "file_id", "") or ""))
        source = f"upload:{up.name}:{upload[2]}"

if source is None:
    st.stop()

with st.expander("Format and column mapping (detected automatically; override if needed)",
                 expanded=source_kind != "Default data set"):
    fmt = st.selectbox("Format", ["detect", "isic2019", "ham10000", "generic", "folder"], key="data_fmt")
    headers = studio.upload_csv_columns(upload[1]) if upload else studio.csv_columns(source)
    cols = sorted({c for h in headers.values() for c in h})
    c1, c2, c3 = st.columns(3)
    csv_name = c1.selectbox("Metadata CSV", [""] + list(headers), key="map_csv")
    image_col = c1.selectbox("Image column", [""] + cols, key="map_image")
    label_col = c2.selectbox("Label column", [""] + cols, key="map_label")
    group_col = c2.selectbox("Lesion / patient id column", [""] + cols, key="map_group",
                             help="Images sharing an id stay on one side of the split (no leakage).")
    attrs = c3.multiselect("Extra demographic columns", cols, key="map_attrs",
                           help="e.g. Fitzpatrick skin type, anatomical site, site of acquisition.")
    age_col = c3.selectbox("Age column (binned)", [""] + cols, key="map_age")
    age_bins = c3.text_input("Age bins", "30,65", key="map_bins", help="<30 young, 30-65 middle, >65 old")

try:
    mapping = studio.column_mapping(image_col, label_col, attrs, age_col, age_bins, group_col, csv_name)
except UserError as exc:
    st.error(str(exc))
    st.stop()
fmt_arg = None if fmt == "detect" else fmt

if st.button("Check the data set", key="inspect", type="primary") or st.session_state.get("inspected") == source:
    st.session_state["inspected"] = source
    with st.spinner("Reading the metadata and checking every image…"):
        if upload:
            inspection = guarded(studio.inspect_upload, store, upload[0], upload[1], fmt_arg, mapping, upload[2])
        else:
            inspection = guarded(studio.inspect_dataset, source, fmt_arg, mapping)
    if inspection is None:
        st.stop()
    report = inspection.report
    st.subheader("Validation report")
    st.code(report.to_text(), language=None)
    counts = studio.class_group_counts(inspection)
    if not counts.empty:
        st.subheader("Classes by group")
        attr = st.selectbox("Attribute", sorted(counts["attribute"].unique()), key="counts_attr")
        st.plotly_chart(count_bars(counts[counts["attribute"] == attr], x="class", color="group"),
                        key="counts_chart")
        st.dataframe(pd.pivot_table(counts[counts["attribute"] == attr], index="class", columns="group",
                                    values="count", fill_value=0), key="counts_table")
    if source_kind != "Upload a zip":
        st.subheader("Sample images")
        samples = studio.sample_images(inspection.root, n=8)
        grid = st.columns(4)
        for i, (img, caption) in enumerate(samples):
            grid[i % 4].image(img, caption=caption, width="stretch")

    if source_kind != "Default data set":
        st.subheader("Import")
        name = st.text_input("Name", key="import_name")
        allow = st.checkbox("Leave out corrupt images and rows without images (listed in the report)",
                            key="allow_corrupt")
        if st.button("Import", key="do_import"):
            bar = st.empty()
            progress_bar(0.0, "importing", where=bar)

            def progress(stage: str, done: int, total: int) -> None:
                p = studio.import_progress(stage, done, total)
                progress_bar(p.fraction, p.message, where=bar)

            if upload:
                rec = guarded(studio.import_upload, store, upload[0], upload[1], upload[2], name=name or None,
                              fmt=fmt_arg, mapping=mapping, allow_corrupt=allow, progress=progress)
            else:
                rec = guarded(studio.import_dataset, store, source, name=name or None, fmt=fmt_arg,
                              mapping=mapping, allow_corrupt=allow, progress=progress)
            if rec is not None:
                st.success(f"Imported “{rec.name}”. Choose it on the Setup page for a new run.")
