"""The app in a real browser: heuristic, LLM and LINAS runs stepped through the approval gate.

Each test drives `python -m nas_core serve` (Streamlit + worker) with Playwright in
headless Chromium. Screenshots of the Search and Results pages are written to
test-artifacts/ (docs/screenshots/ for the README with ``make screenshots``).
"""

from __future__ import annotations

import json
import os
import pathlib
import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from nas_core.space import BlockSpec, default_spec
from tests.llm_server import FakeLlmServer, reply

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
# `make screenshots` refreshes the README's pictures; a plain test run leaves the tree clean.
SHOTS = ROOT / ("docs/screenshots" if os.environ.get("EQUINAS_UPDATE_SCREENSHOTS") else "test-artifacts")


def key(name: str) -> str:
    """CSS selector of the element Streamlit renders for the widget with this key."""
    return f".st-key-{name}"


SCRIPT_STATE = """s => { const a = document.querySelector('[data-testid="stApp"]');
                          return a && a.getAttribute('data-test-script-state') === s; }"""
# Idle, and still idle ``ms`` later: a fragment's timed rerun that was running when a click arrived ends
# first, and the click's rerun starts right after it; this waits that one out too.
STABLE_IDLE = """([ms, token]) => { const a = document.querySelector('[data-testid="stApp"]');
  const w = window; if (w.__idleToken !== token) { w.__idleToken = token; w.__idleSince = null; }
  if (!a || a.getAttribute('data-test-script-state') !== 'notRunning') { w.__idleSince = null; return false; }
  if (w.__idleSince === null) w.__idleSince = performance.now();
  return performance.now() - w.__idleSince >= ms; }"""
_tokens = iter(range(1, 1 << 62))


def wait_idle(page, rerun: bool = True) -> None:
    """Wait until Streamlit has finished running the script.

    After an action (``rerun``) the rerun starts a few milliseconds later: wait up to 400 ms for
    the script to be running (most reruns start within one frame, so this rarely waits the whole
    400 ms), then until it has been done for 60 ms (``STABLE_IDLE``). ``rerun=False``: the script
    has visibly run already (a page drew its title), or nothing was done that reruns it; only wait
    for it to be done. (A fixed 400 ms before every check instead: the browser tests took 148.5 s
    serially; this way 131 s.)
    """
    if not rerun:
        page.wait_for_function(SCRIPT_STATE, arg="notRunning", timeout=90_000)
        return
    try:
        page.wait_for_function(SCRIPT_STATE, arg="running", timeout=400)
    except PlaywrightTimeout:
        pass  # no rerun (or one that ended within a frame): the check below is then quick
    page.wait_for_function(STABLE_IDLE, arg=[60, next(_tokens)], timeout=90_000)


def goto(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector('[data-testid="stSidebar"]', timeout=60_000)
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=60_000)
    wait_idle(page, rerun=False)  # the page drew its title: its script has run or is running


def click(page, name: str) -> None:
    page.locator(f"{key(name)} button").first.click()
    wait_idle(page)


def select(page, name: str, option: str) -> None:
    page.locator(key(name)).click()
    page.get_by_role("option", name=re.compile(re.escape(option))).first.click()
    wait_idle(page)


def fill(page, name: str, value: str) -> None:
    box = page.locator(f"{key(name)} input, {key(name)} textarea").first
    box.fill(value)
    box.press("Tab")
    wait_idle(page)


def card_ids(page) -> list[int]:
    ids = []
    for el in page.locator('[class*="st-key-card_"]').all():
        m = re.search(r"st-key-card_(\d+)", el.get_attribute("class") or "")
        if m:
            ids.append(int(m.group(1)))
    return ids


def wait_for_done(page, n_done: int, timeout_s: int = 240) -> None:
    """Wait until the Search page's decided table lists ``n_done`` done candidates."""
    page.wait_for_function(
        """n => [...document.querySelectorAll('[data-testid="stMetric"]')]
               .some(m => m.innerText.includes('Measured') && parseInt(m.innerText.split('\\n').pop()) >= n)""",
        arg=n_done, timeout=timeout_s * 1000,
    )
    wait_idle(page)


