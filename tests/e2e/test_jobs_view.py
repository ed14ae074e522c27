"""The Jobs page in a browser: a running super-network training shows live progress and is cancelled."""

from __future__ import annotations

import time

import pytest

from nas_core import studio
from tests.e2e.test_browser import goto, key, wait_idle

pytestmark = pytest.mark.e2e


def _wait_job(store, job_id: int, pred, timeout_s: float = 120.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        job = store.get_job(job_id)
        if pred(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} stayed {store.get_job(job_id).status}")


def test_jobs_view_shows_a_running_job_live_and_cancels_it(app_server, page, e2e_dataset):
    store = studio.open_store(app_server["db"])
    config = studio.default_config(e2e_dataset, name="jobs e2e")
    job_id = studio.queue_supernet_training(store, config, epochs=500)  # far longer than the test
    goto(page, f"{app_server['url']}/jobs")
    assert page.get_by_text("super-network training").first.is_visible()
    _wait_job(store, job_id, lambda j: j.status == "running")
    # The fragment refreshes by itself: no reload, the row turns into a running progress bar.
    page.wait_for_function("id => document.body.innerText.includes('so far')", arg=job_id, timeout=30_000)
    page.locator(f"{key(f'cancel_job_{job_id}')} button").first.click()
    wait_idle(page)
    job = _wait_job(store, job_id, lambda j: j.status == "cancelled", timeout_s=120)
    assert job.status == "cancelled"
    page.wait_for_selector(key(f"job_{job_id}"), state="detached", timeout=20_000)
    assert page.get_by_text("Ended").first.is_visible()
    store.close()
