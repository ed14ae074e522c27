"""Server-side render time of the Search and Results pages with thousands of candidates in the store.

Target (issue 8): <= 1 s each with 5,000 candidates. The pages run through
Streamlit's AppTest (the same script execution the server does, without a
browser); the time is the median of a few runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def populate(db: pathlib.Path, dataset: str, n: int) -> int:
    """A run with ``n`` measured candidates (metrics from the test factory, varied)."""
    sys.path.insert(0, str(ROOT))
    from nas_core import studio
    from nas_core.records import Proposal
    from nas_core.space import Choices, sample
    from tests.factories import make_metrics

    store = studio.open_store(db)
    run_id = studio.create_run(store, studio.default_config(dataset, name="bench"))
    rng = random.Random(0)
    choices = Choices.default()
    seen = set()
    with store.transaction():
        while len(seen) < n:
            spec = sample(choices, rng)
            if spec.key in seen:
                continue
            seen.add(spec.key)
            c = store.add_candidate(run_id, 1 + len(seen) // 50, Proposal(spec=spec, origin="random"),
                                    status="done")
            store.set_metrics(c.id, make_metrics(acc=rng.uniform(0.4, 0.8), unfairness=rng.uniform(0.0, 0.1),
                                                 params=rng.randint(10_000, 2_000_000),
                                                 latency=rng.uniform(0.0005, 0.01)))
    store.close()
    return run_id


def time_page(page: str, run_id: int, repeat: int) -> float:
    from streamlit.testing.v1 import AppTest

    times = []
    for i in range(repeat + 1):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.query_params["run"] = str(run_id)
        at.run()
        at.switch_page(page)
        start = time.perf_counter()
        at.run()
        elapsed = time.perf_counter() - start
        if at.exception:
            raise RuntimeError(f"{page} raised: {[e.value for e in at.exception]}")
        if i:  # the first run imports modules and warms caches
            times.append(elapsed)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=5000, help="candidates in the run (default 5000)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1,000 candidates, 2 repeats")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeat = 1000, 2
    with tempfile.TemporaryDirectory() as tmp:
        from nas_core.data.synthetic import make_default

        dataset = make_default(pathlib.Path(tmp) / "data", n_images=120, image_size=32, seed=0, workers=1)
        db = pathlib.Path(tmp) / "bench.db"
        os.environ["EQUINAS_DB"] = str(db)
        t0 = time.perf_counter()
        run_id = populate(db, str(dataset), args.n)
        print(f"stored {args.n} measured candidates in {time.perf_counter() - t0:.1f} s")
        for page in ("pages/search.py", "pages/results.py"):
            t = time_page(page, run_id, args.repeat)
            print(f"{page}: {t:.3f} s server-side per render with {args.n} candidates "
                  f"(target 1.0 s: {t / 1.0:.2f}x of the budget)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
