"""CPU an open, idle page costs: the Streamlit server and Chromium, this tree against a reference commit.

A person leaves the Search page (``--pages search``) or the Jobs page (``jobs``) of a finished run open (a
halving run: its rung panel shows). Nothing is queued or running, so nothing on the page can change by
itself. The benchmark starts the app of each tree on the same kind of database, opens the page in
headless Chromium, waits 5 s, then counts the CPU seconds of the app's Streamlit process and of every
Chromium process over ``--seconds``; trees alternate over ``--rounds`` so that machine load hits both
alike. It prints both and the ratio.

The reference (``--against``, a git revision; default the page's entry in :data:`PAGES`) is checked out
into a temporary folder with ``git worktree`` and run with this interpreter. Without git history (a
shallow clone) it says so and prints this tree's figure alone.

Measured 2026-12-07 on the 2-core machine (two rounds of 30 s, reference bda75f6, whose rung panel
re-ran every 2 s for as long as the page was open): Streamlit 3.10 / 3.11 CPU-s -> 0.17 / 0.16
(0.05x), Chromium 1.99 / 2.23 -> 0.30 / 0.20 (0.12x): an idle page went from about 17% of a core to 1%.
The Jobs page (``--pages jobs``, reference f40aa72, whose table re-ran every 3 s; two niced benchmarks on
the machine): Streamlit 0.92 / 0.87 -> 0.20 / 0.21 CPU-s, Chromium 0.57 / 0.48 -> 0.18 / 0.16, together
0.26x (4.7% of a core -> 1.3%).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: Per page: its path (``{run}``: the run's id), what shows once it has drawn, and the last commit that
#: polled it while idle (the Search page's rung panel every 2 s, the Jobs page every 3 s).
PAGES = {
    "search": ("search?run={run}", "text=Rungs: preliminary and final results", "bda75f6"),
    "jobs": ("jobs", "text=No job is queued", "f40aa72"),
}

# Run in the tree under test (its own nas_core): a finished halving run with four candidates.
MAKE_DB = """
import os, sys
sys.path.insert(0, os.getcwd())
db, data = sys.argv[1], sys.argv[2]
os.environ["EQUINAS_DB"] = db
from nas_core import studio
from nas_core.data.synthetic import make_default
from nas_core.records import Proposal
from nas_core.rungs import HalvingSettings, Rung
from nas_core.settings import TrainSettings
from nas_core.worker import Worker
from tests.test_rungs import FAKE, spec
ds = make_default(data, n_images=240, image_size=32, seed=0, workers=1)
store = studio.open_store()
cfg = studio.default_config(str(ds), name="idle", train=TrainSettings(image_size=32, max_epochs=2, n_bootstrap=10),
                            halving=HalvingSettings(rungs=(Rung(1, 32),)))
run_id = studio.create_run(store, cfg)
sess = studio.session(store, run_id)
for width in (50, 40, 30, 20):
    c = store.add_candidate(run_id, 1, Proposal(spec(width), "heuristic"))
    sess.approve(c.id, "bench")
Worker(store.path, poll_s=0.01, heartbeat_s=0.1, stale_after_s=5, handlers=FAKE).run(once=True)
print(run_id)
"""


def _cpu_of(match) -> float:
    """CPU seconds (user + system) of every live process whose (pid, ppid, cmdline) ``match`` accepts."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{p}/stat").read_text()
            cmd = pathlib.Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        f = stat[stat.rfind(")") + 2:].split()
        if match(int(p), int(f[1]), cmd):
            total += (int(f[11]) + int(f[12])) / tick
    return total