def test_heuristic_demo_run_end_to_end(app_server, page):
    url = app_server["url"]
    goto(page, url)
    assert page.get_by_text("EquiNAS Studio").first.is_visible()
    page.wait_for_selector(key("demo_run"))
    click(page, "demo_run")
    page.wait_for_url(re.compile(r"/search"), timeout=60_000)
    page.wait_for_selector('[class*="st-key-card_"]', timeout=60_000)
    wait_idle(page)
    (cid,) = card_ids(page)
    page.get_by_text("Rationale.").first.wait_for(state="visible")
    click(page, f"approve_{cid}")
    wait_for_done(page, 1)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "search.png"), full_page=True)

    goto(page, f"{url}/results")
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert page.get_by_text("Leaderboard").first.is_visible()
    assert page.get_by_text("Accuracy per group").first.is_visible()
    # The class-mix split (the tiny data set's age groups differ in class mix) and the search's curve.
    assert page.get_by_text("Class mix or model? (per group)").first.is_visible()
    assert page.locator(key(f"mix_box_{cid}")).first.is_visible()  # a canvas grid: its cells are not DOM text
    # ... on a data set whose groups do differ in class mix: the expected accuracies the table shows differ.
    from nas_core import studio

    store = studio.open_store(app_server["db"])
    try:
        mix = studio.class_mix_frame(store.get_candidate(cid))
    finally:
        store.close()
    assert mix["expected_from_class_mix"].dropna().round(4).nunique() > 1, mix
    assert page.get_by_text("Over the search").first.is_visible()
    page.screenshot(path=str(SHOTS / "results.png"), full_page=True)

    goto(page, f"{url}/export")
    click(page, "export_prepare")
    with page.expect_download() as dl:
        page.locator(f"{key('export_download')} button").click()
    card = pathlib.Path(dl.value.path()).read_text()
    assert "Model card" in card and "Accuracy per group" in card


def _valid_spec(width: int) -> dict:
    spec = default_spec()
    blocks = list(spec.blocks)
    blocks[0] = BlockSpec(type="conv", out_channels=width, pool="max")
    return {"architecture": type(spec)(stem=spec.stem, blocks=tuple(blocks), head=spec.head).to_dict(),
            "rationale": f"widen the first block to {width} channels for the weakest group"}


def test_llm_run_with_reject_reason_in_next_prompt(app_server, page):
    url = app_server["url"]
    secret = "sk-e2e-secret-key-0123456789abcdef"
    script = [reply(json.dumps(_valid_spec(48))), reply(json.dumps(_valid_spec(64)))]
    with FakeLlmServer(script) as srv:
        goto(page, f"{url}/setup")
        fill(page, "cfg_name", "llm e2e")
        select(page, "cfg_engine", "LLM designer")
        page.get_by_role("tab", name="LLM endpoint").click()
        fill(page, "cfg_base_url", srv.base_url)
        fill(page, "cfg_model", "fake-model")
        fill(page, "cfg_api_key", secret)
        click(page, "create_run")
        page.wait_for_url(re.compile(r"/search"), timeout=60_000)
        click(page, "propose")
        page.wait_for_selector('[class*="st-key-card_"]', timeout=60_000)
        (first,) = card_ids(page)
        assert page.get_by_text("widen the first block to 48").first.is_visible()
        page.locator(key(f"card_{first}")).get_by_text("Reject…").click()
        fill(page, f"reason_{first}", "keep the model under 100k parameters please")
        click(page, f"reject_{first}")
        page.get_by_text("Next prompt").first.click()
        assert page.get_by_text("keep the model under 100k parameters please").first.is_visible()
        click(page, "propose")
        page.wait_for_function("() => document.body.innerText.includes('widen the first block to 64')",
                               timeout=60_000)
        (second,) = card_ids(page)
        assert second != first
        # The second request carried the human's reason to the model.
        assert "keep the model under 100k parameters please" in json.dumps(srv.requests[-1])
        click(page, f"approve_{second}")
        wait_for_done(page, 1)
    db_bytes = b"".join(p.read_bytes() for p in app_server["tmp"].glob("e2e.db*"))
    assert secret.encode() not in db_bytes


