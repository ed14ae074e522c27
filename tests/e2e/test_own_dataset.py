"""A user's own data set in a real browser (issue 14, "Done when"): a zip of a generic CSV whose image and
label columns are ``picture`` and ``finding``, with an extra attribute ``hospital``, is uploaded and mapped
on the Data page, imported, searched with the heuristic designer from Setup, and its hospital groups appear
on the Results page and in the model card.
"""

from __future__ import annotations

import re
import sqlite3
import zipfile

import pytest

from nas_core import studio
from nas_core.store import Store
from tests.e2e.test_browser import card_ids, click, fill, goto, key, select, wait_for_done, wait_idle
from tests.test_dataset_ref import make_clinic

pytestmark = pytest.mark.e2e


def _choose(page, name: str, option: str) -> None:
    """Pick ``option`` (exactly) in the select or multiselect with this key, then close its list."""
    page.locator(key(name)).click()
    page.get_by_role("option", name=option, exact=True).first.click()
    page.keyboard.press("Escape")
    wait_idle(page)


def test_own_csv_with_renamed_columns_and_a_hospital_attribute_runs_from_the_app(app_server, page, tmp_path):
    url = app_server["url"]
    root = make_clinic(tmp_path / "clinic_data")  # cases.csv: picture, finding, sex, age, hospital
    archive = tmp_path / "clinic.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # wrapped in one folder, as zipping a folder does
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(root.parent))

    # Data: upload, map the renamed columns and the extra attribute, check, import.
    goto(page, url + "/data")
    page.get_by_text("Upload a zip").first.click()
    wait_idle(page)
    page.locator(f"{key('data_zip')} input[type=file]").set_input_files(str(archive))
    wait_idle(page)
    select(page, "data_fmt", "generic")
    _choose(page, "map_image", "picture")
    _choose(page, "map_label", "finding")
    _choose(page, "map_attrs", "hospital")
    _choose(page, "map_age", "age")
    click(page, "inspect")
    page.get_by_text("Validation report").first.wait_for(timeout=90_000)
    assert not page.locator('[data-testid="stException"]').count()
    page.get_by_text("Classes by group").first.wait_for(timeout=30_000)
    fill(page, "import_name", "clinic-upload")
    page.locator(key("allow_corrupt")).get_by_text("Leave out").click()  # one row without image, one corrupt
    wait_idle(page)
    click(page, "do_import")
    page.get_by_text("Imported “clinic-upload”").first.wait_for(timeout=120_000)
    assert not page.locator('[data-testid="stException"]').count()
    with sqlite3.connect(app_server["db"]) as conn:
        assert "clinic-upload" in [r[0] for r in conn.execute("SELECT name FROM datasets")]

    # Setup: a heuristic run on it (the app's fast mode: tiny images, one epoch).
    goto(page, url + "/setup")
    fill(page, "cfg_name", "own data e2e")
    select(page, "cfg_dataset", "clinic-upload (")
    select(page, "cfg_engine", "Heuristic designer")
    click(page, "create_run")
    page.wait_for_url(re.compile(r"/search"), timeout=60_000)

    # Search: propose, approve, wait for the measured result.
    click(page, "propose")
    page.wait_for_selector('[class*="st-key-card_"]', timeout=60_000)
    wait_idle(page)
    (cid,) = card_ids(page)
    click(page, f"approve_{cid}")
    wait_for_done(page, 1)

    # Results: the hospital groups in the per-group chart (plotly draws its tick labels as SVG text).
    goto(page, url + "/results")
    chart = page.locator(f"{key('group_bars')} .js-plotly-plot").first
    chart.wait_for(timeout=60_000)
    text = chart.text_content() or ""
    assert re.search(r"hospital: north \(n=\d+\)", text) and re.search(r"hospital: south \(n=\d+\)", text), text
    errors = page.locator('[data-testid="stException"]')
    assert not errors.count(), errors.first.inner_text()

    # The run read the data through its ref, and the model card lists the hospital groups.
    with Store.open(app_server["db"]) as store:
        (run,) = [r for r in store.list_runs() if r.name == "own data e2e"]
        ref = studio.session(store, run.id).config.dataset_ref
        assert ref.name == "clinic-upload" and "hospital" in ref.attribute_names
        (done,) = [c for c in store.list_candidates(run.id) if c.status == "done"]
        fr = done.metrics.fairness
        assert {g.group for g in fr.groups if g.attribute == "hospital"} == {"north", "south"}
        assert not any(g.small for g in fr.groups if g.attribute == "hospital"), "both hospitals counted"
        _, card = studio.export_candidate(store, done.id, "card_md")
    text = card.decode()
    assert "| hospital | north |" in text and "| hospital | south |" in text
