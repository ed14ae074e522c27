"""A super-network from the app on an imported data set (issue 17, "Done when"): trained from Setup, used by a
LINAS run in super-network mode (estimates labelled as estimates), and one estimate fine-tuned from Results
into an ordinary measured candidate. The smallest settings the app offers: 32 px (EQUINAS_FAST), 1 epoch, a
subsample of 120 images.
"""

from __future__ import annotations

import re

import pytest

from nas_core import studio
from nas_core.data.ref import DatasetRef
from tests.e2e.test_browser import card_ids, click, fill, goto, key, select, wait_for_done, wait_idle
from tests.e2e.test_jobs_view import _wait_job

pytestmark = pytest.mark.e2e

NAME = "tiny-imported"


@pytest.fixture(scope="module")
def sn_app(tmp_path_factory, request):
    """The app with its own super-network folder (nothing is written to, or reused from, the repository's)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EQUINAS_SUPERNET_DIR", str(tmp_path_factory.mktemp("supernets")))
    server = request.getfixturevalue("app_server")
    yield server
    mp.undo()


def test_supernet_from_setup_on_an_imported_data_set_linas_estimates_and_finetune(sn_app, page, e2e_dataset,
                                                                                  tmp_path):
    url = sn_app["url"]
    store = studio.open_store(sn_app["db"])
    studio.import_dataset(store, e2e_dataset, name=NAME, image_size=32, cache_dir=tmp_path / "cache", workers=1)

    # Setup: the imported data set, LINAS, super-network mode; train the smallest super-network.
    goto(page, f"{url}/setup")
    fill(page, "cfg_name", "supernet e2e")
    select(page, "cfg_dataset", NAME)
    select(page, "cfg_engine", "LINAS")
    page.locator(key("cfg_eval")).get_by_text("super-network estimates").click()
    wait_idle(page)
    assert page.get_by_text("No super-network trained yet").first.is_visible()
    fill(page, "sn_epochs", "1")
    fill(page, "sn_subsample", "120")
    click(page, "sn_train")
    (train_job,) = [j for j in store.list_jobs() if j.kind == "supernet_train"]
    ref = DatasetRef.from_dict(train_job.payload["dataset"])  # the data set's record, not its name
    assert ref.name == NAME
    done = _wait_job(store, train_job.id, lambda j: j.status in ("done", "failed", "cancelled"), timeout_s=180)
    assert done.status == "done", done.error
    page.get_by_role("tab", name="LINAS").click()
    fill(page, "cfg_population", "3")
    assert list(studio.supernet_overview(store)["status"]) == ["trained"]
    fill(page, "cfg_name", "supernet e2e run")  # a rerun: the overview now lists the trained super-network
    assert not page.get_by_text("No super-network trained yet").count()
    click(page, "create_run")

    # Search: propose, approve all; the results are estimates and say so.
    page.wait_for_url(re.compile(r"/search"), timeout=60_000)
    run_id = int(re.search(r"run=(\d+)", page.url).group(1))
    config = studio.session(store, run_id).config
    assert config.evaluation == "supernet" and config.engine == "linas" and config.dataset_ref == ref
    page.get_by_text("Evaluation: super-network estimates").first.wait_for(timeout=60_000)
    click(page, "propose")
    page.wait_for_selector('[class*="st-key-card_"]', timeout=90_000)
    assert len(card_ids(page)) == 3
    click(page, "approve_all")
    wait_for_done(page, 3, timeout_s=120)
    page.get_by_text("super-network estimate").first.wait_for(timeout=30_000)  # "Best so far: #n (validation, ...)"
    cands = [c for c in store.list_candidates(run_id) if c.status == "done"]
    assert len(cands) == 3 and all(c.metrics.estimate for c in cands)
    assert all(DatasetRef.from_dict(j.payload["dataset"]) == ref
               for c in cands for j in store.list_jobs(candidate_id=c.id))

    # Results: fine-tune one estimate; it comes back measured (test split), no longer an estimate.
    goto(page, f"{url}/results?run={run_id}")
    button = page.locator('[class*="st-key-finetune_"]').first
    button.wait_for(timeout=60_000)
    cid = int(re.search(r"st-key-finetune_(\d+)", button.get_attribute("class")).group(1))
    click(page, f"finetune_{cid}")
    (ft_job,) = [j for j in store.list_jobs(candidate_id=cid) if j.kind == "supernet_finetune"]
    assert DatasetRef.from_dict(ft_job.payload["dataset"]) == ref
    done = _wait_job(store, ft_job.id, lambda j: j.status in ("done", "failed", "cancelled"), timeout_s=180)
    assert done.status == "done", done.error
    c = store.get_candidate(cid)
    assert c.status == "done" and c.metrics.estimate is False
    goto(page, f"{url}/results?run={run_id}")
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert not page.locator(key(f"finetune_{cid}")).count()  # measured: nothing left to fine-tune
    assert page.get_by_text("fine-tuned estimate(s)").first.is_visible()  # counted in the ranking line
    assert not page.locator('[data-testid="stException"]').count()
    store.close()
