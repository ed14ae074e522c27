"""Clicks that land while the Search page's live fragment (``st.fragment(run_every=...)``) refreshes.

The bug (issue 17): the first Approve click sometimes did nothing while the page was busy, and
"Approve all" did nothing and its errors vanished. Each test here waits until a fragment rerun is
in progress (the app's script state is ``running`` with no click of ours pending) and clicks then.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_browser import card_ids, click, fill, goto, key, select, wait_idle

pytestmark = pytest.mark.e2e

RUNNING = """() => { const a = document.querySelector('[data-testid="stApp"]');
                     return a && a.getAttribute('data-test-script-state') === 'running'; }"""


def _click_during_refresh(page, name: str) -> None:
    """Wait for the live fragment's own rerun to start, then click ``name`` at once."""
    wait_idle(page)
    page.wait_for_function(RUNNING, timeout=20_000, polling=5)
    page.locator(f"{key(name)} button").first.click(timeout=5_000)


def _linas_run_with_proposals(page, url: str, name: str, population: int) -> list[int]:
    goto(page, f"{url}/setup")
    fill(page, "cfg_name", name)
    select(page, "cfg_engine", "LINAS")
    page.get_by_role("tab", name="LINAS").click()
    fill(page, "cfg_population", str(population))
    click(page, "create_run")
    page.wait_for_url(re.compile(r"/search"), timeout=60_000)
    click(page, "propose")
    page.wait_for_selector('[class*="st-key-card_"]', timeout=60_000)
    return card_ids(page)


def test_approve_and_approve_all_work_on_the_first_click_during_live_refresh(app_server, page):
    from nas_core import studio

    ids = _linas_run_with_proposals(page, app_server["url"], "clicks e2e", 4)
    assert len(ids) == 4
    # Nothing is in flight yet, so nothing refreshes; the first approval starts the live view.
    click(page, f"approve_{ids[0]}")
    page.wait_for_selector(key(f"card_{ids[0]}"), state="detached", timeout=10_000)
    # The second approval is clicked while the live fragment re-runs: it must count the first time.
    _click_during_refresh(page, f"approve_{ids[1]}")
    page.wait_for_selector(key(f"card_{ids[1]}"), state="detached", timeout=10_000)
    wait_idle(page)
    assert page.get_by_text(f"#{ids[1]} queued for evaluation").first.is_visible()
    # Approve all, clicked while the fragment re-runs, queues both remaining proposals. (A proposal
    # approved from another tab in between is covered by tests/ui/test_pages.py: here a finished
    # evaluation may redraw the page first, which would legitimately drop it from the list.)
    _click_during_refresh(page, "approve_all")
    for cid in ids[2:]:
        page.wait_for_selector(key(f"card_{cid}"), state="detached", timeout=10_000)
    wait_idle(page)
    page.wait_for_timeout(2_500)  # a live refresh or two later the message is still there
    assert page.get_by_text("2 candidate(s) queued for evaluation").first.is_visible()
    store = studio.open_store(app_server["db"])
    try:
        assert all(len(store.list_jobs(candidate_id=cid)) == 1 for cid in ids)  # each once, none twice
    finally:
        store.close()
