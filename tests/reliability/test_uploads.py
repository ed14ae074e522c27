"""Bad uploads through the CLI and through the app's upload path: a message, an exit code, nothing left behind.

Also: a valid zip imports through the app's path with its upload deleted, uploads live beside the
database, and a 2 GiB bomb entry is stopped mid-stream without leaving a byte.
"""

from __future__ import annotations

import os
import re
import sqlite3
import zipfile
import zlib
from pathlib import Path

import pytest

from nas_core import studio
from nas_core.cli import main
from nas_core.data import zipsafe
from nas_core.errors import UserError
from tests.reliability.corpus import bad_uploads


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _datasets(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM datasets")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    cases = bad_uploads(tmp_path_factory.mktemp("corpus"))
    assert len(cases) >= 30
    return cases


def test_every_bad_upload_is_refused_by_the_cli_with_nothing_left(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(tmp_path / "cache"))
    db = tmp_path / "cli.db"
    for case in corpus:
        code = main(["datasets", "import", str(case.path), "--db", str(db), "--image-size", "16",
                     "--uploads-dir", str(tmp_path / "up"), *case.cli_flags])
        out, err = capsys.readouterr()
        assert code == 2, (case.name, out, err)
        assert err.startswith("error: ") and "Traceback" not in err, (case.name, err)
        assert re.search(case.needle, err), (case.name, err)
        assert not _files(tmp_path / "up"), (case.name, _files(tmp_path / "up"))
        assert not _files(tmp_path / "cache"), case.name
    assert _datasets(db) == []


def test_every_bad_upload_is_refused_by_the_app_path_with_nothing_left(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "app.db"))
    monkeypatch.delenv("EQUINAS_UPLOADS_DIR", raising=False)
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(tmp_path / "cache"))
    store = studio.open_store()
    uploads = tmp_path / "uploads"
    try:
        for case in corpus:
            with monkeypatch.context() as m:
                for k, v in case.env.items():
                    m.setenv(k, v)
                kwargs = dict(case.app_kwargs)
                if kwargs.get("mapping") == "label=dx":
                    kwargs["mapping"] = studio.column_mapping(label="dx")
                data = case.path.read_bytes()
                with pytest.raises(UserError) as info:
                    studio.import_upload(store, case.path.name, data, "k1", image_size=16, **kwargs)
                assert re.search(case.needle, str(info.value)), (case.name, str(info.value))
                if not kwargs:  # the inspection (the Data page's "Check" button) refuses or reports it too
                    try:
                        inspection = studio.inspect_upload(store, case.path.name, data)
                    except UserError as exc:
                        assert re.search(case.needle, str(exc)), (case.name, str(exc))
                    else:
                        assert not inspection.report.importable(), case.name
            assert not _files(uploads), (case.name, _files(uploads))
            assert not _files(tmp_path / "cache"), case.name
        assert store.list_datasets() == []
    finally:
        store.close()


def test_a_valid_zip_imports_through_the_app_path_and_its_upload_is_deleted(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land relative to the working folder
    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "db" / "app.db"))
    monkeypatch.delenv("EQUINAS_UPLOADS_DIR", raising=False)
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "db").mkdir()
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(tiny_dataset.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(tiny_dataset.parent))
    store = studio.open_store()
    try:
        inspection = studio.inspect_upload(store, "tiny.zip", archive.read_bytes(), key="abc")
        counts = studio.class_group_counts(inspection)  # the page's chart: read from the inspection, no folder
        assert not counts.empty and set(counts["attribute"]) >= {"sex", "age"}
        rec = studio.import_upload(store, "tiny.zip", archive.read_bytes(), "abc", name="tiny", image_size=16)
        assert rec.name == "tiny" and rec.counts["images"] == 240
    finally:
        store.close()
    uploads = tmp_path / "db" / "uploads"
    assert (uploads / "tiny").is_dir()
    assert not _files(uploads / "incoming")
    assert not (tmp_path / "data").exists()


