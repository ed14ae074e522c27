"""Search: propose, then approve, edit or reject each proposal; watch evaluations live."""

import datetime as dt

import pandas as pd
import streamlit as st

from nas_core import studio
from nas_core.errors import UserError
from ui.charts import progress_lines
from ui.common import act, flash, fmt, get_store, progress_bar, run_picker, show_flash, worker_badge
from ui.rungs import rung_panel
from ui.spec_view import blocks_table, diagram_dot

store = get_store()
worker_badge(store)
st.title("Search")
run_id = run_picker(store)
if run_id is None:
    st.info("No run yet. Create one on **Setup**, or press **One-click demo run** on **Home**.")
    st.stop()

# The key typed on Setup, for this browser session only (never stored).
api_key = st.session_state.get(f"api_key_{run_id}") or st.session_state.get("llm_api_key")
sess = studio.session(store, run_id, api_key=api_key)
cfg = sess.config
uses_reasons = cfg.engine == "llm"  # only the LLM designer reads rejection reasons and notes
state = sess.poll()
if cfg.engine == "heuristic":
    st.caption("Engine: offline heuristic designer (no LLM is called; rule-based edits of the best model).")
elif cfg.engine == "llm":
    st.caption(f"Engine: LLM designer, model {cfg.llm.model} at {cfg.llm.base_url or 'api.openai.com'}.")
    if not api_key:
        st.caption(":material/key: An API key typed on Setup lives only in this browser tab's memory and is "
                   "never stored, so a reload forgets it. If Propose says a key is missing, type it again on "
                   "**Setup** (LLM endpoint tab) or start the app with the key in the environment.")
else:
    st.caption(f"Engine: {cfg.engine}; objectives {', '.join(cfg.objectives)}.")
if cfg.evaluation == "supernet":
    st.caption("Evaluation: super-network estimates (labelled as such), seconds per candidate.")

propose_bar = st.empty()  # always here, so the elements after it keep their places (see _propose)
if st.session_state.pop("_propose_requested", False):
    proposed = act(sess.propose, "app", progress=lambda p: progress_bar(p.fraction, p.message, where=propose_bar))
    propose_bar.empty()
    if proposed:
        flash("success", f"{len(proposed)} proposal(s) ready for review")
    state = sess.poll()
m1, m2, m3, m4 = st.columns(4)
m1.metric("Iteration", state.iteration)
m2.metric("Measured", state.measured)
m3.metric("Waiting for you", len(state.pending))
m4.metric("Queued / running", len(state.in_flight))
best = sess.best()
best_box = st.container()  # present before the first result too, so later elements keep their places
if best is not None and best.metrics is not None:
    bm = best.metrics
    split = "validation, super-network estimate" if bm.estimate else "test split"
    with best_box, st.container(border=True, key="best_so_far"):
        st.markdown(f"**Best so far: #{best.id}** ({split})")
        b = st.columns(5)
        b[0].metric("Accuracy", f"{bm.test_acc:.1%}")
        b[1].metric("Balanced accuracy", f"{bm.balanced_acc:.1%}", help="Mean recall over the classes: not "
                    "fooled by a majority class. Near 1/number of classes means the model guesses the majority.")
        b[2].metric("Unfairness", fmt(bm.fairness.unfairness, 3), help="Mean |group accuracy − overall accuracy|.")
        b[3].metric("Parameters", fmt(bm.hardware.params))
        lat = bm.hardware.latency_image_s
        # Three significant digits: "115.20 ms" was cut to "115.20 …" in a fifth of a 1280 px window.
        cpu = bm.hardware.latency_cpu_image_s
        b[4].metric("Latency / image", "n/a" if lat is None else f"{lat * 1e3:.3g} ms",
                    help="Wall clock, the quietest of several rounds." + (
                        "" if cpu is None else f" CPU time: {cpu * 1e3:.3g} ms per image (all threads); it "
                        "barely moves when other programs load the machine, so compare candidates by it "
                        "on a shared machine."))
        with st.expander("All metrics (the text the LLM designer reads)"):
            st.text(bm.to_text())

