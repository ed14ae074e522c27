"""The decode cache: correct pixels, built once, keyed by content, atomic, corrupt images named."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from nas_core.data import cache as cache_mod
from nas_core.data.cache import build_cache, decode_image, find_cache, index_fingerprint, load_cache
from nas_core.data.index import DataError, DatasetIndex
from nas_core.data.isic2019 import load_isic2019


def _jpeg_bytes(img, tmp_path, name="x.jpg", **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path.read_bytes()


def _index_of(folder, names, labels=None):
    return DatasetIndex(root=str(folder), format="generic", ids=tuple(n.split(".")[0] for n in names),
                        paths=tuple(names), labels=tuple(labels or [0] * len(names)), class_names=("A",))


def test_decode_center_crops_then_resizes(tmp_path):
    # 60x20 landscape: left third red, middle green, right blue. The centre square is all green.
    arr = np.zeros((20, 60, 3), np.uint8)
    arr[:, :20, 0] = 255
    arr[:, 20:40, 1] = 255
    arr[:, 40:, 2] = 255
    out = decode_image(_jpeg_bytes(Image.fromarray(arr), tmp_path, "x.png"), 8)
    assert out.shape == (3, 8, 8) and out.dtype == np.uint8
    assert out[1].min() > 200 and out[0].max() < 60 and out[2].max() < 60


def test_draft_decode_matches_a_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((800, 600), Image.Resampling.BICUBIC)
    data = _jpeg_bytes(big, tmp_path, quality=90)
    fast = decode_image(data, 32).astype(float)
    with Image.open(tmp_path / "x.jpg") as img:
        ref = np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR, box=(100, 0, 700, 600)))
    assert np.abs(fast - ref.transpose(2, 0, 1)).mean() < 6


def test_build_load_and_reuse(tiny_dataset, tmp_path):
    idx = load_isic2019(tiny_dataset)
    seen = []
    info = build_cache(idx, 16, cache_dir=tmp_path, progress=lambda d, t: seen.append((d, t)), workers=1)
    assert info.built and info.n_images == 240 and info.rows == tuple(range(240)) and info.skipped == ()
    assert seen[-1] == (240, 240) and len(seen) > 1
    images = load_cache(info)
    assert images.shape == (240, 3, 16, 16) and str(images.dtype) == "torch.uint8"
    with open(tiny_dataset / idx.paths[5], "rb") as f:
        assert np.array_equal(images[5].numpy(), decode_image(f.read(), 16))
    again = build_cache(idx, 16, cache_dir=tmp_path, workers=1)
    assert not again.built and again.path == info.path and again.content_hash == info.content_hash
    assert find_cache(idx, 16, cache_dir=tmp_path).path == info.path
    assert find_cache(idx, 24, cache_dir=tmp_path) is None  # another resolution is another cache
    mapped = load_cache(info, mmap=True)
    assert np.array_equal(mapped.numpy(), images.numpy())


def test_process_pool_gives_the_same_array(tiny_dataset, tmp_path):
    idx = load_isic2019(tiny_dataset)
    a = build_cache(idx, 12, cache_dir=tmp_path / "a", workers=1)
    b = build_cache(idx, 12, cache_dir=tmp_path / "b", workers=2)
    assert np.array_equal(load_cache(a).numpy(), load_cache(b).numpy())
    assert a.content_hash == b.content_hash and a.key == b.key


def test_key_follows_file_changes_and_content_hash_follows_bytes(tmp_path):
    for i in range(3):
        Image.new("RGB", (10, 10), (i * 50, 0, 0)).save(tmp_path / f"im{i}.png")
    idx = _index_of(tmp_path, [f"im{i}.png" for i in range(3)])
    first = build_cache(idx, 8, cache_dir=tmp_path / "c")
    st = os.stat(tmp_path / "im1.png")
    os.utime(tmp_path / "im1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes
    touched = build_cache(idx, 8, cache_dir=tmp_path / "c")
    assert touched.built and touched.key != first.key and touched.content_hash == first.content_hash
    Image.new("RGB", (10, 10), (0, 0, 255)).save(tmp_path / "im1.png")  # new content
    changed = build_cache(idx, 8, cache_dir=tmp_path / "c")
    assert changed.content_hash != first.content_hash
    assert load_cache(changed)[1, 2].float().mean() > 200  # the new blue image, not the old one


def test_interrupted_build_leaves_no_cache(tiny_dataset, tmp_path):
    idx = load_isic2019(tiny_dataset)

    def stop(done, total):
        if done >= 64:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(idx, 16, cache_dir=tmp_path, progress=stop, workers=1)
    assert find_cache(idx, 16, cache_dir=tmp_path) is None
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too
    assert build_cache(idx, 16, cache_dir=tmp_path, workers=1).built


def test_a_folder_without_meta_is_not_a_cache(tiny_dataset, tmp_path):
    idx = load_isic2019(tiny_dataset)
    info = build_cache(idx, 8, cache_dir=tmp_path, workers=1)
    os.remove(os.path.join(info.path, "meta.json"))  # as if a crash hit before the last write
    assert find_cache(idx, 8, cache_dir=tmp_path) is None


def _with_corrupt(tmp_path):
    names = []
    for i in range(6):
        Image.new("RGB", (20, 16), (40 * i, 100, 100)).save(tmp_path / f"ok{i}.jpg")
        names.append(f"ok{i}.jpg")
    good = (tmp_path / "ok0.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.jpg").write_text("this is not an image")
    return _index_of(tmp_path, names[:3] + ["trunc.jpg"] + names[3:] + ["text.jpg"])


def test_corrupt_images_are_named(tmp_path):
    idx = _with_corrupt(tmp_path)
    with pytest.raises(DataError, match=r"2 images cannot be decoded: trunc \(.*\); text \(.*allow"):
        build_cache(idx, 8, cache_dir=tmp_path / "c")
    assert find_cache(idx, 8, cache_dir=tmp_path / "c") is None
    assert [p for p in (tmp_path / "c").iterdir()] == []


def test_corrupt_images_skipped_on_request(tmp_path):
    idx = _with_corrupt(tmp_path)
    info = build_cache(idx, 8, cache_dir=tmp_path / "c", skip_corrupt=True)
    assert [i for i, _ in info.skipped] == ["trunc", "text"]
    assert info.rows == (0, 1, 2, 4, 5, 6)
    images = load_cache(info)
    assert images.shape == (6, 3, 8, 8)
    assert abs(images[3, 0].float().mean().item() - 120) < 15  # ok3 (red 120) sits at position 3
    # Reusing that cache without consent to skip is refused the same way.
    with pytest.raises(DataError, match="2 images cannot be decoded"):
        build_cache(idx, 8, cache_dir=tmp_path / "c")


def test_missing_files_and_bad_sizes(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    idx = _index_of(tmp_path, ["a.png", "gone.png"])
    with pytest.raises(DataError, match="1 image files .* are missing: gone.png"):
        index_fingerprint(idx, 8)
    with pytest.raises(DataError, match="from 8 to 1024"):
        build_cache(_index_of(tmp_path, ["a.png"]), 4, cache_dir=tmp_path)


def test_default_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv(cache_mod.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert cache_mod.default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(cache_mod.CACHE_ENV)
    assert str(cache_mod.default_cache_dir()) == os.path.join("data", "cache")


def test_unreadable_cache_file_says_what_to_do(tiny_dataset, tmp_path):
    idx = load_isic2019(tiny_dataset)
    info = build_cache(idx, 8, cache_dir=tmp_path, workers=1)
    shutil.copy(os.path.join(info.path, "meta.json"), info.images_path)  # garbage in the array file
    with pytest.raises(DataError, match="delete"):
        load_cache(info)


def test_data_modules_do_not_import_torch():
    # Decoding workers and the CLI's make-default must start fast: torch only when tensors are made.
    import subprocess
    import sys

    code = ("import sys, nas_core.data.cache, nas_core.data.splits, nas_core.data.isic2019, "
            "nas_core.data.groups, nas_core.data.synthetic, nas_core.data.prepare; "
            "sys.exit('torch' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=root).returncode == 0
