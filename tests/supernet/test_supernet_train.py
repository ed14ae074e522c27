"""Super-network training: sandwich steps, atomic checkpoints, resume after a stop, refusals."""

import dataclasses
import random

import pytest
import torch

from nas_core.supernet import checkpoint as ck
from nas_core.supernet.space import SupernetSpaceConfig, check_config, largest, smallest
from nas_core.supernet.train import (
    PHASES,
    Stopped,
    SupernetTrainError,
    SupernetTrainSettings,
    lr_at,
    phase_at,
    phase_smallest,
    sample_phase,
    train_supernet,
)

TINY = SupernetSpaceConfig.tiny()
FAST = SupernetTrainSettings(max_epochs=2, patience=5, batch_size=48, n_random=1, calib_batches=2, seed=3)


@pytest.fixture(scope="module")
def uninterrupted(tiny_prepared, tmp_path_factory):
    path = tmp_path_factory.mktemp("sn") / "full.pt"
    seen = []
    out = train_supernet(tiny_prepared, path, TINY, FAST, progress=seen.append)
    return path, out, seen


def test_training_writes_a_complete_checkpoint_with_metadata(uninterrupted, tiny_prepared):
    path, out, seen = uninterrupted
    meta = ck.read_meta(path)
    assert meta.complete and meta.stopped_reason == "max epochs" and meta.epoch == 2
    assert meta.dataset_hash == tiny_prepared.dataset_hash and meta.image_size == 32
    assert meta.space_config == TINY and meta.schema_version == ck.SCHEMA_VERSION
    ends = [p for p in seen if not p["partial"]]  # (partial: reports inside a long epoch)
    assert [p["epoch"] for p in ends] == [1, 2] and ends[-1]["fraction"] == 1.0
    assert len(meta.history) == 2 and meta.best_val_loss == min(h["val_loss"] for h in meta.history)
    data = ck.load_checkpoint(path)
    assert data["optimizer"]["state"], "optimizer state is saved for resuming"
    # Training moved the weights away from the seeded initialization.
    torch.manual_seed(FAST.seed)
    from nas_core.supernet.network import SuperNet

    init = SuperNet(TINY, len(tiny_prepared.class_names), 32).state_dict()
    assert not torch.equal(init["blocks.0.expand_conv.weight"], data["model"]["blocks.0.expand_conv.weight"])


def test_stop_after_epoch_one_then_resume_equals_uninterrupted(uninterrupted, tiny_prepared, tmp_path):
    full_path, _, _ = uninterrupted
    path = tmp_path / "resumed.pt"
    epochs_done = []

    def stop() -> bool:
        # ask to stop as soon as epoch 1 is finished
        return len([p for p in epochs_done if not p["partial"]]) >= 1

    with pytest.raises(Stopped, match="resumes"):
        train_supernet(tiny_prepared, path, TINY, FAST, progress=epochs_done.append, should_stop=stop)
    meta = ck.read_meta(path)
    assert meta.epoch == 1 and not meta.complete
    out = train_supernet(tiny_prepared, path, TINY, FAST)
    assert out.resumed_from_epoch == 1 and out.meta.epoch == 2 and out.meta.complete
    a, b = ck.load_checkpoint(full_path), ck.load_checkpoint(path)
    for part in ("model", "best_model"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    assert [h["val_loss"] for h in ck.read_meta(full_path).history] == [
        h["val_loss"] for h in out.meta.history
    ]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    ck.save_checkpoint(path, {"meta": {"x": 1}, "best_model": {}})
    before = path.read_bytes()

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(path, {"meta": {"x": 2}, "best_model": {}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"], "no temporary file is left behind"


def test_resume_refuses_a_checkpoint_of_another_data_set(uninterrupted, tiny_prepared, tmp_path):
    full_path, _, _ = uninterrupted
    other = dataclasses.replace(tiny_prepared, dataset_hash="f" * 64)
    with pytest.raises(SupernetTrainError, match="another data set"):
        train_supernet(other, full_path, TINY, FAST)


def test_unusable_checkpoints_are_refused_with_a_reason(uninterrupted, tmp_path):
    full_path, _, _ = uninterrupted
    meta = ck.read_meta(full_path)
    ck.check_usable(meta, dataset_hash=meta.dataset_hash, image_size=32, seed=meta.seed)
    with pytest.raises(ck.CheckpointError, match="another data set"):
        ck.check_usable(meta, dataset_hash="0" * 64)
    with pytest.raises(ck.CheckpointError, match="schema version 0"):
        ck.check_usable(dataclasses.replace(meta, schema_version=0))
    with pytest.raises(ck.CheckpointError, match="not trained yet"):
        ck.check_usable(dataclasses.replace(meta, complete=False))
    with pytest.raises(ck.CheckpointError, match="no super-network checkpoint"):
        ck.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ck.CheckpointError, match="not a readable"):
        ck.load_checkpoint(tmp_path / "junk.pt")


def test_bad_settings_are_refused():
    with pytest.raises(SupernetTrainError, match="batch_size"):
        SupernetTrainSettings(batch_size=0)
    with pytest.raises(SupernetTrainError, match="unknown field"):
        SupernetTrainSettings.from_dict({"epochs": 3})


def test_cosine_schedule_warms_up_then_decays_to_zero():
    s = SupernetTrainSettings(max_epochs=5, lr=1e-2)
    assert lr_at(s, 0, 0, 10) == pytest.approx(1e-3)  # a tenth of the peak at the first step
    assert lr_at(s, 0, 5, 10) == pytest.approx(0.55e-2)
    assert lr_at(s, 1, 0, 10) == pytest.approx(1e-2)  # the peak after one warm-up epoch
    assert lr_at(s, 4, 10, 10) == pytest.approx(0.0, abs=1e-12)
    lrs = [lr_at(s, e, i, 10) for e in range(1, 5) for i in range(10)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:])), "monotone decay after warm-up"
    assert lr_at(dataclasses.replace(s, schedule="constant"), 3, 2, 10) == 1e-2
    with pytest.raises(SupernetTrainError, match="schedule"):
        SupernetTrainSettings(schedule="linear")
    with pytest.raises(SupernetTrainError, match="train_scale"):
        SupernetTrainSettings(train_scale=0.1)
    with pytest.raises(SupernetTrainError, match="progressive"):
        SupernetTrainSettings(progressive=1.0)


