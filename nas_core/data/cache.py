"""The decode cache: every image of a data set decoded once into a uint8 tensor at one resolution.

Decoding JPEGs is the slow step of training on a CPU, so it happens once per data set and
resolution; every later epoch, run and worker reads one ``.npy`` array.

Decisions:

- **Key.** A SHA-256 over the cache version, the resolution, the crop rule, and for every row its
  id, relative path, file size and modification time (``st_mtime_ns``). Sizes and mtimes instead
  of image bytes because the key must be known *before* decoding: hashing 25,000 full-size JPEGs
  just to find the cache would cost as much as a good part of building it. Any edit of an image
  changes its mtime, so a stale cache is never used; a copy of the same data elsewhere builds its
  own cache. While building, each image's bytes are hashed anyway (they are read once to decode),
  giving :attr:`CacheInfo.content_hash`, which *does* identify the content and is what a store
  should use to recognise the same data set imported twice.
- **Geometry.** Centre-crop to a square (the shorter side), then resize to ``S x S`` (bilinear,
  with PIL's antialiasing support). JPEGs are opened in draft mode (``Image.draft('RGB', (S, S))``),
  which lets libjpeg decode at 1/2, 1/4 or 1/8 scale when the result still covers ``S``: the main
  speed-up for full-size dermoscopy images.
- **Streaming.** Workers of a process pool decode chunks of images and return small uint8 arrays;
  the parent writes them into a memory-mapped ``.npy``. No more than a few chunks are in flight,
  so full-resolution images never pile up in memory.
- **Atomicity.** Everything is written into a temporary folder next to the final one, synced, and
  renamed into place at the end (a folder rename is atomic on one file system), so an interrupted
  build leaves only a ``.tmp-*`` folder that no lookup ever matches; any error removes it.
- **Full disk.** The array's blocks are reserved (``posix_fallocate``) before decoding starts, so a
  full disk is a clear :class:`DataError` at once, never a SIGBUS inside the memory map.
- **Corrupt images** (truncated, not an image, over PIL's decompression-bomb limit) raise a
  :class:`DataError` naming them, unless ``skip_corrupt=True``: then they are left out and listed
  in :attr:`CacheInfo.skipped`, and :attr:`CacheInfo.rows` says which index rows the array holds.

Layout: ``<cache_dir>/<key[:32]>-<S>px/images.npy`` (N, 3, S, S) uint8 and ``meta.json``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from nas_core.data.index import DataError, DatasetIndex
from nas_core.data.pool import process_pool

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the decoding or the layout changes, so old caches are not reused
CACHE_ENV = "EQUINAS_CACHE_DIR"  # overrides the default cache folder
CHUNK = 64  # images per worker task: big enough to amortize the pickling, small enough to stream
IN_PROCESS_BELOW = 300  # fewer images than this are decoded in this process: a pool costs more
_FIRST = 5


@dataclass(frozen=True)
class CacheInfo:
    """Where a decoded data set lies and what it holds.

    Attributes:
        path: the cache folder (``images.npy`` and ``meta.json``).
        key: the index fingerprint (see the module docstring).
        image_size: side of the square images.
        rows: index rows held by the array, in order (all rows unless some were skipped).
        skipped: (image id, reason) of corrupt images left out with ``skip_corrupt=True``.
        content_hash: SHA-256 over the SHA-1 of every cached image file's bytes, in row order.
        built: True if this call decoded the images, False if it found them cached.
        seconds: time this call spent.
    """

    path: str
    key: str
    image_size: int
    rows: tuple[int, ...]
    skipped: tuple[tuple[str, str], ...]
    content_hash: str
    built: bool = False
    seconds: float = 0.0

    @property
    def n_images(self) -> int:
        """Number of images in the array."""
        return len(self.rows)

    @property
    def images_path(self) -> Path:
        """The ``.npy`` file holding the (N, 3, S, S) uint8 array."""
        return Path(self.path) / "images.npy"


def default_cache_dir() -> Path:
    """``$EQUINAS_CACHE_DIR`` if set, else ``data/cache`` under the current directory."""
    return Path(os.environ.get(CACHE_ENV) or "data/cache")


def _check_size(image_size: int) -> None:
    if not isinstance(image_size, int) or not 8 <= image_size <= 1024:
        raise DataError(f"image size must be a whole number of pixels from 8 to 1024, got {image_size!r}")


def index_fingerprint(index: DatasetIndex, image_size: int) -> str:
    """The cache key of ``index`` at ``image_size`` (ids, paths, file sizes and mtimes).

    Raises:
        DataError: image files are missing (named, with their count).
    """
    h = hashlib.sha256()
    h.update(f"equinas-cache v{CACHE_VERSION} size={image_size} crop=center resize=bilinear\n".encode())
    missing = []
    root = Path(index.root)
    for image_id, rel in zip(index.ids, index.paths):
        try:
            st = os.stat(root / rel)
        except OSError:
            missing.append(rel)
            continue
        h.update(f"{image_id}\t{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    if missing:
        raise DataError(f"{len(missing)} image files of the data set at {root} are missing: "
                        f"{', '.join(missing[:_FIRST])}{', ...' if len(missing) > _FIRST else ''}")
    return h.hexdigest()


def decode_image(data: bytes, image_size: int) -> np.ndarray:
    """Decode image bytes to a (3, S, S) uint8 array: draft mode, centre crop, bilinear resize.

    Raises:
        OSError, SyntaxError, ValueError, Image.DecompressionBombError: the bytes are not a
        readable image (callers turn these into a named report).
    """
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (image_size, image_size))
        img = img.convert("RGB")  # forces the full decode, so a truncated file raises here
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR,
                         box=(left, top, left + side, top + side))
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _decode_chunk(paths: Sequence[str], image_size: int) -> tuple[np.ndarray, list[str], list[tuple[int, str]]]:
    """Worker task: decode ``paths``; returns the array, per-image SHA-1s and (position, reason) errors."""
    out = np.zeros((len(paths), 3, image_size, image_size), dtype=np.uint8)
    hashes: list[str] = []
    errors: list[tuple[int, str]] = []
    for i, path in enumerate(paths):
        try:
            with open(path, "rb") as f:
                data = f.read()
            hashes.append(hashlib.sha1(data).hexdigest())
            out[i] = decode_image(data, image_size)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            if len(hashes) == i:
                hashes.append("")
            errors.append((i, f"{type(exc).__name__}: {exc}"))
    return out, hashes, errors


def _folder(cache_dir: Path, key: str, image_size: int) -> Path:
    return cache_dir / f"{key[:32]}-{image_size}px"


def _read_meta(folder: Path, key: str, image_size: int) -> CacheInfo | None:
    meta_path = folder / "meta.json"
    if not (meta_path.is_file() and (folder / "images.npy").is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != CACHE_VERSION or meta.get("key") != key or meta.get("image_size") != image_size:
        return None
    return CacheInfo(
        path=str(folder),
        key=key,
        image_size=image_size,
        rows=tuple(meta["rows"]),
        skipped=tuple((a, b) for a, b in meta["skipped"]),
        content_hash=meta["content_hash"],
    )


def _refuse_skipped(skipped: Sequence[tuple[str, str]]) -> None:
    listed = "; ".join(f"{i} ({why})" for i, why in skipped[:_FIRST])
    raise DataError(f"{len(skipped)} images cannot be decoded: {listed}{'; ...' if len(skipped) > _FIRST else ''}. "
                    "Replace or remove them, or allow leaving corrupt images out (skip_corrupt / --allow-corrupt)")


def find_cache(index: DatasetIndex, image_size: int, cache_dir: str | Path | None = None) -> CacheInfo | None:
    """The finished cache of ``index`` at ``image_size``, or None if it was never built."""
    _check_size(image_size)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = index_fingerprint(index, image_size)
    return _read_meta(_folder(cache_dir, key, image_size), key, image_size)


def build_cache(
    index: DatasetIndex,
    image_size: int,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    skip_corrupt: bool = False,
) -> CacheInfo:
    """Decode every image of ``index`` once at ``image_size``, or find the cache already built.

    Args:
        index: the data set.
        image_size: side of the square training images.
        cache_dir: folder of caches; default :func:`default_cache_dir`.
        progress: called with (images done, total) after each chunk.
        workers: decoding processes; None = every CPU (in-process below 300 images),
            0 or 1 = in this process.
        skip_corrupt: leave undecodable images out (listed in ``skipped``) instead of failing.

    Returns:
        Where the array lies and which rows it holds.

    Raises:
        DataError: images are missing, or corrupt without ``skip_corrupt`` (named), or all are corrupt.
    """
    start = time.perf_counter()
    _check_size(image_size)
    if len(index) == 0:
        raise DataError("the data set has no images to cache")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = index_fingerprint(index, image_size)
    folder = _folder(cache_dir, key, image_size)
    found = _read_meta(folder, key, image_size)
    if found is not None:
        if found.skipped and not skip_corrupt:
            _refuse_skipped(found.skipped)
        if progress:
            progress(len(index), len(index))
        return CacheInfo(**{**found.__dict__, "seconds": time.perf_counter() - start})

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=cache_dir))
    try:
        try:
            info = _build_into(index, image_size, tmp, key, progress, workers, skip_corrupt)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(cache_dir, len(index), image_size, exc) from exc
            raise
        try:
            os.rename(tmp, folder)
        except OSError:
            # Another process finished the same cache first: theirs is as good as ours.
            if _read_meta(folder, key, image_size) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    log.info("cached %d images at %d px in %.1fs: %s", info.n_images, image_size, seconds, folder)
    return CacheInfo(**{**info.__dict__, "path": str(folder), "built": True, "seconds": seconds})


def _reserve(path: Path) -> None:
    """Allocate every block of ``path`` now (ENOSPC instead of a later SIGBUS in the memory map)."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # file systems without fallocate: write zeros
            os.lseek(fd, 0, os.SEEK_SET)
            block = b"\0" * (1 << 20)
            left = size
            while left > 0:
                left -= os.write(fd, block[: min(left, len(block))])
        else:
            raise
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _disk_full(cache_dir: Path, n: int, image_size: int, exc: OSError) -> DataError:
    need = n * 3 * image_size * image_size / 1024**2
    return DataError(f"the disk is full: the image cache ({need:.0f} MB for {n} images at {image_size} px) does not "
                     f"fit in {cache_dir} ({exc.strerror}); nothing was kept. Free some space, or point "
                     "EQUINAS_CACHE_DIR at a disk with room, and try again")


