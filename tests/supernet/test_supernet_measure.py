"""Measuring sub-networks: BN recalibration, estimates as Metrics, payloads and their refusals."""

import dataclasses
import random
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas_core.runconfig import RunConfig
from nas_core.settings import Env, TrainSettings
from nas_core.supernet import checkpoint as ck
from nas_core.supernet import jobs
from nas_core.supernet.measure import calibration_batches, input_transform, measure_subnet
from nas_core.supernet.network import SuperNet, extract_subnet, recalibrate_bn
from nas_core.supernet.space import (
    SubnetError,
    SupernetSpaceConfig,
    count_subnet_params,
    largest,
    sample_config,
    smallest,
    to_arch_spec,
)
from nas_core.supernet.train import SupernetTrainSettings, load_trained, train_supernet

TINY = SupernetSpaceConfig.tiny()
ENV = Env(repeats=2, warmup=1)


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("supernets")
    path = jobs.checkpoint_path(tiny_prepared.dataset_hash, 32, tiny_prepared.split.seed, TINY, root=root)
    settings = SupernetTrainSettings(max_epochs=1, batch_size=48, n_random=1, calib_batches=2)
    train_supernet(tiny_prepared, path, TINY, settings)
    return root, path


@pytest.fixture
def dirs(trained, tmp_path, monkeypatch):
    root, path = trained
    monkeypatch.setenv(jobs.DIR_ENV, str(root))
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(tmp_path / "cache"))
    return root, path


def test_bn_recalibration_changes_stats_and_fixes_a_shifted_input():
    torch.manual_seed(0)
    net = SuperNet(TINY, n_classes=3, image_size=16)
    g = torch.Generator().manual_seed(0)

    def data(n):
        y = torch.randint(0, 3, (n,), generator=g)
        x = torch.randn(n, 3, 16, 16, generator=g) * 0.5
        x[torch.arange(n), y] += 1.0  # the class is the brightest channel
        return x, y

    opt = torch.optim.Adam(net.parameters(), 3e-3)
    cfg = smallest(TINY)
    for _ in range(30):
        x, y = data(32)
        opt.zero_grad()
        F.cross_entropy(net(x, cfg), y).backward()
        opt.step()
    model = extract_subnet(net.eval(), cfg).eval()
    x, y = data(200)
    shifted = x * 3 + 2  # brighter, higher contrast: the stale statistics no longer fit

    def acc(inp):
        with torch.no_grad():
            return float((model(inp).argmax(1) == y).float().mean())

    assert acc(x) > 0.9
    stale = acc(shifted)
    before = model.stem.norm.running_mean.clone()
    n = recalibrate_bn(model, [data(32)[0] * 3 + 2 for _ in range(4)])
    assert n == 128 and not model.training
    assert not torch.allclose(model.stem.norm.running_mean, before)
    assert model.stem.norm.momentum == 0.1, "the layer's own momentum is restored"
    assert acc(shifted) > stale + 0.1


def test_measure_subnet_gives_an_estimate_that_matches_its_predictions(trained, tiny_prepared):
    _, path = trained
    net, meta = load_trained(path)
    cfg = sample_config(TINY, random.Random(4))
    m = measure_subnet(net, cfg, tiny_prepared, ENV, calib_batches=2, calib_batch_size=32, n_bootstrap=20)
    assert m.estimate and m.train_loss is None and "[super-network estimate]" in m.to_text()
    assert m.val_acc == m.test_acc and m.val_loss is None and m.epochs == 0
    assert m.hardware.params == count_subnet_params(cfg, TINY, len(tiny_prepared.class_names))
    assert {g.attribute for g in m.fairness.groups} == {"sex", "age"}
    # Recompute the validation accuracy by hand from the same recalibrated sub-network.
    model = extract_subnet(net, cfg)
    recalibrate_bn(model, calibration_batches(tiny_prepared, 2, 32, 0))
    val = torch.from_numpy(np.asarray(tiny_prepared.split.val, dtype=np.int64))
    with torch.no_grad():
        pred = model(input_transform(tiny_prepared)(tiny_prepared.images[val])).argmax(1)
    assert m.test_acc == pytest.approx(float((pred == tiny_prepared.labels[val]).float().mean()))
    # The super-network is shared and must not change by being measured.
    assert torch.equal(
        net.state_dict()["stem.norm.running_mean"],
        load_trained(path)[0].state_dict()["stem.norm.running_mean"],
    )


