"""``python -m nas_core fairness``: a predictions CSV in, the fairness report out; bad input messages."""

import csv
import json

import numpy as np
import pytest
from fairlearn.metrics import equal_opportunity_difference, equalized_odds_difference

from nas_core.cli import main
from nas_core.metrics.cli import parse_attr


def write_csv(path, rows, header=("image", "label", "pred", "sex", "age_approx")):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def run_json(args, capsys):
    assert main(["fairness", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_groups_are_derived_like_a_data_set(tmp_path, capsys):
    rows = [
        ("a", "MEL", "MEL", "male", "25"),
        ("b", "NV", "MEL", "female", "70"),
        ("c", "NV", "NV", " F ", "40"),
        ("d", "MEL", "NV", "", "65"),  # missing sex -> unknown; 65 is middle
        ("e", "BCC", "BCC", "M", ""),  # missing age -> unknown
    ]
    path = write_csv(tmp_path / "p.csv", rows)
    out = run_json([str(path), "--label-col", "label", "--pred-col", "pred", "--attr", "sex",
                    "--attr", "age_approx:bins=30,65", "--bootstrap", "0", "--min-group", "0"], capsys)
    assert out["class_names"] == ["BCC", "MEL", "NV"]
    assert out["n"] == 5 and out["overall_accuracy"] == pytest.approx(3 / 5)
    groups = {(g["attribute"], g["group"]): (g["n"], g["accuracy"]) for g in out["groups"]}
    assert groups[("sex", "male")] == (2, 1.0)
    assert groups[("sex", "female")] == (2, 0.5)
    assert groups[("sex", "unknown")] == (1, 0.0)
    assert groups[("age_approx", "young")] == (1, 1.0)
    assert groups[("age_approx", "middle")] == (2, 0.5)  # 40 and 65
    assert groups[("age_approx", "old")] == (1, 0.0)
    assert groups[("age_approx", "unknown")] == (1, 1.0)
    assert [g["group"] for g in out["groups"] if g["attribute"] == "age_approx"] == [
        "young", "middle", "old", "unknown"]
    # Unfairness over the 5 known groups: |1-.6| + |.5-.6| + |1-.6| + |.5-.6| + |0-.6| = 1.6 -> / 5
    assert out["unfairness"] == pytest.approx(1.6 / 5)


def test_agrees_with_fairlearn_on_binary_predictions(tmp_path, capsys):
    rng = np.random.default_rng(11)
    n = 250
    y = rng.integers(0, 2, n)
    p = np.where(rng.random(n) < 0.7, y, 1 - y)
    sex = rng.choice(["male", "female"], n)
    rows = [(i, int(a), int(b), s, "") for i, (a, b, s) in enumerate(zip(y, p, sex))]
    path = write_csv(tmp_path / "bin.csv", rows)
    out = run_json([str(path), "--label-col", "label", "--pred-col", "pred", "--attr", "sex",
                    "--bootstrap", "100"], capsys)
    # Binary: both one-vs-rest classes give the same differences, so the mean is fairlearn's number.
    assert out["eodd"] == pytest.approx(equalized_odds_difference(y, p, sensitive_features=sex))
    eopp1_c1 = equal_opportunity_difference(y, p, sensitive_features=sex)
    eopp1_c0 = equal_opportunity_difference(1 - y, 1 - p, sensitive_features=sex)
    assert out["eopp1"] == pytest.approx((eopp1_c0 + eopp1_c1) / 2)
    assert out["n_bootstrap"] == 100 and {c[0] for c in out["ci"]} == {"unfairness", "eodd", "eopp1", "eopp2"}


def test_text_output(tmp_path, capsys):
    path = write_csv(tmp_path / "p.csv", [("a", "1", "1", "male", "20"), ("b", "0", "1", "female", "50"),
                                          ("c", "0", "0", "female", "80"), ("d", "1", "0", "male", "40")])
    assert main(["fairness", str(path), "--label-col", "label", "--pred-col", "pred", "--attr", "sex",
          "--bootstrap", "10"]) == 0
    out = capsys.readouterr().out
    assert "4 predictions, overall accuracy 50.00%" in out
    assert "sex: female vs male" in out and "EODD" in out and "Unfairness" in out


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--label-col", "truth", "--pred-col", "pred"], "no column(s) ['truth']; its columns are: image, label"),
        (["--label-col", "label", "--pred-col", "pred", "--attr", "site"], "no column(s) ['site']"),
        (["--label-col", "label", "--pred-col", "pred", "--attr", "age_approx:bins=65,30"], "increasing"),
        (["--label-col", "label", "--pred-col", "pred", "--attr", "age_approx:bins=x"], "numbers"),
        (["--label-col", "label", "--pred-col", "pred", "--attr", "age_approx:bins=30:labels=a,b,c"],
         "1 bin edge(s) make 2 groups"),
        (["--label-col", "label", "--pred-col", "pred", "--classes", "0"], "not among --classes"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, expected):
    path = write_csv(tmp_path / "p.csv", [("a", "1", "1", "male", "20"), ("b", "0", "1", "female", "50")])
    assert main(["fairness", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err


def test_missing_file_and_empty_cells(tmp_path, capsys):
    assert main(["fairness", str(tmp_path / "none.csv"), "--label-col", "l", "--pred-col", "p"]) == 2
    assert "not found" in capsys.readouterr().err
    path = write_csv(tmp_path / "p.csv", [("a", "1", "", "male", "20")])
    assert main(["fairness", str(path), "--label-col", "label", "--pred-col", "pred"]) == 2
    assert "empty label or prediction (lines [2])" in capsys.readouterr().err


def test_parse_attr_forms():
    a = parse_attr("age:bins=20,40,60")
    assert a.kind == "age" and a.bins == (20.0, 40.0, 60.0) and a.labels == ("<20", "20-40", "40-60", ">60")
    assert parse_attr("age:bins=30,65").labels == ("young", "middle", "old")
    assert parse_attr("site").kind == "categorical"
