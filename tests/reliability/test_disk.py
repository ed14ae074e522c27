"""A full disk (ENOSPC injected, so it works unprivileged and in CI): the cache build, the weights write and an
upload stop with a clear message and leave no partial file; a job that hits it is failed, not left running,
and the worker lives on."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from nas_core import studio
from nas_core.atomic import DiskFull, atomic_file
from nas_core.data import cache
from nas_core.data.formats import load_index
from nas_core.data.index import DataError
from nas_core.models.export import save_state
from nas_core.store import Store
from nas_core.worker import Worker
from tests.store.helpers import proposals


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_cache_build_on_a_full_disk_fails_cleanly(tiny_dataset, tmp_path, monkeypatch):
    index = load_index(tiny_dataset)
    monkeypatch.setattr(os, "posix_fallocate", _enospc)
    with pytest.raises(DataError, match="disk is full.*nothing was kept.*EQUINAS_CACHE_DIR"):
        cache.build_cache(index, 16, cache_dir=tmp_path / "cache", workers=1)
    assert list((tmp_path / "cache").iterdir()) == []  # no .tmp-* folder, no images.npy


def test_a_cache_write_that_fails_midway_leaves_no_temp_folder(tiny_dataset, tmp_path, monkeypatch):
    index = load_index(tiny_dataset)
    real = cache._write_synced

    def full(path, data):
        real(path, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "_write_synced", full)
    with pytest.raises(DataError, match="disk is full"):
        cache.build_cache(index, 16, cache_dir=tmp_path / "cache", workers=1)
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(cache, "_write_synced", real)
    info = cache.build_cache(index, 16, cache_dir=tmp_path / "cache", workers=1)  # space again: it builds
    assert info.built and cache.find_cache(index, 16, tmp_path / "cache") is not None


def test_weights_on_a_full_disk_leave_no_truncated_file(tmp_path, monkeypatch):
    model = torch.nn.Linear(4, 2)
    target = tmp_path / "weights" / "candidate1.pt"
    save_state(model, target)
    before = target.read_bytes()

    def half_then_full(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a file")
        raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos") from OSError(
            errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(DiskFull, match="disk is full: the model weights could not be written"):
        save_state(torch.nn.Linear(4, 2), target)
    assert target.read_bytes() == before  # the old weights are untouched
    assert [p.name for p in target.parent.iterdir()] == ["candidate1.pt"]  # no temp file


def test_atomic_file_removes_its_temp_file_on_any_error(tmp_path):
    with pytest.raises(ValueError):
        with atomic_file(tmp_path / "x.bin") as fh:
            fh.write(b"partial")
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


def test_an_upload_on_a_full_disk_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "app.db"))
    monkeypatch.delenv("EQUINAS_UPLOADS_DIR", raising=False)
    store = studio.open_store()
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(DataError, match="could not be saved.*free disk space"):
        studio.save_upload(store, "x.zip", b"PK" * 100, "1")
    store.close()
    assert [p for p in (tmp_path / "uploads" / "incoming").iterdir()] == []


def disk_full_handler(payload, progress, should_stop):
    """A job handler whose weights write meets a full disk (patched torch.save in this process)."""
    real = torch.save

    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    torch.save = full
    try:
        save_state(torch.nn.Linear(2, 2), Path(payload["out"]))
    finally:
        torch.save = real
    return {"never": True}


def test_a_job_that_hits_a_full_disk_is_failed_and_the_worker_goes_on(tmp_path):
    db = tmp_path / "disk.db"
    with Store.open(db) as store:
        run = store.create_run("r", "random", "data", {})
        store.start_iteration(run.id)
        a, b = (store.add_candidate(run.id, 1, p) for p in proposals(2))
        store.approve(a.id, "t", "full", {"out": str(tmp_path / "w" / "a.pt")})
        store.approve(b.id, "t", "sleep", {"steps": 1, "step_s": 0.01})
    worker = Worker(db, poll_s=0.05, heartbeat_s=0.5, stale_after_s=30,
                    handlers={"full": f"{__name__}:disk_full_handler", "sleep": "tests.store.handlers:sleep"})
    assert worker.run(once=True) == 2
    with Store.open(db) as store:
        first, second = store.list_jobs()
        assert first.status == "failed" and "disk is full" in first.error and "Traceback" not in first.error
        assert second.status == "done"  # the worker lived on
        assert store.get_candidate(a.id).status == "failed"
    assert not (tmp_path / "w").exists() or list((tmp_path / "w").iterdir()) == []


def test_a_worker_whose_database_disk_is_full_keeps_the_outcome_and_writes_it_later(tmp_path, monkeypatch):
    from nas_core.store import StoreFull

    db = tmp_path / "full.db"
    with Store.open(db) as store:
        run = store.create_run("r", "random", "data", {})
        store.start_iteration(run.id)
        (c,) = (store.add_candidate(run.id, 1, p) for p in proposals(1))
        store.approve(c.id, "t", "sleep", {"steps": 1, "step_s": 0.01, "fail": "the weights did not fit"})
    real = Store.fail_job
    attempts = []

    def full_twice(self, *a, **k):
        attempts.append(1)
        if len(attempts) <= 2:  # SQLite answers "database or disk is full": nothing was written
            raise StoreFull("the disk holding the database is full; nothing was changed")
        return real(self, *a, **k)

    monkeypatch.setattr(Store, "fail_job", full_twice)
    worker = Worker(db, poll_s=0.05, heartbeat_s=0.5, stale_after_s=30, handlers={"sleep": "tests.store.handlers:sleep"})
    assert worker.run(once=True) == 1
    assert len(attempts) == 3
    with Store.open(db) as store:
        (job,) = store.list_jobs()
        assert job.status == "failed" and "did not fit" in job.error
