"""A corpus of bad uploads (issue 15): each a zip, the CLI flags and app settings it needs, and the message part
that must be in the refusal. Built fresh in a test's tmp folder (small files, seconds in all)."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.data.b2_fixtures import image, make_generic, truncated_jpeg, write_csv, zip_folder


@dataclass(frozen=True)
class Bad:
    """One bad upload."""

    name: str
    path: Path
    needle: str  # regex the error message must match
    cli_flags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # settings the app path needs for the same refusal
    app_kwargs: dict = field(default_factory=dict)


def _zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes | str]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for entry, data in entries:
            zf.writestr(entry, data)
    return path


def _jpeg(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (20, 16), (seed * 7 % 255, 90, 40)).save(buf, "JPEG")
    return buf.getvalue()


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _generic_zip(tmp: Path, name: str, edit=None, header=None, corrupt=None) -> Path:
    root = make_generic(tmp / "src" / name, n=6)
    if edit:
        rows = [[f"img_{i:03d}.jpg", "cat_a", "male", "40", "p"] for i in range(6)]
        edit(rows)
        write_csv(root / "meta.csv", header or ["file", "diagnosis", "gender", "age", "patient"], rows)
    if corrupt:
        corrupt(root)
    return zip_folder(root, tmp / f"{name}.zip")


def bad_uploads(tmp: Path) -> list[Bad]:
    """Thirty-odd uploads every one of which must be refused with a message and leave nothing behind."""
    tmp.mkdir(parents=True, exist_ok=True)
    out: list[Bad] = []
    ok_csv = _csv(["file", "diagnosis", "gender", "age"], [[f"i{i}.jpg", "a" if i % 2 else "b", "male", "40"]
                                                             for i in range(6)])

    def z(name: str, entries, needle: str, **kw) -> None:
        out.append(Bad(name, _zip(tmp / f"{name}.zip", entries), needle, **kw))

    z("absolute", [("/tmp/x.csv", ok_csv)], "absolute path")
    z("dotdot", [("a/../../x.csv", ok_csv)], r"'\.\.'")
    z("backslash_dotdot", [("a\\..\\..\\evil.csv", ok_csv)], r"'\.\.'")
    z("drive_letter", [("C:/evil.csv", ok_csv)], "absolute path")
    link = zipfile.ZipInfo("images/link.jpg")
    link.external_attr = 0o120777 << 16
    z("symlink", [("meta.csv", ok_csv), (link, "/etc/passwd")], "symbolic link")
    enc = _zip(tmp / "encrypted.zip", [("meta.csv", ok_csv)])
    raw = bytearray(enc.read_bytes())  # zipfile cannot write encrypted entries: set the flag bit by hand
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = raw.find(sig)
        raw[i + off] |= 0x1
    enc.write_bytes(bytes(raw))
    out.append(Bad("encrypted_flag", enc, "encrypted"))
    z("empty", [], "empty")
    z("only_dirs", [("a/", ""), ("b/c/", "")], "empty")
    z("only_macosx", [("__MACOSX/._x", "junk"), (".DS_Store", "junk")], "empty")
    z("declared_bomb", [("zeros.bin", b"\0" * 3_000_000)], "zip bomb", cli_flags=("--max-zip-bytes", "1000000"),
      env={"EQUINAS_MAX_UPLOAD_BYTES": "1000000"})
    z("ratio_bomb", [("meta.csv", ok_csv), ("zeros.bin", b"\0" * (66 * 1024**2))], "zip bomb")
    with zipfile.ZipFile(tmp / "dupe.zip", "w") as zf:
        zf.writestr("meta.csv", ok_csv)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zf.writestr("meta.csv", ok_csv)
    out.append(Bad("duplicate_entry", tmp / "dupe.zip", "same file twice"))
    (tmp / "notzip.zip").write_bytes(b"this is not a zip archive at all" * 10)
    out.append(Bad("not_a_zip", tmp / "notzip.zip", "not a readable zip"))
    good = _zip(tmp / "good_for_truncation.zip", [("meta.csv", ok_csv)] + [(f"i{i}.jpg", _jpeg(i)) for i in range(6)])
    data = good.read_bytes()
    (tmp / "truncated.zip").write_bytes(data[: len(data) // 2])
    out.append(Bad("truncated_zip", tmp / "truncated.zip", "not a readable zip|could not be extracted"))
    good.unlink()
    many = [(f"f{i}.txt", "x") for i in range(40)]
    z("too_many_entries", many, "more than the cap", cli_flags=("--max-zip-files", "20"),
      app_kwargs={"max_files": 20})
    z("images_no_csv", [(f"i{i}.jpg", _jpeg(i)) for i in range(4)], "does not look like a data set")
    z("csv_no_images", [("meta.csv", ok_csv)], "match an image|no image|missing")
    z("garbage_csv", [("meta.csv", b"\xff\xfe\x00garbage\x00" * 50), ("i0.jpg", _jpeg())], "not a UTF-8")
    z("empty_csv", [("meta.csv", ""), ("i0.jpg", _jpeg())], "is empty")
    z("header_only_csv", [("meta.csv", "file,diagnosis,gender,age\n"), ("i0.jpg", _jpeg())], "header but no rows")
    z("nested_zip_only", [("inner.zip", (tmp / "notzip.zip").read_bytes())], "does not look like a data set")
    one_class = _csv(["file", "diagnosis", "gender", "age"], [[f"i{i}.jpg", "mel", ["male", "female"][i % 2], "40"]
                                                               for i in range(12)])
    z("single_class", [("meta.csv", one_class)] + [(f"i{i}.jpg", _jpeg(i)) for i in range(12)], "same class")
    singletons = _csv(["file", "diagnosis", "gender", "age"], [[f"i{i}.jpg", f"class_{i}", ["male", "female"][i % 2],
                                                                "40"] for i in range(60)])
    z("sixty_singleton_classes", [("meta.csv", singletons)] + [(f"i{i}.jpg", _jpeg(i)) for i in range(60)],
      "fewer than two of them")

    out.append(Bad("truncated_jpeg", _generic_zip(
        tmp, "truncjpeg", corrupt=lambda r: truncated_jpeg(r / "pics" / "img_002.jpg")), "truncated"))
    out.append(Bad("not_an_image", _generic_zip(
        tmp, "notimg", corrupt=lambda r: (r / "pics" / "img_003.jpg").write_text("hello")), "not an image"))
    out.append(Bad("pixel_bomb", _generic_zip(tmp, "pixels"), "over the pixel cap", cli_flags=("--max-pixels", "100"),
                   app_kwargs={"max_pixels": 100}))
    out.append(Bad("missing_column", _generic_zip(tmp, "missingcol"), r"no column", cli_flags=("--label-col", "dx"),
                   app_kwargs={"mapping": "label=dx"}))
    out.append(Bad("duplicate_rows", _generic_zip(tmp, "dupes", lambda r: r.__setitem__(1, list(r[0]))),
                   "more than once"))
    out.append(Bad("age_as_text", _generic_zip(tmp, "agetext", lambda r: r[2].__setitem__(3, "forty")),
                   "ages written as text"))
    out.append(Bad("bad_sex", _generic_zip(tmp, "sex", lambda r: r[2].__setitem__(2, "yes")),
                   "other than male/female"))
    out.append(Bad("no_matching_images", _generic_zip(
        tmp, "noimg", lambda r: [row.__setitem__(0, "zz" + row[0]) for row in r]), "match an image"))
    gif = tmp / "src" / "gif"
    for i in range(6):
        image(gif / f"i{i}.gif", seed=i, fmt="GIF")
    write_csv(gif / "meta.csv", ["file", "diagnosis"], [[f"i{i}.jpg", "a"] for i in range(6)])
    out.append(Bad("wrong_extensions", zip_folder(gif, tmp / "gif.zip"), "match an image|same class"))
    return out
