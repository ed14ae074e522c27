"""In a super-network run the multi-objective designers propose sub-networks only."""

import pytest

from nas_core.designers.base import DesignContext
from nas_core.linas.designers import LinasDesigner, Nsga2Designer, RandomSearchDesigner
from nas_core.supernet.space import choices_for_supernet, validate_subnet_spec
from tests.factories import make_candidate, make_metrics


def _ctx(history=(), iteration=0, n=6):
    return DesignContext(choices=choices_for_supernet(), input_shape=(3, 64, 64), n_classes=8,
                         history=tuple(history), n=n, iteration=iteration, seed=3,
                         objectives=("accuracy", "params"), evaluation="supernet")


@pytest.mark.parametrize("designer", [LinasDesigner, Nsga2Designer, RandomSearchDesigner])
def test_every_proposal_is_a_sub_network_and_new(designer):
    first = designer().propose(_ctx())
    assert len(first) == 6
    for p in first:
        assert validate_subnet_spec(p.spec) == []
    history = [make_candidate(i + 1, make_metrics(acc=0.5 + 0.04 * i, params=10_000 * (i + 1)), spec=p.spec)
               for i, p in enumerate(first)]
    second = designer().propose(_ctx(history, iteration=1))
    assert len(second) == 6
    assert not {p.spec.key for p in second} & {p.spec.key for p in first}
    for p in second:
        assert validate_subnet_spec(p.spec) == []
