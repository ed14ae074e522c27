"""A clinician's first iteration in the app: from the approval click to the result on the page.

What it measures: `python -m nas_core serve` (Streamlit and its worker, as `make run` starts them) on
the default data set and a fresh database, driven in headless Chromium as a user would: Home ->
*One-click demo run* -> *Approve* the proposal; then the seconds until the Search page shows the
**preliminary** result (successive halving's first rung) and until it counts the candidate as measured
(the final result). Beside each it prints the seconds the worker's job itself ran (from the job's own
start and end in the store), so the rest is what the app, the queue and the page's refresh add, and
the ratio against the targets (issue 11: a first result within 60 s, the final within 3 minutes).

The iteration benchmark (``python -m benchmarks iteration --only timing``) times the same through the
CLI against the recipe without successive halving; this one checks the path a user sees.

Usage: ``python -m benchmarks.bench_app_loop [--dataset DIR] [--timeout S]`` (``python -m benchmarks
app_loop``). Needs Chromium (``make browser``).
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIRST_TARGET_S, FINAL_TARGET_S = 60.0, 180.0
MEASURED = """() => [...document.querySelectorAll('[data-testid="stMetric"]')]
    .some(m => m.innerText.includes('Measured') && parseInt(m.innerText.split('\\n').pop()) >= 1)"""


def _dataset(arg: str | None) -> pathlib.Path:
    path = pathlib.Path(arg) if arg else ROOT / "data" / "default"
    if not (path / "ISIC_2019_Training_GroundTruth.csv").is_file():
        if arg:
            raise SystemExit(f"no ISIC 2019-layout data set at {path}")
        from nas_core.data.synthetic import make_default

        make_default(path)  # what `make data` writes
    return path.resolve()


def run(dataset: pathlib.Path, timeout_s: float) -> dict[str, float]:
    """One iteration in the app; returns the seconds (and the jobs' own seconds) it took."""
    from playwright.sync_api import sync_playwright

    from nas_core import studio
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app
    from tests.e2e.test_browser import card_ids, click, goto, key, wait_idle

    if not pathlib.Path(CHROMIUM).exists():
        raise SystemExit(f"Chromium not found at {CHROMIUM}: run `make browser`")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_app_loop_"))
    db = tmp / "equinas.db"
    with serve_app(tmp, db, dataset) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(90_000)
        goto(page, url)
        click(page, "demo_run")
        page.wait_for_url(re.compile(r"/search"), timeout=60_000)
        page.wait_for_selector('[class*="st-key-card_"]', timeout=60_000)
        wait_idle(page)
        (cid,) = card_ids(page)
        page.locator(f"{key(f'approve_{cid}')} button").first.click()
        t0 = time.time()
        page.get_by_text(re.compile(r"Preliminary")).first.wait_for(timeout=timeout_s * 1000)
        first = time.time() - t0
        print(f"  preliminary result on the page {first:.1f} s after the approval click", flush=True)
        page.wait_for_function(MEASURED, timeout=timeout_s * 1000)
        final = time.time() - t0
        print(f"  final result on the page {final:.1f} s after the approval click", flush=True)
        browser.close()
    store = studio.open_store(db)
    try:
        jobs = sorted(store.list_jobs(candidate_id=cid), key=lambda j: j.id)
    finally:
        store.close()
    if len(jobs) < 2 or any(j.started_at is None or j.ended_at is None for j in jobs[:2]):
        raise SystemExit(f"expected two finished rung jobs, got {[(j.kind, j.status) for j in jobs]}")
    return {"first": first, "final": final, "first_job": jobs[0].ended_at - jobs[0].started_at,
            "final_job": jobs[1].ended_at - jobs[1].started_at, "queued": jobs[0].started_at - t0,
            "first_end": jobs[0].ended_at - t0, "final_end": jobs[1].ended_at - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None, help="ISIC 2019-layout folder (default data/default, made if missing)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for each result")
    ap.add_argument("--quick", action="store_true", help="the same (one iteration is the whole benchmark)")
    args = ap.parse_args(argv)
    dataset = _dataset(args.dataset)
    print(f"one demo iteration in the app (serve + worker + headless Chromium) on {dataset}:", flush=True)
    r = run(dataset, args.timeout)
    print(f"  the worker picked the job up {r['queued']:.1f} s after the click; the first rung's job ran "
          f"{r['first_job']:.1f} s and ended at {r['first_end']:.1f} s, so the page added "
          f"{r['first'] - r['first_end']:.1f} s")
    print(f"  the full-fidelity job ran {r['final_job']:.1f} s and ended at {r['final_end']:.1f} s; "
          f"the page added {r['final'] - r['final_end']:.1f} s")
    print(f"  first result {r['first']:.1f} s = {r['first'] / FIRST_TARGET_S:.2f}x the 60 s target; "
          f"final {r['final']:.1f} s = {r['final'] / FINAL_TARGET_S:.2f}x the 3-minute target")
    return 0


if __name__ == "__main__":
    sys.exit(main())  # the worker that trains sets its allocator itself (nas_core.alloc)