def test_progressive_shrinking_opens_kernel_then_depth_then_expand_then_width():
    space = SupernetSpaceConfig()
    s = SupernetTrainSettings(max_epochs=10, progressive=0.2)
    assert [phase_at(s, e) for e in range(10)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert phase_at(dataclasses.replace(s, progressive=0.0), 0) == len(PHASES) - 1
    big = largest(space)
    rng = random.Random(0)
    for _ in range(30):
        k_only = sample_phase(space, rng, 1)
        assert k_only.depths == big.depths and k_only.widths == big.widths and k_only.expands == big.expands
        d = sample_phase(space, rng, 2)
        assert d.expands == tuple((max(space.expands),) * n for n in d.depths) and d.widths == big.widths
        e = sample_phase(space, rng, 3)
        assert e.widths == big.widths and e.stem_width == big.stem_width
        check_config(sample_phase(space, rng, 4), space)
    assert phase_smallest(space, 0) == big and phase_smallest(space, 4) == smallest(space)
    assert phase_smallest(space, 1).kernels == tuple((min(space.kernels),) * n for n in big.depths)


def test_progressive_low_resolution_training_resumes_exactly_and_reports_time_left(
    tiny_prepared, tmp_path, monkeypatch
):
    monkeypatch.setattr(ck, "MIN_TRAIN_SIZE", 16)  # the tiny data are 32 px: train at 16
    settings = dataclasses.replace(FAST, max_epochs=3, progressive=0.34, train_scale=0.5)
    seen = []
    full = tmp_path / "full.pt"
    train_supernet(tiny_prepared, full, TINY, settings, progress=seen.append)
    ends = [p for p in seen if not p["partial"]]
    assert [p["epoch"] for p in ends] == [1, 2, 3] and ends[-1]["eta_seconds"] == 0.0
    assert "largest network only" in ends[0]["message"] and "min left" in ends[0]["message"]
    assert ends[0]["eta_seconds"] > 0 and ends[0]["fraction"] == pytest.approx(1 / 3)
    path = tmp_path / "resumed.pt"
    done = []
    with pytest.raises(Stopped):
        train_supernet(tiny_prepared, path, TINY, settings, progress=done.append,
                       should_stop=lambda: len([d for d in done if not d["partial"]]) >= 1)
    train_supernet(tiny_prepared, path, TINY, settings)
    a, b = ck.load_checkpoint(full), ck.load_checkpoint(path)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"{k} differs after resume"


def test_a_checkpoint_from_before_the_new_knobs_resumes_with_its_old_recipe(uninterrupted, tiny_prepared, tmp_path):
    full_path, _, _ = uninterrupted
    data = ck.load_checkpoint(full_path)
    for name in ("schedule", "train_scale", "progressive"):
        data["meta"]["settings"].pop(name)
    old = tmp_path / "old.pt"
    ck.save_checkpoint(old, data)
    out = train_supernet(tiny_prepared, old, TINY, dataclasses.replace(FAST, max_epochs=3))
    assert out.meta.epoch == 3
    assert out.meta.settings["schedule"] == "constant" and out.meta.settings["train_scale"] == 1.0


def test_validation_runs_at_the_training_resolution(tiny_prepared, tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "MIN_TRAIN_SIZE", 16)  # the tiny data are 32 px: train at 16
    from nas_core.supernet.network import SuperNet

    seen: list[tuple[bool, int]] = []
    real_forward = SuperNet.forward

    def forward(self, x, cfg):
        seen.append((self.training, int(x.shape[-1])))
        return real_forward(self, x, cfg)

    monkeypatch.setattr(SuperNet, "forward", forward)
    out = train_supernet(tiny_prepared, tmp_path / "half.pt", TINY,
                         dataclasses.replace(FAST, max_epochs=1, train_scale=0.5))
    assert {size for _training, size in seen} == {16}  # training, BN recalibration and validation
    assert any(not training for training, _ in seen)
    assert out.meta.measure_size == 16
