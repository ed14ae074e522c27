"""The evaluator: every Metrics field, determinism, early stopping, progress, cancellation, requests."""

import math

import numpy as np
import pytest
import torch

from nas_core.data.index import DatasetIndex
from nas_core.data.prepare import PreparedData
from nas_core.data.splits import Split
from nas_core.errors import UserError
from nas_core.evaluator import (
    Cancelled,
    EpochProgress,
    EvalRequest,
    InputTransform,
    evaluate,
    evaluate_model,
    predict,
    run_request,
    train_model,
)
from nas_core.jobresult import JobResult, Progress
from nas_core.records import Metrics
from nas_core.settings import Env, TrainSettings
from nas_core.space import ArchSpec

SPEC = {
    "stem": {"out_channels": 8, "kernel": 3, "stride": 1},
    "blocks": [{"type": "conv", "out_channels": 16, "kernel": 3, "stride": 2, "pool": "max"}],
    "head": {"hidden": 0, "dropout": 0.1},
}
ENV = Env(device="cpu", threads=1, batch_size=2, warmup=1, repeats=2)
CLASSES = ("red", "green", "blue")


def make_prepared(n=150, size=16, seed=0, signal=True):
    """Images whose class is the brightest channel (learnable in an epoch or two), two attributes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    img = rng.integers(0, 120, (n, 3, size, size))
    if signal:
        img[np.arange(n), labels] += 120
    sex = rng.choice(["female", "male", "unknown"], n, p=[0.45, 0.45, 0.1])
    age = rng.choice(["young", "middle", "old"], n)
    if not signal:
        labels = rng.integers(0, 3, n)
    perm = rng.permutation(n)
    split = Split(train=np.sort(perm[: int(0.7 * n)]), val=np.sort(perm[int(0.7 * n): int(0.9 * n)]),
                  test=np.sort(perm[int(0.9 * n):]))
    ids = tuple(f"img{i}" for i in range(n))
    index = DatasetIndex(root=".", format="generic", ids=ids, paths=ids, labels=tuple(int(x) for x in labels),
                         class_names=CLASSES, attributes=(("sex", tuple(sex)), ("age", tuple(age))))
    return PreparedData(images=torch.as_tensor(img.astype(np.uint8)), labels=torch.as_tensor(labels),
                        class_names=CLASSES, attributes=(("sex", sex), ("age", age)), split=split,
                        index=index, dataset_hash="test", image_size=size)


@pytest.fixture(scope="module")
def prepared():
    return make_prepared()


def request(**train):
    settings = dict(max_epochs=2, patience=2, batch_size=32, image_size=16, n_bootstrap=50, seed=1)
    settings.update(train)
    return EvalRequest(dataset="unused", arch=SPEC, train=TrainSettings(**settings), env=ENV, device="cpu")


def _without_timings(m: Metrics) -> dict:
    d = m.to_dict()
    d.pop("train_seconds")
    for k in ("latency_batch_s", "latency_image_s", "latency_b1_s", "throughput", "latency_spread",
              "latency_cpu_image_s"):
        d["hardware"].pop(k)
    return d


def test_evaluate_fills_every_field_reports_progress_and_is_deterministic(prepared):
    seen = []
    m = evaluate(request(), progress=seen.append, prepared=prepared)
    assert [p.epoch for p in seen] == [1, 2] and all(isinstance(p, EpochProgress) for p in seen)
    assert all(p.max_epochs == 2 for p in seen)
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc", "balanced_acc"):
        value = getattr(m, name)
        assert value is not None and math.isfinite(value), name
    assert m.test_acc > 0.5  # the brightest channel is easy: well above chance (1/3)
    assert m.epochs == 2 and 1 <= m.best_epoch <= 2 and m.train_seconds > 0
    assert m.class_names == CLASSES
    assert [c for c, _ in m.per_class_recall] == list(CLASSES)
    n_test = len(prepared.split.test)
    assert m.fairness.n == n_test
    assert {(g.attribute, g.group) for g in m.fairness.groups} >= {("sex", "female"), ("sex", "male"),
                                                                    ("age", "young"), ("age", "old")}
    for metric in ("unfairness", "eodd", "eopp1", "eopp2"):
        assert getattr(m.fairness, metric) is not None
        assert m.fairness.interval(metric) is not None
    assert m.fairness.n_bootstrap == 50
    # confusion: the whole test set, then one matrix per group summing to the group's n
    assert m.confusion[0][:2] == ("all", "all")
    assert sum(map(sum, m.confusion[0][2])) == n_test
    for attr, group, rows in m.confusion[1:]:
        g = next(x for x in m.fairness.groups if (x.attribute, x.group) == (attr, group))
        assert sum(map(sum, rows)) == g.n
        assert sum(rows[i][i] for i in range(3)) / g.n == pytest.approx(g.accuracy)
    hw = m.hardware
    assert hw.params > 0 and hw.macs > 0 and hw.size_mb > 0
    assert hw.latency_image_s > 0 and hw.throughput > 0 and hw.peak_memory_mb > 0
    assert hw.peak_train_memory_mb > hw.peak_memory_mb and hw.memory_method
    assert Metrics.from_dict(m.to_dict()) == m
    assert "Test Acc" in m.to_text()

    again = evaluate(request(), prepared=prepared)
    assert _without_timings(again) == _without_timings(m)
    other_seed = evaluate(request(seed=2), prepared=prepared)
    assert other_seed.train_loss != m.train_loss


def test_early_stopping_stops_and_keeps_the_best_weights():
    # Random labels: validation loss soon rises while training loss falls.
    data = make_prepared(n=120, signal=False, seed=3)
    torch.manual_seed(0)
    from nas_core.models import build_model

    model = build_model(ArchSpec.from_dict(SPEC), (3, 16, 16), 3)
    settings = TrainSettings(max_epochs=30, patience=2, batch_size=16, lr=3e-2, image_size=16, seed=0)
    epochs = []
    result = train_model(model, data, settings, torch.device("cpu"), progress=epochs.append)
    assert result.epochs < 30
    assert result.epochs == result.best_epoch + settings.patience
    losses = [p.val_loss for p in result.history]
    assert result.val_loss == min(losses) == losses[result.best_epoch - 1]
    assert len(epochs) == result.epochs
    # The model holds the best epoch's weights: its validation loss is the best one, not the last.
    va = torch.as_tensor(data.split.val)
    _, val_loss, _ = predict(model, data.images[va], data.labels[va], InputTransform.for_data(data, torch.device("cpu")))
    assert val_loss == pytest.approx(result.val_loss, rel=1e-5)
    assert val_loss < losses[-1]


def test_cancellation_raises_and_reports_no_further_progress(prepared):
    from nas_core.jobs import JobStopped

    assert issubclass(Cancelled, JobStopped)  # the worker's "stop requested" exception
    seen = []
    polls_after_epoch_1 = []

    def should_stop():
        if seen:  # stop on the second batch of epoch 2
            polls_after_epoch_1.append(1)
        return len(polls_after_epoch_1) >= 2

    with pytest.raises(Cancelled):
        evaluate(request(max_epochs=5), progress=seen.append, should_stop=should_stop, prepared=prepared)
    assert [p.epoch for p in seen] == [1]
    assert len(polls_after_epoch_1) == 2  # polled before every batch, stopped at once


def test_run_request_is_the_worker_handler(prepared, monkeypatch):
    import nas_core.evaluator as ev

    monkeypatch.setattr(ev, "load_prepared", lambda req: prepared)
    progress = []
    out = run_request(request(max_epochs=1).to_dict(), progress.append, lambda: False)
    assert isinstance(out, JobResult) and out.kind == "metrics"
    assert len(progress) == 2 and all(isinstance(p, Progress) for p in progress)
    # before the first epoch (seconds of loading and building) the bar already says what the job does
    assert progress[0].fraction == 0.0 and progress[0].message.startswith("starting")
    assert progress[1].detail["epoch"] == 1 and progress[1].fraction == 1.0 and progress[1].message == "epoch 1/1"
    m = out.record
    assert m.epochs == 1 and m.hardware.params > 0
    assert JobResult.from_dict(out.to_dict()).record == m  # the shape stored for a job without a candidate


def test_a_lower_rung_says_it_is_starting_then_reports_its_epochs_with_its_fidelity(prepared, monkeypatch):
    import nas_core.evaluator as ev
    from nas_core.rungs import HALVING_KEY, run_rung

    monkeypatch.setattr(ev, "load_prepared", lambda req: prepared)
    progress = []
    payload = {**request(max_epochs=1).to_dict(), HALVING_KEY: {"rung": 0, "rungs": 2, "final": False,
                                                                "fidelity": "1 epoch at 16 px"}}
    out = run_rung(payload, progress.append, lambda: False)
    assert out.kind == "data" and out.record["rung_metrics"]["epochs"] == 1
    assert [(p.fraction, p.message.split(": ")[1]) for p in progress] == [
        (0.0, "starting"), (1.0, "epoch 1/1")]
    assert all(p.message.startswith("1 epoch at 16 px: ") and p.detail["preliminary"] is True for p in progress)


def test_evaluate_model_of_an_untrained_model_measures_validation_and_marks_estimates(prepared):
    from nas_core.models import build_model

    model = build_model(ArchSpec.from_dict(SPEC), (3, 16, 16), 3)
    m = evaluate_model(model, prepared, ENV, split="val", estimate=True, measure_costs=False, n_bootstrap=0)
    assert m.estimate and m.train_loss is None and m.val_loss is not None
    assert m.fairness.n == len(prepared.split.val) and m.fairness.ci == ()
    assert m.hardware.params > 0 and m.hardware.latency_image_s is None
    assert "[super-network estimate]" in m.to_text()


def test_request_round_trip_and_bad_input():
    req = request()
    assert EvalRequest.from_dict(req.to_dict()) == req
    assert isinstance(req.arch, ArchSpec)
    base = EvalRequest(dataset="d", arch="ResNet18")
    assert base.arch == "baseline:resnet18" and base.baseline == "resnet18"
    assert EvalRequest.from_dict(base.to_dict()) == base
    with pytest.raises(UserError, match="unknown field"):
        EvalRequest.from_dict({**req.to_dict(), "colour": 1})
    with pytest.raises(UserError, match="'arch' is missing"):
        EvalRequest.from_dict({"dataset": "d"})
    with pytest.raises(UserError, match="blocks"):
        EvalRequest(dataset="d", arch={"blocks": [{"type": "conv", "kernel": "big"}]})
    with pytest.raises(UserError, match="optimizer"):
        EvalRequest.from_dict({**req.to_dict(), "train": {"optimizer": "lion"}})


def test_unknown_baseline_lists_known_ones(prepared):
    req = EvalRequest(dataset="unused", arch="baseline:vgg99", train=TrainSettings(max_epochs=1), env=ENV,
                      device="cpu")
    with pytest.raises(UserError, match="resnet18"):
        evaluate(req, prepared=prepared)
