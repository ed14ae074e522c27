"""The MobileNetV3-style benchmark space: encoding, inactive genes, surrogate, latency table, loading."""

import json

import numpy as np
import pytest

from nas_core.cli import main
from nas_core.linas import SearchSpace
from nas_core.linas.bench import compare, load_problem
from nas_core.linas.mbv3_space import DEPTHS, RESOLUTIONS, MbV3Config, MobileNetV3Space
from nas_core.linas.space import SearchError


@pytest.fixture(scope="module")
def space():
    return MobileNetV3Space(0)


def _row(space, res=3, depth=1, k=1, e=1):
    x = np.zeros(space.n_var, dtype=np.int64)
    x[0] = res
    x[1:6] = depth
    x[space._kcol] = k
    x[space._ecol] = e
    return space.canonical(x[None, :])[0]


def test_46_genes_and_more_than_1e15_networks(space):
    assert isinstance(space, SearchSpace) and space.n_var == 46
    per_stage = sum(9**d for d in DEPTHS)
    assert len(RESOLUTIONS) * per_stage**5 > 1e15


def test_encode_decode_round_trip_and_readable_key(space):
    rng = np.random.default_rng(0)
    X = space.random_genes(rng, 200)
    for x in X:
        c = space.decode(x)
        assert isinstance(c, MbV3Config)
        assert np.array_equal(space.encode(c), x)
        assert c.depths == tuple(DEPTHS[v] for v in x[1:6])
    c = space.decode(X[0])
    assert space.key(c).startswith(f"r{c.resolution}|k")
    with pytest.raises(SearchError, match="resolution in"):
        space.encode(MbV3Config(100, c.kernels, c.expands))


def test_inactive_layers_are_zeroed_flagged_and_share_ids(space):
    x = _row(space, depth=0, k=2, e=2)  # every stage 2 deep: layers 2 and 3 of each stage inactive
    act = space.active(x[None, :])[0]
    assert act[:6].all()
    inactive = [c for c in np.r_[space._kcol, space._ecol] if not act[c]]
    assert len(inactive) == 5 * 2 * 2
    assert (x[inactive] == 0).all()
    y = x.copy()
    y[inactive] = 2  # changing only inactive genes: same network
    assert space.key(space.decode(y)) == space.key(space.decode(x))
    assert space.ids(np.array([x, y]))[0] == space.ids(np.array([x, y]))[1]
    assert np.array_equal(space.canonical(y[None, :])[0], x)
    z = x.copy()
    z[space._kcol[0]] = 0  # an active gene: a different network
    assert space.ids(np.array([x, z]))[0] != space.ids(np.array([x, z]))[1]
    # ids are vectorized and distinct exactly when keys are
    X = space.random_genes(np.random.default_rng(1), 300)
    keys = [space.key(space.decode(r)) for r in X]
    assert len(set(space.ids(X).tolist())) == len(set(keys))


def test_surrogate_is_deterministic_per_seed_and_differs_between_seeds(space):
    X = space.random_genes(np.random.default_rng(2), 100)
    a = space.values(X)
    b = MobileNetV3Space(0).values(X)
    c = MobileNetV3Space(1).values(X)
    assert np.array_equal(a["accuracy"], b["accuracy"]) and np.array_equal(a["latency"], b["latency"])
    assert not np.allclose(a["accuracy"], c["accuracy"])
    configs = [space.decode(x) for x in X[:5]]
    assert space.evaluate(configs) == MobileNetV3Space(0).evaluate(configs)
    assert 0.5 < a["accuracy"].min() and a["accuracy"].max() < 0.85
    assert (a["latency"] > 0).all()