def start_app(tree: pathlib.Path, db: pathlib.Path, *options: str) -> tuple[subprocess.Popen, int]:
    """The app of ``tree`` on ``db`` (Streamlit alone, no worker), serving on a free port: (process, port).
    ``options``: more Streamlit command-line options."""
    from tests.store.helpers import (  # the browser tests' own helpers: one copy of each
        free_port,
        streamlit_healthy,
        wait_until,
    )

    port = free_port()
    env = dict(os.environ, EQUINAS_DB=str(db), STREAMLIT_SERVER_FILE_WATCHER_TYPE="none")
    proc = subprocess.Popen([sys.executable, "-m", "ui.launch", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true", *options],
                            cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: streamlit_healthy(port), timeout=90, step=0.3)
    except BaseException:
        proc.terminate()
        proc.wait(timeout=20)
        raise
    return proc, port


def measure(browser, tree: pathlib.Path, db: pathlib.Path, run_id: str, seconds: float,
            page_name: str = "search") -> tuple[float, float]:
    """(Streamlit CPU-s, Chromium CPU-s) over ``seconds`` with a page (of ``run_id``) open and idle."""
    proc, port = start_app(tree, db)
    ctx = None
    try:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        path, drawn, _ = PAGES[page_name]
        page.goto(f"http://127.0.0.1:{port}/" + path.format(run=run_id))
        page.wait_for_selector(drawn, timeout=60_000)
        time.sleep(5)

        def app(pid: int, ppid: int, _cmd: str) -> bool:
            return proc.pid in (pid, ppid)

        def chromium(_pid: int, _ppid: int, cmd: str) -> bool:
            return "chromium" in cmd

        s0, c0 = _cpu_of(app), _cpu_of(chromium)
        time.sleep(seconds)
        return _cpu_of(app) - s0, _cpu_of(chromium) - c0
    finally:
        if ctx is not None:
            ctx.close()
        proc.terminate()
        proc.wait(timeout=20)


def _prepare(tree: pathlib.Path, work: pathlib.Path, tag: str) -> tuple[pathlib.Path, str]:
    db = work / f"{tag}.db"
    out = subprocess.run([sys.executable, "-c", MAKE_DB, str(db), str(work / f"data_{tag}")], cwd=tree,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"could not make the {tag} database:\n{out.stderr[-2000:]}")
    return db, out.stdout.split()[-1]


def _worktree(stack: contextlib.ExitStack, work: pathlib.Path, rev: str) -> pathlib.Path | None:
    """A checkout of ``rev`` for the run (removed at the end), or None without that history."""
    ref = work / f"reference-{rev}"
    got = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(ref), rev],
                         capture_output=True, text=True)
    if got.returncode != 0:
        sys.stdout.write(f"idle page: no reference ({rev} not in this clone's history: "
                         f"{got.stderr.strip()[:200]}); this tree only\n")
        return None
    stack.callback(subprocess.run, ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref)],
                   capture_output=True)
    return ref


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pages", default=",".join(PAGES), help="pages measured (default %(default)s)")
    p.add_argument("--against", default=None,
                   help="git revision to compare with (default: each page's last polling commit, see PAGES)")
    p.add_argument("--seconds", type=float, default=30.0, help="idle time measured per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="one round of 10 s")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 10.0, 1
    pages = [name.strip() for name in args.pages.split(",") if name.strip()]
    unknown = [name for name in pages if name not in PAGES]
    if unknown:
        p.error(f"unknown page(s) {unknown}: choose from {', '.join(PAGES)}")
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # the browser tests' Chromium and flags

    if not pathlib.Path(CHROMIUM).exists():
        sys.stdout.write(f"idle page: skipped, Chromium not found at {CHROMIUM} (make browser)\n")
        return 0
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = pathlib.Path(tmp)
        refs = {page_name: args.against or PAGES[page_name][2] for page_name in pages}
        checkouts = {rev: _worktree(stack, work, rev) for rev in dict.fromkeys(refs.values())}
        dbs = {"this tree": _prepare(ROOT, work, "this")}
        for rev, tree in checkouts.items():
            if tree is not None:
                dbs[rev] = _prepare(tree, work, f"ref-{rev}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for page_name in pages:
                rev = refs[page_name]
                trees = {f"reference {rev}": checkouts[rev]} if checkouts[rev] is not None else {}
                trees["this tree"] = ROOT
                figures: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
                for _ in range(args.rounds):
                    for name, tree in trees.items():
                        db, run_id = dbs["this tree" if tree == ROOT else rev]
                        st_cpu, ch_cpu = measure(browser, tree, db, run_id, args.seconds, page_name)
                        figures[name].append((st_cpu, ch_cpu))
                        sys.stdout.write(f"  {name}: {args.seconds:.0f} s idle on {page_name}: Streamlit "
                                         f"{st_cpu:.2f} CPU-s, Chromium {ch_cpu:.2f} CPU-s\n")
                        sys.stdout.flush()
                _report(page_name, figures, args)
            browser.close()
    return 0


def _report(page_name: str, figures: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> None:
    med = {name: (statistics.median(s for s, _ in v), statistics.median(c for _, c in v)) for name, v in figures.items()}
    mine = med["this tree"]
    sys.stdout.write(f"idle {page_name} page, median over {args.rounds} round(s) of {args.seconds:.0f} s: this tree "
                     f"Streamlit {mine[0]:.2f} + Chromium {mine[1]:.2f} CPU-s "
                     f"({100 * sum(mine) / args.seconds:.1f}% of a core)\n")
    for name, (s, c) in med.items():
        if name != "this tree":
            sys.stdout.write(f"  against {name}: Streamlit {s:.2f} + Chromium {c:.2f} CPU-s; ratio this/reference "
                             f"Streamlit {mine[0] / max(s, 1e-9):.2f}x, Chromium {mine[1] / max(c, 1e-9):.2f}x, "
                             f"together {sum(mine) / max(s + c, 1e-9):.2f}x\n")


if __name__ == "__main__":
    raise SystemExit(main())
