"""Intersectional groups (sex × age): a derived attribute toggled by TrainSettings.intersectional, reported in
every fairness metric; the split and the data set hash do not move."""

from __future__ import annotations

import numpy as np
import pytest

from nas_core.data.index import DataError
from nas_core.data.prepare import INTERSECTIONS, intersect, prepare
from nas_core.settings import TrainSettings


def test_intersect_combines_groups_and_keeps_unknown_unknown():
    attrs = [("sex", np.array(["male", "female", "unknown", "female"])),
             ("age", np.array(["<30", "65+", "30-65", "unknown"]))]
    name, values = intersect(attrs, ("sex", "age"))
    assert name == "sex×age"
    assert list(values) == ["male×<30", "female×65+", "unknown", "unknown"]
    with pytest.raises(DataError, match=r"need the attribute\(s\) \['hospital'\].*has \['age', 'sex'\]"):
        intersect(attrs, ("sex", "hospital"))
    with pytest.raises(DataError, match="at least two"):
        intersect(attrs, ("sex",))


def test_setting_round_trips_and_stays_out_of_old_payloads():
    assert "intersectional" not in TrainSettings().to_dict()  # old payloads and cache keys unchanged
    on = TrainSettings(intersectional=True)
    assert on.to_dict()["intersectional"] is True
    assert TrainSettings.from_dict(on.to_dict()) == on
    assert TrainSettings.from_dict(TrainSettings().to_dict()) == TrainSettings()


def test_prepared_data_and_every_fairness_metric_carry_the_intersection(tiny_dataset, tiny_prepared, tmp_path):
    import torch

    from nas_core.evaluator import EvalRequest, evaluate_model, load_prepared
    from nas_core.models import build_model
    from nas_core.settings import Env
    from nas_core.space import default_spec

    both = prepare(tiny_dataset, image_size=32, seed=0, cache_dir=tmp_path, workers=1, intersections=INTERSECTIONS)
    names = [n for n, _ in both.attributes]
    assert names == [n for n, _ in tiny_prepared.attributes] + ["sex×age"]
    assert both.dataset_hash == tiny_prepared.dataset_hash
    assert np.array_equal(both.split.test, tiny_prepared.split.test)
    sex, age, joint = both.attribute("sex"), both.attribute("age"), both.attribute("sex×age")
    known = (sex != "unknown") & (age != "unknown")
    assert known.any()
    assert all(j == f"{s}×{a}" for s, a, j in zip(sex[known], age[known], joint[known]))
    assert (joint[~known] == "unknown").all()

    # Through the evaluator's path, as every job prepares its data: the run setting turns it on.
    req = EvalRequest(dataset=str(tiny_dataset), arch="baseline:resnet18", cache_dir=str(tmp_path),
                      train=TrainSettings(image_size=32, intersectional=True, n_bootstrap=0, min_group_size=1))
    prepared = load_prepared(EvalRequest.from_dict(req.to_dict()))
    assert "sex×age" in [n for n, _ in prepared.attributes]
    torch.manual_seed(0)
    model = build_model(default_spec(), (3, 32, 32), len(prepared.class_names))
    m = evaluate_model(model, prepared, Env(), split="test", n_bootstrap=0, measure_costs=False, min_group_size=1)
    fr = m.fairness
    groups = {g.group for g in fr.groups if g.attribute == "sex×age"}
    assert groups and all("×" in g for g in groups - {"unknown"})
    assert "sex×age" in {a.attribute for a in fr.attributes}  # Unfairness, EODD, EOPP1, EOPP2 per attribute
    assert any(p.attribute == "sex×age" for p in fr.pairs)