def test_an_upload_left_by_a_killed_app_is_removed_later(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "app.db"))
    monkeypatch.delenv("EQUINAS_UPLOADS_DIR", raising=False)
    store = studio.open_store()
    try:
        old = studio.save_upload(store, "old.zip", b"PK old", "1")
        os.utime(old, (0, 0))
        new = studio.save_upload(store, "new.zip", b"PK new", "2")
        assert new.parent == tmp_path / "uploads" / "incoming" and new.exists() and not old.exists()
        studio.discard_upload(new)
        assert not new.exists()
    finally:
        store.close()


class _RepeatedBlock:
    """A deflate compressor for a stream of one chunk written again and again: the chunk is compressed
    once and ended with a full flush (which resets the compressor), so every repetition is the same
    bytes and a 2 GiB entry costs one 1 MiB compression (and zipfile's CRC) instead of 2 GiB of it."""

    def __init__(self, chunk: bytes):
        c = zlib.compressobj(9, zlib.DEFLATED, -15)  # ~1000:1, as a bomb is
        self.chunk, self.block = chunk, c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
        self.end = c.flush()

    def compress(self, data: bytes) -> bytes:
        assert data is self.chunk
        return self.block

    def flush(self) -> bytes:
        return self.end


def _deflated_zeros_zip(path: Path, name: str, size: int) -> Path:
    """A zip with one deflated entry of ``size`` zero bytes, written in chunks (never all in memory)."""
    chunk = b"\0" * (1 << 20)
    assert size % len(chunk) == 0, "whole MiB only"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
            out._compressor = _RepeatedBlock(chunk)  # zipfile's own CRC and sizes stay in charge
            for _ in range(size // len(chunk)):
                out.write(chunk)
    return path


def test_the_repeated_block_zip_is_a_valid_zip_of_zeros(tmp_path):
    path = _deflated_zeros_zip(tmp_path / "z.zip", "zeros.bin", 32 << 20)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None  # CRC and length check out
        assert zf.read("zeros.bin") == b"\0" * (32 << 20)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = _deflated_zeros_zip(tmp_path_factory.mktemp("bomb") / "bomb.zip", "images/zeros.jpg", 2 * 1024**3)
    assert path.stat().st_size < 16 * 1024**2  # a 2 GiB entry in a few MB: a bomb
    return path


def test_a_2_gib_bomb_entry_is_stopped_mid_stream_and_leaves_nothing(bomb, tmp_path):
    dest = tmp_path / "out" / "bomb"
    written: list[int] = []
    real_open = open

    def spying_open(file, mode="r", *a, **kw):  # the size the partial file reached before it was removed
        fh = real_open(file, mode, *a, **kw)
        if "x" in mode and "b" in mode:
            written.append(0)
            orig = fh.write

            def write(b):
                written[-1] += len(b)
                return orig(b)

            fh.write = write
        return fh

    import builtins

    builtins_open = builtins.open
    builtins.open = spying_open
    try:
        with pytest.raises(zipsafe.UnsafeZip, match="zip bomb") as info:
            zipsafe.extract(bomb, dest)
    finally:
        builtins.open = builtins_open
    assert "nothing was kept" in str(info.value)
    assert 0 < written[0] < 512 * 1024**2, written  # stopped long before 2 GiB
    assert not dest.exists() and not _files(tmp_path / "out")


def test_the_upload_cap_is_a_setting_checked_while_inflating(tmp_path, monkeypatch):
    path = _deflated_zeros_zip(tmp_path / "three_mib.zip", "a.bin", 3 * 1024**2)
    monkeypatch.setenv("EQUINAS_MAX_UPLOAD_BYTES", str(2 * 1024**2))
    assert zipsafe.max_upload_bytes() == 2 * 1024**2
    assert zipsafe.max_upload_bytes(12345) == 12345  # an explicit cap (the CLI flag) wins
    with pytest.raises(zipsafe.UnsafeZip, match="EQUINAS_MAX_UPLOAD_BYTES"):
        zipsafe.extract(path, tmp_path / "x")
    assert not (tmp_path / "x").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".x")]
    monkeypatch.setenv("EQUINAS_MAX_UPLOAD_BYTES", "lots")
    with pytest.raises(UserError, match="not a number"):
        zipsafe.max_upload_bytes()
