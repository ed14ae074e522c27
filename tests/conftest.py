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

# Files that take longest on one worker (seconds of wall time with `make test`'s 3 workers), run first: with
# `--dist loadfile` each file stays on one worker, and xdist's default order (the files with the most tests
# first) left a 50 s browser test for the end, while the other workers sat idle (168 s vs 145 s per worker).
# The durations below are 2026-12-07's (a `make test` run, --durations=0 summed per file); ordering by them
# instead of the earlier figures measured no faster (274 s vs 272 s, back to back): the suite is CPU-bound.
SLOW_FILES = (
    "tests/e2e/test_browser.py",  # 132 s
    "tests/e2e/test_supernet_app.py",  # 71 s
    "tests/e2e/test_own_dataset.py",  # 61 s
    "tests/test_ray_executor.py",  # 60 s
    "tests/e2e/test_live_clicks.py",  # 42 s
    "tests/test_worker.py",  # 34 s
    "tests/test_llm_designer.py",  # 21 s
    "tests/supernet/test_supernet_train.py",  # 19 s
    "tests/reliability/test_locks.py",  # 14 s
    "tests/ui/test_pages.py",  # 11 s
    "tests/supernet/test_supernet_calibrate.py",  # 11 s
    "tests/e2e/test_data_upload.py",  # 10 s
    "tests/e2e/test_jobs_view.py",  # 10 s
)


def pytest_collection_modifyitems(config, items):
    """The slow files first, longest first (see ``SLOW_FILES``); every other test keeps its order."""
    rank = {name: i for i, name in enumerate(SLOW_FILES)}

    def key(item):
        path = item.nodeid.split("::")[0]
        return rank.get(path, len(rank))

    items.sort(key=key)  # stable: tests inside a file keep their order


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
