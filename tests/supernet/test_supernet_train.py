"""Super-network training: sandwich steps, atomic checkpoints, resume after a stop, refusals."""

import dataclasses

import pytest
import torch

from nas_core.supernet import checkpoint as ck
from nas_core.supernet.space import SupernetSpaceConfig
from nas_core.supernet.train import (
    Stopped,
    SupernetTrainError,
    SupernetTrainSettings,
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
    assert [p["epoch"] for p in seen] == [1, 2] and seen[-1]["fraction"] == 1.0
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
        return len(epochs_done) >= 1  # ask to stop as soon as epoch 1 is finished

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
