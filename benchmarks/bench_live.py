"""CPU a live Search page takes from the training beside it: Streamlit's post-run GC on vs off, page closed.

A person approves a candidate and watches it train: the Search page's progress and rung panel rerun
every 2 s while the job runs. A real training job runs in a worker process (1,500 synthetic images at
64 px, the run's default thread count, long enough to outlast the benchmark). The benchmark starts the app three
ways, in turn over ``--rounds``, and counts the CPU seconds over ``--seconds`` of the worker, the app's
Streamlit process and Chromium:

- ``gc on``: Streamlit's default, ``runner.postScriptGC = true``: a full ``gc.collect(2)`` after every
  script run, each timed fragment rerun included (the app's setting before this benchmark);
- ``gc off``: ``runner.postScriptGC = false``, what ``.streamlit/config.toml`` now sets;
- ``closed``: the app runs, no page is open (the most the worker can get).

It prints each and the ratios: the app's CPU gc off / gc on, and the worker's CPU with the page open
against closed (the share of the training the open page takes). Both settings run the same tree in the
same run (the flag is passed on Streamlit's command line), so no reference checkout is needed.

Measured 2026-12-07 on the 2-core machine, nothing else running (``python -m benchmarks live``: two
rounds of 30 s), CPU-s per 30 s: gc on: worker 52.3, Streamlit 4.89, Chromium 2.02; gc off: worker
57.0, Streamlit 0.38, Chromium 1.77; page closed: worker 59.3. The app's CPU with gc off is 0.31x
(Streamlit's alone 0.08x); the open page took 12% of the training's CPU and now takes 4%. Found with
py-spy on the app's process during a training: ``ScriptRunner._on_script_finished``'s ``gc.collect(2)``
was most of its busy samples. (The same A/B by hand on the demo's default data, 45 s windows:
Streamlit 7.1 -> 0.6 CPU-s, worker 77.5 -> 86.0 against 88.5 with the page closed.)
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.bench_idle import _cpu_of, start_app

ROOT = pathlib.Path(__file__).resolve().parents[1]
VARIANTS = {"gc on": "true", "gc off": "false", "closed": "false"}

# A run with one approved candidate whose training outlasts the benchmark (no halving: one long job).
MAKE_DB = """
import os, sys
db, data, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.environ["EQUINAS_DB"] = db
from nas_core import studio
from nas_core.data.synthetic import make_default
from nas_core.records import Proposal
from nas_core.rungs import HalvingSettings
from nas_core.settings import TrainSettings
from nas_core.space import default_spec
ds = make_default(data, n_images=1500, image_size=64, seed=0, workers=1)
store = studio.open_store()
cfg = studio.default_config(str(ds), name="live", halving=HalvingSettings(enabled=False),
                            train=TrainSettings(image_size=64, max_epochs=epochs, patience=epochs))
run_id = studio.create_run(store, cfg)
c = store.add_candidate(run_id, 1, Proposal(default_spec(), "heuristic"))
studio.session(store, run_id).approve(c.id, "bench")
print(run_id)
"""


def measure(browser, db: pathlib.Path, run_id: str, worker: subprocess.Popen, variant: str,
            seconds: float) -> dict[str, float]:
    """CPU seconds of the worker, Streamlit and Chromium over ``seconds`` for one variant."""
    proc, port = start_app(ROOT, db, "--runner.postScriptGC", VARIANTS[variant])
    ctx = None
    try:
        if variant != "closed":
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.goto(f"http://127.0.0.1:{port}/search?run={run_id}")
            page.wait_for_selector("text=Evaluations", timeout=60_000)  # the live progress is drawn
        time.sleep(5)
        procs = {
            "worker": lambda pid, ppid, _c: worker.pid in (pid, ppid),
            "streamlit": lambda pid, ppid, _c: proc.pid in (pid, ppid),
            "chromium": lambda _p, _pp, cmd: "chromium" in cmd,
        }
        before = {k: _cpu_of(m) for k, m in procs.items()}
        time.sleep(seconds)
        return {k: _cpu_of(m) - before[k] for k, m in procs.items()}
    finally:
        if ctx is not None:
            ctx.close()
        proc.terminate()
        proc.wait(timeout=20)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="time measured per variant and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="one round of 15 s")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 15.0, 1
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # the browser tests' Chromium and flags

    if not pathlib.Path(CHROMIUM).exists():
        sys.stdout.write(f"live page: skipped, Chromium not found at {CHROMIUM} (make browser)\n")
        return 0
    from playwright.sync_api import sync_playwright

    from tests.store.helpers import wait_until

    # enough epochs to outlast every window (about 8 s per epoch here on a quiet machine, 3x under load)
    epochs = int(len(VARIANTS) * args.rounds * (args.seconds + 20) / 4) + 5
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = pathlib.Path(tmp)
        db = work / "live.db"
        out = subprocess.run([sys.executable, "-c", MAKE_DB, str(db), str(work / "data"), str(epochs)], cwd=ROOT,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"could not make the database:\n{out.stderr[-2000:]}")
        run_id = out.stdout.split()[-1]
        log = open(work / "worker.log", "w")  # noqa: SIM115 (closed by the stack)
        stack.callback(log.close)
        worker = subprocess.Popen([sys.executable, "-m", "nas_core", "worker", "--db", str(db)], cwd=ROOT,
                                  stdout=log, stderr=subprocess.STDOUT)
        stack.callback(worker.wait, 30)
        stack.callback(worker.terminate)
        wait_until(lambda: "epoch 1/" in (work / "worker.log").read_text(), timeout=300, step=0.5)
        figures: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(args.rounds):
                for variant in VARIANTS:
                    if worker.poll() is not None or " ended" in (work / "worker.log").read_text():
                        raise SystemExit(f"the training ended before the benchmark did:\n"
                                         f"{(work / 'worker.log').read_text()[-2000:]}")
                    got = measure(browser, db, run_id, worker, variant, args.seconds)
                    figures[variant].append(got)
                    sys.stdout.write(f"  {variant}: {args.seconds:.0f} s beside a training: " + ", ".join(
                        f"{k} {v:.2f}" for k, v in got.items()) + " CPU-s\n")
                    sys.stdout.flush()
            browser.close()
    med = {v: {k: statistics.median(f[k] for f in fs) for k in fs[0]} for v, fs in figures.items()}
    on, off, closed = med["gc on"], med["gc off"], med["closed"]
    sys.stdout.write(f"live Search page beside a training, median over {args.rounds} round(s) of "
                     f"{args.seconds:.0f} s (CPU-s):\n")
    for v, m in med.items():
        sys.stdout.write(f"  {v:7s} worker {m['worker']:.2f}, Streamlit {m['streamlit']:.2f}, "
                         f"Chromium {m['chromium']:.2f}\n")
    app_on, app_off = on["streamlit"] + on["chromium"], off["streamlit"] + off["chromium"]
    sys.stdout.write(f"  app (Streamlit + Chromium) gc off / gc on: {app_off / max(app_on, 1e-9):.2f}x "
                     f"(Streamlit alone {off['streamlit'] / max(on['streamlit'], 1e-9):.2f}x)\n")
    for v in ("gc on", "gc off"):
        share = 1 - med[v]["worker"] / max(closed["worker"], 1e-9)
        sys.stdout.write(f"  training's CPU with the page open, {v}: {med[v]['worker'] / max(closed['worker'], 1e-9):.2f}x "
                         f"of the page closed ({100 * share:.0f}% taken)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