def _run_config(dataset):
    return RunConfig(
        dataset=str(dataset),
        engine="random",
        evaluation="supernet",
        env=ENV,
        train=TrainSettings(image_size=32, seed=0, max_epochs=1, n_bootstrap=20),
    )


def test_make_payload_then_measure_job(dirs, tiny_dataset):
    root, path = dirs
    spec = to_arch_spec(largest(TINY), TINY)
    payload = jobs.make_payload(_run_config(tiny_dataset), spec)
    assert payload["checkpoint"] == str(path.resolve()) and payload["split"] == "val"
    seen = []
    result = jobs.measure(payload, seen.append, lambda: False)
    assert result.kind == "metrics"
    metrics = result.record
    assert metrics.estimate and 0.0 <= metrics.test_acc <= 1.0
    assert [p.fraction for p in seen] == [0.1, 1.0] and all(p.message for p in seen)  # the bar moves, with words
    # a RunRecord-like object (the session passes the run) works the same
    run = type("Run", (), {"config": _run_config(tiny_dataset).to_dict()})()
    assert jobs.make_payload(run, spec) == payload


def test_make_payload_refuses_a_spec_outside_the_super_network(dirs, tiny_dataset):
    spec = to_arch_spec(largest(TINY), TINY)
    bad = dataclasses.replace(spec, blocks=(dataclasses.replace(spec.blocks[0], kernel=9),) + spec.blocks[1:])
    with pytest.raises(SubnetError, match=r"not a sub-network.*blocks\[0\]\.kernel = 9"):
        jobs.make_payload(_run_config(tiny_dataset), bad)


def test_make_payload_refuses_missing_untrained_foreign_and_old_checkpoints(dirs, tiny_dataset, tmp_path):
    root, path = dirs
    spec = to_arch_spec(smallest(TINY), TINY)
    cfg = _run_config(tiny_dataset)
    with pytest.raises(ck.CheckpointError, match="no super-network is trained.*supernet train"):
        jobs.make_payload(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, image_size=24)), spec)
    for change, message in (
        ({"complete": False}, "not trained yet"),
        ({"dataset_hash": "0" * 64}, "another data set"),
        ({"schema_version": 0}, "schema version 0"),
    ):
        other = tmp_path / f"{next(iter(change))}.pt"
        shutil.copy(path, other)
        ck.update_meta(other, **change)
        with pytest.raises(ck.CheckpointError, match=message):
            jobs.make_payload(cfg, spec, checkpoint=other)


def test_measure_job_rechecks_the_data_on_disk(dirs, tiny_dataset, tmp_path):
    root, path = dirs
    payload = jobs.make_payload(_run_config(tiny_dataset), to_arch_spec(smallest(TINY), TINY))
    other = tmp_path / "foreign.pt"
    shutil.copy(path, other)
    ck.update_meta(other, dataset_hash="1" * 64)
    with pytest.raises(ck.CheckpointError, match="another data set"):
        jobs.measure({**payload, "checkpoint": str(other), "dataset_hash": ""})
    with pytest.raises(SubnetError, match="widths"):
        jobs.measure({**payload, "config": {**payload["config"], "widths": [99, 12]}})


def test_finetune_starts_from_the_inherited_weights_and_measures_a_normal_candidate(
    trained, tiny_prepared, tmp_path
):
    from nas_core.supernet.finetune import finetune

    _, path = trained
    cfg = smallest(TINY)
    inherited = extract_subnet(load_trained(path)[0], cfg).state_dict()
    settings = TrainSettings(image_size=32, seed=0, max_epochs=1, n_bootstrap=10, batch_size=48)
    # A vanishing learning rate: the fine-tuned weights are still the inherited ones.
    model, m = finetune(
        path,
        cfg,
        tiny_prepared,
        settings,
        env=ENV,
        lr_factor=1e-9,
        device="cpu",
        weights_out=tmp_path / "w.pt",
    )
    w = "blocks.0.expand_conv.weight"
    torch.testing.assert_close(model.state_dict()[w], inherited[w], atol=1e-6, rtol=0)
    assert not m.estimate and m.epochs == 1 and m.train_loss is not None and (tmp_path / "w.pt").is_file()
    scratch, m2 = finetune(path, cfg, tiny_prepared, settings, env=ENV, from_scratch=True, device="cpu")
    assert not torch.allclose(scratch.state_dict()[w], inherited[w], atol=1e-3)
    assert not m2.estimate and 0.0 <= m2.test_acc <= 1.0
    other = dataclasses.replace(tiny_prepared, dataset_hash="2" * 64)
    with pytest.raises(ck.CheckpointError, match="another data set"):
        finetune(path, cfg, other, settings, env=ENV, device="cpu")


