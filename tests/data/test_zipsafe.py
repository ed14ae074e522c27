"""zipsafe: every unsafe archive is refused with a message naming the rule, and nothing is left on disk."""

import stat
import zipfile

import pytest

from nas_core.data import zipsafe
from nas_core.data.zipsafe import UnsafeZip


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_extracts_good_zip_all_files(tmp_path):
    z = _zip(tmp_path / "ok.zip", [("set/a.txt", b"A"), ("set/sub/b.txt", b"BB"), ("__MACOSX/._a", b"x")])
    dest = zipsafe.extract(z, tmp_path / "up" / "ok")
    assert (dest / "set" / "a.txt").read_bytes() == b"A"
    assert (dest / "set" / "sub" / "b.txt").read_bytes() == b"BB"
    assert not (dest / "__MACOSX").exists()
    assert _leftovers(tmp_path / "up") == ["ok"]
    assert zipsafe.data_root(dest) == dest / "set"


@pytest.mark.parametrize("name,needle", [
    ("/etc/evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
    ("a/../../evil.txt", "'..'"),
    ("..\\evil.txt", "'..'"),
])
def test_refuses_escaping_names(tmp_path, name, needle):
    z = _zip(tmp_path / "bad.zip", [("good.txt", b"ok"), (name, b"x")])
    (tmp_path / "up").mkdir()
    with pytest.raises(UnsafeZip, match=needle):
        zipsafe.extract(z, tmp_path / "up" / "bad")
    assert _leftovers(tmp_path / "up") == []


def test_refuses_symlink_entry(tmp_path):
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.txt", b"ok")
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    (tmp_path / "up").mkdir()
    with pytest.raises(UnsafeZip, match="symbolic link"):
        zipsafe.extract(z, tmp_path / "up" / "link")
    assert _leftovers(tmp_path / "up") == []


def test_refuses_zip_bomb_by_declared_size(tmp_path):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * 2_000_000)  # compresses to ~2 KB
    assert z.stat().st_size < 50_000
    (tmp_path / "up").mkdir()
    with pytest.raises(UnsafeZip, match="zip bomb"):
        zipsafe.extract(z, tmp_path / "up" / "bomb", max_total_bytes=1_000_000)
    assert _leftovers(tmp_path / "up") == []


def test_refuses_header_that_lies_about_size(tmp_path):
    # A stored entry whose central directory claims 10 bytes but holds 5000: zipfile stops at the
    # declared size and the CRC check fails, so the lie cannot write more than declared.
    z = tmp_path / "liar.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.bin", b"y" * 5000)
    raw = bytearray(z.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = (10).to_bytes(4, "little")  # uncompressed size in the central directory
    z.write_bytes(bytes(raw))
    (tmp_path / "up").mkdir()
    with pytest.raises(UnsafeZip):
        zipsafe.extract(z, tmp_path / "up" / "liar")
    assert _leftovers(tmp_path / "up") == []


def test_refuses_too_many_entries(tmp_path):
    z = _zip(tmp_path / "many.zip", [(f"f{i}.txt", b"x") for i in range(12)])
    with pytest.raises(UnsafeZip, match="12 entries"):
        zipsafe.extract(z, tmp_path / "up" / "many", max_files=10)
    assert not (tmp_path / "up" / "many").exists()


def test_refuses_empty_zip(tmp_path):
    z = _zip(tmp_path / "empty.zip", [])
    with pytest.raises(UnsafeZip, match="empty"):
        zipsafe.extract(z, tmp_path / "up" / "empty")
    z2 = _zip(tmp_path / "dirs.zip", [("only/", b""), ("__MACOSX/x", b"1")])
    with pytest.raises(UnsafeZip, match="empty"):
        zipsafe.extract(z2, tmp_path / "up" / "dirs")


def test_refuses_non_zip_and_existing_dest(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not a zip")
    with pytest.raises(UnsafeZip, match="not a readable zip"):
        zipsafe.extract(junk, tmp_path / "up" / "junk")
    z = _zip(tmp_path / "ok.zip", [("a.txt", b"A")])
    (tmp_path / "up" / "taken").mkdir(parents=True)
    with pytest.raises(UnsafeZip, match="already exists"):
        zipsafe.extract(z, tmp_path / "up" / "taken")
