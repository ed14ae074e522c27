"""The contract every search space passes: :class:`SearchSpaceTestCase`, one test method per rule.

Rules for a :class:`~nas_core.linas.space.SearchSpace`: its genes are :class:`~nas_core.linas.space.Gene`
records and ``upper`` is their last values; ``random_genes`` gives integer rows inside the bounds;
``canonical`` is idempotent; ``is_valid`` is one boolean per row; ``sample`` gives distinct valid
configs and is reproducible from the generator's seed; a sampled config encodes to a canonical,
in-bounds row that decodes to a config with the same key; ``ids`` agree with ``key`` (equal exactly
when the keys are equal) and keys are strings; ``exact_objectives`` gives one finite array per name
in ``exact_names``; ``features`` gives one finite row per config.

A subclass implements :meth:`SearchSpaceTestCase.make_space`; the space is built once per class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nas_core.searchspace import Gene, SearchSpace


class SearchSpaceTestCase:
    """Subclass as ``TestMySpace(SearchSpaceTestCase)`` and implement :meth:`make_space`."""

    #: How many configs the rules sample (keep small when encoding builds a model).
    n_samples: int = 16
    seed: int = 0

    def make_space(self) -> SearchSpace:
        """The space under test (called once per class)."""
        raise NotImplementedError("implement make_space() to return a SearchSpace")

    @property
    def space(self) -> SearchSpace:
        """The class's space (built on first use)."""
        cls = type(self)
        sp = cls.__dict__.get("_space")
        if sp is None:
            sp = self.make_space()
            cls._space = sp
        return sp

    def samples(self) -> list[Any]:
        """``n_samples`` configs drawn with ``seed`` (drawn once per class)."""
        cls = type(self)
        got = cls.__dict__.get("_samples")
        if got is None:
            got = self.space.sample(np.random.default_rng(self.seed), self.n_samples)
            cls._samples = got
        return got

    # --- one method per rule ----------------------------------------------------------------
    def test_genes_are_genes_and_upper_is_their_last_value(self) -> None:
        sp = self.space
        assert isinstance(sp, SearchSpace)
        assert len(sp.genes) >= 1 and all(isinstance(g, Gene) for g in sp.genes)
        assert sp.n_var == len(sp.genes)
        assert list(sp.upper) == [g.n - 1 for g in sp.genes]

    def test_random_genes_are_integer_rows_inside_the_bounds(self) -> None:
        X = self.space.random_genes(np.random.default_rng(self.seed), 32)
        assert X.shape == (32, self.space.n_var) and np.issubdtype(X.dtype, np.integer)
        assert (X >= 0).all() and (X <= self.space.upper).all()

    def test_canonical_is_idempotent(self) -> None:
        X = self.space.random_genes(np.random.default_rng(self.seed + 1), 32)
        C = self.space.canonical(X)
        assert np.array_equal(self.space.canonical(C), C)

    def test_is_valid_is_one_boolean_per_row(self) -> None:
        X = self.space.random_genes(np.random.default_rng(self.seed + 2), 32)
        mask = np.asarray(self.space.is_valid(X))
        assert mask.shape == (32,) and mask.dtype == bool

    def test_sample_gives_distinct_valid_configs(self) -> None:
        configs = self.samples()
        assert 1 <= len(configs) <= self.n_samples
        keys = [self.space.key(c) for c in configs]
        assert len(set(keys)) == len(keys), "sample() repeated a config"
        X = np.array([self.space.encode(c) for c in configs])
        assert self.space.is_valid(X).all(), "sample() returned an invalid config"

    def test_sample_is_reproducible_from_the_seed(self) -> None:
        again = self.space.sample(np.random.default_rng(self.seed), self.n_samples)
        assert [self.space.key(c) for c in again] == [self.space.key(c) for c in self.samples()]

    def test_encode_gives_canonical_rows_inside_the_bounds(self) -> None:
        X = np.array([self.space.encode(c) for c in self.samples()])
        assert X.shape == (len(self.samples()), self.space.n_var)
        assert (X >= 0).all() and (X <= self.space.upper).all()
        assert np.array_equal(self.space.canonical(X), X), "encode() wrote a non-canonical row"

    def test_decode_of_encode_keeps_the_key(self) -> None:
        for c in self.samples():
            back = self.space.decode(self.space.encode(c))
            assert self.space.key(back) == self.space.key(c)

    def test_ids_agree_with_keys(self) -> None:
        configs = self.samples()
        X = np.array([self.space.encode(c) for c in configs])
        X = np.vstack([X, X[:1]])  # a repeated row must share its id
        ids = list(self.space.ids(X))
        keys = [self.space.key(c) for c in configs] + [self.space.key(configs[0])]
        assert all(isinstance(k, str) and k for k in keys)
        for i in range(len(keys)):
            for j in range(len(keys)):
                assert (ids[i] == ids[j]) == (keys[i] == keys[j]), f"ids and keys disagree on rows {i}, {j}"

    def test_exact_objectives_give_one_finite_array_per_name(self) -> None:
        configs = self.samples()
        got = self.space.exact_objectives(configs)
        assert set(got) == set(self.space.exact_names)
        for name, values in got.items():
            arr = np.asarray(values, dtype=float)
            assert arr.shape == (len(configs),) and np.isfinite(arr).all(), name

    def test_features_give_one_finite_row_per_config(self) -> None:
        X = np.array([self.space.encode(c) for c in self.samples()])
        F = np.asarray(self.space.features(X), dtype=float)
        assert F.ndim == 2 and F.shape[0] == len(X) and np.isfinite(F).all()
