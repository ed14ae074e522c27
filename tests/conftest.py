"""Shared test setup: quiet, single-threaded torch so tests stay fast and repeatable on 2 cores."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard requirement
    pass


# --- Tiny default data set (owned by the data pipeline; other tests use these names) ---------------
import pytest  # noqa: E402

TINY_N = 240  # images: every class present, seconds to generate and decode
TINY_SIZE = 32  # pixels, both for the files (height) and the prepared tensors


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Path of a synthetic ISIC 2019-layout folder: 240 images, 32 px, seed 0."""
    from nas_core.data.synthetic import make_default

    return make_default(tmp_path_factory.mktemp("tiny_isic") / "data", n_images=TINY_N, image_size=TINY_SIZE,
                        seed=0, workers=1)


@pytest.fixture(scope="session")
def tiny_prepared(tiny_dataset, tmp_path_factory):
    """:class:`~nas_core.data.prepare.PreparedData` of ``tiny_dataset`` at 32 px, seed 0 (cache in a tmp dir)."""
    from nas_core.data.prepare import prepare

    return prepare(tiny_dataset, image_size=TINY_SIZE, seed=0, cache_dir=tmp_path_factory.mktemp("tiny_cache"),
                   workers=1)
