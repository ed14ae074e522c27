"""NAS-Bench-Graph as a space and source: canonical keys, invalid rows, true front, bench-search CLI."""

import json

import numpy as np
import pytest

pytest.importorskip("nas_bench_graph")

from nas_core.cli import main  # noqa: E402
from nas_core.linas.tabular import GraphArch, TabularBenchmark  # noqa: E402


@pytest.fixture(scope="module")
def cora():
    return TabularBenchmark("cora")


def test_every_gene_row_maps_to_the_table_except_nine(cora):
    X = np.array(np.meshgrid(*[np.arange(g.n) for g in cora.genes])).reshape(5, -1).T
    valid = cora.is_valid(X)
    assert len(X) - valid.sum() == 9
    assert len(set(cora.ids(X[valid]).tolist())) == cora.size == 26206


def test_isomorphic_architectures_share_a_key(cora):
    # two parallel branches from the input: swapping them is the same network
    a = GraphArch(link=(0, 0, 1, 2), ops=("gcn", "gat", "sage", "gin"))
    b = GraphArch(link=(0, 0, 1, 2), ops=("gat", "gcn", "gin", "sage"))
    assert cora.key(a) == cora.key(b)
    assert cora.evaluate([a]) == cora.evaluate([b])
    assert cora.decode(cora.encode(a)) == a


def test_true_front_dominates_the_whole_table(cora):
    front = cora.true_front(("accuracy", "latency"))
    vals = cora.all_values(["accuracy", "latency"])
    F = np.column_stack([-vals["accuracy"], vals["latency"]])
    assert 2 <= len(front) < 100
    # no table point dominates a front point
    for f in front:
        assert not np.any(np.all(F <= f, axis=1) & np.any(F < f, axis=1))
    assert -front[:, 0].min() == pytest.approx(vals["accuracy"].max())


def test_bench_search_cli_json(capsys):
    code = main(
        [
            "bench-search",
            "--space",
            "nasbench-graph:cora",
            "--engines",
            "random,nsga2",
            "--budget",
            "120",
            "--seeds",
            "2",
            "--population",
            "40",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["engines"]) == {"random", "nsga2"}
    assert len(out["engines"]["random"]["hv0.98"]["per_seed"]) == 2
    assert all(0 < v <= 1.0 for v in out["engines"]["nsga2"]["final_hv_fraction"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--space", "nasbench-graph:nope"], "unknown NAS-Bench-Graph data set"),
        (["--space", "nb201:cifar10"], "use nasbench-graph:DATASET"),
        (["--engines", "linas,bogo"], "unknown engine"),
        (["--objectives", "accuracy"], "at least two objectives"),
        (["--budget", "10", "--population", "50"], "smaller than the initial population"),
    ],
)
def test_bench_search_bad_input(argv, message, capsys):
    assert main(["bench-search", "--seeds", "1", *argv]) == 2
    assert message in capsys.readouterr().err
