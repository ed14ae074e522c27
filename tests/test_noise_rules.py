"""Noise a user can reason about: split seed apart from init seed, thread count recorded,
one class-list rule for EODD/EOPP in every path, small groups flagged and left out of Unfairness."""

import csv
import json

import numpy as np
import pytest

from nas_core.cli import main
from nas_core.evaluator import EvalRequest, clear_prepared_cache, evaluate, load_prepared, thread_note
from nas_core.metrics.fairness import MIN_GROUP_SIZE, fairness_report
from nas_core.records import Metrics
from nas_core.settings import Env, SettingsError, TrainSettings
from nas_core.space import default_spec


def _predictions(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)  # classes 0..2 of an 8-class data set: 3..7 never occur
    p = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    sex = rng.choice(["female", "male"], n)
    age = rng.choice(["young", "middle", "old"], n, p=[0.3, 0.5, 0.2])
    return y, p, sex, age


def test_class_list_does_not_change_eodd_eopp():
    y, p, sex, age = _predictions()
    attrs = [("sex", sex), ("age", age)]
    eight = fairness_report(y, p, attrs, [f"c{i}" for i in range(8)], n_bootstrap=20)
    found = fairness_report(y, p, attrs, ["c0", "c1", "c2"], n_bootstrap=20)
    for metric in ("eodd", "eopp1", "eopp2", "unfairness"):
        assert getattr(eight, metric) == pytest.approx(getattr(found, metric)), metric
        assert eight.interval(metric) == pytest.approx(found.interval(metric)), metric
    assert [x.n_classes_eopp2 for x in eight.pairs] == [x.n_classes_eopp2 for x in found.pairs] == [3, 3, 3, 3]
    # A class that is only predicted (never true) still counts: it has false positives.
    p2 = p.copy()
    p2[:40] = 5
    with_fp = fairness_report(y, p2, attrs, [f"c{i}" for i in range(8)], n_bootstrap=0)
    assert [x.n_classes_eopp2 for x in with_fp.pairs] == [4, 4, 4, 4]


def test_fairness_cli_and_evaluate_rule_agree(tmp_path, capsys):
    y, p, sex, age = _predictions(seed=1)
    names = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
    path = tmp_path / "pred.csv"
    with path.open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["label", "pred", "sex", "group"])
        for row in zip(y, p, sex, age, strict=True):
            wr.writerow([names[row[0]], names[row[1]], row[2], row[3]])
    assert main(["fairness", str(path), "--label-col", "label", "--pred-col", "pred", "--attr", "sex",
                 "--attr", "group", "--bootstrap", "0", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["class_names"] == ["BCC", "MEL", "NV"]  # found classes
    full = fairness_report(y, p, [("sex", sex), ("group", age)], names, n_bootstrap=0)  # the data set's
    assert cli["eopp2"] == pytest.approx(full.eopp2) and cli["eodd"] == pytest.approx(full.eodd)


def test_small_groups_flagged_and_left_out_of_unfairness():
    y, p, sex, age = _predictions(n=200, seed=2)
    age = age.astype(object)
    age[:4] = "very old"  # a 4-image group
    r = fairness_report(y, p, [("age", age)], ["a", "b", "c"], n_bootstrap=30, min_group_size=10)
    tiny = next(g for g in r.groups if g.group == "very old")
    assert tiny.small and tiny.n == 4 and not any(g.small for g in r.groups if g.group != "very old")
    big = [g for g in r.groups if not g.small]
    expected = np.mean([abs(g.accuracy - r.overall_accuracy) for g in big])
    assert r.unfairness == pytest.approx(expected) and r.min_group_size == 10
    every = fairness_report(y, p, [("age", age)], ["a", "b", "c"], n_bootstrap=0, min_group_size=0)
    assert every.unfairness != pytest.approx(r.unfairness) and not any(g.small for g in every.groups)
    assert MIN_GROUP_SIZE == TrainSettings().min_group_size
    # Too small for the rule: every group counts, every group is flagged.
    tiny_set = fairness_report(y[:12], p[:12], [("age", age[:12])], ["a", "b", "c"], n_bootstrap=0)
    assert tiny_set.unfairness is not None and all(g.small for g in tiny_set.groups)
    with pytest.raises(Exception, match="min_group_size"):
        fairness_report(y, p, [("age", age)], ["a", "b", "c"], min_group_size=-1)
    with pytest.raises(SettingsError, match="min_group_size"):
        TrainSettings(min_group_size=-1)


def test_cli_text_flags_small_groups(tmp_path, capsys):
    rows = [("MEL", "MEL", "male")] * 30 + [("NV", "MEL", "female")] * 3 + [("NV", "NV", "male")] * 20
    path = tmp_path / "p.csv"
    with path.open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["label", "pred", "sex"])
        wr.writerows(rows)
    assert main(["fairness", str(path), "--label-col", "label", "--pred-col", "pred", "--attr", "sex",
                 "--bootstrap", "0"]) == 0
    text = capsys.readouterr().out
    female = next(line for line in text.splitlines() if line.startswith("sex") and "female" in line)
    assert "SMALL" in female and "left out of Unfairness" in female
    assert "small group(s)" in text and "sex=female (3)" in text
    # --min-group 0 counts every group; the text then flags none
    assert main(["fairness", str(path), "--label-col", "label", "--pred-col", "pred", "--attr", "sex",
                 "--bootstrap", "0", "--min-group", "0"]) == 0
    assert "SMALL" not in capsys.readouterr().out


def test_split_seed_fixes_the_split_while_the_init_seed_varies(tiny_dataset, tmp_path):
    clear_prepared_cache()

    def req(**kw):
        t = TrainSettings(image_size=16, max_epochs=1, patience=1, batch_size=32, n_bootstrap=0, **kw)
        return EvalRequest(dataset=str(tiny_dataset), arch=default_spec(), train=t, device="cpu",
                           cache_dir=str(tmp_path / "cache"), env=Env(repeats=1, warmup=1))

    a = load_prepared(req(seed=0))
    b = load_prepared(req(seed=3))
    c = load_prepared(req(seed=0, split_seed=5))
    assert np.array_equal(a.split.test, b.split.test) and np.array_equal(a.split.train, b.split.train)
    assert not np.array_equal(a.split.test, c.split.test)
    m0 = evaluate(req(seed=0), prepared=a)
    m1 = evaluate(req(seed=3), prepared=b)
    assert m0.fairness.n == m1.fairness.n and m0.train_loss != m1.train_loss
    import torch

    assert m0.threads == torch.get_num_threads() >= 1
    assert Metrics.from_dict(m0.to_dict()).threads == m0.threads
    assert Metrics.from_dict({k: v for k, v in m0.to_dict().items() if k != "threads"}).threads == 0
    assert TrainSettings.from_dict(TrainSettings(split_seed=4).to_dict()).split_seed == 4


def test_thread_note_says_when_thread_counts_differ():
    assert thread_note([1, 1, 0]) is None and thread_note([]) is None
    note = thread_note([1, 2, 0, 2])
    assert note is not None and "(1, 2)" in note and "thread counts" in note
