"""Results: leaderboard, per-group accuracy, fairness, confusion matrices, Pareto front, hypervolume, Table I."""

import streamlit as st

from nas_core import studio
from ui.charts import (
    confusion_heatmap,
    group_accuracy_bars,
    hypervolume_lines,
    label,
    metric_over_iterations,
    parallel_coordinates,
    pareto_scatter,
)
from ui.common import act, fmt, get_store, run_picker, show_flash, worker_badge
from ui.live import refresh_when_jobs_end
from ui.rungs import seed_line

store = get_store()
worker_badge(store)
st.title("Results")
run_id = run_picker(store)
if run_id is None:
    st.info("No run yet. Create one on **Setup**, or press **One-click demo run** on **Home**.")
    st.stop()
sess = studio.session(store, run_id)
# Evaluations, re-measurements and fine-tunes of this run still open: their results show when they end.
refresh_when_jobs_end(run_id)
board = studio.leaderboard(store, run_id)
measured = board.dropna(subset=["accuracy"])
if measured.empty:
    st.info("Nothing measured yet. Approve proposals on **Search**; results appear here as the worker "
            "finishes them.")
    st.stop()

metrics = studio.objective_names()
st.subheader("Leaderboard")
f1, f2 = st.columns([2, 1])
statuses = f1.multiselect("Status", sorted(board["status"].unique()), ["done"], key="lb_status")
only_front = f2.checkbox("Only estimates from the super-network", key="lb_estimates")
view = board[board["status"].isin(statuses)] if statuses else board
if only_front:
    view = view[view["estimate"]]
all_cols = list(view.columns)
default_cols = [c for c in ("label", "status", "estimate", "accuracy", "balanced_accuracy", "worst_group_accuracy",
                            "unfairness", "params", "latency") if c in all_cols] or all_cols
shown = st.multiselect("Columns", all_cols, default_cols, key="lb_cols", format_func=label)
PERCENT = ("accuracy", "balanced_accuracy", "worst_group_accuracy", "val_accuracy")
COUNTS = ("params", "macs")  # thousands separators, as on the Search page's cards
st.dataframe(
    view[shown or all_cols], hide_index=True, key="leaderboard",
    column_config={c: st.column_config.NumberColumn(label(c), format="percent") if c in PERCENT
                   else st.column_config.NumberColumn(label(c), format="localized") if c in COUNTS  # 98,712
                   else st.column_config.Column(label(c)) for c in all_cols},
)
if "estimate" in board and board["estimate"].any():
    st.caption("Estimate rows come from the super-network and are scored on the **validation** split; "
               "'Test accuracy' of an estimate is a validation number, not a test result.")
if board["estimate"].any():
    st.caption("Rows with estimate = true are super-network estimates, not from-scratch results. "
               + (studio.supernet_ranking_text(store) or ""))

noisy = studio.noisy_latencies(store, run_id)
if noisy:
    st.warning("Latency measured on a busy machine (its timed rounds disagree, so treat it as rough): "
               + ", ".join(f"{name} ±{spread:.0%}" for name, spread in noisy)
               + ". The figure is the quietest round's median; re-measure on a quiet machine to be sure.")

for note in studio.settings_notes(store, run_id):
    st.warning(note)

st.subheader("Over the search")
it_metric = st.selectbox("Metric", metrics, metrics.index("accuracy"), key="iter_metric", format_func=label)
st.plotly_chart(metric_over_iterations(studio.iteration_frame(store, run_id, it_metric), it_metric),
                key="iter_chart")

st.subheader("Pareto front")
a1, a2 = st.columns(2)
x = a1.selectbox("x axis", metrics, metrics.index("params"), key="pareto_x", format_func=label)
y = a2.selectbox("y axis", metrics, metrics.index("unfairness"), key="pareto_y", format_func=label)
front = studio.pareto_frame(store, run_id, x, y)
st.plotly_chart(pareto_scatter(front, x, y), key="pareto_chart")