def test_accuracy_is_not_additive_in_depth_width_and_resolution(space):
    def acc(**kw):
        return space.values(_row(space, **kw)[None, :])["accuracy"][0]

    # the gain of wider layers depends on the depth and on the resolution
    gain_shallow = acc(depth=0, e=2) - acc(depth=0, e=0)
    gain_deep = acc(depth=2, e=2) - acc(depth=2, e=0)
    assert abs(gain_shallow - gain_deep) > 1e-3
    gain_low = acc(res=0, e=2) - acc(res=0, e=0)
    gain_high = acc(res=6, e=2) - acc(res=6, e=0)
    assert abs(gain_low - gain_high) > 1e-3
    assert acc(depth=2, e=2, k=2, res=6) > acc(depth=0, e=0, k=0, res=0)


def test_latency_is_a_per_layer_table_of_the_input_size(space):
    def lat(**kw):
        return space.values(_row(space, **kw)[None, :])["latency"][0]

    assert lat(res=6) > lat(res=3) > lat(res=0)  # every layer's input grows with the resolution
    assert lat(depth=2) > lat(depth=0)  # more active layers cost more
    assert lat(e=2) > lat(e=0) and lat(k=2) > lat(k=0)
    x = _row(space, depth=0)
    y = x.copy()
    y[space._kcol[3]] = 2  # an inactive layer costs nothing
    assert np.ptp(space.values(np.array([x, y]))["latency"]) == 0
    # the table entry of a layer depends on the resolution (its input size), not only its genes
    assert space._lut[5, 6, 1, 1] > space._lut[5, 0, 1, 1]


def test_reference_front_is_cached_on_disk(space, tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CORE_CACHE", str(tmp_path))
    from nas_core.linas import mbv3_space

    path = tmp_path / "linas" / f"mbv3_v{mbv3_space._CACHE_VERSION}_seed0_{space.fingerprint()}_accuracy_latency.npy"
    path.parent.mkdir(parents=True)
    fake = np.array([[-0.8, 10.0], [-0.7, 5.0]])
    np.save(path, fake)
    assert np.array_equal(space.reference_front(), fake)
    with pytest.raises(SearchError, match="unknown objective"):
        space.reference_front(("accuracy", "params"))


def test_spaces_load_by_registered_name_or_module_path():
    p = load_problem("mbv3:3")
    assert isinstance(p.space, MobileNetV3Space) and p.space.seed == 3 and p.metrics["latency"] == "min"
    g = load_problem("tests.linas.synthetic:GridProblem:2")
    assert g.space.scale == 2.0 and g.reference is None
    for bad, msg in [
        ("mbv3:x", "integer surrogate seed"),
        ("nosuch", "unknown space"),
        ("tests.linas.nosuch:Space", "cannot import"),
        ("tests.linas.synthetic:Nope", "has no attribute"),
        ("tests.linas.synthetic:GridSource", "must be a SearchSpace"),
    ]:
        with pytest.raises(SearchError, match=msg):
            load_problem(bad)


def test_compare_runs_a_plugin_space_against_the_union_of_its_runs():
    r = compare(
        "tests.linas.synthetic:GridProblem",
        engines=("random", "nsga2"),
        budget=60,
        seeds=2,
        population=20,
        objectives=("error", "latency"),
        targets=(0.9, 0.99),
        checkpoints=(20, 60),
    )
    assert r.reference == "union of every run"
    for s in r.stats:
        assert all(0 < v <= 1.0 + 1e-9 for v in s.final_hv)
        assert len(s.hv_at) == 2 and all(v is not None for v in s.hv_at[1])
        assert s.hv_at[0][0] <= s.hv_at[1][0]
    assert "HV @20:" in r.to_text()


def test_bench_search_cli_takes_a_module_path_space(capsys):
    argv = ["bench-search", "--space", "tests.linas.synthetic:GridProblem", "--engines", "linas,random",
            "--objectives", "error,latency", "--budget", "40", "--seeds", "1", "--population", "20",
            "--inner-evaluations", "400", "--targets", "0.9,0.95", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["engines"]) == {"linas", "random"}
    assert out["engines"]["linas"]["iteration_cpu"]["n"] == 1
    assert main(["bench-search", "--space", "bogus:1", "--seeds", "1"]) == 2
    assert "unknown space" in capsys.readouterr().err