def _build_into(index: DatasetIndex, image_size: int, tmp: Path, key: str,
                progress: Callable[[int, int], None] | None, workers: int | None,
                skip_corrupt: bool) -> CacheInfo:
    n = len(index)
    root = Path(index.root)
    paths = [str(root / p) for p in index.paths]
    if workers is None:
        workers = 1 if n < IN_PROCESS_BELOW else (os.cpu_count() or 1)
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                       shape=(n, 3, image_size, image_size))
    # A memory map over a sparse file dies with SIGBUS when the disk fills; reserving the blocks
    # first turns a full disk into an ordinary ENOSPC here, before any image is decoded.
    _reserve(tmp / "images.npy")
    hashes = [""] * n
    bad: dict[int, str] = {}
    done = 0

    def take(start: int, result: tuple[np.ndarray, list[str], list[tuple[int, str]]]) -> None:
        nonlocal done
        arr, chunk_hashes, errors = result
        images[start:start + len(arr)] = arr
        hashes[start:start + len(arr)] = chunk_hashes
        for pos, reason in errors:
            bad[start + pos] = reason
        done += len(arr)
        if progress:
            progress(done, n)

    starts = range(0, n, CHUNK)
    if workers <= 1:
        for s in starts:
            take(s, _decode_chunk(paths[s:s + CHUNK], image_size))
    else:
        with process_pool(workers) as pool:
            pending: dict[Future, int] = {}
            todo = iter(starts)
            for s in todo:
                pending[pool.submit(_decode_chunk, paths[s:s + CHUNK], image_size)] = s
                # A bounded window keeps memory flat however large the data set is.
                while len(pending) >= 2 * workers:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        take(pending.pop(fut), fut.result())
            for fut in list(pending):
                take(pending.pop(fut), fut.result())
    images.flush()

    skipped = tuple((index.ids[i], bad[i]) for i in sorted(bad))
    if skipped and not skip_corrupt:
        _refuse_skipped(skipped)
    if len(skipped) == n:
        raise DataError(f"none of the {n} images could be decoded, e.g. {skipped[0][0]}: {skipped[0][1]}")
    rows = tuple(i for i in range(n) if i not in bad)
    if skipped:
        kept = np.asarray(images[list(rows)])
        del images
        np.save(tmp / "images.npy", kept)
    else:
        del images
    content = hashlib.sha256("\n".join(hashes[i] for i in rows).encode()).hexdigest()
    meta = {"version": CACHE_VERSION, "key": key, "image_size": image_size, "rows": list(rows),
            "skipped": [list(s) for s in skipped], "content_hash": content, "n_index_rows": n,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    # meta.json last: a folder without it is never read as a cache, even before the rename.
    _fsync_path(tmp / "images.npy")
    _write_synced(tmp / "meta.json", json.dumps(meta).encode())
    return CacheInfo(path=str(tmp), key=key, image_size=image_size, rows=rows, skipped=skipped,
                     content_hash=content)


def load_cache(info: CacheInfo, mmap: bool = False) -> torch.Tensor:
    """The cached images as a torch uint8 tensor (N, 3, S, S), rows as in ``info.rows``.

    Args:
        info: a cache returned by :func:`build_cache` or :func:`find_cache`.
        mmap: map the file instead of reading it (read-only tensor; for very large sets).
    """
    import torch  # torch is heavy; keep this module importable in light processes

    try:
        arr = np.load(info.images_path, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as exc:
        raise DataError(f"the image cache {info.images_path} cannot be read ({exc}); delete the folder "
                        f"{info.path} and prepare the data set again") from exc
    expected = (info.n_images, 3, info.image_size, info.image_size)
    if arr.shape != expected or arr.dtype != np.uint8:
        raise DataError(f"the image cache {info.images_path} holds {arr.shape} {arr.dtype}, expected "
                        f"{expected} uint8; delete {info.path} and prepare the data set again")
    if mmap:
        # A read-only map is the point here; torch's warning about non-writable arrays is noise.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(arr)
    return torch.from_numpy(arr)