# ----------------------------------------------------------------------------- actions
# Every action is an on_click callback that leaves its message in st.session_state (ui.common.act):
# callbacks run before the page draws, so no st.rerun() is needed, no message is wiped, and a click
# that lands while the live fragment refreshes is never lost (see ui.common.act).


def _sess():
    """The run's session on this thread's store (a callback runs on the next run's thread)."""
    return studio.session(get_store(), run_id, api_key=api_key)


def _propose() -> None:
    # The click is kept here; the proposal itself runs in the page body below, at the progress bar's
    # fixed place. An element drawn from a callback lands at the top of the next run only, which
    # shifts every element after it on the run that follows and redraws the cards' popovers closed.
    st.session_state["_propose_requested"] = True


def _approve(cid: int) -> None:
    act(_sess().approve, cid, "app", success=f"#{cid} queued for evaluation")


def _approve_all(ids: list[int]) -> None:
    st.session_state["_flash"] = []
    s = _sess()
    queued = [cid for cid in ids if act(s.approve, cid, "app", clear=False) is not None]
    failed = len(ids) - len(queued)
    flash("success" if not failed else "warning",
          f"{len(queued)} candidate(s) queued for evaluation" + (f"; {failed} could not be (see above)" if failed else ""))


def _reject(cid: int) -> None:
    reason = (st.session_state.get(f"reason_{cid}") or "").strip()
    if not reason:
        st.session_state["_flash"] = []
        flash("error", f"#{cid} not rejected. Write a reason first: it is kept with the run"
                      + (" and the designer learns from it." if uses_reasons else "."))
        return
    act(_sess().reject, cid, reason, "app", success=f"#{cid} rejected")


def _edit(cid: int) -> None:
    s = _sess()
    spec, problems = studio.check_spec(s, st.session_state.get(f"edit_text_{cid}", ""))
    if spec is None:
        st.session_state["_flash"] = []
        flash("error", f"#{cid} not edited: " + "; ".join(problems))
        return
    act(s.edit, cid, spec, "app", st.session_state.get(f"edit_note_{cid}", ""), success=f"#{cid} edited")


def _finetune(offered: list[int]) -> None:
    # The pick is read at click time (a callback runs before the page draws the new selection's args).
    cid = st.session_state.get("finetune_pick")
    cid = cid if cid in offered else offered[0]
    act(lambda: studio.queue_finetune(get_store(), cid),  # the store of the thread the callback runs on
        success=f"#{cid}: fine-tune queued; when the worker is done it is a measured candidate (test split), "
                "no longer an estimate.")


def _auto(n: int) -> None:
    st.session_state["auto_left"] = n


show_flash()
c1, c2, c3 = st.columns([1, 1, 2])
c1.button("Propose", key="propose", type="primary", disabled=not state.can_propose,
          help=state.reason or "Ask the engine for the next candidate(s).", on_click=_propose)
auto_n = c2.number_input("Auto-approve iterations", 0, 100, 0, key="auto_n",
                         help="Approve and run this many iterations without asking (unattended).")
c3.button("Run unattended", key="auto_start", disabled=auto_n == 0, on_click=_auto, args=(int(auto_n),))
with st.container():  # messages that come and go, in one fixed place (see ui.common.show_flash)
    if state.reason and not state.pending:
        st.info(state.reason)
    if st.session_state.get("auto_left"):
        st.warning(f"Unattended: {st.session_state['auto_left']} iteration(s) to go.")
        st.button("Stop unattended", key="auto_stop", on_click=_auto, args=(0,))
if uses_reasons:  # heuristic and LINAS designers ignore free text, so no prompt to show
    with st.expander("Next prompt (exactly what the LLM designer would receive)", expanded=False):
        try:
            st.code(sess.next_prompt().text, language=None)
        except UserError as exc:
            st.error(str(exc))