labels = dict(zip(measured["candidate_id"], measured["label"]))
ids = list(labels)
best_id = sess.poll().best_id
default = [best_id] if best_id in labels else ids[:1]
chosen = st.multiselect("Candidates to compare", ids, default, format_func=labels.get, key="compare_ids")
cands = [studio.get_candidate(store, i) for i in chosen]
if cands:
    st.subheader("Accuracy per group")
    small = st.number_input("Warn below this many test images in a group", 1, 1000, 30, key="small_n")
    overall = {studio.candidate_label(c): c.metrics.test_acc for c in cands if c.metrics}
    groups = studio.group_frame(cands)
    st.plotly_chart(group_accuracy_bars(groups, overall, min_n=int(small)), key="group_bars")
    tiny = groups[(groups["n"] < small) & (groups["group"] != "unknown")]
    if not tiny.empty:
        st.warning("Too few test images to trust: " + ", ".join(
            sorted({f"{r.attribute}: {r.group} (n={r.n})" for r in tiny.itertuples()})))
    st.subheader("Class mix or model? (per group)")
    st.caption("Expected = the accuracy the group would get if the model recognised each disease as well in "
               "the group as overall; only the group's mix of diseases differs. **Class-mix effect** = expected − "
               "overall (the group has easier or harder diseases). **Model gap** = observed − expected (below "
               "zero: the model serves this group's cases worse than the same diseases elsewhere).")
    for c in cands:
        mix = studio.class_mix_frame(c, int(small))
        if mix.empty:
            continue
        st.markdown(f"**{studio.candidate_label(c)}**" + (" *(super-network estimate, validation split)*"
                                                           if c.metrics.estimate else " *(test split)*"))
        shown_mix = mix.assign(group=[f"{g} (n={n}, too few)" if sm else g
                                      for g, n, sm in zip(mix["group"], mix["n"], mix["small"])])
        pct = {k: st.column_config.NumberColumn(label(k), format="percent") for k in
               ("accuracy", "balanced_accuracy", "expected_from_class_mix", "class_mix_effect", "model_gap")}
        st.container(key=f"mix_box_{c.id}").dataframe(
            shown_mix.drop(columns=["small"]), hide_index=True, key=f"mix_{c.id}", column_config={
            # Narrow attribute and count columns, so "Model gap" (the last) fits a 1280 px window.
            **pct, "attribute": st.column_config.TextColumn("Attribute", width=70), "group": "Group",
            "n": st.column_config.NumberColumn("Images", width=60, help="test images in the group"),
            "balanced_accuracy": st.column_config.NumberColumn("Balanced acc.", format="percent",
                                                               help="balanced accuracy: mean recall over classes"),
            "expected_from_class_mix": st.column_config.NumberColumn(
                "Expected (class mix)", format="percent", help="expected from the group's class mix"),
            "class_mix_effect": st.column_config.NumberColumn("Class-mix effect", format="percent"),
            "model_gap": st.column_config.NumberColumn("Model gap", format="percent")})
        with st.expander(f"Recall of each class per group — {studio.candidate_label(c)}"):
            rec = studio.class_recall_frame(c)
            st.dataframe(rec, key=f"recall_{c.id}",
                         column_config={k: st.column_config.NumberColumn(format="percent") for k in rec.columns})
    st.subheader("Fairness")
    for c in cands:
        attrs, pairs = studio.fairness_frames(c)
        fr = c.metrics.fairness
        st.markdown(f"**{studio.candidate_label(c)}** — Unfairness {fmt(fr.unfairness)}, EODD {fmt(fr.eodd)}, "
                    f"EOPP1 {fmt(fr.eopp1)}, EOPP2 {fmt(fr.eopp2)}" + (" *(super-network estimate)*" if c.metrics.estimate else ""))
        seed_line(store, c)  # seed-to-seed spread beside the bootstrap interval, and a re-measure button
        if studio.can_finetune(c):  # an estimate: train it from its inherited weights into a measured result
            st.button("Fine-tune this estimate", key=f"finetune_{c.id}", on_click=act,
                      args=(lambda cid: studio.queue_finetune(get_store(), cid), c.id),  # the store at click time
                      kwargs={"success": f"{studio.candidate_label(c)}: fine-tune queued; when the worker is "
                                         "done it is a measured candidate (test split), no longer an estimate."},
                      help="Train this sub-network a few epochs from the super-network's weights with the run's "
                           "settings and measure it on the test split like any candidate.")
        t1, t2 = st.columns(2)
        t1.dataframe(attrs, hide_index=True, key=f"attrs_{c.id}")
        t2.dataframe(pairs, hide_index=True, key=f"pairs_{c.id}")
        if c.metrics.confusion:
            with st.expander(f"Confusion matrices per group — {studio.candidate_label(c)}"):
                cols = st.columns(3)
                for i, (attr, grp, matrix) in enumerate(c.metrics.confusion):
                    cols[i % 3].plotly_chart(confusion_heatmap(matrix, c.metrics.class_names, f"{attr}: {grp}"),
                                             key=f"cm_{c.id}_{i}")

