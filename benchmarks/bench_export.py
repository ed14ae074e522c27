"""ONNX export time: the TorchScript-based exporter (the app's default) vs the ``torch.export``-based one.

Issue 17: preparing an ONNX file on the Export page took 228 s. The cause is the ``torch.export``-based
exporter (``dynamo=True``, torch's default since 2.9): seconds of Python work per export (tracing with
fake tensors, decompositions, the onnxscript optimizer) plus, on the first export of a process,
building the torchlib registry; on a busy machine that stretches to minutes. The TorchScript-based
exporter traces the same network in a fraction of a second.

Both are measured in the same run, each in a fresh process (the app's first export, "cold") and then
again in that process ("warm"), on the default plain CNN at the run's default 64 px, on an idle machine
and with a CPU-burning process per core ("loaded"). Each export is checked against the model's outputs
with onnxruntime (batch 1 and 3). Wall and process CPU seconds are printed, and the ratio.

``python -m benchmarks export [--quick] [--image-size N] [--no-load]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, sys, tempfile, time
import numpy as np, torch, onnxruntime as ort
torch.set_num_threads(1)
from nas_core.models import build_model
from nas_core.models.export import export_onnx
from nas_core.space import default_spec
exporter, size = sys.argv[1], int(sys.argv[2])
model = build_model(default_spec(), (3, size, size), 8).eval()
out = []
for attempt in ("cold", "warm"):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.onnx")
        w0, c0 = time.perf_counter(), time.process_time()
        export_onnx(model, (3, size, size), path, exporter=exporter)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        diff = 0.0
        for b in (1, 3):
            x = torch.randn(b, 3, size, size)
            with torch.no_grad():
                ref = model(x).numpy()
            diff = max(diff, float(np.abs(sess.run(["logits"], {"input": x.numpy()})[0] - ref).max()))
        out.append({"attempt": attempt, "wall": wall, "cpu": cpu, "max_diff": diff})
print("RESULT " + json.dumps(out))
"""


def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 31 + 7) % 1000003


def measure(exporter: str, size: int) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", _CHILD, exporter, str(size)], env=env,
                          capture_output=True, text=True, check=True, cwd=str(ROOT))
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="idle machine only")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--no-load", action="store_true", help="skip the loaded-machine case")
    args = ap.parse_args(argv)
    cases = ["idle"] if args.quick or args.no_load else ["idle", "loaded"]
    failed = False
    for case in cases:
        burners = []
        if case == "loaded":
            stop_at = time.time() + 600
            burners = [mp.Process(target=_burn, args=(stop_at,), daemon=True) for _ in range(os.cpu_count() or 1)]
            for b in burners:
                b.start()
        try:
            res = {e: measure(e, args.image_size) for e in ("dynamo", "torchscript")}
        finally:
            for b in burners:
                b.terminate()
                b.join()
        print(f"ONNX export of the default CNN at {args.image_size} px, {case} machine "
              f"({len(burners)} CPU burners):")
        for e, rows in res.items():
            for r in rows:
                print(f"  {e:12s} {r['attempt']}: {r['wall']:7.2f} s wall, {r['cpu']:7.2f} s CPU, "
                      f"max |onnx - torch| {r['max_diff']:.1e}")
                failed |= r["max_diff"] > 1e-4
        for attempt in (0, 1):
            old, new = res["dynamo"][attempt], res["torchscript"][attempt]
            print(f"  {old['attempt']}: torchscript / dynamo = {new['wall'] / old['wall']:.3f}x wall, "
                  f"{new['cpu'] / max(old['cpu'], 1e-9):.3f}x CPU")
    if failed:
        print("an export did not match the model's outputs (> 1e-4)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
