"""prepare(): the evaluator's one call: tensors, groups and split, identical for identical inputs."""

import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from nas_core.data.index import UNKNOWN, AttributeSpec, DataError
from nas_core.data.isic2019 import IMAGE_DIR, load_isic2019
from nas_core.data.prepare import PreparedData, prepare


def test_tiny_prepared_shape_and_alignment(tiny_prepared, tiny_dataset):
    p = tiny_prepared
    assert isinstance(p, PreparedData)
    assert p.images.shape == (240, 3, 32, 32) and p.images.dtype == torch.uint8
    assert p.labels.dtype == torch.int64 and p.labels.tolist() == list(p.index.labels)
    assert p.class_names == ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC") and p.n_classes == 8
    assert [n for n, _ in p.attributes] == ["sex", "age"]
    assert p.attribute("age").shape == (240,) and p.attribute("age").dtype.kind == "U"
    assert set(p.attribute("sex")) <= {"male", "female", UNKNOWN}
    assert p.image_size == 32 and len(p.dataset_hash) == 64
    rows = np.concatenate([p.split.train, p.split.val, p.split.test])
    assert sorted(rows.tolist()) == list(range(240))
    assert p.split.n_grouped > 0
    # Row 7 of the tensor is the image of row 7 of the index (not just any image).
    with Image.open(tiny_dataset / p.index.paths[7]) as img:
        w, h = img.size
        ref = np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR,
                                                   box=((w - h) // 2, 0, (w - h) // 2 + h, h)))
    assert np.abs(p.images[7].numpy().astype(float) - ref.transpose(2, 0, 1)).mean() < 4
    assert p.split.test.size and set(p.labels[p.split.train].tolist()) == set(range(8))


def test_same_inputs_identical_other_seed_other_split(tiny_dataset, tiny_prepared, tmp_path):
    again = prepare(tiny_dataset, image_size=32, seed=0, cache_dir=tmp_path, workers=1)
    assert torch.equal(again.images, tiny_prepared.images)
    for part in ("train", "val", "test"):
        assert np.array_equal(again.split.part(part), tiny_prepared.split.part(part))
    assert again.dataset_hash == tiny_prepared.dataset_hash
    other = prepare(tiny_dataset, image_size=32, seed=1, cache_dir=tmp_path, workers=1)
    assert not np.array_equal(other.split.test, tiny_prepared.split.test)
    assert other.dataset_hash == tiny_prepared.dataset_hash  # same data, only the split differs


def test_hash_is_content_based(tiny_dataset, tiny_prepared, tmp_path):
    copy = shutil.copytree(tiny_dataset, tmp_path / "copy")
    same = prepare(copy, image_size=32, seed=0, cache_dir=tmp_path / "c", workers=1)
    assert same.dataset_hash == tiny_prepared.dataset_hash
    gt = copy / "ISIC_2019_Training_GroundTruth.csv"
    lines = gt.read_text().splitlines()
    cells = lines[1].split(",")
    old = cells[1:9].index("1.0")
    cells[1:9] = ["1.0" if c == (old + 1) % 8 else "0.0" for c in range(8)]  # the next class
    lines[1] = ",".join(cells)
    gt.write_text("\n".join(lines) + "\n")
    relabelled = prepare(copy, image_size=32, seed=0, cache_dir=tmp_path / "c", workers=1)
    assert relabelled.dataset_hash != tiny_prepared.dataset_hash


def test_subsample_is_balanced_and_reuses_the_cache(tiny_dataset, tiny_prepared, tmp_path):
    full = prepare(tiny_dataset, image_size=16, cache_dir=tmp_path, workers=1)
    sub = prepare(tiny_dataset, image_size=16, cache_dir=tmp_path, subsample=60, workers=1)
    assert len(list(tmp_path.iterdir())) == 1  # one cache for both
    assert sub.images.shape[0] == 60 == len(sub.index) == len(sub.labels)
    combos = Counter(zip(sub.attribute("sex"), sub.attribute("age")))
    assert max(combos.values()) - min(combos.values()) <= 1 or min(combos.values()) < 10
    assert sub.dataset_hash != full.dataset_hash
    pos = {i: k for k, i in enumerate(full.index.ids)}
    k = pos[sub.index.ids[3]]
    assert torch.equal(sub.images[3], full.images[k])


def test_index_input_and_custom_attributes(tiny_dataset, tmp_path):
    idx = load_isic2019(tiny_dataset, attributes=[AttributeSpec("site", "anatom_site_general")])
    p = prepare(idx, image_size=16, cache_dir=tmp_path, workers=1)
    assert [n for n, _ in p.attributes] == ["site"]
    by_path = prepare(tiny_dataset, image_size=16, cache_dir=tmp_path, workers=1,
                      attributes=[AttributeSpec("site", "anatom_site_general")])
    assert [n for n, _ in by_path.attributes] == ["site"]
    assert np.array_equal(by_path.attribute("site"), p.attribute("site"))


def test_corrupt_images_need_consent(tiny_dataset, tmp_path):
    copy = shutil.copytree(tiny_dataset, tmp_path / "copy")
    victim = sorted((copy / IMAGE_DIR).iterdir())[3]
    victim.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=f"{victim.stem}"):
        prepare(copy, image_size=16, cache_dir=tmp_path / "c", workers=1)
    p = prepare(copy, image_size=16, cache_dir=tmp_path / "c", workers=1, skip_corrupt=True)
    assert len(p.index) == 239 == p.images.shape[0] and victim.stem not in p.index.ids
    assert any(victim.stem in note for note in p.index.problems)


def test_bad_paths(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare(tmp_path / "nothing", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        prepare(tmp_path / "empty", cache_dir=tmp_path)


def test_split_fractions_from_the_data_sets_split_file(tiny_dataset, tiny_prepared, tmp_path):
    from nas_core.data.prepare import SPLIT_FILE

    copy = shutil.copytree(tiny_dataset, tmp_path / "copy")
    (copy / SPLIT_FILE).write_text('{"fractions": [0.5, 0.2, 0.3]}')
    p = prepare(copy, image_size=32, seed=0, cache_dir=tmp_path / "c", workers=1)
    assert p.split.fractions == (0.5, 0.2, 0.3)
    assert p.split.sizes[2] > tiny_prepared.split.sizes[2] and abs(p.split.sizes[2] - 72) <= 3
    assert p.dataset_hash != tiny_prepared.dataset_hash  # the fractions are part of what was measured
    (copy / SPLIT_FILE).write_text('{"fractions": [0.5, 0.2]}')
    with pytest.raises(DataError, match="fractions"):
        prepare(copy, image_size=32, seed=0, cache_dir=tmp_path / "c", workers=1)
