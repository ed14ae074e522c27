"""Validation report: counts, class x group table, bad images by name, small groups, content hash."""

import json

from nas_core.data import formats
from nas_core.data.report import build_report, check_images
from tests.data.b2_fixtures import big_png, image, make_generic, make_ham, truncated_jpeg


def _bad(report):
    return {b.path: b.kind for b in report.bad_images}


def test_counts_groups_and_lesions(tmp_path):
    make_ham(tmp_path, n=28)
    report = build_report(formats.read(tmp_path), min_group_test=1)
    assert report.format == "ham10000" and report.n_rows == report.n_images == report.n_usable == 28
    assert dict(zip(report.class_names, report.class_counts)) == {c: 4 for c in report.class_names}
    sex = {g.group: g for g in report.groups if g.attribute == "sex"}
    assert {k: g.n for k, g in sex.items()} == {"female": 9, "male": 10, "unknown": 9}
    assert sum(sex["male"].class_counts) == 10 and sex["male"].expected_test == 1.0
    assert report.n_multi_groups == 14 and report.n_images_in_multi_groups == 28
    assert report.importable() and report.verdict() == "ready to import"
    text = report.to_text()
    assert "Groups of sex (class x group)" in text and "14 groups with several images" in text
    assert json.loads(json.dumps(report.to_dict()))["classes"]["nv"] == 4


def test_small_groups_are_reported(tmp_path):
    make_generic(tmp_path, n=30)
    report = build_report(formats.read(tmp_path), min_group_test=10)
    small = [f for f in report.findings if f.code == "small_groups"][0]
    assert small.severity == "warning" and "sex=male (8 images, ~0.8 in the test split)" in small.message
    assert report.importable()  # small groups warn, they do not refuse


def test_bad_images_named_and_need_consent(tmp_path):
    make_generic(tmp_path, n=12)
    truncated_jpeg(tmp_path / "pics" / "img_003.jpg")
    (tmp_path / "pics" / "img_005.jpg").write_text("just some text, not a JPEG")
    big_png(tmp_path / "pics" / "img_007.jpg", 300, 300)  # a PNG behind a .jpg name: readable, but big
    report = build_report(formats.read(tmp_path), max_pixels=50_000)
    assert _bad(report) == {"pics/img_003.jpg": "corrupt", "pics/img_005.jpg": "not_image",
                            "pics/img_007.jpg": "too_large"}
    codes = {f.code: f for f in report.consent}
    assert set(codes) == {"corrupt_images", "not_image_images", "too_large_images"}
    assert "pics/img_003.jpg" in codes["corrupt_images"].message and "truncated" in codes["corrupt_images"].message
    assert "90000 pixels" in codes["too_large_images"].message
    assert not report.importable() and report.importable(allow_corrupt=True)
    assert "refused unless you allow leaving 3" in report.verdict()
    assert report.n_usable == 9 and sum(report.class_counts) == 9


def test_pool_matches_in_process_and_pil_bomb_guard(tmp_path):
    paths = [str(image(tmp_path / f"g{i}.jpg", seed=i)) for i in range(40)]
    paths.append(str(truncated_jpeg(tmp_path / "t.jpg")))
    paths.append(str(big_png(tmp_path / "bomb.png", 400, 400)))  # 160k px > 2 x cap: PIL raises itself
    seen = []
    pooled = check_images(paths, max_pixels=60_000, workers=2, progress=lambda d, n: seen.append((d, n)))
    local = check_images(paths, max_pixels=60_000, workers=1)
    assert [k for k, _, _ in pooled] == [k for k, _, _ in local] == [""] * 40 + ["corrupt", "too_large"]
    assert [d for _, _, d in pooled] == [d for _, _, d in local]
    assert seen[-1] == (42, 42)


def test_content_hash_follows_content(tmp_path):
    make_generic(tmp_path / "a", n=9)
    make_generic(tmp_path / "b", n=9)
    h1 = build_report(formats.read(tmp_path / "a")).content_hash
    assert h1 == build_report(formats.read(tmp_path / "b")).content_hash  # same bytes elsewhere
    image(tmp_path / "b" / "pics" / "img_004.jpg", seed=999)
    assert build_report(formats.read(tmp_path / "b")).content_hash != h1
    assert build_report(formats.read(tmp_path / "a"), check=False).content_hash == ""


def test_fatal_findings_refuse(tmp_path):
    make_generic(tmp_path, n=6)
    meta = tmp_path / "meta.csv"
    meta.write_text(meta.read_text().replace("img_001.jpg,cat_b,female", "img_001.jpg,cat_b,alien"))
    report = build_report(formats.read(tmp_path))
    assert [f.code for f in report.fatal] == ["unknown_sex"]
    assert not report.importable(allow_corrupt=True)
    assert report.to_text().count("ERROR") == 1 and "refused: 1 problem" in report.to_text()
