"""Jobs: every queued, running, failed or cancelled job of every kind, live, with Cancel.

Evaluations, baselines, super-network trainings and measurements all run in the worker; this page
is the one place that shows them all: progress, time so far, an estimate of the time left (the
job's own estimate where it gives one, else a straight-line extrapolation of its progress), the
error of a failed one, and a Cancel button for a queued or running one.
"""

import pandas as pd
import streamlit as st

from nas_core import studio
from ui.common import act, get_store, progress_bar, show_flash, worker_badge
from ui.live import jobs_panel

store = get_store()
worker_badge(store)
st.title("Jobs")
st.caption("Everything the worker has to do, is doing, or could not finish. Times are wall-clock on this machine; the "
           "estimate of the time left extrapolates the progress so far and is rough on a busy machine.")

show_all = st.toggle("Also show finished jobs", key="jobs_show_done")


def _cancel(job_id: int) -> None:
    act(studio.cancel_job, get_store(), job_id, "app",
        success=f"Job {job_id}: cancelled (a running one stops at its next check)")


def jobs_view() -> bool:
    """The table and one row of actions per open job; True when some job is queued or running.

    Drawn inside a fragment (only this part refreshes): every 3 s while jobs are open, every 30 s otherwise.
    """
    live_store = get_store()  # a fragment rerun may be on another thread; SQLite stays on its own
    statuses = studio.SHOWN_JOB_STATUSES + (("done",) if show_all else ())
    df = studio.jobs_frame(live_store, statuses)
    show_flash()
    if df.empty:
        st.info("No job is queued, running, failed or cancelled. Approve a candidate on **Search**, train "
                "baselines on **Results** or a super-network on **Setup**, and it shows here.")
        return False
    counts = df["status"].value_counts()
    cols = st.columns(4)
    for col, status in zip(cols, ("running", "queued", "failed", "cancelled")):
        col.metric(status.capitalize(), int(counts.get(status, 0)))
    open_jobs = df[df["cancellable"]]
    if not open_jobs.empty:
        st.subheader("Queued and running")
    for row in open_jobs.itertuples():
        with st.container(border=True, key=f"job_{row.job}"):
            left, right = st.columns([5, 1])
            title = f"**Job {row.job}** · {row.kind} · run #{row.run}" + (f" · {row.what}" if row.what else "")
            left.markdown(title)
            if row.status == "running":
                left_text = (f"about {studio.duration_text(row.eta_s)} left" if not pd.isna(row.eta_s)
                             else "time left: not known until it reports progress")
                text = " · ".join(part for part in (row.step, f"{studio.duration_text(row.elapsed_s)} so far",
                                                    left_text) if part)
                progress_bar(None if pd.isna(row.progress) else row.progress, text, label="running", where=left)
            else:
                left.caption(f"queued, waiting {studio.duration_text(row.waiting_s)}"
                             + (" (the worker is not running: start one in the sidebar)"
                                if not studio.worker_summary(live_store).alive else ""))
            if row.cancel_requested:
                right.caption("cancel requested")
            else:
                right.button("Cancel", key=f"cancel_job_{row.job}", on_click=_cancel, args=(int(row.job),))
    ended = df[~df["cancellable"]]
    if not ended.empty:
        st.subheader("Ended")
        st.dataframe(
            pd.DataFrame({
                "Job": ended["job"], "Kind": ended["kind"], "Run": ended["run"], "What": ended["what"],
                "Status": ended["status"], "Took": [studio.duration_text(s) for s in ended["elapsed_s"]],
                "Error": ended["error"],
            }),
            hide_index=True, width="stretch", key="jobs_ended",
            column_config={"Error": st.column_config.TextColumn(width="large")},
        )
    return not open_jobs.empty


jobs_panel(jobs_view)
