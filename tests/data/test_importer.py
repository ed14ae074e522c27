"""import_dataset: every format imports once; every refusal leaves no store row, no cache, no upload folder."""

import pytest

from nas_core.data import cache
from nas_core.data.generic import ColumnMapping
from nas_core.data.importer import import_dataset, inspect_source, load_registered
from nas_core.data.index import AttributeSpec, DataError
from nas_core.store import Store
from tests.data.b2_fixtures import (
    image,
    make_folder,
    make_generic,
    make_ham,
    make_isic,
    truncated_jpeg,
    write_csv,
    zip_folder,
)


@pytest.fixture()
def env(tmp_path):
    store = Store.open(tmp_path / "db.sqlite")
    yield store, tmp_path / "cache", tmp_path / "uploads"
    store.close()


def _nothing_left(store, cache_dir, uploads):
    assert store.list_datasets() == []
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_import_folder_registers_and_caches(env, tmp_path):
    store, cache_dir, uploads = env
    make_ham(tmp_path / "ham", n=14)
    stages = []
    rec = import_dataset(tmp_path / "ham", store, name="ham", image_size=16, cache_dir=cache_dir, uploads=uploads,
                         progress=lambda s, d, t: stages.append((s, d, t)))
    assert rec.name == "ham" and rec.format == "ham10000" and len(rec.content_hash) == 64
    assert rec.counts["images"] == 14 and rec.counts["classes"]["akiec"] == 2
    assert rec.counts["groups"]["sex"]["male"] == 5 and "lesion_id" in rec.columns
    assert ("check", 14, 14) in stages and ("cache", 14, 14) in stages
    idx = load_registered(rec)
    info = cache.find_cache(idx, 16, cache_dir)
    assert info is not None and info.path == rec.cache_path and info.n_images == 14
    assert not uploads.exists()  # a folder is read in place, never copied


def test_same_content_twice_is_refused(env, tmp_path):
    store, cache_dir, uploads = env
    make_ham(tmp_path / "a", n=8)
    make_ham(tmp_path / "b", n=8)
    import_dataset(tmp_path / "a", store, image_size=16, cache_dir=cache_dir, uploads=uploads)
    with pytest.raises(DataError, match="already imported as 'a'"):
        import_dataset(tmp_path / "b", store, image_size=16, cache_dir=cache_dir, uploads=uploads)
    with pytest.raises(DataError, match="named 'a' is already registered"):
        import_dataset(tmp_path / "b", store, name="a", image_size=16, cache_dir=cache_dir, uploads=uploads)
    assert [d.name for d in store.list_datasets()] == ["a"]


def test_zip_import_extracts_into_uploads(env, tmp_path):
    store, cache_dir, uploads = env
    make_isic(tmp_path / "isic", n=16)
    z = zip_folder(tmp_path / "isic", tmp_path / "derm.zip")
    rec = import_dataset(z, store, image_size=16, cache_dir=cache_dir, uploads=uploads)
    assert rec.name == "derm" and rec.format == "isic2019" and rec.config["uploaded"]
    assert rec.config["root"] == str(uploads / "derm" / "dataset")
    assert len(load_registered(rec)) == 16


def test_corrupt_image_refused_then_left_out_with_consent(env, tmp_path):
    store, cache_dir, uploads = env
    make_generic(tmp_path / "g", n=12)
    truncated_jpeg(tmp_path / "g" / "pics" / "img_004.jpg")
    with pytest.raises(DataError, match=r"pics/img_004.jpg.*truncated.*--allow-corrupt"):
        import_dataset(tmp_path / "g", store, image_size=16, cache_dir=cache_dir, uploads=uploads)
    _nothing_left(store, cache_dir, uploads)
    rec = import_dataset(tmp_path / "g", store, image_size=16, cache_dir=cache_dir, uploads=uploads,
                         allow_corrupt=True)
    assert rec.config["excluded"] == ["img_004.jpg"] and rec.counts["images"] == 11
    assert rec.counts["left_out"] == 1
    assert "img_004.jpg" not in load_registered(rec).ids


