"""`datasets inspect / import / list` through the real CLI: every format imports and is listed; bad input
gives one `error:` line, exit code 2, no traceback and nothing stored."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nas_core.cli import main
from tests.data.b2_fixtures import (
    make_folder,
    make_generic,
    make_ham,
    make_isic,
    truncated_jpeg,
    write_csv,
    zip_folder,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(tmp_path / "cache"))
    db = str(tmp_path / "db.sqlite")

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    run.db = db
    return run


def _listed(cli):
    code, out, _ = cli("datasets", "list", "--db", cli.db, "--json")
    assert code == 0
    return {r["name"]: r for r in json.loads(out)}


def test_every_format_imports_and_is_listed(cli, tmp_path):
    make_isic(tmp_path / "isic", n=16)
    make_ham(tmp_path / "ham", n=14)
    make_generic(tmp_path / "gen", n=12)
    make_folder(tmp_path / "tree", per_class=4)
    zip_folder(make_ham(tmp_path / "ham_zip_src", n=10), tmp_path / "hamzip.zip")
    for src, extra in [("isic", []), ("ham", []), ("tree", ["--attr", "skin"]),
                       ("gen", ["--image-col", "file", "--label-col", "diagnosis", "--sex-col", "gender",
                                "--group-col", "patient", "--age-bins", "40"])]:
        code, out, err = cli("datasets", "import", tmp_path / src, "--db", cli.db, "--image-size", 16, *extra)
        assert code == 0, err
        assert f"imported '{src}'" in out
    code, out, err = cli("datasets", "import", tmp_path / "hamzip.zip", "--db", cli.db, "--image-size", 16,
                         "--uploads-dir", tmp_path / "up", "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "hamzip"
    listed = _listed(cli)
    assert {n: r["format"] for n, r in listed.items()} == {
        "isic": "isic2019", "ham": "ham10000", "tree": "folder", "gen": "generic", "hamzip": "ham10000"}
    assert listed["tree"]["counts"]["groups"]["skin"] == {"I": 4, "II": 4, "V": 3, "unknown": 1}
    assert set(listed["gen"]["counts"]["groups"]["age"]) == {"<40", ">40", "unknown"}
    assert listed["hamzip"]["counts"]["images"] == 10 and (tmp_path / "up" / "hamzip").is_dir()
    code, out, _ = cli("datasets", "list", "--db", cli.db)
    assert code == 0 and "hamzip" in out and "ham10000" in out


def test_inspect_prints_report_and_exit_code(cli, tmp_path):
    make_ham(tmp_path / "ham", n=14)
    code, out, _ = cli("datasets", "inspect", tmp_path / "ham")
    assert code == 0
    assert "Format:   ham10000" in out and "Groups of sex (class x group)" in out and "ready to import" in out
    truncated_jpeg(tmp_path / "ham" / "HAM10000_images_part_1" / "ISIC_0024307.jpg")
    code, out, _ = cli("datasets", "inspect", tmp_path / "ham", "--json")
    report = json.loads(out)
    assert code == 1 and report["bad_images"][0]["path"] == "HAM10000_images_part_1/ISIC_0024307.jpg"
    assert report["classes"]["akiec"] == 1  # counts are of usable images
    code, _, _ = cli("datasets", "inspect", tmp_path / "ham", "--allow-corrupt")
    assert code == 0


def _bad_inputs(tmp_path):
    """(name, source, extra flags, expected message part) for every bad input of issue 3."""
    cases = []

    def z(name, entries, link=False):
        path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for entry, data in entries:
                zf.writestr(entry, data)
            if link:
                info = zipfile.ZipInfo("images/link.jpg")
                info.external_attr = (0o120777) << 16
                zf.writestr(info, "/etc/passwd")
        return path

    cases.append(("abs", z("abs", [("/tmp/x.csv", "a")]), [], "absolute path"))
    cases.append(("dotdot", z("dotdot", [("a/../../x.csv", "a")]), [], "'..'"))
    cases.append(("link", z("link", [("meta.csv", "a")], link=True), [], "symbolic link"))
    cases.append(("bomb", z("bomb", [("zeros.bin", b"\0" * 3_000_000)]), ["--max-zip-bytes", "1000000"], "zip bomb"))
    cases.append(("empty", z("empty", []), [], "empty"))

    def gen(name, edit=None, header=None):
        root = make_generic(tmp_path / name, n=6)
        if edit:
            rows = [[f"img_{i:03d}.jpg", "cat_a", "male", "40", "p"] for i in range(6)]
            edit(rows)
            write_csv(root / "meta.csv", header or ["file", "diagnosis", "gender", "age", "patient"], rows)
        return root

    cases.append(("trunc", gen("trunc"), [], "truncated"))
    truncated_jpeg(tmp_path / "trunc" / "pics" / "img_002.jpg")
    cases.append(("notimg", gen("notimg"), [], "not an image"))
    (tmp_path / "notimg" / "pics" / "img_003.jpg").write_text("hello")
    cases.append(("pixels", gen("pixels"), ["--max-pixels", "100"], "over the pixel cap"))
    cases.append(("missingcol", gen("missingcol"), ["--label-col", "dx"], r"no column\(s\) \['dx'\]"))
    cases.append(("dupes", gen("dupes", lambda r: r.__setitem__(1, list(r[0]))), [], "more than once"))
    cases.append(("agetext", gen("agetext", lambda r: r[2].__setitem__(3, "forty")), [], "ages written as text"))
    cases.append(("sex", gen("sex", lambda r: r[2].__setitem__(2, "yes")), [], "other than male/female"))
    cases.append(("label", gen("label", lambda r: r[2].__setitem__(1, "cat_q")), ["--classes", "cat_a,cat_b"],
                  "not in the label set"))
    cases.append(("noimg", gen("noimg", lambda r: [row.__setitem__(0, "zz" + row[0]) for row in r]), [],
                  "match an image"))
    return cases


def test_every_bad_input_is_refused_with_a_message_and_nothing_stored(cli, tmp_path):
    for name, source, extra, needle in _bad_inputs(tmp_path):
        code, out, err = cli("datasets", "import", source, "--db", cli.db, "--image-size", 16,
                             "--uploads-dir", tmp_path / "up", *extra)
        assert code == 2, (name, out, err)
        assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err, (name, err)
        assert re.search(needle, err), (name, err)
    assert _listed(cli) == {}
    assert not (tmp_path / "up").exists() or list((tmp_path / "up").iterdir()) == []
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_allow_corrupt_imports_without_the_bad_image(cli, tmp_path):
    make_generic(tmp_path / "g", n=9)
    truncated_jpeg(tmp_path / "g" / "pics" / "img_005.jpg")
    code, _, err = cli("datasets", "import", tmp_path / "g", "--db", cli.db, "--image-size", 16)
    assert code == 2 and "pics/img_005.jpg" in err and "--allow-corrupt" in err
    code, out, err = cli("datasets", "import", tmp_path / "g", "--db", cli.db, "--image-size", 16, "--allow-corrupt")
    assert code == 0 and "1 left out: img_005.jpg" in out
    assert _listed(cli)["g"]["excluded"] == ["img_005.jpg"]


def test_user_mistakes_in_flags(cli, tmp_path):
    code, _, err = cli("datasets", "inspect", tmp_path / "nowhere")
    assert code == 2 and "does not exist" in err
    code, _, err = cli("datasets", "list", "--db", tmp_path / "none.db")
    assert code == 2 and "no database" in err
    make_generic(tmp_path / "g", n=6)
    code, _, err = cli("datasets", "inspect", tmp_path / "g", "--age-bins", "thirty")
    assert code == 2 and "--age-bins must be numbers" in err


def test_real_process_entry_point(tmp_path):
    make_ham(tmp_path / "ham", n=8)
    env = {**os.environ, "EQUINAS_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    db = tmp_path / "p.db"
    r = subprocess.run([sys.executable, "-m", "nas_core", "datasets", "import", str(tmp_path / "ham"), "--db", str(db),
                        "--image-size", "16", "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["images"] == 8
    r = subprocess.run([sys.executable, "-m", "nas_core", "datasets", "import", str(tmp_path / "ham"), "--db", str(db)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "already" in r.stderr


def test_inspect_a_zip_leaves_nothing_behind(cli, tmp_path):
    z = zip_folder(make_generic(tmp_path / "g", n=6), tmp_path / "g.zip")
    code, out, err = cli("datasets", "inspect", z, "--json", "--image-col", "file", "--label-col", "diagnosis")
    assert code == 0, err
    report = json.loads(out)
    assert report["format"] == "generic" and report["n_usable"] == 6 and report["root"].endswith("/dataset")
    assert not Path(report["root"]).exists()  # the scratch extraction is gone
