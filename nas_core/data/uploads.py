"""Where the app may read data from: uploaded zips kept beside the database, and allowed server folders.

Owns the life of an uploaded zip (:func:`save_upload`, :func:`discard_upload`,
:func:`holding_upload`) and the allow-list of server folders the Data page's
"folder on this server" field may read (:func:`allowed_roots`, :func:`check_server_folder`).

Decisions:

- **Uploads** are written to ``<uploads>/incoming/`` (``<uploads>`` as in
  :func:`nas_core.data.importer.uploads_dir`: ``$EQUINAS_UPLOADS_DIR`` or ``uploads/`` beside
  the database, never relative to the working folder), by temp file + fsync + rename, and
  deleted again as soon as the inspection or import that needed them has finished or
  refused them. The extracted data of an import stays in ``<uploads>/<name>`` (that is the
  data set). An upload or half-extracted folder left behind by a killed app is removed by the
  next upload once it is an hour old.
- **Server folders.** The allowed roots are the data directory (the database's folder),
  the default data set's folder, the uploads folder, and every folder named in
  ``$EQUINAS_DATA_ROOTS`` (``os.pathsep``-separated; ``serve --data-root`` sets it). A path is
  resolved with :func:`os.path.realpath` before every check, so ``..`` and symbolic links
  cannot lead out of a root; a folder whose tree holds a link that resolves outside every
  root is refused too (the readers would follow it). There is no login: this list is what
  keeps the rest of the file system out of the browser.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nas_core.data.importer import safe_name, uploads_dir
from nas_core.data.index import DataError

if TYPE_CHECKING:
    from nas_core.store import Store

log = logging.getLogger(__name__)

ROOTS_ENV = "EQUINAS_DATA_ROOTS"
STALE_UPLOAD_S = 3600.0  # an incoming upload older than this was left by a killed app
_MAX_WALK = 500_000  # entries looked at for escaping links (ISIC 2019 has ~25,000)


class FolderNotAllowed(DataError):
    """A server folder outside the allowed data roots (or reaching out of them through a link)."""


def incoming_dir(store: Store | None = None) -> Path:
    """``<uploads>/incoming``: where uploaded zips wait while they are inspected or imported."""
    return uploads_dir(store).expanduser().resolve() / "incoming"


def _remove_stale(folder: Path, now: float) -> None:
    """Remove uploads and half-extracted folders (``.<name>.partial-*``) that a killed process left."""
    for p in list(folder.iterdir()) + list(folder.parent.glob(".*.partial-*")):
        try:
            if now - p.stat().st_mtime <= STALE_UPLOAD_S:
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
            log.info("removed what an earlier, killed app process left behind: %s", p)
        except OSError:  # another process removed it first
            continue


def save_upload(store: Store, name: str, data: bytes, key: str = "") -> Path:
    """Write an uploaded zip to ``incoming/`` atomically and return its path.

    Args:
        store: the app's store (the uploads folder lies beside its database).
        name: the file name the browser sent (only its stem is kept, made folder-safe).
        data: the bytes.
        key: something unique to this upload in this browser session (Streamlit's file id), so two
            sessions uploading the same name never share a file.

    Raises:
        DataError: the folder cannot be written (disk full, permissions); nothing is left.
    """
    folder = incoming_dir(store)
    tag = hashlib.sha256(f"{key}\0{len(data)}".encode() + data[:65536]).hexdigest()[:12]
    path = folder / f"{safe_name(Path(name).stem)}-{tag}.zip"
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale(folder, time.time())
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise DataError(f"the upload could not be saved in {folder} ({exc.strerror or exc}); free disk space "
                        "or fix the folder's permissions, then upload again") from exc
    return path


def discard_upload(path: str | os.PathLike | None) -> None:
    """Delete an uploaded zip (refused or finished with); missing files are fine."""
    if path is None:
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_orphan_extraction(store: Store, name: str) -> bool:
    """Remove ``<uploads>/<name>`` when a killed import left it extracted but never registered.

    Only folders untouched for :data:`STALE_UPLOAD_S` are removed, so an import of the same name that
    is still running in another browser session is never pulled from under it. Returns whether it removed one.
    """
    dest = uploads_dir(store).expanduser().resolve() / safe_name(name)
    if not dest.is_dir() or time.time() - dest.stat().st_mtime <= STALE_UPLOAD_S:
        return False
    used = {str(Path(d.config.get("root", "")).resolve()) for d in store.list_datasets() if d.config.get("root")}
    if any(u == str(dest) or u.startswith(str(dest) + os.sep) for u in used):
        return False
    shutil.rmtree(dest, ignore_errors=True)
    log.info("removed %s: extracted by an import that never finished", dest)
    return True


@contextlib.contextmanager
def holding_upload(store: Store, name: str, data: bytes, key: str = "") -> Iterator[Path]:
    """The upload on disk for the duration of the ``with`` block, deleted afterwards whatever happens."""
    path = save_upload(store, name, data, key)
    try:
        yield path
    finally:
        discard_upload(path)


# ---------------------------------------------------------------------------- server folders


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def allowed_roots(db_path: str | os.PathLike, extra: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """The folders the app may read data from, each resolved with realpath.

    Args:
        db_path: the app's database (its folder is the data directory).
        extra: more folders (tests; the setting and ``--data-root`` arrive through ``$EQUINAS_DATA_ROOTS``).
    """
    roots: list[str | os.PathLike] = [Path(db_path).expanduser().resolve().parent]
    default = os.environ.get("EQUINAS_DEFAULT_DATASET")
    if default:
        roots.append(default)
    env_uploads = os.environ.get("EQUINAS_UPLOADS_DIR")
    if env_uploads:
        roots.append(uploads_dir())
    roots += [p for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    roots += list(extra)
    out: list[Path] = []
    for r in roots:
        real = _real(r)
        if real not in out:
            out.append(real)
    return out


def _inside(real: Path, roots: Sequence[Path]) -> bool:
    return any(real == r or real.is_relative_to(r) for r in roots)


def _how_to_allow(real: Path) -> str:
    return (f"to allow it, restart the app with `python -m nas_core serve --data-root {real}` or add the folder to "
            f"{ROOTS_ENV} (folders separated by '{os.pathsep}')")


def check_server_folder(path: str | os.PathLike, roots: Sequence[Path]) -> Path:
    """The real path of ``path`` when it may be read, else a refusal that says how to allow it.

    Args:
        path: what the user typed.
        roots: :func:`allowed_roots`.

    Raises:
        FolderNotAllowed: outside every root (after resolving links and ``..``), or a link in its
            tree leads outside.
        DataError: it does not exist or is not a folder.
    """
    text = str(path).strip()
    if not text:
        raise DataError("type the path of a data folder on this server")
    real = _real(text)
    shown = ", ".join(str(r) for r in roots)
    if not _inside(real, roots):
        via = f" (it resolves to {real})" if str(real) != text else ""
        raise FolderNotAllowed(f"{text}{via} is outside the data folders this app may read ({shown}); "
                               + _how_to_allow(real))
    if not real.exists():
        raise DataError(f"{text} does not exist on this server; check the path")
    if not real.is_dir():
        raise DataError(f"{text} is not a folder; give the folder that holds the images and the CSV")
    seen = 0
    for dirpath, dirnames, filenames in os.walk(real):
        for name in dirnames + filenames:
            seen += 1
            if seen > _MAX_WALK:
                return real
            p = os.path.join(dirpath, name)
            if os.path.islink(p) and not _inside(_real(p), roots):
                raise FolderNotAllowed(f"{p} inside {text} is a link to {_real(p)}, outside the data folders this "
                                       f"app may read ({shown}); remove the link or copy the file in, or "
                                       + _how_to_allow(_real(p)))
    return real