def test_short_finetune_on_the_validation_split_is_an_estimate_of_validation_accuracy(trained, tiny_prepared):
    from nas_core.evaluator import predict
    from nas_core.supernet.finetune import finetune

    _, path = trained
    cfg = smallest(TINY)
    settings = TrainSettings(image_size=32, seed=0, max_epochs=1, patience=1, n_bootstrap=0, batch_size=48)
    model, m = finetune(path, cfg, tiny_prepared, settings, env=ENV, device="cpu", split="val",
                        measure_costs=False)
    assert m.estimate and m.hardware.latency_batch_s is None and m.hardware.macs > 0
    val = torch.as_tensor(np.asarray(tiny_prepared.split.val))
    _, _, acc = predict(model.eval(), tiny_prepared.images[val], tiny_prepared.labels[val].long(),
                        input_transform(tiny_prepared))
    assert m.test_acc == pytest.approx(acc)  # measured on the validation split, the test split unseen


def test_checkpoint_input_stats_give_the_same_transform_without_a_pass_over_the_images(trained, tiny_prepared):
    from nas_core.evaluator import channel_stats
    from nas_core.supernet import measure as measure_module

    _, path = trained
    meta = ck.read_meta(path)
    mean, std = channel_stats(tiny_prepared)
    assert meta.input_stats["mean"] == pytest.approx(mean.tolist())
    assert meta.input_stats["std"] == pytest.approx(std.tolist())
    measure_module.clear_caches()
    seeded = input_transform(tiny_prepared, meta.input_stats)
    measure_module.clear_caches()
    computed = input_transform(tiny_prepared)
    x = tiny_prepared.images[:4]
    assert torch.allclose(seeded(x), computed(x))


def test_sub_networks_are_measured_at_the_resolution_the_super_network_trained_at(trained, tiny_prepared,
                                                                                   monkeypatch):
    """Trained at 32 px and measured at 64, the default super-network read 45-50% on the default data:
    calibration and prediction run at ``measure_size``; the hardware costs stay at the data's size."""
    from nas_core.supernet import measure as measure_module

    _, path = trained
    net, meta = load_trained(path)
    assert net.measure_size == meta.measure_size == 32  # 32 px data never train below 32 px
    data = dict(ck.load_checkpoint(path)["meta"])
    at64 = ck.CheckpointMeta.from_dict({**data, "image_size": 64})
    assert at64.measure_size == 32  # train_scale 0.5
    legacy = ck.CheckpointMeta.from_dict({**data, "image_size": 64,
                                          "settings": {k: v for k, v in data["settings"].items() if k != "train_scale"}})
    assert legacy.measure_size == 64  # trained before the setting: at the run's resolution
    assert ck.train_size(64, 0.75) == 48 and ck.train_size(16, 0.5) == 16
    sizes: list[int] = []
    real_extract = measure_module.extract_subnet

    def extract(*a, **k):
        model = real_extract(*a, **k)
        model.register_forward_pre_hook(lambda _m, args: sizes.append(int(args[0].shape[-1])))
        return model

    monkeypatch.setattr(measure_module, "extract_subnet", extract)
    cfg = sample_config(TINY, random.Random(4))
    full = measure_subnet(net, cfg, tiny_prepared, ENV, calib_batches=2, calib_batch_size=32, n_bootstrap=0,
                          measure_costs=False)
    assert set(sizes) == {32}
    sizes.clear()
    net.measure_size = 16
    half = measure_subnet(net, cfg, tiny_prepared, ENV, calib_batches=2, calib_batch_size=32, n_bootstrap=0,
                          measure_costs=False)
    assert sizes.count(16) >= 3  # two calibration batches and the validation pass
    assert half.hardware.macs == full.hardware.macs and half.hardware.params == full.hardware.params
    assert half.test_acc != full.test_acc or half.fairness.unfairness != full.fairness.unfairness
    t = dataclasses.replace(input_transform(tiny_prepared), size=16)
    assert t(tiny_prepared.images[:3]).shape[-2:] == (16, 16)
    assert input_transform(tiny_prepared)(tiny_prepared.images[:3]).shape[-2:] == (32, 32)
