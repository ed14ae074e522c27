"""bf16 autocast training: the setting, where "auto" turns it on, what it changes and what it records."""

import numpy as np
import pytest
import torch

from nas_core.evaluator import (
    EvalRequest,
    bf16_is_native,
    clear_prepared_cache,
    evaluate,
    load_prepared,
    resolve_precision,
)
from nas_core.records import Metrics
from nas_core.settings import Env, SettingsError, TrainSettings
from nas_core.space import default_spec


def test_precision_setting_is_checked_and_left_out_of_the_dict_at_fp32():
    assert TrainSettings().precision == "fp32"
    assert "precision" not in TrainSettings().to_dict()  # cache keys and payloads of fp32 runs unchanged
    assert TrainSettings.from_dict(TrainSettings(precision="bf16").to_dict()).precision == "bf16"
    with pytest.raises(SettingsError, match="precision 'fp16' is not supported; use fp32, bf16 or auto"):
        TrainSettings(precision="fp16")


def test_auto_means_bf16_only_where_the_cpu_has_it(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cuda) == "fp32"  # not measured on a GPU: not assumed
    for native in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda n=native: n)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert bf16_is_native(cpu) is native
        assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    # depthwise networks, which bf16 slows on the CPU, stay fp32 under auto (bf16 when asked for)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    depthwise = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.Conv2d(8, 8, 3, groups=8))
    assert resolve_precision("auto", cpu, plain) == "bf16"
    assert resolve_precision("auto", cpu, depthwise) == "fp32"
    assert resolve_precision("bf16", cpu, depthwise) == "bf16"


def test_bf16_trains_differently_reproducibly_and_says_so(tiny_dataset, tmp_path):
    clear_prepared_cache()

    def req(precision):
        t = TrainSettings(image_size=16, max_epochs=1, patience=1, batch_size=32, n_bootstrap=0,
                          precision=precision)
        return EvalRequest(dataset=str(tiny_dataset), arch=default_spec(), train=t, device="cpu",
                           cache_dir=str(tmp_path / "cache"), env=Env(repeats=1, warmup=1))

    prepared = load_prepared(req("fp32"))
    fp32 = evaluate(req("fp32"), prepared=prepared)
    bf16 = evaluate(req("bf16"), prepared=prepared)
    again = evaluate(req("bf16"), prepared=prepared)
    assert fp32.precision == "fp32" and bf16.precision == "bf16"
    assert bf16.train_loss != fp32.train_loss  # the forward pass really ran in bf16
    assert bf16.train_loss == again.train_loss and bf16.test_acc == again.test_acc  # same seed, same result
    assert np.isfinite(bf16.train_loss) and 0.0 <= bf16.test_acc <= 1.0
    assert Metrics.from_dict(bf16.to_dict()).precision == "bf16"
    assert Metrics.from_dict({k: v for k, v in bf16.to_dict().items() if k != "precision"}).precision == ""


def test_results_say_when_a_run_mixes_arithmetic_or_thread_counts():
    import dataclasses

    from nas_core import studio
    from nas_core.evaluator import precision_note
    from tests.factories import make_candidate, make_metrics

    def cand(cid, precision="", threads=1, estimate=False, epochs=3):
        m = dataclasses.replace(make_metrics(estimate=estimate), precision=precision, threads=threads, epochs=epochs)
        return make_candidate(cid, m)

    class Store:
        def __init__(self, cands):
            self.cands = cands

        def list_candidates(self, run_id):
            return self.cands

    assert precision_note(["", "fp32"]) is None  # not recorded = fp32, from before the setting
    same = Store([cand(1, ""), cand(2, "fp32"), cand(3, "bf16", estimate=True), cand(4, "bf16", epochs=0)])
    assert studio.settings_notes(same, 1) == []  # estimates and untrained rows are left out
    mixed = studio.settings_notes(Store([cand(1, "fp32"), cand(2, "bf16", threads=2)]), 1)
    assert len(mixed) == 2
    assert "thread counts (1, 2)" in mixed[0] and mixed[0][0].isupper()
    assert "(bf16, fp32)" in mixed[1] and mixed[1].endswith(".")
