"""The Data page in a real browser: a valid zip is uploaded, checked and imported (issue 15, item 1).

The uploaded zip must not outlive the import: it waits in ``uploads/incoming`` beside the
database only while a call needs it, and the extracted data set lies beside the database too.
"""

from __future__ import annotations

import sqlite3
import zipfile

import pytest

from tests.e2e.test_browser import click, fill, goto, key, wait_idle

pytestmark = pytest.mark.e2e


def test_a_valid_zip_imports_from_the_data_page(app_server, page, e2e_dataset, tmp_path):
    archive = tmp_path / "tiny_upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(e2e_dataset.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(e2e_dataset.parent))
    goto(page, app_server["url"] + "/data")
    page.get_by_text("Upload a zip").first.click()
    wait_idle(page)
    page.locator(f"{key('data_zip')} input[type=file]").set_input_files(str(archive))
    wait_idle(page)
    click(page, "inspect")
    page.get_by_text("Validation report").first.wait_for(timeout=90_000)
    assert not page.locator('[data-testid="stException"]').count()
    page.get_by_text("Classes by group").first.wait_for(timeout=30_000)
    fill(page, "import_name", "uploaded-tiny")
    click(page, "do_import")
    page.get_by_text("Imported “uploaded-tiny”").first.wait_for(timeout=120_000)
    assert not page.locator('[data-testid="stException"]').count()

    db = app_server["db"]
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM datasets")]
    assert "uploaded-tiny" in names
    uploads = db.parent / "uploads"
    assert (uploads / "uploaded-tiny").is_dir(), "the imported data lies beside the database"
    incoming = uploads / "incoming"
    assert not incoming.exists() or not any(incoming.iterdir()), "the uploaded zip was deleted after the import"