st.subheader("Notes")
st.caption("Free notes for the people reading this run (what you noticed, what to check). They are stored "
           "with the run and never sent to a designer.")


def _add_note() -> None:
    target = st.session_state.get("note_on")
    act(studio.add_note, get_store(), run_id, st.session_state.get("note_text", ""),
        None if target in (None, "run") else int(target), success="Note kept")
    st.session_state["note_text"] = ""


n1, n2 = st.columns([1, 3])
n1.selectbox("On", ["run", *ids], key="note_on",
             format_func=lambda v: "the whole run" if v == "run" else labels.get(v, f"#{v}"))
n2.text_area("Note", key="note_text", height=80, placeholder="e.g. the old-age group's gap is class mix, "
             "not the model: check with a dermatologist before concluding")
st.button("Add note", key="add_note", on_click=_add_note)
notes = studio.notes_frame(store, run_id)
if not notes.empty:
    st.dataframe(notes, hide_index=True, width="stretch", key="notes_table",
                 column_config={"note": st.column_config.TextColumn(width="large")})

st.subheader("Three or more objectives")
pc = st.multiselect("Metrics", metrics, ["accuracy", "unfairness", "params", "latency"], key="pc_metrics",
                    format_func=label)
st.plotly_chart(parallel_coordinates(measured, pc, color="accuracy"), key="parallel")

st.subheader("Hypervolume against evaluations")
runs = {r.id: f"#{r.id} {r.name} ({r.engine})" for r in studio.list_runs(store)}
hv_runs = st.multiselect("Runs to compare", list(runs), [run_id], format_func=runs.get, key="hv_runs")
hv_obj = st.multiselect("Objectives", metrics, list(sess.config.objectives), key="hv_obj", format_func=label)
if len(hv_obj) >= 2 and hv_runs:
    hv = studio.hypervolume_frame(store, hv_runs, hv_obj)
    if hv["fidelity"].nunique() > 1:
        st.warning("These runs are not comparable: some are super-network **estimates**, some were **measured** "
                   "by training from scratch (each run's label says which). Compare runs of one kind.")
    st.plotly_chart(hypervolume_lines(hv), key="hv_chart")
    st.caption("One normalization for all runs shown (ideal and nadir of their measured points, reference "
               "point 1.1 after normalization), so the curves compare. With a single point the front has "
               "no extent yet and the value is the full normalised box (1.1 per objective), not a result.")
else:
    st.info("Pick at least one run and two objectives.")

st.subheader("Against the hand-made baselines (FL-NAS Table I)")
table = studio.comparison(sess)
base = studio.baseline_status(sess)
if (table.get("kind") == "baseline").any() if not table.empty else False:
    st.dataframe(table, hide_index=True, key="table_one")
    st.caption("↑/↓: better than every baseline.")
open_base = base[base["status"].isin(["queued", "running", "evaluating"])] if not base.empty else base
ended_base = base[base["status"].isin(["failed", "cancelled"])] if not base.empty else base
if base.empty:
    st.info("The baselines (ResNet-18/34, MobileNetV1/V2) have not been trained on this run's split yet.")
elif not open_base.empty:
    st.info("Baselines " + ", ".join(f"{r.baseline} ({r.status})" for r in open_base.itertuples())
            + ": the worker trains them one by one; follow them on **Jobs**.")
for r in ended_base.itertuples():
    st.warning(f"Baseline {r.baseline} was {r.status}" + (f": {r.error}" if r.error else "")
               + "; it is left out of the table.")


def _train_baselines() -> None:
    queued = act(studio.session(get_store(), run_id).ensure_baselines, "app")
    if queued is not None:
        st.toast("Baselines queued; the worker trains them like any candidate (see Jobs).")


show_flash()
st.button("Train the baselines on this run's split", key="baselines", on_click=_train_baselines)
