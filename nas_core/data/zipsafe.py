"""Safe extraction of an uploaded zip: all or nothing, nothing outside the destination.

Owns the rules an uploaded archive must pass before any byte of it is written
where the app will read it (DESIGN.md, Safety):

- no entry with an absolute path, a drive letter or a ``..`` component;
- no symbolic links (Unix mode bits in ``external_attr``) and no encrypted entries;
- at most ``max_files`` entries and at most ``max_total_bytes`` of *declared*
  uncompressed size (a zip bomb is refused before anything is inflated); while
  inflating, the bytes really written are counted too (a running count, checked
  before every 1 MiB chunk is written), so a header that lies about its size is
  caught as well;
- the cap is a setting: ``$EQUINAS_MAX_UPLOAD_BYTES`` (default 4 GiB), used
  whenever a caller passes ``None`` or :data:`DEFAULT_MAX_TOTAL_BYTES`;
- while inflating, the archive may not grow past ``$EQUINAS_MAX_ZIP_RATIO``
  (default 100) times its size on disk once more than 64 MiB are written: image
  data sets barely compress (JPEG/PNG are compressed already), a bomb inflates
  a thousandfold, so a 2 GiB entry of zeros is stopped after ~0.2 GiB, mid-stream,
  and its partial folder removed;
- an empty archive is refused.

Everything is extracted into a temporary sibling folder of ``dest`` that is
renamed to ``dest`` only when every entry was written, so a failure leaves no
half-extracted folder that a later import could pick up. Mac resource-fork
folders (``__MACOSX/``) and ``.DS_Store`` files are skipped: they are not data.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from nas_core.data.index import DataError

log = logging.getLogger(__name__)

class UnsafeZip(DataError):
    """An uploaded archive breaks a safety rule; the message names the entry and the rule."""


DEFAULT_MAX_FILES = 200_000  # ISIC 2019 has ~25,000 images + CSVs; room for bigger sets
DEFAULT_MAX_TOTAL_BYTES = 4 * 1024**3  # 4 GiB uncompressed (an upload; bigger sets: a folder on the server)
DEFAULT_MAX_RATIO = 100.0  # inflated bytes per byte of archive before it counts as a bomb
MAX_BYTES_ENV = "EQUINAS_MAX_UPLOAD_BYTES"
MAX_RATIO_ENV = "EQUINAS_MAX_ZIP_RATIO"
_RATIO_FLOOR = 64 * 1024**2  # below this many bytes written, the ratio is not judged (small CSV zips)
_CHUNK = 1 << 20  # copy 1 MiB at a time: never a whole member in memory


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise UnsafeZip(f"{name}={raw!r} is not a number; set it to a size in bytes, e.g. 4294967296") from exc
    if value <= 0:
        raise UnsafeZip(f"{name}={raw!r} must be positive")
    return value


def max_upload_bytes(value: int | None = None) -> int:
    """The uncompressed-size cap: ``value``, or the setting when ``value`` is None or the default."""
    if value is None or value == DEFAULT_MAX_TOTAL_BYTES:
        return int(_env_number(MAX_BYTES_ENV, DEFAULT_MAX_TOTAL_BYTES))
    return int(value)


def max_ratio() -> float:
    """Most inflated bytes per archive byte (``$EQUINAS_MAX_ZIP_RATIO``, default 100)."""
    return _env_number(MAX_RATIO_ENV, DEFAULT_MAX_RATIO)


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and (parts[0] == "__MACOSX" or parts[-1] == ".DS_Store")


def _check_name(name: str) -> PurePosixPath:
    """The entry's relative path, or UnsafeZip when it could escape the destination."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise UnsafeZip(f"zip entry {name!r} has an absolute path; re-create the zip with relative paths")
    path = PurePosixPath(norm)
    if ".." in path.parts:
        raise UnsafeZip(f"zip entry {name!r} contains '..' (would write outside the upload folder); "
                        "re-create the zip without parent-folder references")
    if "\x00" in norm:
        raise UnsafeZip(f"zip entry {name!r} has a NUL byte in its name")
    return path


def _is_link(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode)


