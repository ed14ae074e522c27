"""Atomic file writes: a file is either the old one, the whole new one, or absent; never half written.

Owns :func:`atomic_file` (temp file in the same folder + fsync + rename; the temp file is removed
on any error) and :class:`DiskFull` (ENOSPC / EDQUOT turned into a message that says what to do).
Model weights and uploads go through it; the decode cache and super-network checkpoints do the
same with their own temp folders/files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from nas_core.errors import UserError


class DiskFull(UserError):
    """The disk (or quota) filled while writing; nothing half-written was left behind."""


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC / EDQUOT, also when wrapped by a library (torch wraps its writer's OSError)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], what: str = "file") -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing; on success it is synced and renamed to ``path``.

    Args:
        path: the final file.
        what: what is written, for the error message ("model weights", "upload" ...).

    Raises:
        DiskFull: the disk filled up (the temporary file is removed, ``path`` is untouched).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_disk_full(exc):
            raise DiskFull(f"the disk is full: the {what} could not be written to {path}; nothing half-written "
                           "was kept. Free some space and try again") from exc
        raise
