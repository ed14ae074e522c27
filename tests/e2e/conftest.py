"""Browser tests: the real app (`python -m nas_core serve`: streamlit + worker) driven by Playwright
in Debian's headless Chromium, on a temporary database and a tiny data set.

In CI (CI=true) a missing browser fails the run; elsewhere it skips with the command to install it.
Screenshots of failed tests are kept under test-artifacts/.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from tests.store.helpers import free_port, streamlit_healthy

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("EQUINAS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]



@pytest.fixture(scope="session")
def browser():
    if not pathlib.Path(CHROMIUM).exists():
        msg = f"Chromium not found at {CHROMIUM}: run `make browser` (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def e2e_dataset(tiny_dataset):
    return tiny_dataset


class AppDidNotStart(RuntimeError):
    """`nas_core serve` exited or did not answer in time; the message ends with its log."""


@contextlib.contextmanager
def serve_app(tmp: pathlib.Path, db: pathlib.Path, dataset: pathlib.Path, **env_extra: str):
    """Run `python -m nas_core serve` (Streamlit and its worker) on a free port with ``db`` and ``dataset``
    as the default data set, its output in ``tmp/serve.log``; yield its URL and stop it afterwards.

    Raises:
        AppDidNotStart: it exited early or was not healthy within 90 s.
    """
    port = free_port()
    env = dict(os.environ)
    env.update({
        "EQUINAS_DB": str(db),
        "EQUINAS_DEFAULT_DATASET": str(dataset),
        "EQUINAS_DATA_DIR": str(tmp / "data"),
        "PYTHONUNBUFFERED": "1",
        "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
        **env_extra,
    })
    log = open(tmp / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas_core", "serve", "--db", str(db), "--port", str(port),
         "--address", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if streamlit_healthy(port):
                break
            time.sleep(0.5)
            if proc.poll() is not None:
                break
        else:
            raise AppDidNotStart(f"app did not start; log:\n{(tmp / 'serve.log').read_text()[-3000:]}")
        if proc.poll() is not None:
            raise AppDidNotStart(f"serve exited early; log:\n{(tmp / 'serve.log').read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, e2e_dataset):
    """Start `python -m nas_core serve` on a free port with a fresh database; yield its URL."""
    tmp = tmp_path_factory.mktemp("e2e")
    db = tmp / "e2e.db"
    # tiny image size and one epoch for runs created in the UI
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(serve_app(tmp, db, e2e_dataset, EQUINAS_FAST="1"))
        except AppDidNotStart as exc:
            pytest.fail(str(exc))
        yield {"url": url, "db": db, "tmp": tmp}
    keep = ARTIFACTS / "serve.log"
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(tmp / "serve.log", keep)


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