# ----------------------------------------------------------------------------- proposals
pending = [studio.get_candidate(store, cid) for cid in state.pending]
if pending:
    st.subheader(f"Proposals of iteration {state.iteration}")
    if len(pending) > 1:
        st.button(f"Approve all {len(pending)}", key="approve_all", on_click=_approve_all,
                  args=([c.id for c in pending],))
for c in pending:
    view = studio.candidate_view(sess, c, best)
    with st.container(border=True, key=f"card_{c.id}"):
        st.markdown(f"**#{c.id}** · {c.origin} · key `{c.key}`")
        # The blocks table gets the card's full width: in a column its last columns were cut off.
        st.dataframe(blocks_table(c.spec), hide_index=True, key=f"blocks_{c.id}", width="stretch")
        left, right = st.columns([3, 2])
        with left:
            st.graphviz_chart(diagram_dot(c.spec))
        with right:
            st.metric("Parameters", fmt(view.params))
            st.metric("MACs", fmt(view.macs))
            if c.rationale:
                st.markdown(f"**Rationale.** {c.rationale}")
            if c.predicted:
                st.markdown("**Predicted.** " + ", ".join(f"{k} {v:.4g}" for k, v in c.predicted))
            if view.changes:
                st.markdown("**Changes against the best so far:**\n" + "\n".join(f"- {x}" for x in view.changes))
            for p in view.problems:
                st.error(p)
        a, r, e = st.columns(3)
        a.button("Approve", key=f"approve_{c.id}", type="primary", on_click=_approve, args=(c.id,))
        with r.popover("Reject…"):
            st.text_area("Why? (the next prompt carries it)" if uses_reasons else "Why? (kept in the run's record)",
                         key=f"reason_{c.id}")
            st.button("Reject", key=f"reject_{c.id}", on_click=_reject, args=(c.id,),
                      help="Write a reason first: the designer learns from it.")
        with e.popover("Edit…"):
            text = st.text_area("Spec (JSON)", studio.spec_json(c.spec), height=220, key=f"edit_text_{c.id}")
            st.text_input("Note (optional)", key=f"edit_note_{c.id}")
            spec, problems = studio.check_spec(sess, text)
            st.button("Save edit", key=f"edit_{c.id}", disabled=spec is None, on_click=_edit, args=(c.id,))
            for p in problems:
                st.error(p)


# ----------------------------------------------------------------------------- live progress
@st.fragment(run_every=2)
def live() -> None:
    """Evaluations in flight, polled from the store; a finished one refreshes the page."""
    # A fragment rerun may happen on another thread; SQLite connections stay on their own thread.
    store = get_store()
    now = studio.session(store, run_id).poll()
    before = st.session_state.get("in_flight_seen")
    st.session_state["in_flight_seen"] = now.in_flight
    if before is not None and set(before) - set(now.in_flight):
        for cid in set(before) - set(now.in_flight):
            st.toast(f"Evaluation of #{cid} finished: {studio.get_candidate(store, cid).status}")
        st.rerun(scope="app")
    if st.session_state.get("auto_left") and not now.in_flight:
        step = studio.session(store, run_id, api_key=api_key).step_auto("auto")
        if step.action in ("proposed", "finished", "failed"):
            st.session_state["auto_left"] = 0 if step.action != "proposed" else st.session_state["auto_left"] - 1
        if step.action == "failed":
            flash("error", step.message)
        st.rerun(scope="app")
    if not now.in_flight:
        return
    st.subheader("Evaluations")
    for cid in now.in_flight:
        c = studio.get_candidate(store, cid)
        p = studio.job_progress(store, cid)
        message = p.get("message") or ""
        if p.get("train_loss") is not None:
            message += f", train loss {fmt(p.get('train_loss'))}, val loss {fmt(p.get('val_loss'))}"
        progress_bar(p.get("fraction"), message, label=f"#{cid} {c.origin}: {c.status}")
        if p.get("history"):
            st.plotly_chart(progress_lines(pd.DataFrame(p["history"])), key=f"curve_{cid}")


