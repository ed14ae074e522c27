"""``python -m benchmarks [--quick] [NAME ...]``: run the benchmarks (``make bench``).

Each benchmark prints its figures and the ratio against what it compares with,
measured in the same run. Names: evaluator, cache, store, search, supernet, app, fidelity, iteration, export, latency,
precision, compile, idle, live, alloc, app_loop.
``--quick`` passes ``--quick`` to the benchmarks that have a short form.
"""

from __future__ import annotations

import importlib
import sys
import time

ORDER = ("evaluator", "cache", "store", "app", "search", "supernet", "fidelity", "iteration")
ORDER += ("export", "latency")  # issue 17: ONNX export time; latency under load
ORDER += ("precision", "compile")  # issue 11: bf16 autocast vs fp32 training; torch.compile vs eager
ORDER += ("idle",)  # CPU of an open, idle Search page (app and browser) against a reference commit
ORDER += ("live",)  # CPU a live Search page takes from the training beside it (Streamlit's post-run GC)
ORDER += ("alloc",)  # training CPU with the allocator set for training vs glibc's defaults
ORDER += ("app_loop",)  # a demo iteration in the app and a browser: approval to preliminary and final result
HAS_QUICK = {"evaluator", "search", "supernet", "app", "fidelity", "iteration", "export", "latency", "precision",
             "compile", "idle", "live", "alloc"}


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        sys.stdout.write(__doc__ + "A benchmark's own options: python -m benchmarks.bench_NAME --help\n")
        return 0
    flags = [a for a in argv if a.startswith("-") and a != "--quick"]
    if flags:  # they used to be ignored, so `python -m benchmarks fidelity --help` started a 20-minute run
        sys.stderr.write(f"unknown option(s) {flags}: only --quick applies to every benchmark; pass a "
                         "benchmark's own options to it directly: python -m benchmarks.bench_NAME --help\n")
        return 2
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")] or list(ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        sys.stderr.write(f"unknown benchmark(s) {unknown}; known: {', '.join(ORDER)}\n")
        return 2
    from nas_core.alloc import tune_for_training

    tune_for_training()  # the benchmarks that train do so as the worker does (nas_core.alloc)
    failed = []
    for name in names:
        sys.stdout.write(f"\n===== {name} =====\n")
        sys.stdout.flush()
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.bench_{name}")
        code = module.main(["--quick"] if quick and name in HAS_QUICK else [])
        if isinstance(code, int) and code != 0:
            failed.append(name)
        sys.stdout.write(f"({name}: {time.perf_counter() - start:.0f} s)\n")
    if failed:
        sys.stderr.write(f"benchmarks that reported a failure: {', '.join(failed)}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