def check(zip_path: str | os.PathLike, max_files: int = DEFAULT_MAX_FILES,
          max_total_bytes: int | None = None) -> list[zipfile.ZipInfo]:
    """Check an archive against every rule without extracting it.

    Args:
        zip_path: the archive.
        max_files: most entries allowed (directories count).
        max_total_bytes: most declared uncompressed bytes allowed (None = the setting, see
            :func:`max_upload_bytes`).

    Returns:
        The file entries that would be extracted (skipped and directory entries left out).

    Raises:
        UnsafeZip: naming the first entry that breaks a rule, or the cap that was passed.
    """
    zip_path = Path(zip_path)
    max_total_bytes = max_upload_bytes(max_total_bytes)
    if not zip_path.is_file():
        raise UnsafeZip(f"zip file {str(zip_path)!r} does not exist")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise UnsafeZip(f"{zip_path.name} is not a readable zip archive ({exc}); upload a .zip file") from exc
    if len(infos) > max_files:
        raise UnsafeZip(f"{zip_path.name} has {len(infos)} entries, more than the cap of {max_files}; "
                        "split the data set or raise the cap")
    total = 0
    files: list[zipfile.ZipInfo] = []
    for info in infos:
        _check_name(info.filename)
        if _is_link(info):
            raise UnsafeZip(f"zip entry {info.filename!r} is a symbolic link; links are not allowed in uploads")
        if info.flag_bits & 0x1:
            raise UnsafeZip(f"zip entry {info.filename!r} is encrypted; upload an unencrypted zip")
        total += info.file_size
        if total > max_total_bytes:
            raise UnsafeZip(f"{zip_path.name} declares more than {_size(max_total_bytes)} uncompressed "
                            f"(zip bomb guard, setting {MAX_BYTES_ENV}); upload a smaller archive or use a "
                            "folder on the server")
        if info.is_dir() or _skipped(info.filename):
            continue
        files.append(info)
    if not files:
        raise UnsafeZip(f"{zip_path.name} is empty (no files in it); upload a zip holding the images and CSV")
    return files


def _size(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


def extract(zip_path: str | os.PathLike, dest: str | os.PathLike, max_files: int = DEFAULT_MAX_FILES,
            max_total_bytes: int | None = None) -> Path:
    """Extract ``zip_path`` into the new folder ``dest``, all or nothing.

    Args:
        zip_path: the uploaded archive.
        dest: folder to create; it must not exist yet (an earlier upload is never overwritten).
        max_files: most entries allowed.
        max_total_bytes: most uncompressed bytes allowed, declared and actually written
            (None = the setting, see :func:`max_upload_bytes`).

    Returns:
        ``dest`` as a Path.

    Raises:
        UnsafeZip: the archive breaks a rule; nothing is left on disk.
    """
    dest = Path(dest)
    if dest.exists():
        raise UnsafeZip(f"{dest} already exists; choose another name or remove the old upload first")
    max_total_bytes = max_upload_bytes(max_total_bytes)
    files = check(zip_path, max_files, max_total_bytes)
    archive_bytes = max(Path(zip_path).stat().st_size, 1)
    ratio_cap = max(max_ratio() * archive_bytes, _RATIO_FLOOR)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    written = 0
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in files:
                rel = _check_name(info.filename)
                target = tmp.joinpath(*rel.parts)
                # Belt and braces: the resolved target must stay inside tmp.
                if not target.resolve().is_relative_to(tmp.resolve()):
                    raise UnsafeZip(f"zip entry {info.filename!r} would be written outside the upload folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > max_total_bytes:
                            raise UnsafeZip(f"{Path(zip_path).name} inflates to more than "
                                            f"{_size(max_total_bytes)} (zip bomb guard, setting {MAX_BYTES_ENV}); "
                                            "nothing was kept")
                        if written > ratio_cap:
                            raise UnsafeZip(f"zip entry {info.filename!r} inflates {Path(zip_path).name} to more "
                                            f"than {ratio_cap / archive_bytes:.0f} times its size (zip bomb guard, "
                                            f"setting {MAX_RATIO_ENV}); nothing was kept")
                        out.write(chunk)
        os.rename(tmp, dest)
    except UnsafeZip:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except FileExistsError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UnsafeZip(f"{Path(zip_path).name} holds the same file twice ({exc.filename}); "
                        "re-create the zip") from exc
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise UnsafeZip(f"the disk is full: {Path(zip_path).name} could not be extracted into {dest.parent}; "
                            "free some space and upload it again (nothing was kept)") from exc
        raise UnsafeZip(f"{Path(zip_path).name} could not be extracted ({exc}); the upload may be "
                        "damaged, upload it again") from exc
    except (zipfile.BadZipFile, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UnsafeZip(f"{Path(zip_path).name} could not be extracted ({exc}); the upload may be "
                        "damaged, upload it again") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("extracted %d files (%d bytes) from %s into %s", len(files), written, zip_path, dest)
    return dest


def data_root(folder: str | os.PathLike) -> Path:
    """The folder holding the data: ``folder``, or its only sub-folder when a zip wrapped everything in one."""
    folder = Path(folder)
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return data_root(entries[0])
    return folder