# Only while something changes: a live fragment re-runs every few seconds, and each of its reruns is
# a chance for Streamlit to drop a click that lands at the same moment (a button is a one-shot
# trigger; see ui.common.act). While proposals just wait for a person, nothing needs polling.
moving = bool(state.in_flight or st.session_state.get("auto_left"))
if moving:
    live()
rung_panel(run_id, live=moving)  # successive halving: each candidate's rung, preliminary vs final, Promote / Stop

# ----------------------------------------------------------------------------- history
done = [c for c in sess.candidates() if c.status in ("done", "failed", "rejected")]
if done:
    st.subheader("Decided candidates")
    st.dataframe(pd.DataFrame([{
        "Candidate": c.id, "Iteration": c.iteration, "Origin": c.origin, "Status": c.status,
        "Measured as": None if c.metrics is None else ("estimate (validation)" if c.metrics.estimate else "test"),
        "Accuracy": None if c.metrics is None else c.metrics.value("accuracy"),
        "Balanced accuracy": None if c.metrics is None else c.metrics.value("balanced_accuracy"),
        "Unfairness": None if c.metrics is None else c.metrics.value("unfairness"),
        "Parameters": None if c.metrics is None else c.metrics.value("params"),
        "Note": c.error or c.rationale[:120],
    } for c in reversed(done)]), hide_index=True, key="decided", width="stretch", column_config={
        "Accuracy": st.column_config.NumberColumn(format="percent"),
        "Balanced accuracy": st.column_config.NumberColumn(format="percent"),
        "Unfairness": st.column_config.NumberColumn(format="%.4f"),
        "Note": st.column_config.TextColumn(width="large")})
    estimates = [c for c in done if studio.can_finetune(c)]
    if estimates:  # super-network estimates: train one from its inherited weights into a measured result
        with st.container(border=True, key="finetune_box"):
            st.markdown(f"**Fine-tune an estimate** ({len(estimates)} measured as super-network estimates, "
                        "validation split): trains the sub-network a few epochs from the super-network's "
                        "weights with the run's settings and measures it on the test split like any candidate.")
            by_id = {c.id: c for c in estimates}
            fc1, fc2 = st.columns([3, 1], vertical_alignment="bottom")
            fc1.selectbox("Estimate to fine-tune", list(by_id), key="finetune_pick", format_func=lambda cid: (
                f"{studio.candidate_label(by_id[cid])} · estimated accuracy {by_id[cid].metrics.test_acc:.1%}"))
            fc2.button("Fine-tune", key="search_finetune", on_click=_finetune, args=(list(by_id),),
                       help="Queues a super-network fine-tune job (see Jobs); the estimate then becomes an "
                            "ordinary measured candidate.")

calls = studio.llm_calls(store, run_id)
if calls:
    with st.expander(f"LLM transcript ({len(calls)} calls)"):
        for call in reversed(calls[-10:]):
            st.markdown(f"**iteration {call.iteration}** · {call.model} · {fmt(call.duration_s, 3)} s · "
                        f"tokens {call.tokens_in}/{call.tokens_out}" + (f" · error: {call.error}" if call.error else ""))
            sent = call.messages or ([{"role": "user", "content": call.prompt}] if call.prompt else [])
            for msg in sent:
                role = msg.get("role", "?") if isinstance(msg, dict) else "?"
                content = msg.get("content", "") if isinstance(msg, dict) else str(msg)
                st.caption(f"Sent ({role})")
                st.code(str(content)[:4000] or "(empty)", language=None)
            st.caption("Answer")
            st.code((call.raw_answer or "")[:4000] or "(no answer)", language=None)

events = studio.run_events(store, run_id, limit=50)
if events:
    with st.expander("Timeline (who did what, when)"):
        st.dataframe(pd.DataFrame([{
            "time": dt.datetime.fromtimestamp(e.time).strftime("%H:%M:%S"), "entity": e.entity,
            "candidate": e.candidate_id, "job": e.job_id, "from": e.from_status, "to": e.to_status,
            "actor": e.actor, "detail": e.detail,
        } for e in reversed(events)]), hide_index=True, key="timeline")