def test_linas_step_approves_a_population(app_server, page):
    url = app_server["url"]
    goto(page, f"{url}/setup")
    fill(page, "cfg_name", "linas e2e")
    select(page, "cfg_engine", "LINAS")
    page.get_by_role("tab", name="LINAS").click()
    fill(page, "cfg_population", "3")
    click(page, "create_run")
    page.wait_for_url(re.compile(r"/search"), timeout=60_000)
    click(page, "propose")
    page.wait_for_selector('[class*="st-key-card_"]', timeout=60_000)
    assert len(card_ids(page)) == 3
    click(page, "approve_all")
    wait_for_done(page, 3)
    assert not card_ids(page)


PAGES = ["", "data", "setup", "search", "results", "jobs", "export"]
REVIEW = ROOT / "test-artifacts" / "review"
# The height of the page's content: the tallest scrolling element (Streamlit scrolls inside stMain).
FULL_HEIGHT = """() => { let h = document.documentElement.scrollHeight;
  for (const el of document.querySelectorAll('*')) {
    const y = getComputedStyle(el).overflowY;
    if ((y === 'auto' || y === 'scroll') && el.scrollHeight > el.clientHeight + 5) h = Math.max(h, el.scrollHeight); }
  return h; }"""

# every displayed Plotly chart has drawn (one in a hidden tab or a closed expander has no layout box)
PLOTS_DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot')].every(
  el => el.offsetParent === null || el.querySelector('.main-svg'))"""


@pytest.mark.parametrize("size", [(1400, 1000), (1280, 720)], ids=["1400x1000", "1280x720"])
def test_screenshot_review_of_every_page(app_server, browser, size):
    """Every page (with the runs the tests above made) at a desktop and a laptop size: nothing wider than
    the window, and a picture of each under test-artifacts/review/ for a person to look at."""
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(30_000)
    REVIEW.mkdir(parents=True, exist_ok=True)
    try:
        goto(page, app_server["url"])
        for name in PAGES:
            page.set_viewport_size({"width": width, "height": height})
            if name:  # through the sidebar, as a person would: no reload of the app's scripts per page
                page.locator(f'[data-testid="stSidebarNav"] a[href$="/{name}"]').first.click()
                page.wait_for_url(re.compile(f"/{name}([?]|$)"))
                page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=60_000)
                wait_idle(page)
            page.screenshot(path=str(REVIEW / f"{name or 'home'}_{width}x{height}.png"))  # what a person sees
            # The whole page: Streamlit scrolls inside stMain, so full_page=True alone only captures the window.
            # Make the window as tall as the content for one picture of everything.
            # charts and grids size themselves after the script has finished: wait for every Plotly chart's
            # drawing, then a moment for the grids (a fixed 1.5 s per page was 21 s of the suite)
            page.wait_for_function(PLOTS_DRAWN, timeout=15_000)
            page.wait_for_timeout(300)
            full = page.evaluate(FULL_HEIGHT)
            page.set_viewport_size({"width": width, "height": min(max(int(full), height), 16000)})
            wait_idle(page, rerun=False)  # a new window size does not rerun the script
            page.screenshot(path=str(REVIEW / f"{name or 'home'}_{width}x{height}_full.png"), full_page=True)
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, f"page /{name} is {overflow}px wider than a {width}px window"
            assert not page.locator('[data-testid="stException"]').count(), f"page /{name} shows a traceback"
    finally:
        context.close()
