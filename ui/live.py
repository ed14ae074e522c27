"""Pages that refresh themselves only while something can change them.

A live fragment reruns its part of the page every few seconds for as long as the page stays open:
each rerun costs the Streamlit server and the browser CPU (an idle Search page that polled every 2 s
kept about 17% of a core busy: ``python -m benchmarks idle``), and each is a chance to drop a click that
lands at the same moment (see ``ui.common.act``). So a page polls fast only while jobs are queued or
running, and hands over to a full rerun when that changes.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from nas_core import studio
from ui.common import get_store

#: Seconds between checks while jobs are open, and on the Jobs page while none is (to notice new ones).
LIVE_S = 3
IDLE_S = 30


def refresh_when_jobs_end(run_id: int | None) -> None:
    """While jobs of ``run_id`` are queued or running, check every few seconds and rerun the whole page
    when one ends (or another starts), so that its result shows without a click. Nothing open: no polling.
    """
    ids = studio.open_job_ids(get_store(), run_id)
    if ids:
        _watch(run_id, ids)


@st.fragment(run_every=LIVE_S)
def _watch(run_id: int | None, seen: tuple[int, ...]) -> None:
    # A fragment rerun reuses the arguments of the last full run: ``seen`` is what the page was drawn with.
    now = studio.open_job_ids(get_store(), run_id)  # a fragment rerun may run on another thread: own connection
    if set(now) != set(seen):
        st.rerun(scope="app")
    one = len(now) == 1
    st.caption(f"{len(now)} job{'' if one else 's'} of this run queued or running (see **Jobs**); this page "
               f"updates when {'it ends' if one else 'each ends'}.")


def jobs_panel(draw: Callable[[], bool]) -> None:
    """The Jobs page's live part: ``draw()`` draws it and says whether any job is open.

    Redrawn every :data:`LIVE_S` seconds while jobs are queued or running, every :data:`IDLE_S` seconds
    while none is (a job queued from another tab or the CLI still shows within that time).
    """
    (_live_jobs if studio.open_job_ids(get_store()) else _idle_jobs)(draw)


@st.fragment(run_every=LIVE_S)
def _live_jobs(draw: Callable[[], bool]) -> None:
    if not draw():
        st.rerun(scope="app")  # the last one ended: poll slowly from now on


@st.fragment(run_every=IDLE_S)
def _idle_jobs(draw: Callable[[], bool]) -> None:
    if draw():
        st.rerun(scope="app")  # a job was queued (here, elsewhere or from the CLI): poll fast