@pytest.mark.parametrize("breakage,needle", [
    ("dupe", "appear more than once"),
    ("age", "ages written as text"),
    ("sex", "sex values other than male/female"),
    ("label", "not in the label set"),
    ("nomatch", "match an image"),
    ("column", r"no column\(s\) \['diagnosis'\]"),
])
def test_bad_csv_refused_and_nothing_stored(env, tmp_path, breakage, needle):
    store, cache_dir, uploads = env
    root = make_generic(tmp_path / "g", n=6)
    header = ["file", "diagnosis", "gender", "age", "patient"]
    rows = [[f"img_{i:03d}.jpg", "cat_a", "male", "40", "p"] for i in range(6)]
    mapping = ColumnMapping(image="file", label="diagnosis", classes=("cat_a", "cat_b"),
                            attributes=(AttributeSpec("sex", "gender", kind="sex"), AttributeSpec("age", "age", "age")))
    if breakage == "dupe":
        rows[1][0] = rows[0][0]
    elif breakage == "age":
        rows[2][3] = "forty"
    elif breakage == "sex":
        rows[2][2] = "x"
    elif breakage == "label":
        rows[3][1] = "cat_z"
    elif breakage == "nomatch":
        rows = [[f"other_{i}.jpg", "cat_a", "male", "40", "p"] for i in range(6)]
    elif breakage == "column":
        header[1] = "dx_code"
    write_csv(root / "meta.csv", header, rows)
    with pytest.raises(DataError, match=needle):
        import_dataset(root, store, image_size=16, cache_dir=cache_dir, uploads=uploads, mapping=mapping)
    _nothing_left(store, cache_dir, uploads)


def test_failed_zip_import_removes_extraction_and_cache(env, tmp_path, monkeypatch):
    store, cache_dir, uploads = env
    make_folder(tmp_path / "f", per_class=4)
    z = zip_folder(tmp_path / "f", tmp_path / "tree.zip")

    def boom(**kwargs):
        raise RuntimeError("disk full while writing the row")

    monkeypatch.setattr(store, "register_dataset", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        import_dataset(z, store, image_size=16, cache_dir=cache_dir, uploads=uploads)
    monkeypatch.undo()
    _nothing_left(store, cache_dir, uploads)
    rec = import_dataset(z, store, image_size=16, cache_dir=cache_dir, uploads=uploads)  # a clean retry works
    assert rec.format == "folder" and rec.counts["images"] == 12


def test_unsafe_zip_and_rows_without_images(env, tmp_path):
    store, cache_dir, uploads = env
    import zipfile

    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../../escape.csv", "a,b\n")
    with pytest.raises(DataError, match="'..'"):
        import_dataset(tmp_path / "evil.zip", store, cache_dir=cache_dir, uploads=uploads)
    make_generic(tmp_path / "g", n=6)
    (tmp_path / "g" / "pics" / "img_001.jpg").unlink()
    with pytest.raises(DataError, match="rows of meta.csv have no image file: img_001.jpg"):
        import_dataset(tmp_path / "g", store, cache_dir=cache_dir, uploads=uploads, image_size=16)
    _nothing_left(store, cache_dir, uploads)
    image(tmp_path / "g" / "pics" / "img_001.jpg", seed=1)
    assert inspect_source(tmp_path / "g").report.importable()


def test_imports_the_synthetic_default_data_set(env, tiny_dataset):
    store, cache_dir, uploads = env
    inspection = inspect_source(tiny_dataset)
    report = inspection.report
    assert report.format == "isic2019" and report.importable()
    assert report.n_multi_groups > 0  # the generator photographs some lesions 2-3 times
    assert {g.attribute for g in report.groups} == {"sex", "age"}
    rec = import_dataset(tiny_dataset, store, name="default", image_size=16, cache_dir=cache_dir, uploads=uploads)
    assert rec.counts["images"] == len(load_registered(rec)) == report.n_usable
    assert rec.counts["lesion_groups_kept_together"] == report.n_multi_groups
